"""The report of the `zeroshot` sweep (seed section 2.1a): Table 1 beside the seed's and the CLIP
paper's numbers."""
from __future__ import annotations

from clip_prompt_sweeps.names import DATASETS
from reports.markdown import diff, pct, reference_pct, table, text
from reports.reference import (
    reference_open_clip,
    reference_results,
    reference_zeroshot,
    seed_backbone,
)
from reports.section import HeadlineRow
from reports.trials import SweepRuns, study_rows


def report(sw: SweepRuns) -> list[str]:
    md = sw.header("Zero-shot CLIP (seed section 2.1a)",
                   "Top-1 (%) on the whole train and test splits; nothing is learned. Δ = ours − seed. "
                   "The seed's and the CLIP paper's numbers stand beside ViT-B-32 (and the tiny model that stands "
                   "in for it at smoke size); open_clip's published number stands beside a backbone, tag and "
                   "template set it was measured with.")
    reference = reference_results()["zeroshot_clip_vit_b32"]
    paper = reference_results()["published_anchors"]["clip_paper_zeroshot_vit_b32"]
    rows = []
    order = [c for c in ("backbone", "template_set", "dataset") if c in sw.trials]
    for _, r in sw.trials.sort_values(order).iterrows():
        backbone, templates = str(r.get("backbone", "")), str(r.get("template_set", "single"))
        seed = reference.get(r["dataset"], {}) if seed_backbone(backbone) else {}
        rows.append([text(r["dataset"]), text(backbone), text(templates),
                     pct(r["train_acc"]), reference_pct(seed.get("train")), diff(r["train_acc"], seed.get("train")),
                     pct(r["test_acc"]), reference_pct(seed.get("test")), diff(r["test_acc"], seed.get("test")),
                     reference_pct(paper.get(r["dataset"]) if seed_backbone(backbone) else None),
                     reference_pct(reference_open_clip(backbone, r["dataset"], templates))])
    header = ["dataset", "backbone", "templates", "train", "seed", "Δ", "test", "seed", "Δ", "CLIP paper (test)",
              "open_clip published (test)"]
    template = sw.trials["template"].iloc[0] if "template" in sw.trials else "This is a photo of a {}"
    return md + ["## Table 1: zero-shot top-1", "",
                 f"Templates: `single` is \"{text(template)}\" (the seed's); `clip` is CLIP's 18 CIFAR templates, "
                 "their normalised text features averaged (as open_clip's benchmark does).", "",
                 table(header, rows), ""]


def headline(sw: SweepRuns) -> list[HeadlineRow]:
    """Its rows of "At a glance"."""
    t = study_rows(sw.trials)
    t = t[t["template_set"] == "single"] if "template_set" in t else t
    return [HeadlineRow(f"zero-shot CLIP, {d} test", float(t[t["dataset"] == d]["test_acc"].iloc[0]), reference_zeroshot(d))
            for d in DATASETS if (t["dataset"] == d).any()]
