"""One driver per sweep: a lease on the parent run, renewed by a heartbeat.

A running driver writes the tag `driver_lease` (host, pid, time, a token) on its parent run every
few seconds from a daemon thread. `--resume` refuses a sweep whose lease is fresh, so a second
driver (on this machine or another one sharing the store) cannot restore the same trials under a
live one. A lease is stale when its heartbeat is older than the timeout, or at once when it was
written on this host by a process that no longer exists (a killed driver on a laptop).
MLflow offers no compare-and-set, so a takeover writes its own lease and reads it back after a
short wait: of two drivers taking over at the same instant, the one that reads another's token
gives up.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid

from mlflow.tracking import MlflowClient

from common.errors import UserError

LEASE_TAG = "driver_lease"
TIMEOUT_ENV = "ORCHESTRATOR_LEASE_TIMEOUT_S"


def lease_timeout() -> float:
    return float(os.environ.get(TIMEOUT_ENV, "60"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:        # someone else's process: alive
        return True
    return True


def holder(tags: dict, now: float | None = None) -> dict | None:
    """The live driver holding a sweep's lease, or None when there is none (never taken,
    released, stale, or its process is gone)."""
    try:
        lease = json.loads(tags.get(LEASE_TAG, ""))
        age = (now or time.time()) - float(lease["time"])
        host, pid = str(lease["host"]), int(lease["pid"])
    except (ValueError, KeyError, TypeError):
        return None
    if lease.get("released") or age > lease_timeout():
        return None
    if host == socket.gethostname() and not _alive(pid):
        return None
    return {**lease, "age": max(0.0, age)}


def busy(sweep: str, run_id: str, live: dict) -> UserError:
    """The one line for a resume of a sweep that a live driver runs."""
    return UserError(f"sweep '{sweep}' (run {run_id}) is being run by pid {live['pid']} on {live['host']} "
                     f"(heartbeat {live['age']:.0f} s ago); wait for it to end, or stop it, then --resume "
                     f"(a killed driver's lease expires after {lease_timeout():.0f} s)")


class Lease:
    """Hold a sweep's lease while a driver runs it: `with Lease(uri, run_id, sweep): ...`."""

    def __init__(self, uri: str, run_id: str, sweep: str):
        self.uri, self.run_id, self.sweep = uri, run_id, sweep
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _write(self, client: MlflowClient, released: bool = False) -> None:
        lease = {"host": socket.gethostname(), "pid": os.getpid(), "time": time.time(), "token": self.token}
        client.set_tag(self.run_id, LEASE_TAG, json.dumps({**lease, **({"released": True} if released else {})}))

    def acquire(self, settle_s: float = 0.5) -> None:
        client = MlflowClient(self.uri)
        live = holder(client.get_run(self.run_id).data.tags)
        if live is None:
            self._write(client)
            time.sleep(settle_s)
            live = holder(client.get_run(self.run_id).data.tags)
            if live is not None and live.get("token") == self.token:
                live = None
        if live is not None:
            raise busy(self.sweep, self.run_id, live)
        self._thread = threading.Thread(target=self._beat, name="sweep-lease", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        client = MlflowClient(self.uri)
        period = max(0.5, lease_timeout() / 4)
        while not self._stop.wait(period):
            try:
                self._write(client)
            except Exception:  # noqa: BLE001 - a store that hiccups must not end the sweep
                pass

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self._write(MlflowClient(self.uri), released=True)
        except Exception:  # noqa: BLE001 - a lease left behind expires on its own
            pass

    def __enter__(self) -> "Lease":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
