"""Operator tooling: the offline local stack and the klikit command-line tool."""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = REPO_ROOT / "functions"

# The Lambda code lives in functions/ (one asset); outside pytest, make `klikit`, `receiver` and `processor` importable.
if str(FUNCTIONS_DIR) not in sys.path:
    sys.path.insert(0, str(FUNCTIONS_DIR))
