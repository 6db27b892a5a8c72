"""Operator tooling: the offline local stack and the klikit command-line tool."""
