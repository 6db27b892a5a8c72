"""One Lambda instance of the local stack: its own interpreter, the real handler, invoked one event at a time.

`python -m tools.local.instance --fd N --handler receiver.handler.lambda_handler --name ... --memory ... --timeout ...`
is started by tools/local/instances.py with the function's environment and one end of a socket pair (fd N). The
import of the handler is the instance's cold start (its Init Duration is reported); then it answers invocations
until the stack closes its end, or dies with it: a stack killed with -9 closes the socket too, so no instance
outlives it. What the handler writes to stdout (Powertools' JSON lines) goes to the function's log file line by
line as it is written, so the lines of an instance killed mid-invocation are kept up to that point, as CloudWatch
keeps them; one message each way per invocation keeps the hop between processes cheap.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from infra.lambda_shapes import LambdaContext
from klikit.formats import iso_z
from tools.local.runtime import load_handler


class _LogLines:
    """sys.stdout of the instance: each complete line goes straight to the function's log file, as it is written.

    One `os.write` per line on a file opened with O_APPEND: the lines of several instances never interleave, and an
    instance killed mid-invocation leaves its lines up to that point. The JSON lines of the invocation in progress
    are also kept, for the stack's one-line summaries (sent back with the result).
    """

    def __init__(self, path: str, echo: str | None) -> None:
        self._descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._echo = echo  # the console prefix with --verbose, e.g. "    [receiver] "
        self._lock = threading.Lock()
        self._buffer = ""
        self.records: list[dict[str, Any]] = []

    def write(self, text: str) -> int:
        with self._lock:
            *lines, self._buffer = (self._buffer + text).split("\n")
            for line in lines:
                self._line(line)
        return len(text)

    def _line(self, line: str) -> None:
        if not line.strip():
            return
        os.write(self._descriptor, f"{iso_z()}\t{line}\n".encode())
        if self._echo is not None:
            os.write(sys.__stdout__.fileno() if sys.__stdout__ else 1, f"{self._echo}{line}\n".encode())
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except ValueError:
                return
            if isinstance(record, dict):
                self.records.append(record)

    def flush(self) -> None:
        with self._lock:
            if self._buffer:
                self._line(self._buffer)
                self._buffer = ""

    def take(self) -> list[dict[str, Any]]:
        """The JSON lines written since the last take."""
        self.flush()
        with self._lock:
            records, self.records = self.records, []
        return records

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.local.instance")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--handler", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--memory", type=int, required=True)
    parser.add_argument("--timeout", type=float, required=True)
    parser.add_argument("--log", required=True, help="the function's log file")
    parser.add_argument("--echo", default=None, help="with --verbose: also print each line after this prefix")
    parser.add_argument("--nice", type=int, default=0, help="lower this instance's CPU priority by this much")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, before_invoke: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Serve invocations until the stack goes away. `before_invoke` sees each event first (fault injection)."""
    args = _arguments(argv)
    if args.nice:
        os.nice(args.nice)
    connection = Connection(args.fd)
    stdout = _LogLines(args.log, args.echo)
    sys.stdout = stdout  # before the handler's import: Powertools keeps the stream it sees at import
    started = time.perf_counter()
    handler = load_handler(args.handler)
    stdout.take()
    connection.send(("ready", round((time.perf_counter() - started) * 1000, 1)))
    while True:
        try:
            event, request_id = connection.recv()
        except (EOFError, OSError):
            os._exit(0)  # the stack closed its end, or died; like Lambda, no wait for the handler's own threads
        if before_invoke is not None:
            before_invoke(event)
        context = LambdaContext(args.name, args.memory, args.timeout, aws_request_id=request_id)
        try:
            result = handler(event, context)
        except Exception as exc:  # noqa: BLE001 - an unhandled error is Lambda's "function error": log it like the runtime
            print(json.dumps({"level": "ERROR", "message": "unhandled error", "error": type(exc).__name__}))
            connection.send(("error", type(exc).__name__, stdout.take()))
            continue
        connection.send(("result", result, stdout.take()))


if __name__ == "__main__":
    main()
