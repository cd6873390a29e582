"""The report of the `zeroshot` sweep (seed section 2.1a): Table 1 beside the seed's and the CLIP
paper's numbers."""
from __future__ import annotations

from common.names import DATASETS
from reports.markdown import diff, pct, reference_pct, table, text
from reports.reference import reference_results, reference_zeroshot
from reports.trials import SweepRuns


def report(sw: SweepRuns) -> list[str]:
    md = sw.header("Zero-shot CLIP (seed section 2.1a)",
                   "Top-1 (%) on the whole train and test splits; nothing is learned. Δ = ours − seed.")
    reference = reference_results()["zeroshot_clip_vit_b32"]
    paper = reference_results()["published_anchors"]["clip_paper_zeroshot_vit_b32"]
    rows = []
    for _, r in sw.trials.sort_values("dataset").iterrows():
        seed = reference.get(r["dataset"], {})
        rows.append([r["dataset"], pct(r["train_acc"]), reference_pct(seed.get("train")), diff(r["train_acc"], seed.get("train")),
                     pct(r["test_acc"]), reference_pct(seed.get("test")), diff(r["test_acc"], seed.get("test")),
                     reference_pct(paper.get(r["dataset"]))])
    header = ["dataset", "train", "seed", "Δ", "test", "seed", "Δ", "CLIP paper (test)"]
    template = sw.trials["template"].iloc[0] if "template" in sw.trials else "This is a photo of a {}"
    return md + ["## Table 1: zero-shot top-1", "", f"Template: \"{text(template)}\".", "", table(header, rows), ""]


def headline(sw: SweepRuns) -> list[tuple]:
    """Its rows of "At a glance": (what, ours, the seed's)."""
    t = sw.trials.set_index("dataset")
    return [(f"zero-shot CLIP, {d} test", float(t.loc[d, "test_acc"]), reference_zeroshot(d))
            for d in DATASETS if d in t.index]
