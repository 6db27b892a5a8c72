"""Stopping the local stack's child processes (moto, the fake klikit API, the functions' instances)."""

from __future__ import annotations

import subprocess
from typing import Any


def stop_child(process: subprocess.Popen[Any] | None, grace: float = 10.0, *, terminate: bool = True) -> None:
    """Close its watchdog pipe (stdin: it exits when that closes), ask it to end (SIGTERM unless `terminate` is
    False, for a child told some other way), and kill it if it is still there after `grace` seconds."""
    if process is None or process.poll() is not None:
        return
    if process.stdin is not None:
        process.stdin.close()
    if terminate:
        process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
