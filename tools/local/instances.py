"""A function's Lambda instances in the local stack: separate processes, started on demand, reused warm.

Like Lambda: an invocation goes to an idle warm instance if there is one, else to a new instance (a cold start:
its process imports the handler; the console and the function's log say so) while the function is below its
concurrency limit, else it is throttled (Lambda's 429 TooManyRequestsException) or, for a caller that can wait
(the SQS pollers), waits for an instance. An instance that crashes or runs past the function's timeout is gone: its
invocation ends as a function error, and the next invocation starts a new instance.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from klikit.formats import iso_z
from tools import REPO_ROOT
from tools.local.children import stop_child
from tools.local.runtime import FunctionLog, Invocation, Outcome

INSTANCE_MODULE = "tools.local.instance"
START_TIMEOUT_SECONDS = 60.0  # an import on a busy 2-core machine; Lambda's own init limit is 10 s
STOP_GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class FunctionConfig:
    name: str  # the function's name, e.g. klikit-local-receiver
    kind: str  # receiver | processor: the log file and the console's word
    handler: str  # spec.RECEIVER_HANDLER
    timeout_seconds: float
    memory_mb: int
    concurrency: int
    env: Mapping[str, str]
    nice: int = 0  # CPU priority of its instances (os.nice increment)


class InstanceFailed(Exception):
    """An instance died before it was ready (its import failed, or it was killed)."""


class Instance:
    """One process running the function's handler."""

    def __init__(self, function: FunctionConfig, number: int, log: FunctionLog, module: str) -> None:
        self.function = function
        self.number = number
        self.invocations = 0
        self._log = log
        ours, theirs = socket.socketpair()
        arguments = {
            "--fd": theirs.fileno(),
            "--handler": function.handler,
            "--name": function.name,
            "--memory": function.memory_mb,
            "--timeout": function.timeout_seconds,
            "--nice": function.nice,
            "--log": log.path,
        }
        if log.verbose:
            arguments["--echo"] = f"    [{function.kind}] "
        self._process = subprocess.Popen(
            [sys.executable, "-m", module, *(str(part) for pair in arguments.items() for part in pair)],
            cwd=REPO_ROOT,
            env={**os.environ, **function.env},
            stdin=subprocess.DEVNULL,
            pass_fds=(theirs.fileno(),),
            start_new_session=True,  # Ctrl-C in the terminal reaches the stack, which stops its instances in order
        )
        theirs.close()
        self._connection = Connection(ours.detach())
        self.pid = self._process.pid
        self.init_ms = self._wait_ready()

    def _wait_ready(self) -> float:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            message = self._next(deadline - time.monotonic())
            if message is None or message[0] == "eof":
                break
            if message[0] == "ready":
                return float(message[1])
        self.kill()
        raise InstanceFailed(f"{self.function.kind} instance {self.number} did not start (exit {self.exit_code()})")

    def _next(self, timeout: float) -> tuple[Any, ...] | None:
        """The instance's next message: ("eof",) when it is gone, None when `timeout` passed first."""
        try:
            if timeout <= 0 or not self._connection.poll(timeout):
                return None
            return tuple(self._connection.recv())
        except (EOFError, OSError):
            return ("eof",)

    def invoke(self, event: dict[str, Any], invocation: Invocation) -> Outcome:
        self.invocations += 1
        try:
            self._connection.send((event, str(uuid.uuid4())))
        except OSError:
            return Outcome(None, "the instance had exited", invocation, "crashed")
        message = self._next(self.function.timeout_seconds)
        if message is None:
            self.kill()
            seconds = f"{self.function.timeout_seconds:g}"
            self._log.write(iso_z(), f"Task timed out after {seconds} seconds (instance {self.number})")
            return Outcome(None, f"Task timed out after {seconds} seconds", invocation, "timed-out")
        if message[0] == "eof":
            code = self.exit_code()
            self._log.write(iso_z(), f"Runtime exited with {_exit_text(code)} (instance {self.number})")
            return Outcome(None, f"Runtime exited with {_exit_text(code)}", invocation, "crashed")
        invocation.records.extend(message[2])
        if message[0] == "error":
            return Outcome(None, str(message[1]), invocation, "error")
        return Outcome(message[1], None, invocation)

    def alive(self) -> bool:
        return self._process.poll() is None

    def exit_code(self) -> int | None:
        try:
            return self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        if self.alive():
            self._process.kill()
        self._process.wait()
        self._connection.close()

    def stop(self, grace: float) -> None:
        """Close its end of the socket (the instance exits when idle), then kill what is left after `grace`."""
        self._connection.close()
        stop_child(self._process, grace, terminate=False)


def _exit_text(code: int | None) -> str:
    if code is None:
        return "an unknown status"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit status {code}"


class InstancePool:
    """Up to `function.concurrency` instances of one function."""

    def __init__(
        self,
        function: FunctionConfig,
        log: FunctionLog,
        announce: Callable[[str], None],
        module: str | None = None,
    ) -> None:
        self.function = function
        self._log = log
        self._announce = announce
        self._module = module or INSTANCE_MODULE
        self._idle: list[Instance] = []
        self._count = 0  # instances running or starting
        self._busy = 0
        self._numbers = 0
        self._cold_starts = 0
        self._closed = False
        self._condition = threading.Condition()

    @property
    def busy(self) -> int:
        with self._condition:
            return self._busy

    @property
    def cold_starts(self) -> int:
        with self._condition:
            return self._cold_starts

    def invoke(self, event: dict[str, Any], wait: float = 0.0) -> Outcome:
        """Invoke one instance; throttled when all are busy for `wait` seconds (0: Lambda's synchronous invoke)."""
        invocation = Invocation(self.function.kind)
        try:
            instance = self._acquire(wait)
        except InstanceFailed as exc:
            return Outcome(None, str(exc), invocation, "crashed")
        if instance is None:
            return Outcome(None, "Rate Exceeded.", invocation, "throttled")
        outcome = instance.invoke(event, invocation)
        self._release(instance, keep=outcome.status not in ("crashed", "timed-out"))
        return outcome

    def _acquire(self, wait: float) -> Instance | None:
        deadline = time.monotonic() + wait
        with self._condition:
            while True:
                if self._closed:
                    return None
                if self._idle:
                    self._busy += 1
                    return self._idle.pop()  # the most recently used: warm, as Lambda prefers
                if self._count < self.function.concurrency:
                    self._count += 1
                    self._busy += 1
                    self._numbers += 1
                    self._cold_starts += 1
                    number = self._numbers
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._condition.wait(remaining)
        try:
            instance = Instance(self.function, number, self._log, self._module)
        except BaseException:
            with self._condition:
                self._count -= 1
                self._busy -= 1
                self._condition.notify_all()
            raise
        line = f"INIT {self.function.name} instance {instance.number} (pid {instance.pid}): Init Duration: "
        self._log.write(iso_z(), f"{line}{instance.init_ms:.1f} ms")
        self._announce(
            f"{self.function.kind} instance {instance.number} (pid {instance.pid}) ready in {instance.init_ms:,.0f} ms"
            f" ({self._count} of at most {self.function.concurrency})"
        )
        return instance

    def _release(self, instance: Instance, keep: bool) -> None:
        with self._condition:
            self._busy -= 1
            if keep and not self._closed:
                self._idle.append(instance)
            else:
                self._count -= 1
            self._condition.notify_all()
        if not keep:
            instance.kill()

    def wait_idle(self, timeout: float) -> int:
        """Wait (at most `timeout`) until no invocation runs; the number still running."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while self._busy and (remaining := deadline - time.monotonic()) > 0:
                self._condition.wait(remaining)
            return self._busy

    def close(self) -> None:
        """No new invocations; stop the idle instances (a busy one is stopped when its invocation ends)."""
        with self._condition:
            self._closed = True
            idle, self._idle = self._idle, []
            self._count -= len(idle)
            self._condition.notify_all()
        for instance in idle:
            instance.stop(STOP_GRACE_SECONDS)
