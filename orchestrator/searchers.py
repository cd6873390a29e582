"""Learning rates proposed per grid cell by Optuna.

`tune.grid_search` cannot be combined with `OptunaSearch`, and one study over a whole grid would
let strong cells steer the learning rates of weak ones. `CellSearcher` keeps one Optuna study per
cell (TPE, or Optuna's random sampler for `--search random`) and walks the cells round-robin, so
a cell's later trials are proposed after its earlier ones have reported.
"""
from __future__ import annotations

import pickle

import optuna
from optuna.distributions import FloatDistribution
from ray.tune.search import Searcher

from orchestrator.plan import SweepPlan, trial_config
from search_spaces import cell_key

SEARCH_MODES = ("tpe", "random")


def _sampler(mode: str, seed: int, samples: int) -> optuna.samplers.BaseSampler:
    if mode == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # half of a cell's samples explore at random, then TPE exploits what they found
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(1, samples // 2))


class CellSearcher(Searcher):
    def __init__(self, plan: SweepPlan, mode: str = "tpe", seed: int = 0):
        super().__init__(metric=plan.sweep.metric, mode="max")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        # Only plain data is kept: Ray pickles the searcher into the experiment's state.
        self.base, self.extra, self.search_mode = dict(plan.base), dict(plan.extra), mode
        profile = plan.profile
        self.distribution = (FloatDistribution(profile.lr.low, profile.lr.high, log=True)
                             if profile.lr is not None else None)
        self.studies = {cell_key(c): optuna.create_study(
            direction="maximize", sampler=_sampler(mode, seed + i, profile.samples))
            for i, c in enumerate(plan.cells)}
        self.queue = [c for _ in range(profile.samples) for c in plan.cells]   # round-robin
        self.live: dict[str, tuple[str, optuna.trial.Trial]] = {}

    def suggest(self, trial_id: str):
        if not self.queue:
            return Searcher.FINISHED
        cell = self.queue.pop(0)
        key = cell_key(cell)
        if self.distribution is None:       # nothing to tune: the cell itself is the trial
            return trial_config(self.base, cell, None, self.extra)
        trial = self.studies[key].ask({"lr": self.distribution})
        self.live[trial_id] = (key, trial)
        return trial_config(self.base, cell, trial.params["lr"], self.extra)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if trial_id not in self.live:
            return
        key, trial = self.live.pop(trial_id)
        value = (result or {}).get(self.metric)
        if error or value is None or value != value:   # failed, or diverged with no score
            self.studies[key].tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            self.studies[key].tell(trial, value)

    def save(self, checkpoint_path: str):
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str):
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))
