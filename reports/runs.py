"""Reading a sweep back from MLflow: its parent run and one row per trial (child run)."""
from __future__ import annotations

import pandas as pd
from mlflow.tracking import MlflowClient

from trainables import UserError

# A child run that a resume found beyond its cell's planned trials: kept (never deleted), KILLED,
# and left out of reports, source choice and the searcher.
SUPERSEDED_TAG = "superseded_by"


def find_parent(client: MlflowClient, sweep: str, run_id: str | None = None):
    """The given parent run, or the latest sweep run of the experiment named after the sweep."""
    if run_id:
        return _checked_parent(client, sweep, run_id)
    experiment = client.get_experiment_by_name(sweep)
    runs = [] if experiment is None else client.search_runs(
        [experiment.experiment_id], "tags.role = 'sweep'", order_by=["attributes.start_time DESC"],
        max_results=1)
    if not runs:
        raise UserError(f"no '{sweep}' sweep in MLflow at {client.tracking_uri}; run "
                        f"`python -m orchestrator sweep {sweep}` first (same --tracking-uri)")
    return runs[0]


def _checked_parent(client: MlflowClient, sweep: str, run_id: str):
    """--run-id must name a sweep's parent run, of this sweep."""
    from mlflow.exceptions import MlflowException
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise UserError(f"--run-id {run_id!r}: no such run in {client.tracking_uri}; the parent run ids are in "
                        f"`mlflow ui` or printed at the end of `sweep`") from None
    tags = run.data.tags
    if tags.get("role") != "sweep":
        raise UserError(f"--run-id {run_id}: that run is not a sweep's parent run (it is "
                        f"{'a trial of one' if tags.get('role') == 'trial' else 'not from this project'}); "
                        f"pass the parent's id")
    if tags.get("sweep") != sweep:
        raise UserError(f"--run-id {run_id}: that run is a '{tags.get('sweep')}' sweep, not '{sweep}'; "
                        f"use `report {tags.get('sweep')}` for it")
    return run


def _typed(value: str):
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def child_runs(client: MlflowClient, parent) -> tuple[list, int]:
    """(the sweep's child runs, how many a resume set aside as superseded and left out)."""
    runs = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
                              max_results=10000)
    kept = [r for r in runs if SUPERSEDED_TAG not in r.data.tags]
    return kept, len(runs) - len(kept)


def trial_frame(client: MlflowClient, parent, runs: list | None = None) -> pd.DataFrame:
    """One row per child run: params (typed), last metrics, tags (as tag_NAME), status, stop
    reason, run id."""
    runs = child_runs(client, parent)[0] if runs is None else runs
    rows = [{**{k: _typed(v) for k, v in r.data.params.items()}, **r.data.metrics,
             **{f"tag_{k}": v for k, v in r.data.tags.items() if not k.startswith("mlflow.")},
             "status": r.info.status, "stop_reason": r.data.tags.get("stop_reason", ""),
             "cell": r.data.tags.get("cell", ""), "run_id": r.info.run_id} for r in runs]
    return pd.DataFrame(rows)


def best_per_cell(trials: pd.DataFrame, cell_cols: list[str]) -> pd.DataFrame:
    """Per cell, the trial with the best validation accuracy among those that did not diverge.
    Its test_acc is the test score of its best-on-validation epoch."""
    ok = trials[(trials.get("diverged", 0) != 1) & trials["best_val_acc"].notna()]
    idx = ok.groupby(cell_cols)["best_val_acc"].idxmax()
    return ok.loc[idx].reset_index(drop=True)


def best_test(best: pd.DataFrame, **where) -> float | None:
    """Test score of the best-on-validation cell among the rows of `best` that match `where`."""
    for key, value in where.items():
        best = best[best[key] == value]
    return None if best.empty else float(best.sort_values("best_val_acc").iloc[-1]["test_acc"])


def metric_history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in client.get_metric_history(run_id, key)]

