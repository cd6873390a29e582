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
import signal
import socket
import threading
import time
import uuid

from mlflow.tracking import MlflowClient

from clip_prompt_sweeps.errors import UserError
from clip_prompt_sweeps.store.journal import fence
from clip_prompt_sweeps.store.records import LEASE_TAG, LeaseRecord, read_parent

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


def holder(lease: LeaseRecord | None, now: float | None = None) -> dict | None:
    """The live driver holding a sweep's lease, or None when there is none (never taken,
    released, stale, malformed, or its process is gone). A heartbeat from further in the future
    than the timeout is no heartbeat of a live driver (a forged time, or a clock so far off that
    its age can never be judged): it holds nothing."""
    if lease is None or lease.released:
        return None
    age = (time.time() if now is None else now) - lease.time
    if not -lease_timeout() <= age <= lease_timeout():
        return None
    if lease.host == socket.gethostname() and not _alive(lease.pid):
        return None
    return {"host": lease.host, "pid": lease.pid, "time": lease.time, "token": lease.token, "age": max(0.0, age)}


def busy(sweep: str, run_id: str, live: dict) -> UserError:
    """The one line for a resume of a sweep that a live driver runs."""
    return UserError(f"sweep '{sweep}' (run {run_id}) is being run by pid {live['pid']} on {live['host']} "
                     f"(heartbeat {live['age']:.0f} s ago); wait for it to end, or stop it, then --resume "
                     f"(a killed driver's lease expires after {lease_timeout():.0f} s)")


class LeaseLost(UserError):
    """Another driver took the sweep over while this one could not renew its lease."""


class Lease:
    """Hold a sweep's lease while a driver runs it: `with Lease(uri, run_id, sweep): ...`.

    The heartbeat reads the lease before it renews it: if another driver's token is there (this
    driver's writes failed for longer than the timeout, and a resume elsewhere took the sweep
    over), this driver has lost the sweep. It then renews nothing, `lost` is set (the journal
    stops writing: clip_prompt_sweeps/store/journal.py), and the driver is stopped as on Ctrl-C."""

    def __init__(self, uri: str, run_id: str, sweep: str, interrupt: bool = True):
        self.uri, self.run_id, self.sweep = uri, run_id, sweep
        self.token = uuid.uuid4().hex
        self.interrupt = interrupt
        self.lost = threading.Event()
        self.taken_by: LeaseRecord | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _write(self, client: MlflowClient, released: bool = False) -> None:
        lease = {"host": socket.gethostname(), "pid": os.getpid(), "time": time.time(), "token": self.token}
        client.set_tag(self.run_id, LEASE_TAG, json.dumps({**lease, **({"released": True} if released else {})}))

    def _current(self, client: MlflowClient) -> LeaseRecord | None:
        return read_parent(client.get_run(self.run_id)).lease

    def acquire(self, settle_s: float = 0.5) -> None:
        client = MlflowClient(self.uri)
        live = holder(self._current(client))
        if live is None:
            self._write(client)
            time.sleep(settle_s)
            live = holder(self._current(client))
            if live is not None and live.get("token") == self.token:
                live = None
        if live is not None:
            raise busy(self.sweep, self.run_id, live)
        self._thread = threading.Thread(target=self._beat, name="sweep-lease", daemon=True)
        self._thread.start()

    def renew(self, client: MlflowClient) -> bool:
        """One heartbeat: renew the lease if it is still this driver's; False once it is not."""
        current = self._current(client)
        if current is not None and current.token != self.token:
            self.taken_by = current
            fence(self.run_id)
            self.lost.set()
            return False
        self._write(client)
        return True

    def _beat(self) -> None:
        client = MlflowClient(self.uri)
        period = max(0.5, lease_timeout() / 4)
        while not self._stop.wait(period):
            try:
                if not self.renew(client):
                    if self.interrupt:      # stop the sweep as Ctrl-C does; nothing more is written
                        os.kill(os.getpid(), signal.SIGINT)
                    return
            except Exception:  # noqa: BLE001 - a store that hiccups must not end the sweep
                pass

    def lost_error(self) -> LeaseLost:
        by = self.taken_by
        who = f"pid {by.pid} on {by.host}" if by else "another driver"
        return LeaseLost(f"sweep '{self.sweep}' (run {self.run_id}) was taken over by {who} while this driver "
                         f"could not renew its lease; this driver stopped and wrote nothing more (the other one "
                         f"runs the sweep now: `python -m orchestrator status`)")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.lost.is_set():
            return          # the lease is another driver's now: never overwrite it
        try:
            client = MlflowClient(self.uri)
            current = self._current(client)
            if current is None or current.token == self.token:
                self._write(client, released=True)
        except Exception:  # noqa: BLE001 - a lease left behind expires on its own
            pass

    def __enter__(self) -> "Lease":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
