"""A real `mlflow server` on 127.0.0.1 for the tests that need one (started and stopped by them)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mlflow(folder: Path, port: int, db: str = "server.db") -> subprocess.Popen:
    """A server on `folder`/`db` (SQLite) and `folder`/artifacts, once it answers /health; in a
    session of its own, so that stop() ends its workers too."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{folder}/{db}", "--artifacts-destination", str(folder / "artifacts"),
         "--workers", "1"], stdout=(folder / "server.log").open("a"), stderr=subprocess.STDOUT,
        start_new_session=True)
    deadline = time.time() + 90
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).close()
            return proc
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                stop(proc)
                raise AssertionError((folder / "server.log").read_text()[-2000:])
            time.sleep(0.3)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
