"""Report sections of the prompt sweeps: seed Tables 2, 3 and 4, heatmaps, learning curves and the
learned padding prompt, each reproduced number beside the seed's."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient
from safetensors.numpy import load_file

from reports import figures
from reports.markdown import Markdown, code, diff, pct, seed_pct, table, text
from reports.runs import best_per_cell, best_test, child_runs, find_parent, metric_history, trial_frame
from reports.seed import seed_best_deep, seed_deep, seed_layers, seed_visual, seed_zeroshot
from search_spaces import get_sweep
from trainables import UserError


@dataclass
class Sweep:
    client: MlflowClient
    parent: object
    trials: pd.DataFrame
    out: Path
    superseded: int = 0         # runs a resume set aside (kept in MLflow, not in the tables)

    @property
    def synthetic(self) -> bool:
        return self.parent.data.tags.get("data_kind") == "synthetic"

    def header(self, title: str, note: str | None = None) -> list[str]:
        kind = (" — SYNTHETIC DATA (smoke profile; not comparable with the seed)" if self.synthetic else
                " — SMOKE PROFILE (not comparable with the seed)" if self.parent.data.tags.get("profile") == "smoke"
                else "")
        tags = self.parent.data.tags
        status = self.trials["status"].value_counts().to_dict() if len(self.trials) else {}
        return [f"# {title}{kind}", "",
                f"MLflow parent run {code(self.parent.info.run_id)} (profile {code(tags.get('profile'))}, "
                f"search {code(tags.get('search'))}, commit {code(tags.get('git_commit', '')[:10])}): "
                f"{len(self.trials)} trials, " + ", ".join(f"{v} {k}" for k, v in sorted(status.items())) + "."
                + (f" {self.superseded} run(s) superseded on resume, left out." if self.superseded else ""),
                *self.progress(),
                note or "Accuracies are test top-1 (%) of the best-on-validation epoch of the best learning "
                "rate of each cell (chosen on validation accuracy). Δ = ours − seed.", ""]

    def progress(self) -> list[str]:
        """For a sweep still running (or interrupted): how far it is, and which cells have a
        trial still running (their numbers are the best so far)."""
        if self.parent.info.status == "FINISHED":
            return []
        params = self.parent.data.params
        try:
            planned = int(params["cells"]) * int(params["samples_per_cell"])
        except (KeyError, ValueError):
            planned = len(self.trials)
        running = self.trials[self.trials["status"] == "RUNNING"] if len(self.trials) else self.trials
        done = len(self.trials) - len(running)
        state = "still running" if self.parent.info.status == "RUNNING" else "interrupted (`sweep --resume` continues it)"
        cells = sorted(set(running["cell"])) if len(running) else []
        return [f"**This sweep is {state}: {done} of {planned} trials done.**" +
                (" Cells with a trial still running (their numbers are the best so far): " +
                 "; ".join(text(c) for c in cells) + "." if cells else ""), ""]


def load_sweep(client: MlflowClient, name: str, out: Path, run_id: str | None = None) -> Sweep:
    parent = find_parent(client, name, run_id)
    runs, superseded = child_runs(client, parent)
    trials = trial_frame(client, parent, runs)
    # what every finished trial has: the sweep's metric, or its best so far where it learns
    metric = get_sweep(name).metric
    score = "best_val_acc" if metric == "val_acc" else metric
    if trials.empty or score not in trials:
        raise UserError(f"sweep run {parent.info.run_id} has no finished trials yet; "
                        f"wait for it or run `python -m orchestrator sweep {name}` again")
    return Sweep(client, parent, trials, out, superseded)


def _layer_to_seed(layers: list[int]) -> dict[int, int]:
    """The smoke grid's first/middle/last layers stand for the seed's 0/6/11, by rank."""
    seed = seed_layers()
    ours = sorted(set(layers))
    return dict(zip(ours, seed)) if len(ours) == len(seed) else {l: l for l in ours}


def table3(best: pd.DataFrame) -> str:
    to_seed = _layer_to_seed(best["layer"].tolist())
    rows = []
    for (dataset, layer, n), group in best.groupby(["dataset", "layer", "n_prompts"]):
        row = [dataset, layer if to_seed[layer] == layer else f"{layer} (seed {to_seed[layer]})", n]
        for position in ("front", "back"):
            ours = group.loc[group["position"] == position, "test_acc"]
            ours = float(ours.iloc[0]) if len(ours) else None
            seed = seed_deep(dataset, to_seed[layer], n, position)
            row += [pct(ours), seed_pct(seed), diff(ours, seed)]
        rows.append(row)
    header = ["dataset", "layer", "prompts", "front", "seed", "Δ", "back", "seed", "Δ"]
    return table(header, rows)


def deep_report(sw: Sweep) -> list[str]:
    best = best_per_cell(sw.trials, ["dataset", "layer", "n_prompts", "position"])
    md = sw.header("Deep prompts (seed section 2.3)")
    md += ["## Table 3: dataset × injection layer × prompts × position", "",
           "`front` prepends the prompts and reads out token 0, a prompt token (the seed's setting); "
           "`back` appends them and reads out CLS (see trainables/prompts.py).", "", table3(best), ""]
    md += table4(sw, best)
    md += ["## Heatmaps", ""]
    for dataset in sorted(best["dataset"].unique()):
        for position in sorted(best["position"].unique()):
            path = figures.heatmap(best, dataset, position, sw.out / figures.figure_name("deep_heatmap", dataset, position))
            md.append(f"![{dataset} {position}]({path.name})")
    md += ["", "## Learning curves of the best trials", ""]
    md += _curves(sw, best, "deep")
    return md


def table4(sw: Sweep, deep_best: pd.DataFrame) -> list[str]:
    visual = other_best(sw, "visual", ["dataset", "prompt", "prompt_size"])
    rows = []
    for dataset in sorted(deep_best["dataset"].unique()):
        deep = float(deep_best[deep_best["dataset"] == dataset].sort_values("best_val_acc").iloc[-1]["test_acc"])
        seed_v = seed_results_visual_best(dataset)
        vis = visual.get(dataset) if visual is not None else None
        rows.append([dataset, pct(deep), seed_pct(seed_best_deep(dataset)), diff(deep, seed_best_deep(dataset)),
                     pct(vis) if visual is not None else Markdown("run `sweep visual`"), seed_pct(seed_v), diff(vis, seed_v),
                     seed_pct(seed_zeroshot(dataset))])
    header = ["dataset", "best deep", "seed", "Δ", "best visual", "seed", "Δ", "seed zero-shot baseline"]
    return ["## Table 4: best deep prompt vs best visual prompt vs baseline", "", table(header, rows), ""]


def seed_results_visual_best(dataset: str) -> float | None:
    values = [v for v in (seed_visual(dataset, "padding"), seed_visual(dataset, "fixed_patch")) if v is not None]
    return max(values) if values else None


def other_best(sw: Sweep, name: str, cells: list[str]) -> dict | None:
    """dataset -> test score of the best-on-validation cell of another sweep in the same store;
    None when that sweep has not run."""
    try:
        other = load_sweep(sw.client, name, sw.out)
    except UserError:
        return None
    best = best_per_cell(other.trials, cells)
    return {d: best_test(best, dataset=d) for d in best["dataset"].unique()}


def visual_report(sw: Sweep) -> list[str]:
    best = best_per_cell(sw.trials, ["dataset", "prompt", "prompt_size"])
    md = sw.header("Visual prompts (seed section 2.2)")
    rows = []
    for dataset in sorted(best["dataset"].unique()):
        row = [dataset]
        for prompt in ("fixed_patch", "padding"):
            ours, seed = best_test(best, dataset=dataset, prompt=prompt), seed_visual(dataset, prompt)
            row += [pct(ours), seed_pct(seed), diff(ours, seed)]
        rows.append(row + [seed_pct(seed_zeroshot(dataset))])
    header = ["dataset", "fixed patch", "seed", "Δ", "padding", "seed", "Δ", "seed zero-shot baseline"]
    md += ["## Table 2: prompt types", "", table(header, rows), ""]
    md += ["## Learned padding prompts", ""]
    for _, row in best[best["prompt"] == "padding"].iterrows():
        path = _padding_figure(sw, row)
        md.append(f"![padding prompt {text(row['dataset'])}]({path.name})" if path else
                  f"The padding prompt of {text(row['dataset'])} is not logged yet: its trial is still running.")
    md += ["", "## Learning curves of the best trials", ""]
    return md + _curves(sw, best, "visual")


def _curves(sw: Sweep, best: pd.DataFrame, name: str) -> list[str]:
    lines = []
    for dataset in sorted(best["dataset"].unique()):
        top = best[best["dataset"] == dataset].sort_values("best_val_acc", ascending=False).head(4)
        curves = {f"{r['cell'].replace('dataset=' + dataset + ',', '')} lr={r['lr']:.3g}":
                  metric_history(sw.client, r["run_id"], "val_acc") for _, r in top.iterrows()}
        path = figures.learning_curves(curves, f"{dataset}: best cells", sw.out / figures.figure_name(name, "curves", dataset))
        lines.append(f"![curves {text(dataset)}]({path.name})")
    return lines + [""]


def padding_image(tensors: dict) -> np.ndarray:
    """(3, S, S) image of a PaddingPrompt's parameters (top, bottom, left, right)."""
    top, bottom, left, right = (tensors[k][0] for k in ("top", "bottom", "left", "right"))
    middle = np.zeros((3, left.shape[1], top.shape[2] - 2 * left.shape[2]), dtype=top.dtype)
    return np.concatenate([top, np.concatenate([left, middle, right], axis=2), bottom], axis=1)


def _padding_figure(sw: Sweep, row) -> Path | None:
    """The learned prompt as an image; None while its trial runs (artifacts come at its end)."""
    from mlflow.exceptions import MlflowException
    if row["status"] == "RUNNING":
        return None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = sw.client.download_artifacts(row["run_id"], "learned/best.safetensors", tmp)
            image = padding_image(load_file(local))
        except (MlflowException, OSError, KeyError, ValueError):
            return None
    title = f"{row['dataset']}: padding {row['prompt_size']} (test {100 * row['test_acc']:.1f}%)"
    return figures.prompt_image(image, title, sw.out / figures.figure_name("visual_padding", row["dataset"]))
