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


def start_mlflow(folder: Path, port: int, db: str = "server.db", backend: str | None = None,
                 workers: int = 1) -> subprocess.Popen:
    """A server on `folder`/`db` (SQLite; or the database URI `backend`) and `folder`/artifacts,
    once it answers /health; in a session of its own, so that stop() ends its workers too."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", backend or f"sqlite:///{folder}/{db}",
         "--artifacts-destination", str(folder / "artifacts"), "--workers", str(workers)],
        stdout=(folder / "server.log").open("a"), stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})     # as clusters/node/head.sh runs it
    deadline = time.time() + 120
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


def postgres_bin() -> Path | None:
    """The newest PostgreSQL server of Debian's package, or None where none is installed."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else None


def start_postgres(database: str = "mlflow") -> tuple[subprocess.Popen, str, Path]:
    """(server, SQLAlchemy URI of `database`, its folder): a real PostgreSQL on a unix socket only
    (no TCP port: nothing another user of the machine could reach), in a fresh folder that only
    the server's user can enter. As root it runs as the `postgres` user, which PostgreSQL needs."""
    import pwd
    import tempfile
    pg = postgres_bin()
    folder = Path(tempfile.mkdtemp(prefix="pg-"))          # mode 700
    as_user: list[str] = []
    if os.getuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_user, str(pg / "initdb"), "-D", str(folder / "data"), "-U", "postgres", "--auth=trust",
                    "--no-sync"], check=True, capture_output=True)
    proc = subprocess.Popen([*as_user, str(pg / "postgres"), "-D", str(folder / "data"), "-k", str(folder),
                             "-c", "listen_addresses=", "-c", "fsync=off", "-c", "max_connections=200"],
                            stdout=(Path(tempfile.gettempdir()) / f"{folder.name}.log").open("a"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 60
    while subprocess.run([str(pg / "pg_isready"), "-q", "-h", str(folder)]).returncode != 0:
        if proc.poll() is not None or time.time() > deadline:
            stop_postgres(proc, folder)
            raise AssertionError("PostgreSQL did not start")
        time.sleep(0.2)
    subprocess.run([str(pg / "createdb"), "-h", str(folder), "-U", "postgres", database], check=True)
    return proc, f"postgresql://postgres@/{database}?host={folder}", folder


def stop_postgres(proc: subprocess.Popen, folder: Path) -> None:
    import shutil
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)         # PostgreSQL's fast shutdown
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    shutil.rmtree(folder, ignore_errors=True)
    Path(folder.parent, f"{folder.name}.log").unlink(missing_ok=True)      # the server's log, beside it
