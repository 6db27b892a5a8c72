"""Operator tooling: the offline local stack and the klikit command-line tool."""

from __future__ import annotations

from infra import FUNCTIONS_DIR, REPO_ROOT  # importing infra puts functions/ on the import path

__all__ = ["FUNCTIONS_DIR", "REPO_ROOT"]
