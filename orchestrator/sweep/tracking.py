"""MLflow wiring for a running sweep: a child run per trial, logged from the driver.

Ray's MLflow integration has no parent run and `setup_mlflow` never ends its run, so the project
logs from the driver with a Tune callback: children are tagged `mlflow.parentRunId`, get the
trial's config as params and every reported metric per epoch, the learned parameters as
safetensors artifacts, and end FINISHED, KILLED (stopped early or diverged, with the reason) or
FAILED. Logging from the driver also means one writer for a SQLite store.
"""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from ray.tune import Callback

from clip_prompt_sweeps.names import (
    ARTIFACT_DIR,
    BEST_FILE,
    CELL_KEY,
    DATASET_KEY,
    LATEST_FILE,
    LR_KEY,
    MEMBER_RESULTS,
    REPLICATE_KEY,
    RUN_KEY,
    is_private,
    member_configs,
    member_folder,
)
from clip_prompt_sweeps.store.journal import Journal
from clip_prompt_sweeps.store.records import CELL_TAG, MAX_NODES, MEMBER_TAG, NODES_TAG, read_trial
from clip_prompt_sweeps.store.runs import PARENT_TAG
from orchestrator.sweep.members import is_fused, member_key, member_results

# Ray's own bookkeeping in every result: not metrics of the experiment.
_RAY_KEYS = {"timestamp", "time_this_iter_s", "pid", "training_iteration", "time_since_restore",
             "iterations_since_restore", "done", "checkpoint_dir_name", "should_checkpoint"}


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--verify", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except OSError:
        return "unknown"


def _now() -> int:
    return int(time.time() * 1000)


def _numeric(result: dict) -> dict[str, float]:
    return {k: float(v) for k, v in result.items()
            if k not in _RAY_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool)}


def _params(config: dict) -> list[Param]:
    """A trial's config as its run's params (the driver's private keys left out)."""
    return [Param(k, str(v)) for k, v in sorted(config.items()) if not is_private(k)]


def _run_name(cell: str, config: dict) -> str:
    return f"{cell} lr={config[LR_KEY]:.3g}" if LR_KEY in config else cell


class MLflowTrials(Callback):
    """One MLflow child run per trial of the sweep, under the sweep's parent run. A trial that
    continues an interrupted one (its config names the run) logs into that run."""

    def __init__(self, uri: str, experiment: str, parent_run_id: str, tags: dict, stopped: dict,
                 store: Journal | None = None):
        self.client = MlflowClient(uri)
        # every write goes through the journal (the sweep's own, shared by its Tune experiments);
        # once the driver has lost its lease, none is made
        self.store = store or Journal(self.client, parent_run_id)
        self.experiment, self.parent, self.tags = experiment, parent_run_id, tags
        self.failures: dict[str, int] = {}    # run id -> retries counted in this session
        self.stopped = stopped          # trial id -> cell, filled by PerCellASHA
        self.runs: dict[str, str] = {}  # trial id -> run id
        self.member_runs: dict[str, dict[int, str]] = {}    # fused trial id -> member -> its run id
        # member runs whose member has ended (ASHA, diverged): ended with the checkpoint that follows
        self.ending: dict[str, tuple[str, str, str | None]] = {}
        self.logged: dict[str, int] = {}  # run id -> last epoch logged
        self.nodes: dict[str, list[str]] = {}   # run id -> the nodes it ran on, oldest first
        # the latest result and checkpoint of each running trial (dropped as it ends: a sweep of
        # thousands of trials must not keep them all in the driver)
        self.last: dict[str, dict] = {}
        self.checkpoints: dict = {}
        self.ended: dict[str, str] = {}   # run id -> outcome, for the runs that ended in this session
        self.datasets: set[str] = set()   # runs whose dataset input this session logged
        self.parent_datasets: set[tuple[str, str]] = set()   # (name, digest) logged on the parent

    def _run(self, trial) -> str:
        if trial.trial_id not in self.runs:    # a retried trial keeps its one child run
            adopted = trial.config.get(RUN_KEY)
            self.runs[trial.trial_id] = self._adopt(adopted, trial) if adopted else self._create(trial, trial.config)
        return self.runs[trial.trial_id]

    def _member_runs(self, trial) -> dict[int, str]:
        """A fused trial's runs, one per member, each as a trial of its own would have it."""
        if trial.trial_id not in self.member_runs:
            configs = member_configs(trial.config)
            fused = {"fused_trial": trial.trial_id, "fused_members": str(len(configs))}
            self.member_runs[trial.trial_id] = {
                k: self._create(trial, config, {**fused, MEMBER_TAG: str(k)}) for k, config in enumerate(configs)}
        return self.member_runs[trial.trial_id]

    def _create(self, trial, config: dict, more_tags: dict | None = None) -> str:
        cell = config.get(CELL_KEY, "")
        tags = {**self.tags, PARENT_TAG: self.parent, CELL_TAG: cell,
                "ray_trial_id": trial.trial_id, "ray_trial_ids": trial.trial_id, **(more_tags or {}),
                **({REPLICATE_KEY: str(config[REPLICATE_KEY])} if config.get(REPLICATE_KEY) else {})}
        run_id = self.store.create_run(self.experiment, _run_name(cell, config), tags)
        self.store.log_batch(run_id, params=_params(config))
        return run_id

    def _adopt(self, run_id: str, trial) -> str:
        """The run of an interrupted trial, reopened: its history stays, and the epochs it
        already logged are not logged again."""
        run = read_trial(self.client.get_run(run_id))
        ids = " ".join((*run.trial_ids, trial.trial_id))
        self.nodes[run_id] = list(run.nodes)
        # a driver that died between creating the run and logging its params left it without them
        missing = [p for p in _params(trial.config) if p.key not in run.params]
        self.store.log_batch(run_id, params=missing, tags=[RunTag("ray_trial_id", trial.trial_id),
                                                           RunTag("ray_trial_ids", ids)])
        for stale in ("stop_reason", "outcome"):
            if stale in run.tags:
                self.store.delete_tag(run_id, stale)
        self.store.update_run(run_id, status="RUNNING")
        history = self.client.get_metric_history(run_id, "epoch")
        self.logged[run_id] = max((m.step for m in history), default=0)
        return run_id

    def on_trial_start(self, iteration, trials, trial, **info):
        if is_fused(trial.config):
            self._member_runs(trial)
        else:
            self._run(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if is_fused(trial.config):
            self._member_results(trial, result)
            return
        self._log_result(trial, self._run(trial), result)
        self.last[trial.trial_id] = result

    def _member_results(self, trial, result: dict) -> None:
        """Each member's part of the result into its own run; a member that has just ended
        (stopped by ASHA, diverged) is ended with the checkpoint that comes with this result."""
        runs, members = self._member_runs(trial), member_results(result)
        # what is the trial's, not a member's: the node, Ray's counters, the system figures (the
        # top level also repeats the leading member's metrics, for Tune's tables)
        own = {key for metrics in members.values() for key in metrics} | {MEMBER_RESULTS}
        shared = {key: value for key, value in result.items() if key not in own}
        for k, metrics in members.items():
            run_id = runs.get(k)
            if run_id is None or run_id in self.ended or run_id in self.ending:
                continue
            self._log_result(trial, run_id, {**shared, **metrics})
            if metrics.get("diverged"):
                self.ending[run_id] = ("KILLED", "diverged", metrics.get("stop_reason", "diverged"))
            elif member_key(trial.trial_id, k) in self.stopped:
                self.ending[run_id] = ("KILLED", "stopped_early", f"stopped early by ASHA within cell "
                                                                  f"{self.stopped[member_key(trial.trial_id, k)]}")

    def _log_result(self, trial, run_id: str, result: dict) -> None:
        """One epoch's result into `run_id` (a trial's run, or a member's)."""
        # the trial's own epoch: a continued trial starts at its checkpoint's epoch, while Ray's
        # training_iteration starts at 1 in every session
        step = int(result.get("epoch") or result.get("training_iteration", 0))
        first = result.get("iterations_since_restore") == 1
        if first and (step > 1 or RUN_KEY in trial.config):
            # the history shows where this session picked the trial up (1: started again)
            self.store.log_batch(run_id, metrics=[Metric("resumed_at_epoch", step, _now(), step)],
                                 tags=[RunTag("resumed_at_epoch", str(step))])
        moved = self._moved(run_id, str(result.get("node_ip", "")))
        if step <= self.logged.get(run_id, 0):
            # an epoch logged before the driver died, run again from an older checkpoint: the
            # run keeps the values it already has, so no step appears twice
            if moved:
                self.store.log_batch(run_id, tags=moved)
            return
        self.logged[run_id] = step
        now = _now()
        metrics = [Metric(k, v, now, step) for k, v in {**_numeric(result), "epoch": float(step)}.items()]
        tags = [RunTag("node", str(result.get("node_ip", ""))),
                RunTag("node_id", str(result.get("node_id", ""))),
                RunTag("hostname", str(result.get("hostname", "")))]
        tags += moved
        if "stop_reason" in result:
            tags.append(RunTag("stop_reason", str(result["stop_reason"])))
        # words a trial reports beside its numbers (where a figure comes from, the device)
        tags += [RunTag(k, str(v)) for k, v in (result.get("tags") or {}).items()]
        self.store.log_batch(run_id, metrics=metrics, tags=tags)
        if isinstance(result.get(DATASET_KEY), dict) and run_id not in self.datasets:
            self._log_dataset(run_id, result[DATASET_KEY])

    def _moved(self, run_id: str, node: str) -> list[RunTag]:
        """The `nodes` tag again where the trial reports from a node it had not run on (a retry
        after a node was lost moves it): every node it ran on, oldest first."""
        nodes = self.nodes.setdefault(run_id, [])
        if not node or node in nodes:
            return []
        nodes.append(node)
        return [RunTag(NODES_TAG, " ".join(nodes[-MAX_NODES:]))]

    def _log_dataset(self, run_id: str, record: dict) -> None:
        """The trial's data as its run's dataset input, and once on the parent too, so the
        runs table's Dataset column names a sweep's data before its children are expanded."""
        self.store.log_dataset(run_id, record)
        self.datasets.add(run_id)
        key = (str(record.get("name")), str(record.get("digest")))
        if key not in self.parent_datasets:
            self.store.log_dataset(self.parent, record)
            self.parent_datasets.add(key)

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        self.checkpoints[trial.trial_id] = checkpoint
        if is_fused(trial.config):
            self._end_members(trial, every=False)

    def _end_members(self, trial, every: bool) -> None:
        """End the member runs whose member has ended (`every`: all still open), each with its
        learned parameters from the trial's latest checkpoint (its own folder in it) and the
        outcome it ended with, else finished."""
        checkpoint = self.checkpoints.get(trial.trial_id)
        for k, run_id in self._member_runs(trial).items():
            if run_id in self.ended or not (every or run_id in self.ending):
                continue
            status, outcome, reason = self.ending.pop(run_id, ("FINISHED", "finished", None))
            if checkpoint is not None:
                with checkpoint.as_directory() as folder:
                    self._log_learned(run_id, Path(folder) / member_folder(k))
            self._end(run_id, status, outcome, reason)

    def on_trial_complete(self, iteration, trials, trial, **info):
        """Ray calls this for a trial that returned or that the scheduler stopped, never for
        one cut short by an interruption (those stay open and end as 'interrupted')."""
        if is_fused(trial.config):
            self._end_members(trial, every=True)
            self.checkpoints.pop(trial.trial_id, None)
            return
        run_id = self._run(trial)
        self._log_parameters(trial, run_id)
        result = self.last.pop(trial.trial_id, {})
        if result.get("diverged"):
            self._end(run_id, "KILLED", "diverged", result.get("stop_reason", "diverged"))
        elif trial.trial_id in self.stopped:
            self._end(run_id, "KILLED", "stopped_early",
                      f"stopped early by ASHA within cell {self.stopped[trial.trial_id]}")
        else:
            self._end(run_id, "FINISHED", "finished")

    def _runs_of(self, trial) -> list[str]:
        return list(self._member_runs(trial).values()) if is_fused(trial.config) else [self._run(trial)]

    def on_trial_recover(self, iteration, trials, trial, **info):
        """A crashed trial that Ray retries from its last checkpoint: counted on its run (each
        member's that has not ended)."""
        for run_id in self._runs_of(trial):
            if run_id in self.ended:
                continue
            self.failures[run_id] = self.failures.get(run_id, 0) + 1
            self.store.log_batch(run_id, tags=[RunTag("failures", str(self.failures[run_id])),
                                               RunTag("last_failure", _error_line(trial))])

    def on_trial_error(self, iteration, trials, trial, **info):
        if is_fused(trial.config):
            for run_id in self._runs_of(trial):
                if run_id not in self.ended:
                    self.ending.pop(run_id, None)
                    self._end(run_id, "FAILED", "failed", _error_line(trial))
            self.checkpoints.pop(trial.trial_id, None)
            return
        self._log_parameters(trial, self._run(trial))
        self.last.pop(trial.trial_id, None)
        self._end(self._run(trial), "FAILED", "failed", _error_line(trial))

    def on_experiment_end(self, trials, **info):
        # every run of this session that has not ended was cut short by an interruption
        members = {r for runs in self.member_runs.values() for r in runs.values()}
        for run_id in (set(self.runs.values()) | members) - set(self.ended):
            self._end(run_id, "KILLED", "interrupted", "the sweep was interrupted before the trial ended")

    def _log_parameters(self, trial, run_id: str) -> None:
        checkpoint = self.checkpoints.pop(trial.trial_id, None)
        if checkpoint is None:
            return
        with checkpoint.as_directory() as folder:
            self._log_learned(run_id, Path(folder))

    def _log_learned(self, run_id: str, folder: Path) -> None:
        for name in (BEST_FILE, LATEST_FILE):
            if (folder / name).is_file():
                self.store.log_artifact(run_id, str(folder / name), ARTIFACT_DIR)

    def _end(self, run_id: str, status: str, outcome: str, reason: str | None = None) -> None:
        # three writes in this order, so that a kill between any two leaves a run a resume judges
        # as its status says: still RUNNING (continued), or ended with the reason `is_done` reads
        # where the outcome is missing. Never an outcome saying "ended" on a run still RUNNING.
        if reason:
            self.store.log_batch(run_id, tags=[RunTag("stop_reason", reason)])
        self.store.set_terminated(run_id, status=status)
        self.store.log_batch(run_id, tags=[RunTag("outcome", outcome)])
        self.ended[run_id] = outcome


def _error_line(trial) -> str:
    """The last line of the trial's latest error (Ray appends each failure's trace to a file)."""
    try:
        text = Path(trial.error_file).read_text() if trial.error_file else trial.get_error()
    except (OSError, AttributeError):
        text = None
    lines = [line.strip() for line in str(text or "").splitlines() if line.strip()]
    return lines[-1][:500] if lines else "trial raised an error"
