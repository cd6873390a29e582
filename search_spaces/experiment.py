"""What an experiment is, as data: one `Experiment` record per module of this package.

A record names its trainable (typed config and run), its profiles (fixed settings, a grid of
cells, a learning-rate range tuned within each cell; 'smoke' for a laptop or CI, 'full' for the
study as published), its report section and headline rows, the sweeps whose models it
evaluates, the data it reads beyond its config's own, and the settings of its tiny tests. The
registry (search_spaces/registry.py) finds the records; `list`, `sweep`, `report`, `report all`,
the preflight and the registry-parametrised tests all read them, so a new experiment is one new
module."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable

from reports.section import ReportSection
from trainables.experiments.source_models import Source
from trainables.training.entry import Trainable


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
    fuse: int = 1                   # learning rates of a cell per fused trial (`sweep --fuse` overrides)

    def cells(self) -> list[dict]:
        """Every grid combination as a flat config dict."""
        return [_flatten(zip(self.grid, values)) for values in itertools.product(*self.grid.values())]


def _flatten(pairs) -> dict:
    cell: dict = {}
    for axis, value in pairs:
        cell.update(value if isinstance(value, dict) else {axis: value})
    return cell


@dataclass(frozen=True)
class Experiment:
    name: str                                        # the sweep's name: `sweep NAME`, the MLflow experiment
    trainable: Trainable
    summary: str
    profiles: dict = field(default_factory=dict)     # profile name -> Profile
    metric: str = "val_acc"                          # what ASHA and the searcher maximise
    exclusive: bool = False                          # timing: one trial at a time, a whole GPU
    report: ReportSection | None = None              # its section of `report NAME` and `report all`
    source: Callable[..., Source] | None = None      # typed config -> the model another sweep learned,
                                                     # which the driver finds in MLflow for each trial
    upstream: tuple[str, ...] = ()                   # the sweeps `source` may name: run those first
    reads: tuple[str, ...] = ()                      # datasets a trial reads beyond its config's own
    tiny: dict = field(default_factory=dict)         # its keys in the tiny unit run (tests/tiny.py)
    smoke_args: tuple[str, ...] = ()                 # extra `sweep` arguments of the tests' study store

    @property
    def score(self) -> str:
        """What every finished trial of it logged: its metric, or the best so far where it learns."""
        return "best_val_acc" if self.metric == "val_acc" else self.metric

    @property
    def needs(self) -> str:
        """What must run before it, as words."""
        return " and ".join(f"`sweep {name}`" for name in self.upstream)


