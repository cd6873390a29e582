"""From a sweep name, a profile and command-line overrides to a checked plan, before Ray starts:
every cell's config goes through the trainable's typed config, so a bad key, type, layer or
prompt count stops the sweep before any trial."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from search_spaces import Profile, SweepSpace, cell_key, get_profile, get_sweep
from trainables import UserError, get_trainable
from trainables.config import coerce, from_dict
from trainables.registry import TrainableSpec


@dataclass(frozen=True)
class SweepPlan:
    sweep: SweepSpace
    profile_name: str
    profile: Profile
    trainable: TrainableSpec
    base: dict                  # the profile's fixed config with --set/--epochs applied
    cells: list[dict]           # one flat dict per grid cell
    extra: dict = field(default_factory=dict)   # cell key -> keys the driver fills (source_run)
    args: dict = field(default_factory=dict)    # make_plan's own inputs: a resume rebuilds the plan from them

    @property
    def n_trials(self) -> int:
        return len(self.cells) * self.profile.samples

    def config(self, cell: dict, lr: float | None) -> dict:
        return trial_config(self.base, cell, lr, self.extra)


def trial_config(base: dict, cell: dict, lr: float | None, extra: dict | None = None) -> dict:
    """A trial's config: fixed settings, its cell, what the driver filled in for the cell, its
    learning rate (if it has one), and the cell's key."""
    key = cell_key(cell)
    return {**base, **cell, **(extra or {}).get(key, {}), **({} if lr is None else {"lr": lr}), "_cell": key}


def parse_sets(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--set {pair!r} is not key=value; e.g. --set epochs=5")
        out[key.strip()] = value.strip()
    return out


def make_plan(sweep_name: str, profile_name: str, sets: list[str] | None = None,
              samples: int | None = None, epochs: int | None = None) -> SweepPlan:
    sweep = get_sweep(sweep_name)
    profile = get_profile(sweep, profile_name)
    trainable = get_trainable(sweep.trainable)
    overrides = {k: coerce(trainable.config_cls, k, v, "--set")
                 for k, v in parse_sets(sets or []).items()}
    if "lr" in overrides and profile.lr is not None:
        raise UserError(f"--set lr: the learning rate is tuned within each cell "
                        f"({profile.lr.low:g} to {profile.lr.high:g}); use --samples to try more")
    if epochs is not None:
        overrides["epochs"] = epochs
    if samples is not None:
        if profile.lr is None and samples != 1:
            raise UserError(f"--samples: sweep '{sweep_name}' tunes no learning rate; it runs one trial per cell")
        if samples < 1:
            raise UserError(f"--samples must be at least 1, got {samples}")
        profile = replace(profile, samples=samples)
    cells = [{k: v for k, v in cell.items() if k not in overrides} for cell in profile.cells()]
    plan = SweepPlan(sweep, profile_name, profile, trainable, {**profile.base, **overrides},
                     _unique(cells), args=dict(sets=list(sets or []), samples=samples, epochs=epochs))
    for cell in plan.cells:     # every cell must make a valid config, checked now
        lr = None if profile.lr is None else math.sqrt(profile.lr.low * profile.lr.high)
        from_dict(trainable.config_cls, plan.config(cell, lr),
                  where=f"sweep '{sweep_name}' cell {cell_key(cell)}")
    return plan


def _unique(cells: list[dict]) -> list[dict]:
    # --set of a grid axis (e.g. --set dataset=cifar10) collapses that axis
    seen, out = set(), []
    for cell in cells:
        key = cell_key(cell)
        if key not in seen:
            seen.add(key)
            out.append(cell)
    return out
