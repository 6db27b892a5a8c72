"""What the local stack's stand-in for the Lambda runtime shares between its two sides.

An instance (tools/local/instance.py, one process each) loads a handler by its name in infra/spec.py and invokes
it with a `LambdaContext` (infra/lambda_shapes.py) that has a real deadline. Each function has one log file,
`<stack dir>/<function>.log`, one `<ISO time>\t<line>` per line its instances wrote (CloudWatch's timestamp and
message); the JSON lines of an invocation also come back to the stack with its result, for the console's one-line
summaries.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO


def load_handler(dotted: str) -> Callable[[dict[str, Any], Any], Any]:
    """`package.module.function`, as the stack names the handler (spec.RECEIVER_HANDLER etc.)."""
    module_name, _, function_name = dotted.rpartition(".")
    handler: Callable[[dict[str, Any], Any], Any] = getattr(importlib.import_module(module_name), function_name)
    return handler


@dataclass
class Invocation:
    function: str
    records: list[dict[str, Any]] = field(default_factory=list)  # the JSON log lines, parsed


@dataclass
class Outcome:
    """One invocation's end: the handler's result, or `error` (the function's error, a crash, a timeout)."""

    result: Any
    error: str | None
    invocation: Invocation
    status: str = "ok"  # ok | error (the handler raised) | crashed | timed-out | throttled


class FunctionLog:
    """A function's log file: its instances append their lines themselves (tools/local/instance.py); the stack adds
    the runtime's own (an instance's Init Duration, a crash, a timeout). With --verbose they are echoed too."""

    def __init__(self, function: str, path: Path, console: TextIO, verbose: bool, lock: threading.Lock) -> None:
        self.function = function
        self.path = str(path)
        self.verbose = verbose
        self._console = console
        self._lock = lock
        self._file = path.open("a", encoding="utf-8", buffering=1)  # O_APPEND: shared with the instances

    def write(self, timestamp: str, line: str) -> None:
        with self._lock:
            self._file.write(f"{timestamp}\t{line}\n")
            if self.verbose:
                self._console.write(f"    [{self.function}] {line}\n")
                self._console.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()
