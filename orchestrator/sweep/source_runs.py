"""The driver's half of trainables/experiments/source_models.py: before Ray starts, find each cell's source
run in MLflow, read its params, metrics and best parameters, and record its run id in the
cell's config. A missing source is one line naming the sweep to run first."""
from __future__ import annotations

import tempfile
from dataclasses import replace

from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from clip_prompt_sweeps.errors import UserError
from clip_prompt_sweeps.names import BEST_ARTIFACT, cell_key
from clip_prompt_sweeps.store.records import TrialRecord, printable, read_parent, read_trial, run_id
from clip_prompt_sweeps.store.runs import SWEEP_TAG, latest_parent, trials
from clip_prompt_sweeps.store.uri import store_exists
from orchestrator.sweep.plan import SweepPlan
from trainables.experiments.source_models import Source, SourceRun


def _missing(plan: SweepPlan, source: Source, uri: str, why: str) -> UserError:
    return UserError(f"sweep '{plan.experiment.name}' needs the {source.describe()} ({why} in {uri}); run "
                     f"`python -m orchestrator sweep {source.sweep} --profile {plan.profile_name}` first "
                     f"(same --tracking-uri), or --set source_run=RUN_ID")


def _matches(trial: TrialRecord, where: dict) -> bool:
    return all(trial.params.get(k) == str(v) for k, v in where.items())


def best_source_run(client: MlflowClient | None, plan: SweepPlan, source: Source, uri: str) -> TrialRecord:
    """The best-on-validation trial of the source's cell in the latest sweep of the same profile."""
    found = latest_parent(client, source.sweep, plan.profile_name)
    if found is None:
        raise _missing(plan, source, uri, f"no '{source.sweep}' sweep of profile '{plan.profile_name}'")
    parent = read_parent(found)
    usable = [t for t in trials(client, parent.experiment_id, parent.run_id)
              if not t.superseded and _matches(t, source.where) and not t.diverged
              and t.metric("best_val_acc") is not None and t.status in ("FINISHED", "KILLED")]
    if not usable:
        raise _missing(plan, source, uri, f"no finished trial of that cell in sweep run {parent.run_id}")
    return max(usable, key=lambda t: t.metric("best_val_acc"))


def pinned_source_run(client: MlflowClient | None, plan: SweepPlan, source: Source, given: str,
                      uri: str) -> TrialRecord:
    """A run the user named with --set source_run (or a resumed sweep recorded): it must be a
    trial of the source's cell."""
    try:
        trial = read_trial(client.get_run(run_id(given, "source run"))) if client else None
    except Exception:  # noqa: BLE001 - MLflow raises several kinds for an unknown id
        trial = None
    if trial is None or trial.tags.get(SWEEP_TAG) != source.sweep or not _matches(trial, source.where):
        raise UserError(f"--set source_run={printable(given)}: no trial of the {source.describe()} has that id in {uri}; "
                        f"pick one in the MLflow UI (experiment '{source.sweep}')")
    return trial


def read_source_run(client: MlflowClient, trial: TrialRecord) -> SourceRun:
    """A source run's params, metrics and best parameters, as the trial will get them."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(trial.run_id, BEST_ARTIFACT, tmp)
        except Exception:  # noqa: BLE001 - missing artifact: one line below
            raise UserError(f"run {trial.run_id} has no {BEST_ARTIFACT} artifact; it ended before "
                            f"its first epoch, so pick another (--set source_run=RUN_ID)") from None
        tensors = load_file(path)
    return SourceRun(trial.run_id, dict(trial.params), dict(trial.metrics), tensors)


def attach_sources(plan: SweepPlan, uri: str, recorded: dict | None = None) -> tuple[SweepPlan, dict[str, SourceRun]]:
    """(the plan with each cell's `source_run` filled, run id -> SourceRun); unchanged for an
    experiment without a source. `recorded` (cell key -> run id) is what a resumed sweep started
    with; otherwise --set source_run, else the best run in MLflow."""
    source_of = plan.experiment.source
    if source_of is None:
        return plan, {}
    client = MlflowClient(uri) if store_exists(uri) else None    # a client would create the file
    filled, sources = dict(plan.filled), {}
    for cell in plan.cells:
        key = cell_key(cell)
        source = source_of(plan.typed[key])
        pinned = (recorded or {}).get(key) or plan.base.get("source_run")
        run = (pinned_source_run(client, plan, source, pinned, uri) if pinned
               else best_source_run(client, plan, source, uri))
        if run.run_id not in sources:
            sources[run.run_id] = read_source_run(client, run)
        filled[key] = {**filled.get(key, {}), "source_run": run.run_id}
    return replace(plan, filled=filled), sources
