"""The offline local stack: moto standing in for AWS, the real handlers behind a real HTTP endpoint."""
