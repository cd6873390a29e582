"""The report of the `robustness` sweep (seed section 2.4): Table 5 and the accuracy-against-noise
curve, each number beside the seed's."""
from __future__ import annotations

import pandas as pd

from reports import figures
from reports.markdown import code, diff, pct, reference_pct, table
from reports.reference import reference_results
from reports.section import HeadlineRow
from reports.trials import SweepRuns


def report(sw: SweepRuns) -> list[str]:
    t = sw.trials.set_index("model")
    seeds = reference_results()["robustness_gaussian_noise_cifar100"]
    seed_key = {"clip_padding": "clip_padding_30", "resnet_fc": "resnet18_fc_only"}
    std = float(t["noise_std"].iloc[0])
    md = sw.header("Robustness to noise on CIFAR-100 (seed section 2.4)",
                   f"Test top-1 (%) with N(0, {std:g}) added to the normalised images (one noise seed, the same "
                   "draws for both models). The models are the best-on-validation trials of the `visual` "
                   "(CIFAR-100, padding) and `finetune` (fc only, no augmentation) sweeps. Δ = ours − seed.")
    rows = []
    test_sets = (("CIFAR-100", "clean_acc", "clean"), (f"CIFAR-100 + N(0, {std:g})", "noisy_acc", "noisy"))
    for label, key, seed_part in test_sets:
        row = [label]
        for model in ("clip_padding", "resnet_fc"):
            ours = float(t.loc[model, key]) if model in t.index else None
            seed = seeds.get(seed_key[model], {}).get(seed_part)
            row += [pct(ours), reference_pct(seed), diff(ours, seed)]
        rows.append(row)
    header = ["test set", "CLIP + padding", "seed", "Δ", "ResNet-18 fc", "seed", "Δ"]
    md += ["## Table 5: clean and noisy", "", table(header, rows), ""]
    sources = [[m, code(r['source_run']), pct(r["source_test_acc"]), pct(r["clean_acc"])] for m, r in t.iterrows()]
    md += ["Each source's own test score (from its run) and the clean score here agree: the same model, "
           "loaded from its MLflow artifact.", "",
           table(["model", "source run", "its test top-1", "clean top-1 here"], sources), ""]
    curves = {m: [(float(k[len("acc_noise_"):]), float(v)) for k, v in r.items()
                  if k.startswith("acc_noise_") and pd.notna(v)] for m, r in t.iterrows()}
    path = figures.noise_curves(curves, "CIFAR-100 test top-1 vs Gaussian noise", sw.out / "robustness_curve.png")
    return md + ["## Accuracy against noise", "", f"![noise curve]({path.name})", ""]


def headline(sw: SweepRuns) -> list[HeadlineRow]:
    """Its rows of "At a glance"."""
    t, reference = sw.trials.set_index("model"), reference_results()["robustness_gaussian_noise_cifar100"]
    names = {"clip_padding": ("CLIP + padding", "clip_padding_30"), "resnet_fc": ("ResNet-18 fc", "resnet18_fc_only")}
    return [HeadlineRow(f"{label}, CIFAR-100 + noise", float(t.loc[m, "noisy_acc"]), reference.get(key, {}).get("noisy"))
            for m, (label, key) in names.items() if m in t.index]
