"""The CDK app for klikit-webhooks, and what the rest of the project shares about Lambda (spec, lambda_shapes).

Importing this package puts functions/ (the Lambda code: klikit, receiver, processor, reconciler) on the import
path. It is the one place that does, for the CDK app, tools/ and bench/ alike; pytest (`pythonpath` in
pyproject.toml) and the Lambda runtime (the code asset's root) need nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = REPO_ROOT / "functions"

if str(FUNCTIONS_DIR) not in sys.path:
    sys.path.insert(0, str(FUNCTIONS_DIR))
