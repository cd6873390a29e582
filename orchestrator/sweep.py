"""A sweep end to end: Ray, a parent MLflow run, a Tuner with per-cell ASHA and Optuna, and the
child runs closed whatever happens."""
from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

from mlflow.tracking import MlflowClient

from orchestrator.cluster import check_storage, connect, resolve_address, resolve_storage
from orchestrator.plan import SweepPlan
from orchestrator.preflight import check_inputs
from orchestrator.schedulers import PerCellASHA
from orchestrator.searchers import CellSearcher
from orchestrator.sources import attach_sources
from orchestrator.tracking import (MLflowTrials, check_tracking, end_open_children, end_parent,
                                   experiment_id, git_commit, prepare_store, resolve_tracking_uri)
from trainables import UserError

SOURCES_TAG = "source_runs"


@dataclass(frozen=True)
class SweepOptions:
    address: str | None = None
    tracking_uri: str | None = None
    storage_path: str | None = None     # None: $ORCHESTRATOR_STORAGE_PATH, else ~/ray_results
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None  # None: 0.5 where the cluster has GPUs, else 0
    max_concurrent: int | None = None
    search: str = "tpe"
    seed: int = 0
    max_failures: int = 2
    verbose: int = 1                     # Ray's progress table (0: quiet)
    resume: bool = False                 # continue the latest interrupted sweep (Tuner.restore)


@dataclass(frozen=True)
class SweepOutcome:
    parent_run_id: str
    tracking_uri: str
    experiment: str
    trials: int
    errors: int


def _gpus_per_trial(requested: float | None) -> float:
    import ray
    if requested is not None:
        return requested
    return 0.5 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


def _parent_run(client: MlflowClient, plan: SweepPlan, uri: str, opts: SweepOptions) -> tuple[str, str, dict]:
    exp = experiment_id(client, plan.sweep.name, uri)
    tags = {"sweep": plan.sweep.name, "profile": plan.profile_name,
            "data_kind": str(plan.base.get("data", "real")), "git_commit": git_commit()}
    run = client.create_run(exp, run_name=f"{plan.sweep.name}-{plan.profile_name}-{time.strftime('%Y%m%d-%H%M%S')}",
                            tags={**tags, "role": "sweep", "search": opts.search})
    params = {"cells": len(plan.cells), "samples_per_cell": plan.profile.samples,
              **({"lr_low": plan.profile.lr.low, "lr_high": plan.profile.lr.high} if plan.profile.lr else {}),
              "search": opts.search,
              "scheduler": "per-cell ASHA", "grace_period": plan.profile.grace_period,
              "reduction_factor": plan.profile.reduction_factor, **plan.base}
    for key, value in params.items():
        client.log_param(run.info.run_id, key, value)
    if plan.extra:      # which source run each cell evaluates (robustness, cross): kept for --resume
        client.set_tag(run.info.run_id, SOURCES_TAG, json.dumps({k: v["source_run"] for k, v in plan.extra.items()}))
    return exp, run.info.run_id, {**tags, "role": "trial"}


def _recorded_sources(uri: str, parent: str) -> dict | None:
    tag = MlflowClient(uri).get_run(parent).data.tags.get(SOURCES_TAG)
    return json.loads(tag) if tag else None


@contextlib.contextmanager
def _pending_trials(n: int | None):
    """With a custom searcher Tune keeps one trial pending at a time: the autoscaler then sees
    the demand of one trial, and a cluster scales up (and fills) one trial at a time. A wave of
    one pending trial per cell fills the nodes at once; a cell's next learning rate is still
    proposed only after its previous one started. $TUNE_MAX_PENDING_TRIALS_PG, if set, wins."""
    if n is None or "TUNE_MAX_PENDING_TRIALS_PG" in os.environ:
        yield
        return
    os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = str(max(1, n))
    try:
        yield
    finally:
        del os.environ["TUNE_MAX_PENDING_TRIALS_PG"]


def _exclusive(plan: SweepPlan, opts: SweepOptions) -> SweepOptions:
    """A timing sweep runs one trial at a time, on a whole GPU where there is one, else on every
    core of the largest node: trials sharing a device would time each other. A GPU count or a
    concurrency the user set stands."""
    if not plan.sweep.exclusive:
        return opts
    import ray
    gpus = opts.gpus_per_trial if opts.gpus_per_trial is not None else (
        1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0)
    cpus = opts.cpus_per_trial if gpus else max(
        (n["Resources"].get("CPU", 0) for n in ray.nodes() if n["Alive"]), default=opts.cpus_per_trial)
    return replace(opts, max_concurrent=opts.max_concurrent or 1, gpus_per_trial=gpus,
                   cpus_per_trial=max(cpus, 1.0))


def _experiment_path(storage: str | None, name: str) -> str:
    root = storage or os.path.expanduser("~/ray_results")       # Ray's default
    return f"{root.rstrip('/')}/{name}"


def _interrupted(plan: SweepPlan, uri: str) -> tuple[str, str, str]:
    """(experiment id, parent run id, Ray experiment path) of the latest sweep of this name and
    profile that did not finish: a driver killed with SIGKILL leaves its parent RUNNING."""
    new_store = uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file()
    client = None if new_store else MlflowClient(uri)       # a client would create the file
    exp = None if client is None else client.get_experiment_by_name(plan.sweep.name)
    runs = [] if exp is None else client.search_runs(
        [exp.experiment_id], f"tags.role = 'sweep' and tags.profile = '{plan.profile_name}'",
        order_by=["attributes.start_time DESC"], max_results=1)
    if not runs or runs[0].info.status == "FINISHED" or "ray_experiment" not in runs[0].data.tags:
        raise UserError(f"no interrupted '{plan.sweep.name}' sweep ({plan.profile_name}) to resume in {uri}; "
                        f"run it without --resume")
    return exp.experiment_id, runs[0].info.run_id, runs[0].data.tags["ray_experiment"]


def _restore(plan: SweepPlan, path: str, trainable):
    from ray import tune
    if not tune.Tuner.can_restore(path):
        raise UserError(f"the interrupted sweep's Ray state is not at {path} (moved, deleted, or on another "
                        f"machine); pass the same --storage-path as the first run, or run without --resume")
    # finished trials stay finished; unfinished and crashed ones continue from their last checkpoint
    return tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=True)


def run_sweep(plan: SweepPlan, opts: SweepOptions) -> SweepOutcome:
    # Keeping 2 checkpoints per trial forces a state snapshot each epoch; Ray warns every time.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    from ray import tune

    uri = resolve_tracking_uri(opts.tracking_uri)
    check_tracking(uri)
    if opts.resume:
        exp, parent, path = _interrupted(plan, uri)
    # a resumed sweep evaluates the source runs it started with, whatever has run since
    plan, sources = attach_sources(plan, uri, _recorded_sources(uri, parent) if opts.resume else None)
    check_inputs(plan, sources)
    connect(resolve_address(opts.address))
    storage = resolve_storage(opts.storage_path)
    check_storage(storage)
    prepare_store(uri)              # the first write: every check above has passed
    client = MlflowClient(uri)
    opts = _exclusive(plan, opts)
    resources = {"cpu": opts.cpus_per_trial, "gpu": _gpus_per_trial(opts.gpus_per_trial)}
    # a source model travels through Ray's object store, not through MLflow (see sources.py)
    fn = tune.with_parameters(plan.trainable.fn, sources=sources) if sources else plan.trainable.fn
    trainable = tune.with_resources(fn, resources)
    if opts.resume:
        tuner = _restore(plan, path, trainable)     # the callback, scheduler and searcher come back
        client.update_run(parent, status="RUNNING")  # with it, and so does the parent run
    else:
        tuner, exp, parent = _new_tuner(plan, opts, client, uri, storage, trainable)
    status = "FAILED"
    try:
        with _pending_trials(len(plan.cells) if opts.max_concurrent is None else None):
            results = tuner.fit()
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        end_open_children(client, exp, parent, f"sweep ended with status {status}")
        end_parent(client, parent, status)
    return SweepOutcome(parent, uri, plan.sweep.name, len(results), results.num_errors)


def _new_tuner(plan: SweepPlan, opts: SweepOptions, client: MlflowClient, uri: str, storage: str | None,
               trainable):
    from ray import tune
    exp, parent, child_tags = _parent_run(client, plan, uri, opts)
    name = f"{plan.sweep.name}-{plan.profile_name}-{parent[:8]}"
    client.set_tag(parent, "ray_experiment", _experiment_path(storage, name))     # for --resume
    scheduler = PerCellASHA(plan.sweep.metric, "max", int(plan.base.get("epochs", 1)),
                            plan.profile.grace_period, plan.profile.reduction_factor)
    callback = MLflowTrials(uri, exp, parent, child_tags, scheduler.stopped)
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=CellSearcher(plan, opts.search, opts.seed),
                                    scheduler=scheduler, num_samples=plan.n_trials,
                                    max_concurrent_trials=opts.max_concurrent, reuse_actors=True),
        run_config=tune.RunConfig(
            name=name, storage_path=storage,
            callbacks=[callback], failure_config=tune.FailureConfig(max_failures=opts.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2), verbose=opts.verbose),
    )
    return tuner, exp, parent
