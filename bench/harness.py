"""Run a measurement in a fresh interpreter and get its result back as JSON.

The parent (`python -m bench`) never imports the code it measures: each worker is `python -m bench.<module>`
with the functions on PYTHONPATH, offline AWS credentials, its stdout (the functions' logs) discarded and its
result written to a file named by `--out`.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from infra import REPO_ROOT, lambda_shapes

REPO = REPO_ROOT
REGION = lambda_shapes.REGION


class WorkerFailed(RuntimeError):
    pass


def worker_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every worker: like the Lambda's (INFO logs, no dev mode), never a real AWS account."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "POWERTOOLS_"))}
    env.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            # the benchmarks purge queues between timed blocks (moto's SendMessage slows as a queue fills)
            "MOTO_SQS_ENFORCE_STRICT_QUEUE_PURGE_BEHAVIOUR": "false",
            "POWERTOOLS_LOG_LEVEL": "INFO",
            "POWERTOOLS_DEV": "false",
            "PYTHONPATH": os.pathsep.join([str(REPO / "functions"), str(REPO)]),
        }
    )
    env.update(extra or {})
    return env


def run_worker(
    module: str,
    args: Sequence[str] = (),
    *,
    timeout: float = 300,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """`python -m module args --out FILE` in a fresh interpreter; its JSON result."""
    with tempfile.TemporaryDirectory(prefix="klikit-bench-") as tmp:
        out = Path(tmp) / "result.json"
        proc = subprocess.run(
            [sys.executable, "-m", module, *args, "--out", str(out)],
            cwd=REPO,
            env=worker_env(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0 or not out.exists():
            tail = proc.stderr.decode("utf-8", "replace")[-2000:]
            raise WorkerFailed(f"{module} {' '.join(args)} exited {proc.returncode}:\n{tail}")
        result: dict[str, Any] = json.loads(out.read_text())
        return result


def worker_main(run: Callable[[list[str]], dict[str, Any]]) -> None:
    """Entry point of a worker module: `run(args)` measures, its dict lands in the `--out` file."""
    argv = sys.argv[1:]
    if "--out" not in argv:
        raise SystemExit("usage: python -m bench.<module> ARGS --out FILE")
    at = argv.index("--out")
    out = Path(argv[at + 1])
    result = run(argv[:at] + argv[at + 2 :])
    out.write_text(json.dumps(result))


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """A moto server on a free loopback port, stopped on exit; yields its endpoint URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=worker_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise WorkerFailed("moto server did not start") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
