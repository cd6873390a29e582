"""The runs of a sweep in MLflow: one experiment per sweep, a parent run per sweep (tag
`role=sweep`) and a child run per trial (tag `role=trial`, `mlflow.parentRunId`, and `cell`), and
the queries every reader and the driver share."""
from __future__ import annotations

from mlflow.entities import RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from common.errors import UserError
from store.uri import artifact_location

ROLE_TAG = "role"
SWEEP_ROLE, TRIAL_ROLE = "sweep", "trial"
SWEEP_TAG = "sweep"             # the sweep's name, on the parent and on every child
PROFILE_TAG = "profile"
CELL_TAG = "cell"               # a child's grid cell: its config's CELL_KEY
PARENT_TAG = "mlflow.parentRunId"
# A child run that a resume found beyond its cell's planned trials: kept (never deleted), KILLED,
# and left out of reports, source choice and the searcher.
SUPERSEDED_TAG = "superseded_by"
# What MLflow 3's UI opens an experiment on: its runs (model training), not GenAI traces. The UI
# guesses a kind for an experiment without one; the guesses end in "_inferred" or say none.
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"
_GUESSED_KINDS = {None, "", "no_inferred_type"}


def experiment_id(client: MlflowClient, name: str, uri: str) -> str:
    """The experiment of a sweep, created on its first run."""
    found = client.get_experiment_by_name(name)
    if found:
        mark_model_training(client, found)
        return found.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location(uri, name),
                                        tags={KIND_TAG: KIND})
    except MlflowException:
        # two new sweeps of one name racing: the other created it between our look and our create
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def mark_model_training(client: MlflowClient, experiment) -> None:
    """Tag a sweep's experiment (one an older version made) as model training, unless someone
    chose a kind for it by hand: a kind the UI only guessed is replaced."""
    kind = experiment.tags.get(KIND_TAG)
    if kind in _GUESSED_KINDS or kind.endswith("_inferred"):
        client.set_experiment_tag(experiment.experiment_id, KIND_TAG, KIND)


def parents(client: MlflowClient, experiment: str, profile: str | None = None, max_results: int = 1000) -> list:
    """A sweep's parent runs (of one profile, if given), newest first."""
    where = f"tags.{ROLE_TAG} = '{SWEEP_ROLE}'" + (f" and tags.{PROFILE_TAG} = '{profile}'" if profile else "")
    return client.search_runs([experiment], where, order_by=["attributes.start_time DESC"], max_results=max_results)


def latest_parent(client: MlflowClient | None, sweep: str, profile: str | None = None):
    """The latest parent run of a sweep (of one profile, if given), or None."""
    experiment = None if client is None else client.get_experiment_by_name(sweep)
    if experiment is None:
        return None
    runs = parents(client, experiment.experiment_id, profile, max_results=1)
    return runs[0] if runs else None


def children(client: MlflowClient, experiment: str, parent: str, status: str | None = None) -> list:
    """Every child run of a parent (of one status, if given), superseded ones included."""
    where = f"tags.`{PARENT_TAG}` = '{parent}'" + (f" and attributes.status = '{status}'" if status else "")
    return client.search_runs([experiment], where, max_results=10000)


def current_children(client: MlflowClient, parent) -> tuple[list, int]:
    """(the sweep's child runs, how many a resume set aside as superseded and left out)."""
    runs = children(client, parent.info.experiment_id, parent.info.run_id)
    kept = [r for r in runs if SUPERSEDED_TAG not in r.data.tags]
    return kept, len(runs) - len(kept)


def end_open_children(client: MlflowClient, experiment: str, parent: str, reason: str) -> None:
    """KILLED, outcome 'interrupted', for every child of `parent` still RUNNING: `--resume`
    continues each of them in its own run."""
    for run in children(client, experiment, parent, "RUNNING"):
        client.log_batch(run.info.run_id, tags=[RunTag("outcome", "interrupted"), RunTag("stop_reason", reason)])
        client.set_terminated(run.info.run_id, status="KILLED")


def find_parent(client: MlflowClient, sweep: str, run_id: str | None = None):
    """The given parent run, or the latest sweep run of the experiment named after the sweep."""
    if run_id:
        return _checked_parent(client, sweep, run_id)
    run = latest_parent(client, sweep)
    if run is None:
        raise UserError(f"no '{sweep}' sweep in MLflow at {client.tracking_uri}; run "
                        f"`python -m orchestrator sweep {sweep}` first (same --tracking-uri)")
    return run


def _checked_parent(client: MlflowClient, sweep: str, run_id: str):
    """--run-id must name a sweep's parent run, of this sweep."""
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise UserError(f"--run-id {run_id!r}: no such run in {client.tracking_uri}; the parent run ids are in "
                        f"`mlflow ui` or printed at the end of `sweep`") from None
    tags = run.data.tags
    if tags.get(ROLE_TAG) != SWEEP_ROLE:
        raise UserError(f"--run-id {run_id}: that run is not a sweep's parent run (it is "
                        f"{'a trial of one' if tags.get(ROLE_TAG) == TRIAL_ROLE else 'not from this project'}); "
                        f"pass the parent's id")
    if tags.get(SWEEP_TAG) != sweep:
        raise UserError(f"--run-id {run_id}: that run is a '{tags.get(SWEEP_TAG)}' sweep, not '{sweep}'; "
                        f"use `report {tags.get(SWEEP_TAG)}` for it")
    return run
