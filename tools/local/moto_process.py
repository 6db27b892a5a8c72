"""moto's server in a child process (tools/local/moto_server.py): its CPU-heavy request handling must not share the
GIL with the gateway and the receiver, or every ack waits behind the processor's AWS calls (measured: end-to-end
p99 ack 405 ms in-process).

It never outlives the stack: it reads its stdin, a pipe whose other end only the stack holds, and exits when the
pipe closes, which the kernel does however the stack ends (Ctrl-C, SIGTERM, kill -9). A pipe rather than Linux's
PR_SET_PDEATHSIG: that fires when the *thread* that started the child exits, and it does not exist on macOS.
Its own session keeps the terminal's Ctrl-C from reaching it: the stack stops it last, after the invocations in
flight have finished their AWS calls.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from tools import REPO_ROOT
from tools.local.children import stop_child

SERVER_MODULE = "tools.local.moto_server"


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _port_taken(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


class MotoProcess:
    def __init__(self, host: str, port: int = 0, options: tuple[str, ...] = ()) -> None:
        self.host = host
        self.port = port or _free_port(host)
        self.options = options  # more of moto_server.py's options: --nice, --tables-at, --table
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        """Start moto and wait until it answers; OSError when the port is taken, RuntimeError when it never answers."""
        if _port_taken(self.host, self.port):
            raise OSError(98, "Address already in use")
        self._process = subprocess.Popen(
            [sys.executable, "-m", SERVER_MODULE, "-H", self.host, "-p", str(self.port), *self.options],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,  # the watchdog pipe
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"moto exited with code {self._process.returncode} while starting")
            ready = f"{self.endpoint}/moto-api/data.json"
            with contextlib.suppress(urllib.error.URLError, OSError), urllib.request.urlopen(ready, timeout=1):
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto did not answer on {self.endpoint} within {timeout:.0f} s")

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def stop(self) -> None:
        stop_child(self._process)
