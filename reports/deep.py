"""The report of the `deep` sweep (seed section 2.3): Tables 3 and 4, heatmaps and learning
curves, each number beside the seed's."""
from __future__ import annotations

import pandas as pd

from common.names import DATASETS
from reports import figures
from reports.curves import best_curves
from reports.markdown import Markdown, diff, pct, reference_pct, table, text
from reports.reference import (
    reference_best_deep,
    reference_best_visual,
    reference_deep,
    reference_layers,
    reference_zeroshot,
    seed_backbone,
)
from reports.trials import SweepRuns, best_per_cell, best_test, other_best

LAYER_NAMES = ("first", "middle", "last")


def _layer_to_reference(layers: list) -> dict:
    """Each layer of our grid -> the seed's layer it stands for: first/middle/last are the seed's
    0/6/11 by name; a numeric grid of three (the smoke grid's 0/2/3) stands for them by rank."""
    reference = reference_layers()
    named = dict(zip(LAYER_NAMES, reference))
    ours = sorted({l for l in layers if l not in named}, key=float)
    by_rank = dict(zip(ours, reference)) if len(ours) == len(reference) else {l: l for l in ours}
    return {l: named.get(l, by_rank.get(l)) for l in layers}


def layer_order(values: pd.Series) -> pd.Series:
    """first < middle < last, then block numbers: the order of the grid, not of the alphabet."""
    return values.map(lambda v: (LAYER_NAMES.index(v), 0.0) if v in LAYER_NAMES else (len(LAYER_NAMES), float(v)))


def ordered(best: pd.DataFrame) -> pd.DataFrame:
    keys = [k for k in ("dataset", "backbone", "layer", "n_prompts", "position") if k in best]
    return best.sort_values(keys, key=lambda c: layer_order(c) if c.name == "layer" else c, kind="stable")


def panels(best: pd.DataFrame):
    """(dataset, backbone, its rows): one table per dataset x backbone."""
    by = ["dataset", "backbone"] if "backbone" in best else ["dataset"]
    for key, group in best.groupby(by, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        yield key[0], (key[1] if len(key) > 1 else ""), group


def table3(best: pd.DataFrame, backbone: str = "") -> str:
    to_reference = _layer_to_reference(best["layer"].tolist())
    with_seed = seed_backbone(backbone) if backbone else True
    rows = []
    for (dataset, layer, n), group in ordered(best).groupby(["dataset", "layer", "n_prompts"], sort=False):
        seed_layer = to_reference[layer]
        row = [dataset, layer if seed_layer == layer or not with_seed else f"{layer} (seed {seed_layer})", n]
        for position in ("front", "back"):
            ours = group.loc[group["position"] == position, "test_acc"]
            ours = float(ours.iloc[0]) if len(ours) else None
            seed = reference_deep(dataset, seed_layer, n, position) if with_seed else None
            row += [pct(ours), reference_pct(seed), diff(ours, seed)]
        rows.append(row)
    header = ["dataset", "layer", "prompts", "front", "seed", "Δ", "back", "seed", "Δ"]
    return table(header, rows)


def report(sw: SweepRuns) -> list[str]:
    best = best_per_cell(sw.trials)
    md = sw.header("Deep prompts (seed section 2.3)")
    md += ["## Table 3: dataset × injection layer × prompts × position", "",
           "`front` prepends the prompts and reads out token 0, a prompt token (the seed's setting); "
           "`back` appends them and reads out CLS (see trainables/prompts.py). Layers `first`, `middle` and `last` "
           "are blocks 0, depth/2 and depth−1 of each backbone (the seed's 0, 6 and 11 on ViT-B/32).", ""]
    for dataset, backbone, group in panels(best):
        md += ([f"### {text(dataset)}, {text(backbone)}", ""] if backbone else []) + [table3(group, backbone), ""]
    md += table4(sw, best)
    md += ["## Heatmaps", ""]
    many = "backbone" in best and best["backbone"].nunique() > 1
    for dataset, backbone, group in panels(ordered(best)):
        for position in sorted(group["position"].unique()):
            name = figures.figure_name("deep_heatmap", dataset, *([backbone] if many else []), position)
            path = figures.heatmap(group, dataset, position, sw.out / name)
            md.append(f"![{text(dataset)} {text(backbone)} {text(position)}]({path.name})")
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
