"""The driver's half of trainables/sources.py: before Ray starts, find each cell's source run in
MLflow, read its params, metrics and best parameters, and record its run id in the cell's
config. A missing source is one line naming the sweep to run first."""
from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from orchestrator.plan import SweepPlan
from reports.runs import SUPERSEDED_TAG
from search_spaces import cell_key
from trainables import UserError
from trainables.config import from_dict
from trainables.sources import Learned, Source

BEST_ARTIFACT = "learned/best.safetensors"


def _store_exists(uri: str) -> bool:
    return not uri.startswith("sqlite:///") or Path(uri[len("sqlite:///"):]).is_file()


def _missing(plan: SweepPlan, source: Source, uri: str, why: str) -> UserError:
    return UserError(f"sweep '{plan.sweep.name}' needs the {source.describe()} ({why} in {uri}); run "
                     f"`python -m orchestrator sweep {source.sweep} --profile {plan.profile_name}` first "
                     f"(same --tracking-uri), or --set source_run=RUN_ID")


def _matches(run, where: dict) -> bool:
    return all(run.data.params.get(k) == str(v) for k, v in where.items())


def best_source_run(client: MlflowClient | None, plan: SweepPlan, source: Source, uri: str):
    """The best-on-validation trial of the source's cell in the latest sweep of the same profile."""
    exp = None if client is None else client.get_experiment_by_name(source.sweep)
    parents = [] if exp is None else client.search_runs(
        [exp.experiment_id], f"tags.role = 'sweep' and tags.profile = '{plan.profile_name}'",
        order_by=["attributes.start_time DESC"], max_results=1)
    if not parents:
        raise _missing(plan, source, uri, f"no '{source.sweep}' sweep of profile '{plan.profile_name}'")
    parent = parents[0].info.run_id
    children = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent}'",
                                  max_results=10000)
    usable = [r for r in children if SUPERSEDED_TAG not in r.data.tags and _matches(r, source.where) and r.data.metrics.get("diverged", 0) != 1
              and "best_val_acc" in r.data.metrics and r.info.status in ("FINISHED", "KILLED")]
    if not usable:
        raise _missing(plan, source, uri, f"no finished trial of that cell in sweep run {parent}")
    return max(usable, key=lambda r: r.data.metrics["best_val_acc"])


def pinned_source_run(client: MlflowClient | None, plan: SweepPlan, source: Source, run_id: str, uri: str):
    """A run the user named with --set source_run: it must be a trial of the source's cell."""
    try:
        run = client.get_run(run_id) if client else None
    except Exception:  # noqa: BLE001 - MLflow raises several kinds for an unknown id
        run = None
    if run is None or run.data.tags.get("sweep") != source.sweep or not _matches(run, source.where):
        raise UserError(f"--set source_run={run_id}: no trial of the {source.describe()} has that id in {uri}; "
                        f"pick one in the MLflow UI (experiment '{source.sweep}')")
    return run


def read_learned(client: MlflowClient, run) -> Learned:
    """A source run's params, metrics and best parameters, as the trial will get them."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run.info.run_id, BEST_ARTIFACT, tmp)
        except Exception:  # noqa: BLE001 - missing artifact: one line below
            raise UserError(f"run {run.info.run_id} has no {BEST_ARTIFACT} artifact; it ended before "
                            f"its first epoch, so pick another (--set source_run=RUN_ID)") from None
        tensors = load_file(path)
    return Learned(run.info.run_id, dict(run.data.params), dict(run.data.metrics), tensors)


def attach_sources(plan: SweepPlan, uri: str, recorded: dict | None = None) -> tuple[SweepPlan, dict[str, Learned]]:
    """(the plan with each cell's `source_run` filled, run id -> Learned); unchanged for a
    trainable without a source. `recorded` (cell key -> run id) is what a resumed sweep started
    with; otherwise --set source_run, else the best run in MLflow."""
    spec = plan.trainable
    if spec.source is None:
        return plan, {}
    client = MlflowClient(uri) if _store_exists(uri) else None    # a client would create the file
    extra, learned = dict(plan.extra), {}
    for cell in plan.cells:
        source = spec.source(from_dict(spec.config_cls, plan.config(cell, None)))
        pinned = (recorded or {}).get(cell_key(cell)) or plan.base.get("source_run")
        run = (pinned_source_run(client, plan, source, pinned, uri) if pinned
               else best_source_run(client, plan, source, uri))
        if run.info.run_id not in learned:
            learned[run.info.run_id] = read_learned(client, run)
        extra[cell_key(cell)] = {**extra.get(cell_key(cell), {}), "source_run": run.info.run_id}
    return replace(plan, extra=extra), learned
