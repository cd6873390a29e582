"""The report of the `visual` sweep (seed section 2.2): Table 2, the learned padding prompts and
learning curves, each number beside the seed's."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from clip_prompt_sweeps.names import BEST_ARTIFACT, DATASETS
from reports import figures
from reports.curves import best_curves
from reports.markdown import diff, pct, reference_pct, table, text
from reports.reference import reference_visual, reference_zeroshot, seed_backbone
from reports.section import HeadlineRow
from reports.trials import (
    SweepRuns,
    best_per_cell,
    best_test,
    panels,
    score_text,
    study_rows,
)

PROMPTS = ("fixed_patch", "padding")


def report(sw: SweepRuns) -> list[str]:
    best = best_per_cell(sw.trials)
    md = sw.header("Visual prompts (seed section 2.2)")
    rows = []
    many = "backbone" in best and best["backbone"].nunique() > 1
    for dataset, backbone, group in panels(best):
        row = [dataset, *([backbone] if many else [])]
        with_seed = seed_backbone(backbone) if backbone else True
        for prompt in PROMPTS:
            mine = group[group["prompt"] == prompt].sort_values("best_val_acc")
            ours = float(mine["test_acc"].iloc[-1]) if len(mine) else None
            seed = reference_visual(dataset, prompt) if with_seed else None
            row += [score_text(sw, mine.iloc[-1]) if len(mine) else pct(None), reference_pct(seed), diff(ours, seed)]
        rows.append(row + [reference_pct(reference_zeroshot(dataset) if with_seed else None)])
    header = ["dataset", *(["backbone"] if many else []), "fixed patch", "seed", "Δ", "padding", "seed", "Δ",
              "seed zero-shot baseline"]
    md += ["## Table 2: prompt types", "", table(header, rows), ""]
    md += ["## Learned padding prompts", ""]
    for _, row in best[best["prompt"] == "padding"].iterrows():
        path = _padding_figure(sw, row)
        md.append(f"![padding prompt {text(row['dataset'])}]({path.name})" if path else
                  f"The padding prompt of {text(row['dataset'])} is not logged yet: its trial is still running.")
    md += ["", "## Learning curves of the best trials", ""]
    return md + best_curves(sw, best, "visual")


def headline(sw: SweepRuns) -> list[HeadlineRow]:
    """Its rows of "At a glance"."""
    best = best_per_cell(study_rows(sw.trials))
    return [HeadlineRow(f"{p.replace('_', ' ')} prompt, {d}", best_test(best, dataset=d, prompt=p), reference_visual(d, p))
            for p in ("padding", "fixed_patch") for d in DATASETS]


MAX_PROMPT_FILE = 64 * 2**20       # a padding prompt of a 1,024 px model is a few MB


def padding_image(tensors: dict) -> np.ndarray:
    """(3, S, S) image of a PaddingPrompt's parameters (top, bottom, left, right); ValueError
    for tensors of any other shape (the file is an artifact anyone could have logged)."""
    try:
        top, bottom, left, right = (np.asarray(tensors[k]) for k in ("top", "bottom", "left", "right"))
    except KeyError as err:
        raise ValueError(f"no {err} tensor") from None
    if not all(t.ndim == 4 and t.shape[:2] == (1, 3) for t in (top, bottom, left, right)):
        raise ValueError("not (1, 3, H, W) tensors")
    pad, size = top.shape[2], top.shape[3]
    if bottom.shape != top.shape or left.shape != (1, 3, size - 2 * pad, pad) or right.shape != left.shape:
        raise ValueError("the four sides do not fit one image")
    top, bottom, left, right = top[0], bottom[0], left[0], right[0]
    middle = np.zeros((3, size - 2 * pad, size - 2 * pad), dtype=top.dtype)
    return np.concatenate([top, np.concatenate([left, middle, right], axis=2), bottom], axis=1)


def _padding_figure(sw: SweepRuns, row) -> Path | None:
    """The learned prompt as an image; None while its trial runs (artifacts come at its end)."""
    if row["status"] == "RUNNING":
        return None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = sw.client.download_artifacts(row["run_id"], BEST_ARTIFACT, tmp)
            if os.path.getsize(local) > MAX_PROMPT_FILE:
                return None
            image = padding_image(load_file(local))
        except Exception:  # noqa: BLE001 - a missing artifact, or a file of any shape: no figure
            return None
    title = f"{row['dataset']}: padding {row['prompt_size']} (test {100 * row['test_acc']:.1f}%)"
    return figures.prompt_image(image, title, sw.out / figures.figure_name("visual_padding", row["dataset"]))
