"""The processor: consumes verified klikit deliveries from SQS, projects orders and runs the user's handlers."""
