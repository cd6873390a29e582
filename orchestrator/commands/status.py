"""`status`: where each sweep in an MLflow store stands, read from MLflow alone, so it works from
a laptop against the cluster's tracking server. For a sweep that runs or was interrupted: trials
done of planned, cells complete, the best so far per dataset, its driver (the lease's host and
heartbeat) and the command that resumes it."""
from __future__ import annotations

import shlex
import time
from collections import Counter
from dataclasses import dataclass, field

from mlflow.tracking import MlflowClient

from clip_prompt_sweeps.errors import UserError
from clip_prompt_sweeps.names import DEFAULT_PROFILE
from clip_prompt_sweeps.store.lease import holder
from clip_prompt_sweeps.store.records import DONE, ParentRecord, TrialRecord, printable, read_parent, served_by
from clip_prompt_sweeps.store.runs import current_trials, parents
from reports.markdown import pct


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
    sweep_file: str | None = None       # a sweep from a TOML file: commands name the file
    nodes: int = 0                      # machines that ran at least one of its trials


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


def _driver(parent: ParentRecord, runs: list[TrialRecord], now: float) -> tuple[bool, str]:
    """(whether a live driver holds the sweep, a line about it)."""
    live = holder(parent.lease, now)
    if live is not None:
        return True, f"pid {live['pid']} on {live['host']}, heartbeat {_ago(live['age'])}"
    last = parent.lease
    if last is not None:
        return False, (f"none alive (the last, pid {last.pid} on {last.host}, "
                       f"{'released it' if last.released else 'beat'} {_ago(now - last.time)})")
    times = [t for t in (parent.end_time, parent.start_time, *(r.start_time for r in runs)) if t]
    return False, "no lease recorded" + (f"; last write {_ago(now - max(times) / 1000)}" if times else "")


def _best(runs: list[TrialRecord]) -> dict:
    """dataset -> (test score, validation score) of the best-on-validation trial so far."""
    best: dict = {}
    for run in runs:
        val = run.metric("best_val_acc")
        if val is None or run.diverged:
            continue
        dataset = str(run.params.get("dataset", "all"))
        if dataset not in best or val > best[dataset][1]:
            best[dataset] = (run.metric("test_acc"), val)
    return dict(sorted(best.items()))


def sweep_status(client: MlflowClient, run, now: float, **flags: str | None) -> SweepStatus:
    parent = read_parent(run)
    runs, _ = current_trials(client, parent)
    cells, per_cell = parent.cells, parent.samples_per_cell
    if cells is None or per_cell is None:
        cells, per_cell = len({r.cell for r in runs}), 1
    replicates = parent.replicates
    done = [r for r in runs if r.outcome in DONE]
    # a cell is complete when its tuning is; its --replicates runs count as trials, not as cells
    by_cell = Counter(r.cell for r in done if not r.is_replicate)
    live, driver = _driver(parent, runs, now)
    state = ("finished" if parent.status == "FINISHED" else "failed" if parent.status == "FAILED"
             else "running" if live else "interrupted")
    profile = parent.profile or DEFAULT_PROFILE
    name = parent.sweep     # a sweep from a TOML file is resumed and reported by naming its file
    return SweepStatus(name, profile, parent.run_id, state, len(done),
                       sum(r.status == "RUNNING" for r in runs), cells * (per_cell + replicates),
                       sum(n >= per_cell for n in by_cell.values()), cells,
                       _best([r for r in runs if not r.is_replicate]), driver,
                       None if state in ("finished", "running") else
                       resume_command(parent.sweep_file or name, profile, **flags), parent.sweep_file,
                       served_by(runs))


def _on_nodes(n: int) -> str:
    return f" on {n} node{'s' if n != 1 else ''}" if n else ""


def latest_sweeps(client: MlflowClient, name: str | None = None) -> list:
    """The latest parent run of each sweep and profile in the store (of one sweep, if named)."""
    experiments = client.search_experiments()
    if name is not None:
        experiments = [e for e in experiments if e.name == name]
    latest: dict = {}
    for exp in experiments:
        for run in parents(client, exp.experiment_id):
            latest.setdefault((exp.name, read_parent(run).profile), run)
    if name is not None and not latest:
        raise UserError(f"no '{name}' sweep in MLflow at {client.tracking_uri}; `python -m orchestrator status` "
                        f"lists those it holds")
    return [latest[k] for k in sorted(latest, key=lambda k: (k[0], str(k[1])))]


def format_status(s: SweepStatus) -> list[str]:
    head = f"{s.name} ({s.profile}): {s.state}, run {s.run_id}"
    if s.state == "finished":
        return [f"{head}: {s.done} of {s.planned} trials{_on_nodes(s.nodes)}; report: python -m orchestrator report "
                f"{shlex.quote(s.sweep_file or s.name)}"]
    best = ", ".join(f"{d} {pct(test)} % (val {pct(val)} %)" for d, (test, val) in s.best.items()) or "none yet"
    lines = [head,
             f"  trials: {s.done} of {s.planned} done, {s.running} running{_on_nodes(s.nodes)}; "
             f"cells complete: {s.cells_done} of {s.cells}",
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
    return [printable(line, 10_000) for parent in latest for line in format_status(sweep_status(client, parent, now, **flags))]
