"""A real local stack (`python -m tools.cli local`) in a child process on free ports, driven over real HTTP."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import boto3
import pytest

from tools import REPO_ROOT
from tools.cli import main as cli_main
from tools.local.state import StackState, read_state

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient

START_TIMEOUT = 60.0
WAIT_TIMEOUT = 30.0
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Nothing listens on the port, and a new server may bind it (TIME_WAIT leftovers are normal TCP)."""
    with socket.socket() as client:
        if client.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def eventually(check: Callable[[], T | None], what: str, timeout: float = WAIT_TIMEOUT) -> T:
    """Poll `check` until it returns something truthy (the pipeline is asynchronous); fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class LocalStack:
    process: subprocess.Popen[bytes]
    port: int
    state_dir: Path
    output_path: Path
    state: StackState

    @property
    def location(self) -> list[str]:
        return ["--port", str(self.port), "--state-dir", str(self.state_dir)]

    def cli(self, *args: str) -> CliResult:
        """`klikit <args>` in this process, aimed at this stack."""
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli_main([*args, *self.location])
        return CliResult(code, out.getvalue(), err.getvalue())

    def output(self) -> str:
        return self.output_path.read_text(encoding="utf-8")

    def steps_for(self, event_id: str) -> list[str]:
        """The console's step words (received, processed, ...) for one event id, in order."""
        return [line.split()[1] for line in self.output().splitlines() if line.endswith(f"[evt {event_id}]")]

    @overload
    def client(self, service: Literal["dynamodb"]) -> DynamoDBClient: ...
    @overload
    def client(self, service: Literal["secretsmanager"]) -> SecretsManagerClient: ...
    @overload
    def client(self, service: Literal["sqs"]) -> SQSClient: ...
    def client(
        self, service: Literal["dynamodb", "secretsmanager", "sqs"]
    ) -> DynamoDBClient | SecretsManagerClient | SQSClient:
        return boto3.client(
            service,
            endpoint_url=self.state.moto_endpoint,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )

    def order(self, order_id: int | str) -> dict[str, Any] | None:
        result = self.cli("orders", "get", str(order_id))
        return result.json() if result.code == 0 else None

    def stop(self, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)


def start_stack(
    state_dir: Path, *extra: str, module: str = "tools.cli", env: dict[str, str] | None = None
) -> LocalStack:
    """`python -m <module> local ...` (the CLI, or a module that runs it with other instances) on a free port."""
    port = free_port()
    state_dir.mkdir(parents=True, exist_ok=True)
    output_path = state_dir / f"console-{port}.txt"
    environment = {key: value for key, value in os.environ.items() if not key.startswith("KLIKIT_")}
    environment.pop("AWS_ENDPOINT_URL", None)
    environment.update({"PYTHONUNBUFFERED": "1", **(env or {})})
    command = [sys.executable, "-m", module, "local", "--port", str(port), "--state-dir", str(state_dir), *extra]
    with output_path.open("wb") as output:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=environment, stdout=output, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_TIMEOUT
    while (state := read_state(state_dir, port)) is None or "send one" not in output_path.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            pytest.fail(f"the local stack did not start:\n{output_path.read_text()}")
        time.sleep(0.1)
    return LocalStack(process, port, state_dir, output_path, state)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """One stack per test session (its tests share an xdist group).

    A failing record is retried after 1 s and dead-lettered on its second receive.
    """
    running = start_stack(tmp_path_factory.mktemp("local"), "--visibility-timeout", "1", "--max-receive-count", "2")
    try:
        yield running
    finally:
        running.stop()


def banner_command(stack: LocalStack) -> list[str]:
    """The 'send one' command the stack printed when it was ready."""
    line = next(line for line in stack.output().splitlines() if line.strip().startswith("send one"))
    return shlex.split(line.split("send one", 1)[1])
