"""The report of the `deep` sweep (seed section 2.3): Tables 3 and 4, heatmaps and learning
curves, each number beside the seed's."""
from __future__ import annotations

import pandas as pd

from common.names import DATASETS
from reports import figures
from reports.curves import best_curves
from reports.markdown import Markdown, diff, pct, reference_pct, table
from reports.reference import (
    reference_best_deep,
    reference_best_visual,
    reference_deep,
    reference_layers,
    reference_zeroshot,
)
from reports.trials import SweepRuns, best_per_cell, best_test, other_best


def _layer_to_reference(layers: list[int]) -> dict[int, int]:
    """The smoke grid's first/middle/last layers stand for the seed's 0/6/11, by rank."""
    reference = reference_layers()
    ours = sorted(set(layers))
    return dict(zip(ours, reference)) if len(ours) == len(reference) else {l: l for l in ours}


def table3(best: pd.DataFrame) -> str:
    to_reference = _layer_to_reference(best["layer"].tolist())
    rows = []
    for (dataset, layer, n), group in best.groupby(["dataset", "layer", "n_prompts"]):
        row = [dataset, layer if to_reference[layer] == layer else f"{layer} (seed {to_reference[layer]})", n]
        for position in ("front", "back"):
            ours = group.loc[group["position"] == position, "test_acc"]
            ours = float(ours.iloc[0]) if len(ours) else None
            seed = reference_deep(dataset, to_reference[layer], n, position)
            row += [pct(ours), reference_pct(seed), diff(ours, seed)]
        rows.append(row)
    header = ["dataset", "layer", "prompts", "front", "seed", "Δ", "back", "seed", "Δ"]
    return table(header, rows)


def report(sw: SweepRuns) -> list[str]:
    best = best_per_cell(sw.trials)
    md = sw.header("Deep prompts (seed section 2.3)")
    md += ["## Table 3: dataset × injection layer × prompts × position", "",
           "`front` prepends the prompts and reads out token 0, a prompt token (the seed's setting); "
           "`back` appends them and reads out CLS (see trainables/prompts.py).", "", table3(best), ""]
    md += table4(sw, best)
    md += ["## Heatmaps", ""]
    for dataset in sorted(best["dataset"].unique()):
        for position in sorted(best["position"].unique()):
            path = figures.heatmap(best, dataset, position, sw.out / figures.figure_name("deep_heatmap", dataset, position))
            md.append(f"![{dataset} {position}]({path.name})")
    md += ["", "## Learning curves of the best trials", ""]
    md += best_curves(sw, best, "deep")
    return md


def table4(sw: SweepRuns, deep_best: pd.DataFrame) -> list[str]:
    visual = other_best(sw, "visual")
    rows = []
    for dataset in sorted(deep_best["dataset"].unique()):
        deep = float(deep_best[deep_best["dataset"] == dataset].sort_values("best_val_acc").iloc[-1]["test_acc"])
        seed_v = reference_best_visual(dataset)
        vis = visual.get(dataset) if visual is not None else None
        rows.append([dataset, pct(deep), reference_pct(reference_best_deep(dataset)),
                     diff(deep, reference_best_deep(dataset)),
                     pct(vis) if visual is not None else Markdown("run `sweep visual`"), reference_pct(seed_v),
                     diff(vis, seed_v), reference_pct(reference_zeroshot(dataset))])
    header = ["dataset", "best deep", "seed", "Δ", "best visual", "seed", "Δ", "seed zero-shot baseline"]
    return ["## Table 4: best deep prompt vs best visual prompt vs baseline", "", table(header, rows), ""]


def headline(sw: SweepRuns) -> list[tuple]:
    """Its rows of "At a glance": (what, ours, the seed's)."""
    best = best_per_cell(sw.trials)
    return [(f"best deep prompt, {d}", best_test(best, dataset=d), reference_best_deep(d)) for d in DATASETS]
