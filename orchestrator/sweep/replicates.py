"""`--replicates N`: once every cell is tuned, each cell's chosen learning rate (its best trial on
validation) runs again with N new seeds, as N more child runs of the same parent, tagged
`replicate=k`. The split stays the cell's (trainables/data/config.py: `replicate` changes the
initialisation, shuffling and noise only), so the spread the reports show is that of training,
and the tuned trial itself is not among the N: it was chosen for being best on validation.

A replicate phase is a plan of its own (one trial per cell x replicate, the learning rate fixed,
nothing stopped early), so the durability of a sweep (kill, `--resume`) holds for it unchanged."""
from __future__ import annotations

from dataclasses import dataclass, replace

from mlflow.tracking import MlflowClient

from clip_prompt_sweeps.errors import UserError
from clip_prompt_sweeps.names import LR_KEY, REPLICATE_KEY, cell_key, is_replicate_cell
from clip_prompt_sweeps.store.runs import trials
from orchestrator.sweep.plan import SweepPlan, cell_epochs


def check_replicates(plan: SweepPlan, n: int) -> None:
    if n < 0:
        raise UserError(f"--replicates must be 0 or more, got {n}")
    if n and plan.profile.lr is None:
        raise UserError(f"--replicates: sweep '{plan.experiment.name}' tunes nothing and its trials have no seed to "
                        f"vary; it applies to sweeps that learn (visual, deep, linear, finetune)")
    if n and REPLICATE_KEY not in getattr(plan.trainable.config_cls, "__dataclass_fields__", {}):
        raise UserError(f"--replicates: trainable {plan.trainable.name} has no '{REPLICATE_KEY}' setting")


def chosen_lrs(client: MlflowClient, experiment: str, parent: str, score: str) -> dict[str, float]:
    """cell key -> the learning rate of its best tuning trial on `score` (diverged ones excluded)."""
    best: dict[str, tuple[float, float]] = {}
    for trial in trials(client, experiment, parent):
        value, cell = trial.metric(score), trial.cell
        if trial.superseded or is_replicate_cell(cell) or value is None or trial.lr is None or trial.diverged:
            continue
        if cell not in best or value > best[cell][0]:
            best[cell] = (value, trial.lr)
    return {cell: lr for cell, (_, lr) in best.items()}


def replicate_plan(plan: SweepPlan, lrs: dict[str, float], n: int) -> SweepPlan:
    """One trial per (cell, replicate 1..n) at the cell's chosen learning rate; ASHA's first rung
    at the last epoch, so no replicate is stopped early."""
    epochs = max(cell_epochs(plan).values(), default=1)
    cells, filled = [], {}
    for cell in plan.cells:
        lr = lrs.get(cell_key(cell))
        if lr is None:          # every trial of the cell failed: nothing was chosen to replicate
            continue
        for k in range(1, n + 1):
            rcell = {**cell, REPLICATE_KEY: k}
            cells.append(rcell)
            filled[cell_key(rcell)] = {**plan.filled.get(cell_key(cell), {}), LR_KEY: lr}
    profile = replace(plan.profile, lr=None, samples=1, grace_period=max(epochs, 1))
    return replace(plan, profile=profile, cells=cells, filled=filled, typed={})


@dataclass(frozen=True)
class TuningPhase:
    """The sweep's first phase: its plan as it is, learning rates tuned within each cell."""
    name = "tuning"
    suffix = ""                 # its Tune experiments are named after the sweep alone

    def plan(self, client: MlflowClient, experiment: str, parent: str, tuned: SweepPlan) -> SweepPlan:
        return tuned


@dataclass(frozen=True)
class ReplicatePhase:
    """`--replicates N`, once tuning has ended: each cell's chosen learning rate, read from the
    sweep's own runs, N times again with new seeds."""
    n: int
    name = "replicates"
    suffix = "-replicates"

    def plan(self, client: MlflowClient, experiment: str, parent: str, tuned: SweepPlan) -> SweepPlan:
        lrs = chosen_lrs(client, experiment, parent, tuned.experiment.score)
        out = replicate_plan(tuned, lrs, self.n)
        print(f"replicates: the chosen learning rate of each of {len(lrs)} cells, {self.n} new seed(s) each = "
              f"{len(out.cells)} trials")
        return out


def phases(replicates: int) -> list[TuningPhase | ReplicatePhase]:
    """A sweep's phases, in the order they run."""
    return [TuningPhase(), *([ReplicatePhase(replicates)] if replicates else [])]
