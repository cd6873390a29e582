"""Report sections of the experiments that learn nothing themselves: the model comparison (seed
1.1, Figures 1 to 4), robustness to noise (seed 2.4, Table 5) and CIFAR-110 (seed 2.5)."""
from __future__ import annotations

import math

import pandas as pd

from reports import figures
from reports.markdown import code, diff, pct, seed_pct, table, text
from reports.prompt_reports import Sweep
from reports.seed import seed_results

SEED_PEARSON_R = 0.85       # the seed's text (1.1.a): top-1 against inference speed
NAMES = {"vgg11": "VGG11", "vgg11_bn": "VGG11-BN", "resnet18": "ResNet18", "densenet121": "DenseNet121",
         "mobilenet_v3_small": "MobileNet-v3-S", "vit_b_32": "ViT-B/32", "vit_small_patch8_224": "ViT-S/8 (timm)"}


def _num(x, fmt: str) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def _col(frame: pd.DataFrame, key: str) -> pd.Series:
    return frame[key] if key in frame else pd.Series([math.nan] * len(frame), index=frame.index)


def compare_report(sw: Sweep) -> list[str]:
    t = sw.trials[sw.trials["status"] == "FINISHED"].sort_values("ms_per_image_no_grad").reset_index(drop=True)
    names = [NAMES.get(m, m) for m in t["model"]]
    device = sorted(set(_col(t, "tag_device_name").dropna().astype(str))) or ["unknown"]
    measured = "memory_mb_no_grad" in t and t["memory_mb_no_grad"].notna().any()
    md = sw.header("Comparing ImageNet models (seed section 1.1)",
                   f"Measured on {text(', '.join(device))} at {int(t['image_size'].iloc[0])} px, random weights "
                   f"(timing does not depend on them): median of {int(t['repeats'].iloc[0])} timed forward passes "
                   f"after {int(t['warmup'].iloc[0])} warm-up pass(es), eval mode. Top-1 is from the source named "
                   "in the table.")
    rows = [[n, _num(r["imagenet_top1"], ".2f"), r.get("tag_top1_source", "—"),
             _num(r["ms_per_image_no_grad"], ".3f"), _num(r["ms_per_image_grad"], ".3f"),
             _num(r["ms_per_image_grad"] / r["ms_per_image_no_grad"], ".2f"),
             _num(r.get("memory_mb_no_grad"), ".0f") if measured else "not measured (CPU)",
             _num(r.get("memory_mb_grad"), ".0f") if measured else "not measured (CPU)",
             _num(r["params"] / 1e6, ".2f")] for n, (_, r) in zip(names, t.iterrows())]
    tb, mb = int(t["time_batch"].iloc[0]), int(t["memory_batch"].iloc[0])
    header = ["model", "ImageNet top-1 (%)", "top-1 source", "ms/image no_grad", "ms/image grad", "grad / no_grad",
              f"MB batch {mb} no_grad", f"MB batch {mb} grad", "params (M)"]
    md += [f"## Models (batch {tb} for time, batch {mb} for memory)", "", table(header, rows), ""]
    return md + _compare_figures(sw, t, names, measured)


def _compare_figures(sw: Sweep, t: pd.DataFrame, names: list[str], measured: bool) -> list[str]:
    r_top1 = t["imagenet_top1"].corr(t["ms_per_image_no_grad"])
    r_params = t["params"].corr(t["ms_per_image_no_grad"])
    f1 = figures.labelled_scatter(t["ms_per_image_no_grad"], t["imagenet_top1"], names, "ms per image (no_grad)",
                                  "ImageNet top-1 (%)", f"Figure 1: top-1 vs time, Pearson r = {r_top1:.2f} "
                                  f"(seed {SEED_PEARSON_R})", sw.out / "compare_fig1_top1_vs_ms.png")
    f2 = figures.labelled_scatter(t["ms_per_image_no_grad"], t["params"] / 1e6, names, "ms per image (no_grad)",
                                  "trainable parameters (M)",
                                  f"Figure 2: parameters vs time, Pearson r = {r_params:.2f}",
                                  sw.out / "compare_fig2_params_vs_ms.png")
    f3 = figures.grouped_bars(names, {"no_grad": list(t["ms_per_image_no_grad"]), "grad": list(t["ms_per_image_grad"])},
                              "ms per image (batch 8)", "Figure 3: time with and without torch.no_grad()",
                              sw.out / "compare_fig3_no_grad_time.png")
    md = ["## Figures", "",
          f"Pearson r between ImageNet top-1 and ms/image: **{r_top1:.2f}** (seed: {SEED_PEARSON_R}, for \"inference "
          f"speed per image\", which its text does not define further); between parameters and ms/image: "
          f"{r_params:.2f} (the seed saw no correlation).", "",
          f"![Figure 1]({f1.name})", f"![Figure 2]({f2.name})", f"![Figure 3]({f3.name})"]
    if measured:
        f4 = figures.grouped_bars(names, {"no_grad": list(t["memory_mb_no_grad"]), "grad": list(t["memory_mb_grad"])},
                                  "MB held with the output (batch 64)", "Figure 4: memory with and without no_grad",
                                  sw.out / "compare_fig4_no_grad_memory.png")
        md.append(f"![Figure 4]({f4.name})")
    else:
        md += ["", "Figure 4 (memory with and without `no_grad`): not measured. These trials ran on the CPU, "
                   "which has no allocator to read; run `python -m orchestrator sweep compare --profile full` "
                   "on a GPU machine or cluster."]
    return md + [""]


def robustness_report(sw: Sweep) -> list[str]:
    t = sw.trials.set_index("model")
    seeds = seed_results()["robustness_gaussian_noise_cifar100"]
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
            row += [pct(ours), seed_pct(seed), diff(ours, seed)]
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


def cross_report(sw: Sweep) -> list[str]:
    t = sw.trials.sort_values("prompt_from").set_index("prompt_from")
    md = sw.header("Visual prompts on CIFAR-110 (seed section 2.5)",
                   "Top-1 (%) of one 110-way classifier (CIFAR-10 classes first, CIFAR-100 labels + 10) over both "
                   "test sets, with the padding prompt learnt on each dataset. The seed report stops at this "
                   "section, so there is no seed number to set beside these.")
    rows = [[f"{d} ({'10' if d == 'cifar10' else '100'}-way own task)", pct(r["own_acc"]), pct(r["cifar10_acc"]),
             pct(r["cifar100_acc"]), pct(r["combined_acc"]), pct(r.get("cifar10_as_cifar100")),
             pct(r.get("cifar100_as_cifar10"))] for d, r in t.iterrows()]
    header = ["prompt learnt on", "own task", "110-way: CIFAR-10 part", "CIFAR-100 part", "combined",
              "CIFAR-10 images given a CIFAR-100 class", "CIFAR-100 images given a CIFAR-10 class"]
    md += ["## 110-way classification", "", table(header, rows), ""]
    parts = ["own task", "CIFAR-10 part", "CIFAR-100 part", "combined"]
    series = {f"prompt from {d}": [100 * r[k] for k in ("own_acc", "cifar10_acc", "cifar100_acc", "combined_acc")]
              for d, r in t.iterrows()}
    path = figures.grouped_bars(parts, series, "test top-1 (%)", "CIFAR-110 with each padding prompt",
                                sw.out / "cross_bars.png")
    return md + [f"![CIFAR-110]({path.name})", ""]
