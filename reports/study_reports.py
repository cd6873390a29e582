"""Report sections of the study beyond the prompts: zero-shot (seed Table 1), ResNet-18
fine-tuning (seed 1.2) and the linear probe (beyond the seed, beside the prompts)."""
from __future__ import annotations

import pandas as pd

from reports import figures
from reports.markdown import Markdown, diff, pct, seed_pct, table, text
from reports.prompt_reports import Sweep, other_best
from reports.runs import best_per_cell, metric_history
from reports.seed import seed_best_deep, seed_results, seed_visual, seed_zeroshot


def zeroshot_report(sw: Sweep) -> list[str]:
    md = sw.header("Zero-shot CLIP (seed section 2.1a)",
                   "Top-1 (%) on the whole train and test splits; nothing is learned. Δ = ours − seed.")
    seeds = seed_results()["zeroshot_clip_vit_b32"]
    paper = seed_results()["published_anchors"]["clip_paper_zeroshot_vit_b32"]
    rows = []
    for _, r in sw.trials.sort_values("dataset").iterrows():
        seed = seeds.get(r["dataset"], {})
        rows.append([r["dataset"], pct(r["train_acc"]), seed_pct(seed.get("train")), diff(r["train_acc"], seed.get("train")),
                     pct(r["test_acc"]), seed_pct(seed.get("test")), diff(r["test_acc"], seed.get("test")),
                     seed_pct(paper.get(r["dataset"]))])
    header = ["dataset", "train", "seed", "Δ", "test", "seed", "Δ", "CLIP paper (test)"]
    template = sw.trials["template"].iloc[0] if "template" in sw.trials else "This is a photo of a {}"
    return md + ["## Table 1: zero-shot top-1", "", f"Template: \"{text(template)}\".", "", table(header, rows), ""]


def finetune_report(sw: Sweep) -> list[str]:
    best = best_per_cell(sw.trials, ["variant", "augment"])
    md = sw.header("ResNet-18 fine-tuning on CIFAR-100 (seed section 1.2)")
    seeds = seed_results()["finetune_resnet18_cifar100"]
    seed_of = {("fc", "none"): seeds.get("fc_only"), ("fc", "hflip"): seeds.get("fc_only_hflip")}
    augments = [a for a in ("none", "hflip", "crop") if a in set(best["augment"])]
    rows = []
    for variant in [v for v in ("fc", "fc_first_conv", "fc_last_conv") if v in set(best["variant"])]:
        row = [variant]
        for augment in augments:
            got = best[(best["variant"] == variant) & (best["augment"] == augment)]["test_acc"]
            ours, seed = (float(got.iloc[0]) if len(got) else None), seed_of.get((variant, augment))
            row += [pct(ours), seed_pct(seed), diff(ours, seed)]
        rows.append(row)
    header = ["trained"] + [h for a in augments for h in (f"aug {a}", "seed", "Δ")]
    md += ["## Fine-tuning variants x augmentation", "", table(header, rows), "",
           "The seed measured fc only, without and with a horizontal flip; it argued for fc + last conv "
           "without measuring it. BatchNorm of the frozen layers: `backbone_bn` = "
           f"{', '.join(sorted(set(sw.trials.get('backbone_bn', pd.Series(['eval'])).astype(str))))}.", ""]
    curves = {f"{r['variant']}, {r['augment']} lr={r['lr']:.2g}": metric_history(sw.client, r["run_id"], "val_acc")
              for _, r in best.iterrows()}
    path = figures.learning_curves(curves, "best learning rate per cell", sw.out / "finetune_curves.png")
    return md + ["## Learning curves", "", f"![curves]({path.name})", ""]


def linear_report(sw: Sweep) -> list[str]:
    best = best_per_cell(sw.trials, ["dataset"])
    visual = other_best(sw, "visual", ["dataset", "prompt", "prompt_size"])
    deep = other_best(sw, "deep", ["dataset", "layer", "n_prompts", "position"])
    md = sw.header("Linear probe on frozen CLIP features (beyond the seed)")
    rows = []
    for _, r in best.sort_values("dataset").iterrows():
        d = r["dataset"]
        rows.append([d, pct(r["test_acc"]), f"{r['lr']:.2g}",
                     pct(visual.get(d)) if visual is not None else Markdown("run `sweep visual`"),
                     pct(deep.get(d)) if deep is not None else Markdown("run `sweep deep`"),
                     seed_pct(seed_visual(d, "padding")), seed_pct(seed_best_deep(d)), seed_pct(seed_zeroshot(d))])
    header = ["dataset", "linear probe", "lr", "best visual prompt (ours)", "best deep prompt (ours)",
              "seed padding prompt", "seed best deep prompt", "seed zero-shot"]
    return md + ["## Linear probe beside prompting", "", table(header, rows), ""]

