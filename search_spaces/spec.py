"""What a sweep is, as data: a trainable, fixed settings, a grid of cells, and a learning-rate
range tuned within each cell. One `Profile` per scale ('smoke' for a laptop or CI, 'full' for the
study as published)."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field


@dataclass(frozen=True)
class LogUniform:
    low: float
    high: float


@dataclass(frozen=True)
class Profile:
    base: dict                      # fixed config for every trial
    grid: dict                      # axis -> values; each combination is a cell. A value that
                                    # is a dict sets several coupled keys (prompt and its size).
    lr: LogUniform | None           # tuned by ASHA (and Optuna's TPE) within each cell;
                                    # None: nothing to tune (zero-shot), one trial per cell
    samples: int                    # learning rates tried per cell
    grace_period: int = 1           # ASHA: epochs before a trial may be stopped
    reduction_factor: int = 2

    def cells(self) -> list[dict]:
        """Every grid combination as a flat config dict."""
        return [_flatten(zip(self.grid, values)) for values in itertools.product(*self.grid.values())]


def _flatten(pairs) -> dict:
    cell: dict = {}
    for axis, value in pairs:
        cell.update(value if isinstance(value, dict) else {axis: value})
    return cell


def cell_key(cell: dict) -> str:
    """A stable, readable name of a cell: 'dataset=cifar10,layer=0,...'."""
    return ",".join(f"{k}={v}" for k, v in cell.items())


@dataclass(frozen=True)
class SweepSpace:
    name: str
    trainable: str
    summary: str
    profiles: dict = field(default_factory=dict)     # profile name -> Profile
    metric: str = "val_acc"                          # what ASHA and the searcher maximise
    exclusive: bool = False                          # timing: one trial at a time, a whole GPU
