"""Learning rates proposed per grid cell by Optuna.

`tune.grid_search` cannot be combined with `OptunaSearch`, and one study over a whole grid would
let strong cells steer the learning rates of weak ones. `CellSearcher` keeps one Optuna study per
cell (TPE, or Optuna's random sampler for `--search random`) and walks the cells round-robin, so
a cell's later trials are proposed after its earlier ones have reported.

After an interruption the searcher is rebuilt from the sweep's record in MLflow (see resume.py):
each cell's finished trials go into its study (`add_trial`), its unfinished ones are proposed
first, with their own learning rate and run, and only its remaining samples are new.
"""
from __future__ import annotations

import json
import math

import numpy as np
import optuna
from optuna.distributions import FloatDistribution
from ray.tune.search import Searcher

from clip_prompt_sweeps.names import LR_KEY, MEMBER_STOPS_KEY, MEMBERS_KEY, RESUME_KEY, RUN_KEY, cell_key
from orchestrator.sweep.members import member_results
from orchestrator.sweep.plan import SweepPlan, trial_config
from orchestrator.sweep.resume import Continuation, SweepRecord


def cell_seed(seed: int, index: int, before: int) -> int:
    """The seed of a cell's sampler. A resumed cell already has `before` trials: its sampler must
    not start its stream again, or its first new proposal is the one an earlier trial already got
    (a seeded sampler draws the same numbers, and replayed or enqueued trials draw none)."""
    if before == 0:
        return seed + index
    return int(np.random.SeedSequence([seed, index, before]).generate_state(1)[0])


def _sampler(mode: str, seed: int, samples: int) -> optuna.samplers.BaseSampler:
    if mode == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # half of a cell's samples explore at random, then TPE exploits what they found
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(1, samples // 2))


def round_robin(plan: SweepPlan, record: SweepRecord | None = None) -> list[tuple[dict, Continuation | None]]:
    """What is left to run, cell after cell: per cell, its unfinished trials (continued), then
    new samples up to the profile's count."""
    rest = {}
    for cell in plan.cells:
        key = cell_key(cell)
        done = len(record.done.get(key, [])) if record else 0
        going = list(record.unfinished.get(key, [])) if record else []
        rest[key] = going + [None] * max(0, plan.profile.samples - done - len(going))
    rounds = max((len(v) for v in rest.values()), default=0)
    return [(cell, rest[cell_key(cell)][r]) for r in range(rounds) for cell in plan.cells
            if r < len(rest[cell_key(cell)])]


def _take_same_cell(queue: list, key: str, n: int) -> int:
    """Take the next `n` new samples of cell `key` off the queue (a fused trial's other members),
    the queue's order otherwise kept; how many there were."""
    kept, taken = [], 0
    for entry in queue:
        if taken < n and entry[1] is None and cell_key(entry[0]) == key:
            taken += 1
        else:
            kept.append(entry)
    queue[:] = kept
    return taken


class CellSearcher(Searcher):
    """`fuse`: a new trial takes up to that many of its cell's new samples, each proposed and
    told apart (a fused trial's members, issue #38); a continued trial is always alone."""

    def __init__(self, plan: SweepPlan, mode: str = "tpe", seed: int = 0, record: SweepRecord | None = None,
                 fuse: int = 1, member_stops: str | None = None):
        super().__init__(metric=plan.experiment.metric, mode="max")
        self.fuse, self.member_stops = max(1, fuse), member_stops    # the MemberStops actor's name
        self.values: dict[str, dict[int, float]] = {}   # fused trial id -> member -> its latest metric
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.base, self.filled, self.search_mode = dict(plan.base), dict(plan.filled), mode
        profile = plan.profile
        self.distribution = (FloatDistribution(profile.lr.low, profile.lr.high, log=True)
                             if profile.lr is not None else None)
        def before(key: str) -> int:
            return len(record.done.get(key, [])) + len(record.unfinished.get(key, [])) if record else 0
        self.studies = {cell_key(c): optuna.create_study(
            direction="maximize", sampler=_sampler(mode, cell_seed(seed, i, before(cell_key(c))), profile.samples))
            for i, c in enumerate(plan.cells)}
        self.queue = round_robin(plan, record)
        self.live: dict[str, tuple[str, optuna.trial.Trial]] = {}
        if record is not None and self.distribution is not None:
            self._replay(record)

    def _replay(self, record: SweepRecord) -> None:
        """Finished trials into their cell's study; unfinished ones enqueued, so that the study
        asks them again with their own learning rate."""
        for key, trials in record.done.items():
            for t in trials:
                if t.lr is None or not self.distribution.low <= t.lr <= self.distribution.high:
                    continue
                value = t.history[-1][1] if t.history else float("nan")
                ok = math.isfinite(value)
                self.studies[key].add_trial(optuna.trial.create_trial(
                    params={LR_KEY: t.lr}, distributions={LR_KEY: self.distribution},
                    value=value if ok else None,
                    state=optuna.trial.TrialState.COMPLETE if ok else optuna.trial.TrialState.FAIL))
        for key, going in record.unfinished.items():
            for c in going:
                if c.lr is not None:
                    self.studies[key].enqueue_trial({LR_KEY: c.lr}, skip_if_exists=False)

    def suggest(self, trial_id: str):
        if not self.queue:
            return Searcher.FINISHED
        cell, going = self.queue.pop(0)
        key = cell_key(cell)
        # an unfinished trial continues in its own run, from its checkpoint where one is readable
        resume = {} if going is None else {RUN_KEY: going.run_id, **({RESUME_KEY: going.checkpoint}
                                                                      if going.checkpoint else {})}
        if self.distribution is None:       # nothing to tune: the cell itself is the trial
            return {**trial_config(self.base, cell, None, self.filled), **resume}
        more = _take_same_cell(self.queue, key, self.fuse - 1) if going is None and self.fuse > 1 else 0
        asked = [self.studies[key].ask({LR_KEY: self.distribution}) for _ in range(1 + more)]
        self.live[trial_id] = (key, asked)
        config = {**trial_config(self.base, cell, asked[0].params[LR_KEY], self.filled), **resume}
        if more:
            self.values[trial_id] = {}
            config[MEMBERS_KEY] = [{LR_KEY: t.params[LR_KEY]} for t in asked]
            if self.member_stops:
                config[MEMBER_STOPS_KEY] = self.member_stops
        return config

    def on_trial_result(self, trial_id: str, result: dict):
        if trial_id in self.values:
            for k, metrics in member_results(result).items():
                if self.metric in metrics:
                    self.values[trial_id][k] = metrics[self.metric]

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if trial_id not in self.live:
            return
        key, asked = self.live.pop(trial_id)
        if trial_id in self.values:     # each member's latest value: one stopped early reported last then
            self.on_trial_result(trial_id, result or {})
            values = self.values.pop(trial_id)
        else:
            values = {0: (result or {}).get(self.metric)}
        for k, trial in enumerate(asked):
            value = values.get(k)
            if error or value is None or value != value:   # failed, or diverged with no score
                self.studies[key].tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                self.studies[key].tell(trial, value)

    def save(self, checkpoint_path: str):
        """A summary for people; Ray writes it to a temp file and renames it. `--resume` never
        reads it: the sweep is rebuilt from MLflow, so nothing here is unpickled."""
        summary = {"left_to_propose": len(self.queue),
                   "trials_per_cell": {k: len(s.trials) for k, s in self.studies.items()}}
        with open(checkpoint_path, "w") as f:
            json.dump(summary, f)

    def restore(self, checkpoint_path: str):
        raise NotImplementedError("a sweep is resumed from MLflow (orchestrator/sweep/resume.py), not from Ray's state")
