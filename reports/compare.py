"""The report of the `compare` sweep (seed section 1.1): the models' table and Figures 1 to 4,
with Pearson r beside the seed's."""
from __future__ import annotations

import math

import pandas as pd

from reports import figures
from reports.markdown import table, text
from reports.trials import SweepRuns

SEED_PEARSON_R = 0.85       # the seed's text (1.1.a): top-1 against inference speed
NAMES = {"vgg11": "VGG11", "vgg11_bn": "VGG11-BN", "resnet18": "ResNet18", "densenet121": "DenseNet121",
         "mobilenet_v3_small": "MobileNet-v3-S", "vit_b_32": "ViT-B/32", "vit_small_patch8_224": "ViT-S/8 (timm)"}


def _num(x, fmt: str) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def _col(frame: pd.DataFrame, key: str) -> pd.Series:
    return frame[key] if key in frame else pd.Series([math.nan] * len(frame), index=frame.index)


def report(sw: SweepRuns) -> list[str]:
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


def _compare_figures(sw: SweepRuns, t: pd.DataFrame, names: list[str], measured: bool) -> list[str]:
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
