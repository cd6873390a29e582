"""A toy experiment, written as a user would add one: this one module, nothing else. The test
suite copies it into a package of its own and names that package in $ORCHESTRATOR_EXPERIMENTS
(tests/test_house.py); it is not registered otherwise."""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from reports.markdown import pct, table
from reports.section import ReportSection
from reports.trials import SweepRuns, best_per_cell
from search_spaces.experiment import Experiment, LogUniform, Profile
from trainables.training.entry import trainable


@dataclass
class ToyConfig:
    width: int = 1
    lr: float = 0.1
    epochs: int = 2


def run_toy(cfg: ToyConfig, report, resume_dir=None) -> dict:
    """An accuracy that grows with width, learning rate and epoch; a checkpoint each epoch."""
    metrics: dict = {}
    for epoch in range(1, cfg.epochs + 1):
        acc = min(1.0, cfg.width * cfg.lr * epoch / 4)
        metrics = {"epoch": epoch, "val_acc": acc, "best_val_acc": acc, "test_acc": acc / 2}
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / "state.json").write_text(json.dumps({"epoch": epoch}))
            report(metrics, folder)
    return metrics


def toy_report(sw: SweepRuns) -> list[str]:
    best = best_per_cell(sw.trials)
    rows = [[f"width {r['width']}", pct(r["test_acc"])] for _, r in best.iterrows()]
    return sw.header("Toy experiment") + ["## Toy table", "", table(["cell", "test top-1"], rows), ""]


def toy_headline(sw: SweepRuns) -> list[tuple]:
    return [("best toy cell", float(best_per_cell(sw.trials)["test_acc"].max()), None)]


EXPERIMENT = Experiment(
    name="toy",
    trainable=trainable("toy_trainable", ToyConfig, run_toy, "a toy trainable from the test suite",
                        ("val_acc", "best_val_acc", "test_acc")),
    summary="a toy sweep from the test suite: width x lr",
    profiles={"smoke": Profile(base=dict(epochs=2), grid=dict(width=[1, 2]), lr=LogUniform(0.1, 1.0), samples=2)},
    report=ReportSection("9", "Toy experiment", toy_report, toy_headline),
    tiny=dict(width=2),
)
