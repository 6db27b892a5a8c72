"""CDK app for klikit-webhooks."""
