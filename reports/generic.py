"""The report of a sweep defined in a TOML file (search_spaces/sweep_file.py), whatever its grid:
the best learning rate of every cell as a table, a heatmap when two axes vary, and the learning
curves of the best cells."""
from __future__ import annotations

from clip_prompt_sweeps.names import LR_KEY
from reports import figures
from reports.markdown import pct, table, text
from reports.trials import SweepRuns, best_per_cell, grid_axes, metric_history


def report(sw: SweepRuns) -> list[str]:
    best = best_per_cell(sw.trials)
    axes = grid_axes(best)
    title = sw.parent.sweep or "sweep"
    md = sw.header(f"Sweep {text(title)} (from a sweep file)")
    rows = [[*(text(r[a]) for a in axes), pct(r["best_val_acc"]), pct(r["test_acc"]),
             f"{r[LR_KEY]:.3g}" if LR_KEY in r and r[LR_KEY] == r[LR_KEY] else "—"] for _, r in best.iterrows()]
    md += ["## Best learning rate per cell", "", table([*axes, "best val", "test", "lr"], rows), ""]
    varying = [a for a in axes if best[a].nunique() > 1]
    if len(varying) == 2:
        rows_axis, cols_axis = varying
        grid = best.pivot_table(index=rows_axis, columns=cols_axis, values="test_acc") * 100
        path = figures.grid_heatmap(grid, cols_axis, rows_axis, f"{title}: test top-1 (%)",
                                    sw.out / figures.figure_name(title, "heatmap"))
        md += ["## Heatmap", "", f"![{text(title)} heatmap]({path.name})", ""]
    top = best.sort_values("best_val_acc", ascending=False).head(4)
    curves = {str(r["cell"]): metric_history(sw.client, r["run_id"], "val_acc") for _, r in top.iterrows()}
    path = figures.learning_curves(curves, "best cells", sw.out / figures.figure_name(title, "curves"))
    return md + ["## Learning curves of the best cells", "", f"![curves]({path.name})", ""]
