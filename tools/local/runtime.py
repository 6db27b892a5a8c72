"""A stand-in for the Lambda runtime: load a handler by its name in infra/spec.py, invoke it, keep its logs.

Both functions run in the local stack's process. Their structured log lines (Powertools writes JSON to stdout) are
captured per invocation: written to `<stack dir>/<function>.log` as `<ISO time>\t<line>` (CloudWatch's timestamp
and message), handed to the console's one-line summaries, and echoed in full with `--verbose`.
"""

from __future__ import annotations

import importlib
import io
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from tools.local.resources import LOCAL_REGION

LOCAL_ACCOUNT = "123456789012"


@dataclass
class LambdaContext:
    """What Powertools reads from a Lambda context, with a real deadline."""

    function_name: str
    memory_limit_in_mb: int
    timeout_seconds: float
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"local/{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (time.monotonic() - self.started)) * 1000))


@dataclass
class Invocation:
    function: str
    records: list[dict[str, Any]] = field(default_factory=list)  # the JSON log lines, parsed


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class LogCapture(io.TextIOBase):
    """Installed as sys.stdout: lines written during an invocation belong to that function, the rest pass through."""

    def __init__(self, console: TextIO, directory: Path, verbose: bool, lock: threading.Lock) -> None:
        self._console = console
        self._directory = directory
        self._verbose = verbose
        self._lock = lock
        self._local = threading.local()
        self._files: dict[str, TextIO] = {}

    def writable(self) -> bool:
        return True

    def _file(self, function: str) -> TextIO:
        if function not in self._files:
            self._files[function] = (self._directory / f"{function}.log").open("a", encoding="utf-8", buffering=1)
        return self._files[function]

    def write(self, text: str) -> int:
        invocation: Invocation | None = getattr(self._local, "invocation", None)
        if invocation is None:
            with self._lock:
                self._console.write(text)
                self._console.flush()
            return len(text)
        buffered = getattr(self._local, "buffer", "") + text
        *lines, rest = buffered.split("\n")
        self._local.buffer = rest
        for line in lines:
            self._line(invocation, line)
        return len(text)

    def _line(self, invocation: Invocation, line: str) -> None:
        if not line.strip():
            return
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict):
            invocation.records.append(record)
        with self._lock:
            self._file(invocation.function).write(f"{now_iso()}\t{line}\n")
            if self._verbose:
                self._console.write(f"    [{invocation.function}] {line}\n")
                self._console.flush()

    @contextmanager
    def invocation(self, function: str) -> Iterator[Invocation]:
        current = Invocation(function)
        self._local.invocation, self._local.buffer = current, ""
        try:
            yield current
        finally:
            if self._local.buffer:
                self._line(current, self._local.buffer)
            self._local.invocation, self._local.buffer = None, ""

    def close(self) -> None:
        with self._lock:
            for handle in self._files.values():
                handle.close()
            self._files.clear()
        super().close()


def load_handler(dotted: str) -> Callable[[dict[str, Any], Any], Any]:
    """`package.module.function`, as the stack names the handler (spec.RECEIVER_HANDLER etc.)."""
    module_name, _, function_name = dotted.rpartition(".")
    handler: Callable[[dict[str, Any], Any], Any] = getattr(importlib.import_module(module_name), function_name)
    return handler


@dataclass
class Outcome:
    result: Any
    error: BaseException | None
    invocation: Invocation


class LocalFunction:
    """One warm instance of a function: invocations run one at a time, as on a single Lambda instance."""

    def __init__(
        self,
        name: str,
        handler: Callable[[dict[str, Any], Any], Any],
        capture: LogCapture,
        timeout_seconds: float,
        memory_mb: int,
        kind: str,
    ) -> None:
        self.name = name
        self._handler = handler
        self._capture = capture
        self._timeout = timeout_seconds
        self._memory = memory_mb
        self._kind = kind
        self._lock = threading.Lock()

    def invoke(self, event: dict[str, Any]) -> Outcome:
        context = LambdaContext(self.name, self._memory, self._timeout)
        with self._lock, self._capture.invocation(self._kind) as invocation:
            try:
                return Outcome(self._handler(event, context), None, invocation)
            except Exception as exc:  # noqa: BLE001 - an unhandled error is Lambda's "function error": log it like the runtime
                print(json.dumps({"level": "ERROR", "message": "unhandled error", "error": repr(exc)[:500]}))
                return Outcome(None, exc, invocation)


def install_capture(capture: LogCapture) -> TextIO:
    """Route stdout through `capture` (before the handlers are imported: Powertools keeps the stream it saw)."""
    original = sys.stdout
    sys.stdout = capture
    return original
