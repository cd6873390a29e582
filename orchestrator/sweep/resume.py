"""Rebuilding an interrupted sweep from what it logged to MLflow and the checkpoints in its storage.

The record of a sweep is its child runs in MLflow plus the trial checkpoints under the storage
path; Ray's experiment state (tuner.pkl, experiment_state-*.json, the searcher's file) is a
cache that a kill can leave truncated, empty or missing, so `--resume` never reads it (nor
unpickles anything). From the record:

- every child run that ended as a trial ends (finished, stopped early by ASHA, diverged) is
  done: it is never run again, and its learning rate and results go back into its cell's
  Optuna study and ASHA rungs;
- every other child run (running when the driver died, interrupted, crashed) is continued by a
  new Ray trial in the same run, from its newest checkpoint that is readable, else from epoch 1;
- the cells' remaining samples are proposed afresh.

Nothing is deleted: a run beyond its cell's planned samples is marked `superseded_by`, KILLED.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

from clip_prompt_sweeps.names import cell_key, member_folder
from clip_prompt_sweeps.store.records import DONE, SUPERSEDED_TAG, TrialRecord
from clip_prompt_sweeps.store.runs import metric_histories
from clip_prompt_sweeps.store.runs import trials as child_trials
from orchestrator.sweep.plan import SweepPlan
from trainables.training.checkpoints import checkpoint_epoch


@dataclass(frozen=True)
class PastTrial:
    """A child run of the sweep, as MLflow holds it."""
    run_id: str
    cell: str
    lr: float | None
    done: bool
    history: tuple[tuple[int, float], ...]  # (epoch, the sweep's metric), in epoch order
    trial_ids: tuple[str, ...]              # every Ray trial id the run has had, oldest first
    start_time: int
    member: int | None = None               # its index in a fused trial: its folder in the checkpoints


@dataclass(frozen=True)
class Continuation:
    """An unfinished trial, to be continued in its own child run."""
    run_id: str
    lr: float | None
    checkpoint: str | None      # newest readable checkpoint (path or URI under the storage path)
    epoch: int                  # the epoch that checkpoint holds; 0: start again from epoch 1
    history: tuple[tuple[int, float], ...] = ()


@dataclass
class SweepRecord:
    """Per cell key: the trials that are over, and those to continue."""
    done: dict[str, list[PastTrial]] = field(default_factory=dict)
    unfinished: dict[str, list[Continuation]] = field(default_factory=dict)
    superseded: list[PastTrial] = field(default_factory=list)

    @property
    def n_done(self) -> int:
        return sum(len(v) for v in self.done.values())

    def only(self, keys: set[str]) -> SweepRecord:
        """The record of these cells alone (a group of the sweep's cells, run as one Tune experiment)."""
        return SweepRecord({k: v for k, v in self.done.items() if k in keys},
                           {k: v for k, v in self.unfinished.items() if k in keys})


def is_done(trial: TrialRecord) -> bool:
    """Whether a child run ended as a trial ends. Runs logged before the `outcome` tag existed
    are judged by their status and stop reason."""
    if trial.status not in ("FINISHED", "KILLED") or trial.superseded:
        return False
    if trial.outcome is not None:
        return trial.outcome in DONE
    return trial.status == "FINISHED" or trial.stop_reason.startswith(("stopped early by ASHA", "non-finite"))


def read_trials(client: MlflowClient, experiment: str, parent: str, metric: str) -> list[PastTrial]:
    kept = [t for t in child_trials(client, experiment, parent) if not t.superseded]
    histories = metric_histories(client, [t.run_id for t in kept], metric)      # in bulk, not run by run
    out = [PastTrial(t.run_id, t.cell, t.lr, is_done(t), tuple(sorted(dict(histories[t.run_id]).items())),
                     t.trial_ids, t.start_time, t.member) for t in kept]
    return sorted(out, key=lambda t: t.start_time)


def build_record(plan: SweepPlan, trials: list[PastTrial], storage: str | None, experiment_base: str) -> SweepRecord:
    """Sort the runs by cell into done and unfinished; find each unfinished one's checkpoint."""
    record = SweepRecord()
    keys = {cell_key(c) for c in plan.cells}
    store = CheckpointStore(storage, experiment_base)
    for key in keys:
        mine = [t for t in trials if t.cell == key]
        done = [t for t in mine if t.done][:plan.profile.samples]
        rest = [t for t in mine if not t.done][:plan.profile.samples - len(done)]
        record.done[key] = done
        record.unfinished[key] = [_continuation(t, store) for t in rest]
        kept = {t.run_id for t in done + rest}
        record.superseded += [t for t in mine if t.run_id not in kept]
    record.superseded += [t for t in trials if t.cell not in keys]
    return record


def _continuation(trial: PastTrial, store: "CheckpointStore") -> Continuation:
    # A trial persists its checkpoint before the driver logs that epoch: one newer than the
    # run's history would leave its epochs unlogged for ever, so the trial goes back to the last
    # epoch MLflow holds and runs the rest again.
    logged = trial.history[-1][0] if trial.history else 0
    found = store.newest(trial.trial_ids, at_most=logged, member=trial.member)
    path, epoch = found if found else (None, 0)
    # the rungs it passed before that checkpoint are replayed; later epochs it reports again
    return Continuation(trial.run_id, trial.lr, path, epoch, tuple(h for h in trial.history if h[0] <= epoch))


def mark_superseded(client: MlflowClient, record: SweepRecord, why: str) -> None:
    for trial in record.superseded:
        client.set_tag(trial.run_id, SUPERSEDED_TAG, why)
        if client.get_run(trial.run_id).info.status == "RUNNING":
            client.set_terminated(trial.run_id, RunStatus.to_string(RunStatus.KILLED))


def session_name(base: str, resumed: bool) -> str:
    """Each driver session writes its own Ray experiment folder; a resume never reuses (or
    overwrites) the folders of the sessions before it."""
    return f"{base}-resume-{time.strftime('%Y%m%d-%H%M%S')}" if resumed else base


class CheckpointStore:
    """Trial checkpoints of one sweep, across its sessions, under the resolved storage path.
    Folders are found by listing that path; no path is ever taken from MLflow's text."""

    def __init__(self, storage: str | None, experiment_base: str):
        import pyarrow.fs as pafs
        root = storage or "~/ray_results"          # Ray's default
        if "://" in root:
            self.fs, self.root = pafs.FileSystem.from_uri(root)
            self.prefix = root.split("://", 1)[0] + "://"
        else:
            self.fs, self.root, self.prefix = pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(root)), ""
        self.base = experiment_base

    def _dirs(self, path: str) -> list[str]:
        import pyarrow.fs as pafs
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        except OSError:
            return []
        return [i.path for i in infos if i.type == pafs.FileType.Directory]

    def candidates(self, trial_ids: tuple[str, ...], member: int | None = None) -> list[str]:
        """The checkpoint folders of these trials; of a fused trial's member, its own folder in each
        (found by listing, as the rest: the index only names which listed folder is its)."""
        found = []
        for experiment in self._dirs(self.root):
            name = Path(experiment).name
            # a sweep too big for one Tune experiment runs as several: BASE[-resume-TIME]-cells-KofN
            if name != self.base and not name.startswith((self.base + "-resume-", self.base + "-cells-")):
                continue
            for trial_dir in self._dirs(experiment):
                if any(f"_{tid}_" in Path(trial_dir).name for tid in trial_ids):
                    found += [c for c in self._dirs(trial_dir) if Path(c).name.startswith("checkpoint_")]
        if member is None:
            return found
        return [m for c in found for m in self._dirs(c) if Path(m).name == member_folder(member)]

    def newest(self, trial_ids: tuple[str, ...], at_most: int, member: int | None = None) -> tuple[str, int] | None:
        """(path or URI, epoch) of the newest checkpoint of these trials (of a fused trial's
        member: its own) that loads and holds epoch `at_most` or an earlier one, or None."""
        best = None
        for path in self.candidates(trial_ids, member):
            epoch = self._epoch(path)
            if epoch is not None and epoch <= at_most and (best is None or epoch > best[1]):
                best = (self.prefix + path if self.prefix else path, epoch)
        return best

    def _epoch(self, path: str) -> int | None:
        import pyarrow.fs as pafs
        if isinstance(self.fs, pafs.LocalFileSystem):
            return checkpoint_epoch(Path(path))
        with tempfile.TemporaryDirectory() as tmp:      # small: the learned parameters only
            try:
                pafs.copy_files(path, tmp, source_filesystem=self.fs,
                                destination_filesystem=pafs.LocalFileSystem())
            except OSError:
                return None
            return checkpoint_epoch(Path(tmp))
