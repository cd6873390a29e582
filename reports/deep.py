"""The report of the `deep` sweep (seed section 2.3): Tables 3 and 4, heatmaps and learning
curves, each number beside the seed's."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from statistics import mean
from typing import NamedTuple

import pandas as pd

from clip_prompt_sweeps.names import DATASETS, LAYER_NAMES
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
from reports.section import HeadlineRow
from reports.stats import TEST_LINE, ci_text, holm, mark, p_text, welch_p
from reports.trials import (
    SweepRuns,
    best_per_cell,
    best_test,
    other_best,
    panels,
    replicate_values,
    study_rows,
)


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


def table3(best: pd.DataFrame, backbone: str = "", reps: dict | None = None, marks: dict | None = None) -> str:
    """Table 3 of one dataset (and backbone). With replicates (`reps`: cell -> test accuracies),
    ours is their mean ± 95 % CI, and the front−back difference of the means carries its mark."""
    to_reference = _layer_to_reference(best["layer"].tolist())
    with_seed = seed_backbone(backbone) if backbone else True
    reps, marks = reps or {}, marks or {}
    rows = []
    for (dataset, layer, n), group in ordered(best).groupby(["dataset", "layer", "n_prompts"], sort=False):
        seed_layer = to_reference[layer]
        row = [dataset, layer if seed_layer == layer or not with_seed else f"{layer} (seed {seed_layer})", n]
        for position in ("front", "back"):
            mine = group[group["position"] == position]
            ours = float(mine["test_acc"].iloc[0]) if len(mine) else None
            values = reps.get(mine["cell"].iloc[0], []) if len(mine) else []
            seed = reference_deep(dataset, seed_layer, n, position) if with_seed else None
            row += [ci_text(values) if values else pct(ours), reference_pct(seed),
                    diff(mean(values) if values else ours, seed)]
        if reps:
            row.append(marks.get(FrontBack(dataset, backbone, layer, n), "—"))
        rows.append(row)
    header = ["dataset", "layer", "prompts", "front", "seed", "Δ", "back", "seed", "Δ"]
    return table(header + (["front − back"] if reps else []), rows)


class FrontBack(NamedTuple):
    """front against back, in one dataset, backbone, layer and number of prompts."""
    dataset: str
    backbone: str
    layer: str
    n_prompts: int


class Layers(NamedTuple):
    """one layer against another, in one dataset, backbone, number of prompts and position."""
    dataset: str
    backbone: str
    n_prompts: int
    position: str
    layer_a: str
    layer_b: str


@dataclass(frozen=True)
class Comparison:
    pair: FrontBack | Layers
    a: str                      # what the difference is of: a − b
    b: str
    diff: float                 # of the replicates' mean test top-1
    p: float                    # Welch's
    p_holm: float = float("nan")    # Holm-corrected across every comparison of the report
    mark: str = ""


def comparisons(best: pd.DataFrame, reps: dict) -> list[Comparison]:
    """Every front/back pair and every pair of layers (per dataset, backbone, prompts, position)
    whose cells both have replicates: the difference of the means and Welch's p, Holm-corrected
    across all of them together."""
    rows = []
    best = ordered(best).assign(backbone=best["backbone"] if "backbone" in best else "")
    for (dataset, backbone, layer, n), group in best.groupby(["dataset", "backbone", "layer", "n_prompts"], sort=False):
        cells = dict(zip(group["position"], group["cell"]))
        if reps.get(cells.get("front")) and reps.get(cells.get("back")):
            rows.append(_compare(FrontBack(dataset, backbone, layer, n), "front", "back",
                                 reps[cells["front"]], reps[cells["back"]]))
    for (dataset, backbone, n, position), group in best.groupby(["dataset", "backbone", "n_prompts", "position"],
                                                                sort=False):
        cells = list(zip(group["layer"], group["cell"]))
        for (la, ca), (lb, cb) in itertools.combinations(cells, 2):
            if reps.get(ca) and reps.get(cb):
                rows.append(_compare(Layers(dataset, backbone, n, position, la, lb), f"layer {la}", f"layer {lb}",
                                     reps[ca], reps[cb]))
    return [replace(row, p_holm=adjusted, mark=mark(adjusted))
            for row, adjusted in zip(rows, holm([r.p for r in rows]))]


def _compare(pair: FrontBack | Layers, a: str, b: str, va: list, vb: list) -> Comparison:
    return Comparison(pair, a, b, mean(va) - mean(vb), welch_p(va, vb))


def _significance(comps: list[Comparison]) -> list[str]:
    layer_rows = [[c.pair.dataset, c.pair.backbone, c.pair.n_prompts, c.pair.position, f"{c.a} − {c.b}",
                   f"{100 * c.diff:+.2f}", p_text(c.p_holm), c.mark]
                  for c in comps if isinstance(c.pair, Layers)]
    md = [TEST_LINE.format(n=len(comps)), ""]
    if layer_rows:
        md += ["### Layer comparisons", "",
               table(["dataset", "backbone", "prompts", "position", "layers", "difference", "p (Holm)", ""], layer_rows),
               ""]
    return md


def report(sw: SweepRuns) -> list[str]:
    best = best_per_cell(sw.trials)
    md = sw.header("Deep prompts (seed section 2.3)")
    md += ["## Table 3: dataset × injection layer × prompts × position", "",
           "`front` prepends the prompts and reads out token 0, a prompt token (the seed's setting); "
           "`back` appends them and reads out CLS (see trainables/models/prompts.py). Layers `first`, `middle` and `last` "
           "are blocks 0, depth/2 and depth−1 of each backbone (the seed's 0, 6 and 11 on ViT-B/32).", ""]
    reps = {cell: values for cell in best["cell"] if (values := replicate_values(sw, cell))}
    comps = comparisons(best, reps) if reps else []
    marks = {c.pair: f"{100 * c.diff:+.2f} {c.mark}" for c in comps if isinstance(c.pair, FrontBack)}
    if reps:
        md += ["With `--replicates`, ours is the mean ± 95 % confidence interval (Student's t) of the replicates' "
               "test top-1, each a rerun of the cell's chosen learning rate with a new seed (the split fixed); the "
               "seed's numbers are single runs.", ""]
    for dataset, backbone, group in panels(best):
        md += (([f"### {text(dataset)}, {text(backbone)}", ""] if backbone else [])
               + [table3(group, backbone, reps, marks), ""])
    if comps:
        md += _significance(comps)
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


def headline(sw: SweepRuns) -> list[HeadlineRow]:
    """Its rows of "At a glance"."""
    best = best_per_cell(study_rows(sw.trials))
    return [HeadlineRow(f"best deep prompt, {d}", best_test(best, dataset=d), reference_best_deep(d)) for d in DATASETS]
