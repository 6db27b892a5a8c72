"""Where a running local stack tells the other CLI commands how to reach it.

Each stack owns `<state dir>/stack-<port>/`: `stack.json` (endpoints, resource names, pid) and the functions'
log files. Keyed by the gateway port, so two stacks on different ports never share a file.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from infra import lambda_shapes
from tools import REPO_ROOT
from tools.local.resources import LocalResources

DEFAULT_STATE_DIR = REPO_ROOT / ".local"
DEFAULT_PORT = 3000
DEFAULT_HOST = "127.0.0.1"
WEBHOOK_PATH = lambda_shapes.WEBHOOK_PATH
# The local stack's webhook secret unless KLIKIT_WEBHOOK_SECRET says otherwise. Never used outside the local stack.
LOCAL_DEFAULT_SECRET = "local-dev-secret"
SECRET_ENV = "KLIKIT_WEBHOOK_SECRET"
STATE_DIR_ENV = "KLIKIT_STATE_DIR"

RECEIVER = "receiver"
PROCESSOR = "processor"
FUNCTIONS = (RECEIVER, PROCESSOR)


def default_state_dir() -> Path:
    return Path(os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)


def webhook_url(port: int, host: str = DEFAULT_HOST) -> str:
    return f"http://{host}:{port}{WEBHOOK_PATH}"


def stack_dir(state_dir: Path, port: int) -> Path:
    return state_dir / f"stack-{port}"


def log_file(directory: Path, function: str) -> Path:
    return directory / f"{function}.log"


@dataclass(frozen=True)
class StackState:
    port: int
    pid: int
    moto_endpoint: str
    webhook_url: str
    directory: str
    started_at: str
    max_receive_count: int
    resources: LocalResources
    klikit_api_url: str = ""  # the fake klikit partner API the local stack runs (tools/fake_klikit.py)

    def write(self) -> Path:
        path = Path(self.directory) / "stack.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        temporary.replace(path)  # readers never see half a file
        return path

    def log_file(self, function: str) -> Path:
        return log_file(Path(self.directory), function)

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> StackState:
        return cls(**{**document, "resources": LocalResources(**document["resources"])})


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_state(state_dir: Path, port: int) -> StackState | None:
    """The stack running on `port`, or None when none is (a stack killed with -9 leaves a file: its pid is gone)."""
    path = stack_dir(state_dir, port) / "stack.json"
    try:
        state = StackState.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return state if _alive(state.pid) else None


def running_stacks(state_dir: Path) -> list[StackState]:
    """Every local stack alive in `state_dir`, by port."""
    found = []
    for path in sorted(state_dir.glob("stack-*/stack.json")):
        port = path.parent.name.removeprefix("stack-")
        if port.isdigit() and (state := read_state(state_dir, int(port))) is not None:
            found.append(state)
    return sorted(found, key=lambda state: state.port)


def keep_previous_logs(directory: Path) -> None:
    """`<function>.log` of the last run becomes `<function>.previous.log`: iterating on a handler, you compare."""
    for function in FUNCTIONS:
        current = log_file(directory, function)
        if current.exists():
            current.replace(directory / f"{function}.previous.log")


def remove_state(state: StackState) -> None:
    (Path(state.directory) / "stack.json").unlink(missing_ok=True)
