"""A sweep read back from MLflow for its report: its parent run, one row per trial (child run),
and the best-on-validation trial of each grid cell, grouped by the cell each trial logged."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

from clip_prompt_sweeps.errors import UserError
from clip_prompt_sweeps.names import REPLICATE_KEY, cell_axes, is_replicate_cell
from clip_prompt_sweeps.store.records import ParentRecord, TrialRecord, served_by
from clip_prompt_sweeps.store.runs import current_trials, find_parent
from reports.markdown import code, pct, text
from reports.reference import seed_backbone
from reports.stats import ci_text

LEARNED_SCORE = "best_val_acc"      # what every trial of a sweep that learns logs once it has an epoch


@dataclass
class SweepRuns:
    client: MlflowClient
    parent: ParentRecord
    trials: pd.DataFrame
    out: Path
    superseded: int = 0         # runs a resume set aside (kept in MLflow, not in the tables)
    replicates: pd.DataFrame = field(default_factory=pd.DataFrame)  # `--replicates` runs; `of_cell` names their cell
    nodes: int = 0              # machines that ran at least one trial

    @property
    def synthetic(self) -> bool:
        return self.parent.data_kind == "synthetic"

    def header(self, title: str, note: str | None = None) -> list[str]:
        kind = (" — SYNTHETIC DATA (smoke profile; not comparable with the seed)" if self.synthetic else
                " — SMOKE PROFILE (not comparable with the seed)" if self.parent.profile == "smoke"
                else "")
        status = self.trials["status"].value_counts().to_dict() if len(self.trials) else {}
        return [f"# {title}{kind}", "",
                f"MLflow parent run {code(self.parent.run_id)} (profile {code(self.parent.profile)}, "
                f"search {code(self.parent.search)}, commit {code(self.parent.git_commit[:10])}): "
                f"{len(self.trials)} trials, " + ", ".join(f"{v} {k}" for k, v in sorted(status.items()))
                + (f"; {self.nodes} node{'s' if self.nodes != 1 else ''} ran them." if self.nodes else ".")
                + (f" {len(self.replicates)} replicate run(s) of the chosen learning rates." if len(self.replicates) else "")
                + (f" {self.superseded} run(s) superseded on resume, left out." if self.superseded else ""),
                *self.progress(), *self.models(),
                note or "Accuracies are test top-1 (%) of the best-on-validation epoch of the best learning "
                "rate of each cell (chosen on validation accuracy). Δ = ours − seed.", ""]

    def models(self) -> list[str]:
        """Which backbones and template sets the trials used, where they were CLIP trials."""
        parts = [f"{what}: " + ", ".join(code(v) for v in sorted(self.trials[col].dropna().astype(str).unique()))
                 for col, what in (("backbone", "Backbones"), ("template_set", "Template sets")) if col in self.trials]
        return ["; ".join(parts) + ".", ""] if parts else []

    def progress(self) -> list[str]:
        """For a sweep still running (or interrupted): how far it is, and which cells have a
        trial still running (their numbers are the best so far)."""
        if self.parent.status == "FINISHED":
            return []
        cells, per_cell = self.parent.cells, self.parent.samples_per_cell
        planned = cells * per_cell if cells is not None and per_cell is not None else len(self.trials)
        running = self.trials[self.trials["status"] == "RUNNING"] if len(self.trials) else self.trials
        done = len(self.trials) - len(running)
        state = "still running" if self.parent.status == "RUNNING" else "interrupted (`sweep --resume` continues it)"
        cells = sorted(set(running["cell"])) if len(running) else []
        return [f"**This sweep is {state}: {done} of {planned} trials done.**" +
                (" Cells with a trial still running (their numbers are the best so far): " +
                 "; ".join(text(c) for c in cells) + "." if cells else ""), ""]


def load_sweep(client: MlflowClient, name: str, out: Path, run_id: str | None = None,
               score: str = LEARNED_SCORE) -> SweepRuns:
    """The sweep's latest parent run (or `run_id`) and its trials; `score` is what every
    finished trial of it has (its metric, or the best so far where it learns)."""
    parent = find_parent(client, name, run_id)
    runs, superseded = current_trials(client, parent)
    trials = trial_frame(runs)
    if trials.empty or score not in trials:
        raise UserError(f"sweep run {parent.run_id} has no finished trials yet; "
                        f"wait for it or run `python -m orchestrator sweep {name}` again")
    replicate = trials["cell"].map(lambda c: is_replicate_cell(str(c)))
    replicates = trials[replicate & (trials["status"] == "FINISHED")]
    replicates = replicates.assign(of_cell=replicates["cell"].map(base_cell))
    return SweepRuns(client, parent, trials[~replicate].reset_index(drop=True), out, superseded,
                     replicates.reset_index(drop=True), served_by(runs))


def base_cell(key: str) -> str:
    """A replicate's cell key without its `replicate=k` part: the tuned cell it reruns."""
    return ",".join(p for p in str(key).split(",") if p.split("=", 1)[0] != REPLICATE_KEY)


def replicate_values(sw: "SweepRuns", cell: str, metric: str = "test_acc") -> list[float]:
    """The replicates' values of a tuned cell (none without --replicates)."""
    if sw.replicates.empty or metric not in sw.replicates:
        return []
    return [float(v) for v in sw.replicates.loc[sw.replicates["of_cell"] == cell, metric] if v == v]


def _typed(value: str):
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def trial_frame(runs: list[TrialRecord]) -> pd.DataFrame:
    """One row per child run: params (typed), last metrics, tags (as tag_NAME), status, stop
    reason, cell, run id."""
    rows = [{**{k: _typed(v) for k, v in r.params.items()}, **r.metrics,
             **{f"tag_{k}": v for k, v in r.tags.items()},
             "status": r.status, "stop_reason": r.stop_reason, "cell": r.cell, "run_id": r.run_id} for r in runs]
    return with_backbone(pd.DataFrame(rows))


def with_backbone(trials: pd.DataFrame) -> pd.DataFrame:
    """A CLIP trial's backbone as one `MODEL:TAG` column, whether it was set as `backbone` (a grid
    axis) or as `model` and `pretrained`; and its template set ('single' where none was logged)."""
    if "model" not in trials or "pretrained" not in trials:
        return trials
    combined = trials["model"].astype(str) + ":" + trials["pretrained"].astype(str)
    given = trials["backbone"].fillna("").astype(str) if "backbone" in trials else pd.Series("", index=trials.index)
    trials = trials.assign(backbone=given.where(given != "", combined))
    if "template" in trials or "template_set" in trials:
        sets = trials["template_set"].astype(object) if "template_set" in trials else pd.Series(
            None, index=trials.index, dtype=object)
        trials = trials.assign(template_set=sets.where(sets.notna(), "single").astype(str))
    return trials


def grid_axes(trials: pd.DataFrame) -> list[str]:
    """The grid's axis names as the trials' cells name them, in the grid's order."""
    axes: list[str] = []
    for cell in dict.fromkeys(trials["cell"]):
        axes += [a for a in cell_axes(str(cell)) if a not in axes and a in trials]
    return axes


def best_per_cell(trials: pd.DataFrame) -> pd.DataFrame:
    """Per logged cell, the trial with the best validation accuracy among those that did not
    diverge, in the grid's order. Its test_acc is the test score of its best-on-validation epoch."""
    ok = trials[(trials.get("diverged", 0) != 1) & trials[LEARNED_SCORE].notna()]
    best = ok.loc[ok.groupby("cell")[LEARNED_SCORE].idxmax()]
    return best.sort_values(grid_axes(best) or ["cell"]).reset_index(drop=True)     # one row per cell: no ties


def panels(best: pd.DataFrame):
    """(dataset, backbone, its rows): one table per dataset x backbone."""
    by = ["dataset", "backbone"] if "backbone" in best else ["dataset"]
    for key, group in best.groupby(by, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        yield key[0], (key[1] if len(key) > 1 else ""), group


def study_rows(trials: pd.DataFrame) -> pd.DataFrame:
    """The rows the seed's own numbers stand for, for the study's "At a glance": its backbone
    (ViT-B-32, or the tiny model standing in for it at smoke size) where several were swept."""
    if "backbone" not in trials:
        return trials
    return trials[trials["backbone"].map(lambda b: seed_backbone(str(b)))]


def score_text(sw: SweepRuns, row) -> str:
    """A cell's test top-1 as a report shows it: the mean ± 95 % CI of its replicates where the
    sweep ran `--replicates`, else the tuned trial's own number."""
    values = replicate_values(sw, row["cell"])
    return ci_text(values) if values else pct(row["test_acc"])


def best_test(best: pd.DataFrame, **where) -> float | None:
    """Test score of the best-on-validation cell among the rows of `best` that match `where`."""
    for key, value in where.items():
        best = best[best[key] == value]
    return None if best.empty else float(best.sort_values(LEARNED_SCORE).iloc[-1]["test_acc"])


def other_best(sw: SweepRuns, name: str) -> dict | None:
    """dataset -> test score of the best-on-validation cell of another sweep in the same store;
    None when that sweep has not run."""
    try:
        other = load_sweep(sw.client, name, sw.out)
    except UserError:
        return None
    best = best_per_cell(other.trials)
    return {d: best_test(best, dataset=d) for d in best["dataset"].unique()}


def metric_history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
