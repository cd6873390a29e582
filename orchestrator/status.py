"""`status`: where each sweep in an MLflow store stands, read from MLflow alone, so it works from
a laptop against the cluster's tracking server. For a sweep that runs or was interrupted: trials
done of planned, cells complete, the best so far per dataset, its driver (the lease's host and
heartbeat) and the command that resumes it."""
from __future__ import annotations

import json
import math
import re
import shlex
import time
from collections import Counter
from dataclasses import dataclass, field

from mlflow.tracking import MlflowClient

from common.errors import UserError
from common.names import REPLICATE_KEY
from orchestrator.plan import DEFAULT_PROFILE
from orchestrator.resume import DONE
from reports.markdown import pct
from store.lease import LEASE_TAG, holder
from store.runs import CELL_TAG, PROFILE_TAG, SUPERSEDED_TAG, children, parents

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass
class SweepStatus:
    name: str
    profile: str
    run_id: str
    state: str                  # running | interrupted | failed | finished
    done: int
    running: int
    planned: int
    cells_done: int
    cells: int
    best: dict = field(default_factory=dict)    # dataset -> (test score, its validation score)
    driver: str = ""
    resume: str | None = None


def resume_command(sweep: str, profile: str, **flags: str | None) -> str:
    """The command that continues a sweep: the same profile, store, storage and cluster."""
    words = ["python -m orchestrator sweep", shlex.quote(sweep), "--resume"]
    if profile != DEFAULT_PROFILE:
        words += ["--profile", shlex.quote(profile)]
    words += [w for flag, value in flags.items() if value for w in (f"--{flag.replace('_', '-')}", shlex.quote(value))]
    return " ".join(words)


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    return f"{seconds:.0f} s ago" if seconds < 120 else f"{seconds / 60:.0f} min ago" if seconds < 7200 \
        else f"{seconds / 3600:.1f} h ago"


def _driver(parent, runs: list, now: float) -> tuple[bool, str]:
    """(whether a live driver holds the sweep, a line about it)."""
    tags = parent.data.tags
    live = holder(tags, now)
    if live is not None:
        return True, f"pid {live['pid']} on {live['host']}, heartbeat {_ago(live['age'])}"
    try:
        last = json.loads(tags[LEASE_TAG])
        return False, (f"none alive (the last, pid {last['pid']} on {last['host']}, "
                       f"{'released it' if last.get('released') else 'beat'} {_ago(now - float(last['time']))})")
    except (KeyError, ValueError, TypeError):
        times = [t for r in [parent, *runs] for t in (r.info.end_time, r.info.start_time) if t]
        return False, f"no lease recorded; last write {_ago(now - max(times) / 1000)}"


def _best(runs: list) -> dict:
    """dataset -> (test score, validation score) of the best-on-validation trial so far."""
    best: dict = {}
    for run in runs:
        metrics = run.data.metrics
        val = metrics.get("best_val_acc")
        if val is None or math.isnan(val) or metrics.get("diverged", 0) == 1:
            continue
        dataset = run.data.params.get("dataset", "all")
        if dataset not in best or val > best[dataset][1]:
            best[dataset] = (metrics.get("test_acc"), val)
    return dict(sorted(best.items()))


def sweep_status(client: MlflowClient, parent, now: float, **flags: str | None) -> SweepStatus:
    runs = [r for r in children(client, parent.info.experiment_id, parent.info.run_id)
            if SUPERSEDED_TAG not in r.data.tags]
    params, tags = parent.data.params, parent.data.tags
    try:
        cells, per_cell = int(params["cells"]), int(params["samples_per_cell"])
        replicates = int(params.get("replicates", 0))
    except (KeyError, ValueError):
        cells, per_cell, replicates = len({r.data.tags.get(CELL_TAG) for r in runs}), 1, 0
    done = [r for r in runs if r.data.tags.get("outcome") in DONE]
    # a cell is complete when its tuning is; its --replicates runs count as trials, not as cells
    by_cell = Counter(r.data.tags.get(CELL_TAG) for r in done if REPLICATE_KEY not in r.data.tags)
    live, driver = _driver(parent, runs, now)
    status = parent.info.status
    state = ("finished" if status == "FINISHED" else "failed" if status == "FAILED"
             else "running" if live else "interrupted")
    profile = tags.get(PROFILE_TAG, DEFAULT_PROFILE)
    name = tags.get("sweep", "")
    return SweepStatus(name, profile, parent.info.run_id, state, len(done),
                       sum(r.info.status == "RUNNING" for r in runs), cells * (per_cell + replicates),
                       sum(n >= per_cell for n in by_cell.values()), cells,
                       _best([r for r in runs if REPLICATE_KEY not in r.data.tags]), driver,
                       None if state in ("finished", "running") else resume_command(name, profile, **flags))


def latest_sweeps(client: MlflowClient, name: str | None = None) -> list:
    """The latest parent run of each sweep and profile in the store (of one sweep, if named)."""
    experiments = client.search_experiments()
    if name is not None:
        experiments = [e for e in experiments if e.name == name]
    latest: dict = {}
    for exp in experiments:
        for run in parents(client, exp.experiment_id):
            latest.setdefault((exp.name, run.data.tags.get(PROFILE_TAG)), run)
    if name is not None and not latest:
        raise UserError(f"no '{name}' sweep in MLflow at {client.tracking_uri}; `python -m orchestrator status` "
                        f"lists those it holds")
    return [latest[k] for k in sorted(latest, key=lambda k: (k[0], str(k[1])))]


def format_status(s: SweepStatus) -> list[str]:
    head = f"{s.name} ({s.profile}): {s.state}, run {s.run_id}"
    if s.state == "finished":
        return [f"{head}: {s.done} of {s.planned} trials; report: python -m orchestrator report {shlex.quote(s.name)}"]
    best = ", ".join(f"{d} {pct(test)} % (val {pct(val)} %)" for d, (test, val) in s.best.items()) or "none yet"
    lines = [head,
             f"  trials: {s.done} of {s.planned} done, {s.running} running; cells complete: {s.cells_done} of {s.cells}",
             f"  best so far, test top-1 of the best-on-validation trial: {best}",
             f"  driver: {s.driver}"]
    return lines + ([f"  resume: {s.resume}"] if s.resume else [])


def status_lines(client: MlflowClient, name: str | None = None, now: float | None = None,
                 **flags: str | None) -> list[str]:
    now = time.time() if now is None else now
    latest = latest_sweeps(client, name)
    if not latest:
        return [f"no sweep in MLflow at {client.tracking_uri} yet; `python -m orchestrator list` shows them"]
    # names, hosts and params are values from the store: no control character reaches the terminal
    return [_CONTROL.sub("?", line) for parent in latest for line in format_status(sweep_status(client, parent, now, **flags))]
