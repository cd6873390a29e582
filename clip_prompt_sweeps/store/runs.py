"""The runs of a sweep in MLflow: one experiment per sweep, a parent run per sweep (tag
`role=sweep`) and a child run per trial (tag `role=trial`, `mlflow.parentRunId`, and `cell`), and
the queries every reader and the driver share."""
from __future__ import annotations

import gc
import math
from contextlib import contextmanager
from dataclasses import dataclass

from mlflow.entities import RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from clip_prompt_sweeps.errors import UserError
from clip_prompt_sweeps.store.records import (
    CELL_TAG,
    SUPERSEDED_TAG,
    ParentRecord,
    TrialRecord,
    printable,
    read_parent,
    read_trial,
    run_id,
)
from clip_prompt_sweeps.store.uri import artifact_location

ROLE_TAG = "role"
SWEEP_ROLE, TRIAL_ROLE = "sweep", "trial"
SWEEP_TAG = "sweep"             # the sweep's name, on the parent and on every child
PROFILE_TAG = "profile"
PARENT_TAG = "mlflow.parentRunId"
# CELL_TAG: a child's grid cell, its config's CELL_KEY. SUPERSEDED_TAG: a child run that a resume
# found beyond its cell's planned trials: kept (never deleted), KILLED, and left out of reports,
# source choice and the searcher. Both are read back through clip_prompt_sweeps/store/records.py.
PAGE = 1000                     # runs per query page: every listing pages through all of them
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


def parents(client: MlflowClient, experiment: str, profile: str | None = None, max_results: int | None = None) -> list:
    """A sweep's parent runs (of one profile, if given), newest first: the newest `max_results`,
    else every page of them."""
    where = f"tags.{ROLE_TAG} = '{SWEEP_ROLE}'" + (f" and tags.{PROFILE_TAG} = '{profile}'" if profile else "")
    out, token = [], None
    while True:
        page = client.search_runs([experiment], where, order_by=["attributes.start_time DESC"],
                                  max_results=min(PAGE, max_results or PAGE), page_token=token)
        out += page
        token = page.token
        if not token or (max_results and len(out) >= max_results):
            return out[:max_results] if max_results else out


def latest_parent(client: MlflowClient | None, sweep: str, profile: str | None = None):
    """The latest parent run of a sweep (of one profile, if given), or None."""
    experiment = None if client is None else client.get_experiment_by_name(sweep)
    if experiment is None:
        return None
    runs = parents(client, experiment.experiment_id, profile, max_results=1)
    return runs[0] if runs else None


def children(client: MlflowClient, experiment: str, parent: str, status: str | None = None) -> list:
    """Every child run of a parent (of one status, if given), superseded ones included: every
    page of them, however many."""
    where = f"tags.`{PARENT_TAG}` = '{run_id(parent)}'" + (f" and attributes.status = '{status}'" if status else "")
    out, token = [], None
    while True:
        page = client.search_runs([experiment], where, max_results=PAGE, page_token=token)
        out += page
        token = page.token
        if not token:
            return out


def trials(client: MlflowClient, experiment: str, parent: str, status: str | None = None) -> list[TrialRecord]:
    """The child runs of a parent as checked records (clip_prompt_sweeps/store/records.py): from an SQL store's
    tables where the store is one (SQLite, PostgreSQL), else every page of MLflow's search."""
    store = client._tracking_client.store
    with _no_cycle_collection():
        runs = (_sql_children(store, experiment, parent, status) if hasattr(store, "ManagedSessionMaker")
                and str(experiment).isdigit() else children(client, experiment, parent, status))
        return [read_trial(r) for r in runs]


@contextmanager
def _no_cycle_collection():
    """Python's cycle collector paused while a read builds some twenty objects per run, none of
    them in a cycle: left on, it walks the growing heap again and again (half the time of a
    read of 20,000 runs). Reference counting still frees everything."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@dataclass
class _Info:
    run_id: str
    status: str
    start_time: int | None


@dataclass
class _Data:
    tags: dict
    params: dict
    metrics: dict


@dataclass
class _Run:
    """What `read_trial` reads of an MLflow run: its id, status and start; tags, params, the
    latest value of each metric."""
    info: _Info
    data: _Data


def _sql_children(store, experiment: str, parent: str, status: str | None) -> list[_Run]:
    """The runs `children` finds (the same runs, in MLflow's order: newest first), read from the
    SQL store's own tables, through MLflow's own table models, in four plain queries. MLflow's
    search builds some twenty ORM objects per run: 17 s for 20,000 runs on 2 cores, against 2 s."""
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlParam, SqlRun, SqlTag
    from sqlalchemy import select
    ids = select(SqlTag.run_uuid).where(SqlTag.key == PARENT_TAG, SqlTag.value == run_id(parent))
    where = [SqlRun.run_uuid.in_(ids), SqlRun.experiment_id == int(experiment), SqlRun.lifecycle_stage == "active",
             *([SqlRun.status == status] if status else [])]
    chosen = select(SqlRun.run_uuid).where(*where)
    tags, params, metrics = {}, {}, {}
    with store.ManagedSessionMaker() as session:
        rows = session.connection().execute         # plain rows: no ORM objects at all
        found = rows(select(SqlRun.run_uuid, SqlRun.status, SqlRun.start_time).where(*where)
                     .order_by(SqlRun.start_time.desc(), SqlRun.run_uuid)).all()
        for table, into in ((SqlTag, tags), (SqlParam, params)):
            for uuid, key, value in rows(select(table.run_uuid, table.key, table.value)
                                         .where(table.run_uuid.in_(chosen))):
                into.setdefault(uuid, {})[key] = value
        latest = SqlLatestMetric
        for uuid, key, value, nan in rows(select(latest.run_uuid, latest.key, latest.value, latest.is_nan)
                                          .where(latest.run_uuid.in_(chosen))):
            metrics.setdefault(uuid, {})[key] = math.nan if nan else value
    return [_Run(_Info(uuid, state, start), _Data(tags.get(uuid, {}), params.get(uuid, {}), metrics.get(uuid, {})))
            for uuid, state, start in found]


def current_trials(client: MlflowClient, parent: ParentRecord) -> tuple[list[TrialRecord], int]:
    """(the sweep's trials, how many a resume set aside as superseded and left out)."""
    runs = trials(client, parent.experiment_id, parent.run_id)
    kept = [r for r in runs if not r.superseded]
    return kept, len(runs) - len(kept)


SQL_CHUNK, SERVER_CHUNK = 500, 100      # run ids per bulk query (SQLite's variable limit; the server's)
SERVER_MAX = 25_000                     # metric values the server returns per bulk request at most


def metric_histories(client: MlflowClient, run_ids: list[str], key: str) -> dict[str, list[tuple[int, float]]]:
    """run id -> [(step, value), ...] of one metric, for many runs at once: a query per 500 runs
    on an SQL store, a request per 100 runs to a tracking server (its own bulk endpoint, the one
    its UI uses), instead of a query per run."""
    out: dict[str, list[tuple[int, float]]] = {run_id(r): [] for r in run_ids}
    store = client._tracking_client.store
    ids = list(out)
    if hasattr(store, "get_metric_history_bulk"):           # SQLite, PostgreSQL: the SQL store
        for start in range(0, len(ids), SQL_CHUNK):
            for found in store.get_metric_history_bulk(ids[start:start + SQL_CHUNK], key, max_results=2**62):
                out[found.run_id].append((found.step, found.value))
        return out
    if hasattr(store, "get_host_creds"):                    # a tracking server
        from mlflow.utils.rest_utils import http_request_safe
        for start in range(0, len(ids), SERVER_CHUNK):
            chunk = ids[start:start + SERVER_CHUNK]
            found = http_request_safe(store.get_host_creds(), "/ajax-api/2.0/mlflow/metrics/get-history-bulk",
                                      "GET", params={"run_id": chunk, "metric_key": key,
                                                     "max_results": SERVER_MAX}).json().get("metrics", [])
            if len(found) >= SERVER_MAX:        # cut at the server's limit: these runs one by one
                found = [{"run_id": r, "step": m.step, "value": m.value}
                         for r in chunk for m in client.get_metric_history(r, key)]
            for m in found:
                if m.get("run_id") in out:
                    out[m["run_id"]].append((int(m.get("step", 0)), float(m.get("value", "nan"))))
        return out
    return {r: [(m.step, m.value) for m in client.get_metric_history(r, key)] for r in ids}


def end_open_children(client: MlflowClient, experiment: str, parent: str, reason: str) -> None:
    """KILLED, outcome 'interrupted', for every child of `parent` still RUNNING: `--resume`
    continues each of them in its own run."""
    for trial in trials(client, experiment, parent, "RUNNING"):
        client.log_batch(trial.run_id, tags=[RunTag("outcome", "interrupted"), RunTag("stop_reason", reason)])
        client.set_terminated(trial.run_id, status="KILLED")


def find_parent(client: MlflowClient, sweep: str, given: str | None = None) -> ParentRecord:
    """The given parent run, or the latest sweep run of the experiment named after the sweep."""
    if given:
        return _checked_parent(client, sweep, given)
    run = latest_parent(client, sweep)
    if run is None:
        raise UserError(f"no '{sweep}' sweep in MLflow at {client.tracking_uri}; run "
                        f"`python -m orchestrator sweep {sweep}` first (same --tracking-uri)")
    return read_parent(run)


def _checked_parent(client: MlflowClient, sweep: str, given: str) -> ParentRecord:
    """--run-id must name a sweep's parent run, of this sweep."""
    try:
        run = client.get_run(run_id(given, "--run-id"))
    except MlflowException:
        raise UserError(f"--run-id {given!r}: no such run in {client.tracking_uri}; the parent run ids are in "
                        f"`mlflow ui` or printed at the end of `sweep`") from None
    role = read_trial(run).tags.get(ROLE_TAG)
    if role != SWEEP_ROLE:
        raise UserError(f"--run-id {given}: that run is not a sweep's parent run (it is "
                        f"{'a trial of one' if role == TRIAL_ROLE else 'not from this project'}); "
                        f"pass the parent's id")
    parent = read_parent(run)
    if parent.sweep != sweep:
        raise UserError(f"--run-id {given}: that run is a '{printable(parent.sweep)}' sweep, not '{sweep}'; "
                        f"use `report {printable(parent.sweep)}` for it")
    return parent
