"""ASHA within each grid cell.

One AsyncHyperBandScheduler over a heterogeneous grid compares every trial with every other:
it would stop whole cells (layer 11 is always worse than layer 0) and the study's table would lose
rows. `PerCellASHA` keeps one ASHA per cell key and hands each trial to its cell's, so learning
rates compete only with learning rates of the same cell, and every cell keeps its best one.

Time is the trial's own `epoch` (a trial continued after an interruption starts at its
checkpoint's epoch, while Ray's training_iteration would start at 1 again), and a trial is known
to its cell's ASHA by its MLflow run where it has one already, so a continued trial keeps its
place in the rungs. `replay` feeds the rungs what the sweep's runs logged before it was
interrupted.
"""
from __future__ import annotations

from types import SimpleNamespace

from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from clip_prompt_sweeps.names import CELL_KEY, RUN_KEY, member_configs
from orchestrator.sweep.members import is_fused, member_key, member_results

TIME = "epoch"


class PerCellASHA(FIFOScheduler):
    """`max_t`: the epochs of every cell, or cell key -> that cell's epochs (a grid over epochs:
    each cell's trials run to its own last epoch)."""

    def __init__(self, metric: str, mode: str, max_t: int | dict[str, int], grace_period: int, reduction_factor: int):
        super().__init__()
        self._metric, self._mode = metric, mode
        self._max_t = max_t if isinstance(max_t, dict) else {}
        self._default_t = max_t if isinstance(max_t, int) else max(max_t.values(), default=1)
        self._grace, self._rf = grace_period, reduction_factor
        self.cells: dict[str, AsyncHyperBandScheduler] = {}
        self.stopped: dict[str, str] = {}   # trial id (a member's: member_key) -> cell, for those it stopped
        self.live_members: dict[str, dict[int, SimpleNamespace]] = {}   # fused trial id -> its members going on
        self.last_member_results: dict[str, dict[int, dict]] = {}
        # where the members it stops are posted for their fused trial to read (tuner.py's MemberStops)
        self.member_stops = None

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True     # metric and mode are fixed at construction

    def max_t(self, cell: str) -> int:
        return self._max_t.get(cell, self._default_t)

    def _asha(self, cell: str) -> AsyncHyperBandScheduler:
        if cell not in self.cells:
            max_t = self.max_t(cell)
            self.cells[cell] = AsyncHyperBandScheduler(time_attr=TIME, metric=self._metric, mode=self._mode,
                                                       max_t=max_t, grace_period=min(self._grace, max_t),
                                                       reduction_factor=self._rf)
        return self.cells[cell]

    def _cell(self, trial) -> AsyncHyperBandScheduler:
        return self._asha(trial.config.get(CELL_KEY, ""))

    @staticmethod
    def _key(trial):
        """What the cell's ASHA knows the trial by: its run, else its Ray trial id."""
        return SimpleNamespace(trial_id=trial.config.get(RUN_KEY) or trial.trial_id)

    @staticmethod
    def _timed(result: dict) -> dict:
        # one-shot trainables report no epoch: their single result is epoch 1
        return result if TIME in result else {**result, TIME: result.get("training_iteration", 1)}

    def replay(self, cell: str, run_id: str, history, done: bool) -> None:
        """Record a run of an earlier session in its cell's rungs, as if it had run here."""
        asha, key = self._asha(cell), SimpleNamespace(trial_id=run_id)
        asha.on_trial_add(None, key)
        for epoch, value in history:
            asha.on_trial_result(None, key, {TIME: epoch, self._metric: value})
        if done and history:
            epoch, value = history[-1]
            asha.on_trial_complete(None, key, {TIME: epoch, self._metric: value})
        elif done:
            asha.on_trial_remove(None, key)

    # --- a fused trial's members (issue #38): each is a trial to its cell's ASHA -----------------

    def _members(self, trial) -> dict[int, SimpleNamespace]:
        """A fused trial's members that have not ended, by index: what the cell's ASHA knows each by."""
        if trial.trial_id not in self.live_members:
            self.live_members[trial.trial_id] = {
                k: SimpleNamespace(trial_id=member_key(trial.trial_id, k)) for k in range(len(member_configs(trial.config)))}
        return self.live_members[trial.trial_id]

    def _member_results(self, tune_controller, trial, result) -> str:
        """Each member's part of the result to its cell's ASHA; a member it stops, or one that
        diverged, has ended (and is told to the trial); the trial goes on while any member does."""
        cell = trial.config.get(CELL_KEY, "")
        asha, live = self._cell(trial), self._members(trial)
        for k, metrics in sorted(member_results(result).items()):
            if k not in live:
                continue
            metrics = self._timed(metrics)
            action = asha.on_trial_result(tune_controller, live[k], metrics)
            if metrics.get("diverged") or action == TrialScheduler.STOP:
                asha.on_trial_complete(tune_controller, live.pop(k), metrics)
                if not metrics.get("diverged") and metrics[TIME] < self.max_t(cell):
                    self.stopped[member_key(trial.trial_id, k)] = cell
                    if self.member_stops is not None:
                        self.member_stops.stop(trial.trial_id, k)
            else:
                self.last_member_results.setdefault(trial.trial_id, {})[k] = metrics
        return TrialScheduler.CONTINUE if live else TrialScheduler.STOP

    def _members_end(self, tune_controller, trial, how: str) -> None:
        last = self.last_member_results.pop(trial.trial_id, {})
        for k, key in self._members(trial).items():
            if how == "complete":
                self._cell(trial).on_trial_complete(tune_controller, key, last.get(k, {}))
            else:
                getattr(self._cell(trial), f"on_trial_{how}")(tune_controller, key)
        self.live_members.pop(trial.trial_id, None)

    # --- Tune's hooks -------------------------------------------------------------------------

    def on_trial_add(self, tune_controller, trial):
        if is_fused(trial.config):
            for key in self._members(trial).values():
                self._cell(trial).on_trial_add(tune_controller, key)
            return
        self._cell(trial).on_trial_add(tune_controller, self._key(trial))

    def on_trial_result(self, tune_controller, trial, result) -> str:
        if is_fused(trial.config):
            return self._member_results(tune_controller, trial, result)
        result = self._timed(result)
        action = self._cell(trial).on_trial_result(tune_controller, self._key(trial), result)
        if action == TrialScheduler.STOP and result[TIME] < self.max_t(trial.config.get(CELL_KEY, "")):
            self.stopped[trial.trial_id] = trial.config.get(CELL_KEY, "")
        return action

    def on_trial_complete(self, tune_controller, trial, result):
        if is_fused(trial.config):
            return self._members_end(tune_controller, trial, "complete")
        self._cell(trial).on_trial_complete(tune_controller, self._key(trial), self._timed(result or {}))

    def on_trial_error(self, tune_controller, trial):
        if is_fused(trial.config):
            return self._members_end(tune_controller, trial, "error")
        self._cell(trial).on_trial_error(tune_controller, self._key(trial))

    def on_trial_remove(self, tune_controller, trial):
        if is_fused(trial.config):
            return self._members_end(tune_controller, trial, "remove")
        self._cell(trial).on_trial_remove(tune_controller, self._key(trial))

    def debug_string(self) -> str:
        stopped = len(self.stopped)
        return f"PerCellASHA: {len(self.cells)} cells, {stopped} trials stopped early within their cell"


class MemberStops:
    """A Ray actor (num_cpus=0) of one Tune experiment: the members of its fused trials that the
    driver's ASHA stopped. A fused trial reads its own after each report returns."""

    def __init__(self):
        self._stops: dict[str, set[int]] = {}

    def stop(self, trial_id: str, k: int) -> None:
        self._stops.setdefault(trial_id, set()).add(k)

    def stopped(self, trial_id: str) -> list[int]:
        return sorted(self._stops.get(trial_id, ()))


class PostedStops:
    """The driver's side of a MemberStops actor, named `name`. A stop is posted before the
    scheduler returns, so the trial finds it when its report returns (Tune's function trainables
    report synchronously)."""

    def __init__(self, name: str):
        import ray
        self.name = name
        self._actor = ray.remote(num_cpus=0)(MemberStops).options(name=name).remote()

    def stop(self, trial_id: str, k: int) -> None:
        import ray
        ray.get(self._actor.stop.remote(trial_id, k))

    def __getstate__(self) -> dict:
        # Tune saves its scheduler with the experiment's state: the name, not the actor
        return {"name": self.name}

    def __setstate__(self, state: dict) -> None:
        import ray
        self.name = state["name"]
        self._actor = ray.get_actor(self.name) if ray.is_initialized() else None
