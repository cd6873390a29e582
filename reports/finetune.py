"""The report of the `finetune` sweep (seed section 1.2): variants x augmentation beside the
seed's numbers, and learning curves."""
from __future__ import annotations

import pandas as pd

from clip_prompt_sweeps.names import LR_KEY
from reports import figures
from reports.markdown import diff, pct, reference_pct, table
from reports.reference import reference_results
from reports.section import HeadlineRow
from reports.trials import SweepRuns, best_per_cell, best_test, metric_history


def report(sw: SweepRuns) -> list[str]:
    best = best_per_cell(sw.trials)
    md = sw.header("ResNet-18 fine-tuning on CIFAR-100 (seed section 1.2)")
    reference = reference_results()["finetune_resnet18_cifar100"]
    seed_of = {("fc", "none"): reference.get("fc_only"), ("fc", "hflip"): reference.get("fc_only_hflip")}
    augments = [a for a in ("none", "hflip", "crop") if a in set(best["augment"])]
    rows = []
    for variant in [v for v in ("fc", "fc_first_conv", "fc_last_conv") if v in set(best["variant"])]:
        row = [variant]
        for augment in augments:
            got = best[(best["variant"] == variant) & (best["augment"] == augment)]["test_acc"]
            ours, seed = (float(got.iloc[0]) if len(got) else None), seed_of.get((variant, augment))
            row += [pct(ours), reference_pct(seed), diff(ours, seed)]
        rows.append(row)
    header = ["trained"] + [h for a in augments for h in (f"aug {a}", "seed", "Δ")]
    md += ["## Fine-tuning variants x augmentation", "", table(header, rows), "",
           "The seed measured fc only, without and with a horizontal flip; it argued for fc + last conv "
           "without measuring it. BatchNorm of the frozen layers: `backbone_bn` = "
           f"{', '.join(sorted(set(sw.trials.get('backbone_bn', pd.Series(['eval'])).astype(str))))}.", ""]
    curves = {f"{r['variant']}, {r['augment']} lr={r[LR_KEY]:.2g}": metric_history(sw.client, r["run_id"], "val_acc")
              for _, r in best.iterrows()}
    path = figures.learning_curves(curves, "best learning rate per cell", sw.out / "finetune_curves.png")
    return md + ["## Learning curves", "", f"![curves]({path.name})", ""]


def headline(sw: SweepRuns) -> list[HeadlineRow]:
    """Its rows of "At a glance"."""
    best, reference = best_per_cell(sw.trials), reference_results()["finetune_resnet18_cifar100"]
    cells = (("none", "no augmentation", "fc_only"), ("hflip", "flip", "fc_only_hflip"))
    return [HeadlineRow(f"ResNet-18 fc only, {label}, CIFAR-100", best_test(best, variant="fc", augment=aug),
             reference.get(key)) for aug, label, key in cells]
