"""Learning curves of a sweep's best cells, one figure per dataset."""
from __future__ import annotations

import pandas as pd

from clip_prompt_sweeps.names import LR_KEY
from reports import figures
from reports.markdown import text
from reports.trials import SweepRuns, metric_history


def best_curves(sw: SweepRuns, best: pd.DataFrame, name: str) -> list[str]:
    """Validation accuracy per epoch of the four best cells of each dataset."""
    lines = []
    for dataset in sorted(best["dataset"].unique()):
        top = best[best["dataset"] == dataset].sort_values("best_val_acc", ascending=False).head(4)
        curves = {f"{r['cell'].replace('dataset=' + dataset + ',', '')} lr={r[LR_KEY]:.3g}":
                  metric_history(sw.client, r["run_id"], "val_acc") for _, r in top.iterrows()}
        path = figures.learning_curves(curves, f"{dataset}: best cells", sw.out / figures.figure_name(name, "curves", dataset))
        lines.append(f"![curves {text(dataset)}]({path.name})")
    return lines + [""]
