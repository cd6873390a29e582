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

from clip_prompt_sweeps.names import CELL_KEY, RUN_KEY

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
        self.stopped: dict[str, str] = {}   # trial id -> cell, for trials this scheduler stopped

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

    def on_trial_add(self, tune_controller, trial):
        self._cell(trial).on_trial_add(tune_controller, self._key(trial))

    def on_trial_result(self, tune_controller, trial, result) -> str:
        result = self._timed(result)
        action = self._cell(trial).on_trial_result(tune_controller, self._key(trial), result)
        if action == TrialScheduler.STOP and result[TIME] < self.max_t(trial.config.get(CELL_KEY, "")):
            self.stopped[trial.trial_id] = trial.config.get(CELL_KEY, "")
        return action

    def on_trial_complete(self, tune_controller, trial, result):
        self._cell(trial).on_trial_complete(tune_controller, self._key(trial), self._timed(result or {}))

    def on_trial_error(self, tune_controller, trial):
        self._cell(trial).on_trial_error(tune_controller, self._key(trial))

    def on_trial_remove(self, tune_controller, trial):
        self._cell(trial).on_trial_remove(tune_controller, self._key(trial))

    def debug_string(self) -> str:
        stopped = len(self.stopped)
        return f"PerCellASHA: {len(self.cells)} cells, {stopped} trials stopped early within their cell"
