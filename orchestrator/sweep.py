"""A sweep end to end: Ray, a parent MLflow run, a Tuner with per-cell ASHA and Optuna, and the
child runs closed whatever happens."""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass

from mlflow.tracking import MlflowClient

from orchestrator.cluster import check_storage, connect, resolve_address, resolve_storage
from orchestrator.plan import SweepPlan
from orchestrator.schedulers import PerCellASHA
from orchestrator.searchers import CellSearcher
from orchestrator.tracking import (MLflowTrials, check_tracking, end_parent, experiment_id,
                                   git_commit, resolve_tracking_uri)


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
    return exp, run.info.run_id, {**tags, "role": "trial"}


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


def run_sweep(plan: SweepPlan, opts: SweepOptions) -> SweepOutcome:
    # Keeping 2 checkpoints per trial forces a state snapshot each epoch; Ray warns every time.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    from ray import tune

    uri = resolve_tracking_uri(opts.tracking_uri)
    check_tracking(uri)
    connect(resolve_address(opts.address))
    storage = resolve_storage(opts.storage_path)
    check_storage(storage)
    client = MlflowClient(uri)
    exp, parent, child_tags = _parent_run(client, plan, uri, opts)
    scheduler = PerCellASHA(plan.sweep.metric, "max", int(plan.base.get("epochs", 1)),
                            plan.profile.grace_period, plan.profile.reduction_factor)
    callback = MLflowTrials(uri, exp, parent, child_tags, scheduler.stopped)
    resources = {"cpu": opts.cpus_per_trial, "gpu": _gpus_per_trial(opts.gpus_per_trial)}
    tuner = tune.Tuner(
        tune.with_resources(plan.trainable.fn, resources),
        tune_config=tune.TuneConfig(search_alg=CellSearcher(plan, opts.search, opts.seed),
                                    scheduler=scheduler, num_samples=plan.n_trials,
                                    max_concurrent_trials=opts.max_concurrent, reuse_actors=True),
        run_config=tune.RunConfig(
            name=f"{plan.sweep.name}-{plan.profile_name}-{parent[:8]}", storage_path=storage,
            callbacks=[callback], failure_config=tune.FailureConfig(max_failures=opts.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2), verbose=opts.verbose),
    )
    status = "FAILED"
    try:
        with _pending_trials(len(plan.cells) if opts.max_concurrent is None else None):
            results = tuner.fit()
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        callback.end_open_runs(f"sweep ended with status {status}")
        end_parent(client, parent, status)
    return SweepOutcome(parent, uri, plan.sweep.name, len(results), results.num_errors)
