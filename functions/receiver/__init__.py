"""The receiver Lambda: verifies klikit's signature, admits each event id once, queues the raw delivery, acks."""
