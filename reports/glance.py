"""`report all` across backbones: an "at a glance" row per backbone and dataset (best zero-shot,
best visual prompt, best deep prompt, linear probe) and, per dataset, test accuracy against
trainable parameters (zero-shot 0, a deep prompt n x width, a padding prompt ~70k at 224 px, a
linear probe features x classes), one point per backbone and method; each read from MLflow."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from reports import figures
from reports.markdown import pct, table, text
from reports.trials import SweepRuns, best_per_cell

METHODS = {"zeroshot": "zero-shot", "visual": "visual prompt", "deep": "deep prompt", "linear": "linear probe"}


def points(loaded: list[tuple[object, SweepRuns]]) -> pd.DataFrame:
    """(method, backbone, dataset, params, acc): the best-on-validation cell of each learning
    sweep per backbone and dataset; zero-shot's best test score over its template sets."""
    rows = []
    for exp, sw in loaded:
        name = getattr(exp, "name", "")
        if name not in METHODS or "backbone" not in sw.trials:
            continue
        trials = sw.trials if name == "zeroshot" else best_per_cell(sw.trials)
        score = "test_acc" if name == "zeroshot" else "best_val_acc"
        for (backbone, dataset), g in trials.groupby(["backbone", "dataset"]):
            top = g.sort_values(score).iloc[-1]
            logged = top.get("trainable_params", float("nan"))
            params = 0.0 if name == "zeroshot" else float(logged)      # nan: logged before the metric existed
            rows.append({"method": METHODS[name], "backbone": str(backbone), "dataset": str(dataset),
                         "params": params, "acc": float(top["test_acc"])})
    return pd.DataFrame(rows, columns=["method", "backbone", "dataset", "params", "acc"])


def glance_by_backbone(loaded: list[tuple[object, SweepRuns]], out: Path) -> list[str]:
    found = points(loaded)
    if found.empty:
        return []
    rows = []
    for (backbone, dataset), g in found.groupby(["backbone", "dataset"]):
        by = dict(zip(g["method"], g["acc"]))
        rows.append([text(backbone), text(dataset), *(pct(by.get(m)) for m in METHODS.values())])
    md = ["## At a glance, per backbone", "",
          "Test top-1 (%) of the best-on-validation cell of each method, per backbone and dataset.", "",
          table(["backbone", "dataset", *METHODS.values()], rows), ""]
    for dataset, g in found.dropna(subset=["params"]).groupby("dataset"):
        path = figures.accuracy_vs_params(g, f"{dataset}: accuracy against trainable parameters",
                                          out / figures.figure_name("glance_params", dataset))
        md += [f"![{text(dataset)}: accuracy against trainable parameters]({path.name})", ""]
    return md
