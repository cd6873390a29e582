"""ASHA within each grid cell.

One AsyncHyperBandScheduler over a heterogeneous grid compares every trial with every other:
it would stop whole cells (layer 11 is always worse than layer 0) and the study's table would lose
rows. `PerCellASHA` keeps one ASHA per cell key and hands each trial to its cell's, so learning
rates compete only with learning rates of the same cell, and every cell keeps its best one.
"""
from __future__ import annotations

from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

CELL_KEY = "_cell"      # set in every trial's config by the plan


class PerCellASHA(FIFOScheduler):
    def __init__(self, metric: str, mode: str, max_t: int, grace_period: int, reduction_factor: int):
        super().__init__()
        self._metric, self._mode = metric, mode
        self._asha_args = dict(time_attr="training_iteration", metric=metric, mode=mode, max_t=max_t,
                               grace_period=min(grace_period, max_t), reduction_factor=reduction_factor)
        self.cells: dict[str, AsyncHyperBandScheduler] = {}
        self.stopped: dict[str, str] = {}   # trial id -> cell, for trials this scheduler stopped

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True     # metric and mode are fixed at construction

    def _cell(self, trial) -> AsyncHyperBandScheduler:
        key = trial.config.get(CELL_KEY, "")
        if key not in self.cells:
            self.cells[key] = AsyncHyperBandScheduler(**self._asha_args)
        return self.cells[key]

    def on_trial_add(self, tune_controller, trial):
        self._cell(trial).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result) -> str:
        action = self._cell(trial).on_trial_result(tune_controller, trial, result)
        if action == TrialScheduler.STOP and result.get("training_iteration", 0) < self._asha_args["max_t"]:
            self.stopped[trial.trial_id] = trial.config.get(CELL_KEY, "")
        return action

    def on_trial_complete(self, tune_controller, trial, result):
        self._cell(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_error(self, tune_controller, trial):
        self._cell(trial).on_trial_error(tune_controller, trial)

    def on_trial_remove(self, tune_controller, trial):
        self._cell(trial).on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        stopped = len(self.stopped)
        return f"PerCellASHA: {len(self.cells)} cells, {stopped} trials stopped early within their cell"
