"""A sweep's parent MLflow run: opened with what the plan was made from, found again (with the
settings its first run recorded) for a resume, its phase record rebuilt and its children reopened,
and closed whatever happened, through the journal."""
from __future__ import annotations

import json
import sys
import time
from dataclasses import replace

from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from clip_prompt_sweeps.errors import UserError
from clip_prompt_sweeps.names import is_replicate_cell
from clip_prompt_sweeps.store.journal import Journal
from clip_prompt_sweeps.store.lease import busy, holder
from clip_prompt_sweeps.store.records import (
    ARGS_TAG,
    SOURCES_TAG,
    SWEEP_FILE_TAG,
    ParentRecord,
    read_parent,
    read_sweep_args,
)
from clip_prompt_sweeps.store.runs import (
    PROFILE_TAG,
    ROLE_TAG,
    SWEEP_ROLE,
    SWEEP_TAG,
    TRIAL_ROLE,
    end_open_children,
    experiment_id,
    latest_parent,
)
from clip_prompt_sweeps.store.uri import store_exists
from orchestrator.sweep.options import SweepOptions
from orchestrator.sweep.plan import PATH_PREFIXES, PlanRequest, SweepPlan, absolute_paths, sweep_file_digest
from orchestrator.sweep.resume import SweepRecord, build_record, mark_superseded, read_trials
from orchestrator.sweep.tracking import git_commit

# settings a resume never takes from the store: the data dir is this command's
_NOT_FROM_STORE = ("data_dir",)


def open_parent(client: MlflowClient, plan: SweepPlan, uri: str, opts: SweepOptions) -> tuple[str, str, dict]:
    """A new sweep's parent run, with the plan's settings as params and what the plan was made
    from as tags: (experiment id, parent run id, the tags its children get)."""
    exp = experiment_id(client, plan.experiment.name, uri)
    tags = {SWEEP_TAG: plan.experiment.name, PROFILE_TAG: plan.profile_name,
            "data_kind": str(plan.base.get("data", "real")), "git_commit": git_commit()}
    run = client.create_run(exp, run_name=f"{plan.experiment.name}-{plan.profile_name}-{time.strftime('%Y%m%d-%H%M%S')}",
                            tags={**tags, ROLE_TAG: SWEEP_ROLE, "search": opts.search})
    params = {"cells": len(plan.cells), "samples_per_cell": plan.profile.samples,
              **({"lr_low": plan.profile.lr.low, "lr_high": plan.profile.lr.high} if plan.profile.lr else {}),
              "search": opts.search,
              "scheduler": "per-cell ASHA", "grace_period": plan.profile.grace_period,
              "reduction_factor": plan.profile.reduction_factor, "replicates": opts.replicates, **plan.base}
    for key, value in params.items():
        client.log_param(run.info.run_id, key, value)
    # what the plan was made from, so that a resume rebuilds the same plan
    client.set_tag(run.info.run_id, ARGS_TAG, json.dumps({**plan.args, "search": opts.search, "seed": opts.seed,
                                                          "replicates": opts.replicates}))
    if plan.filled:      # which source run each cell evaluates (robustness, cross): kept for --resume
        client.set_tag(run.info.run_id, SOURCES_TAG, json.dumps({k: v["source_run"] for k, v in plan.filled.items()}))
    if plan.sweep_file:  # for the commands `status` prints (never opened from the store)
        client.set_tag(run.info.run_id, SWEEP_FILE_TAG, plan.sweep_file)
    return exp, run.info.run_id, {**tags, ROLE_TAG: TRIAL_ROLE}


def interrupted_parent(asked: PlanRequest | SweepPlan, uri: str) -> ParentRecord:
    """The parent run of the latest sweep of this name and profile that did not finish: a killed
    driver leaves its parent RUNNING, an interrupted or failed one KILLED or FAILED."""
    name, profile = asked.experiment.name, asked.profile_name
    client = MlflowClient(uri) if store_exists(uri) else None       # a client would create the file
    run = latest_parent(client, name, profile)
    parent = None if run is None else read_parent(run)      # its run id checked before any use
    if parent is None or parent.status == "FINISHED":
        raise UserError(f"no interrupted '{name}' sweep ({profile}) to resume in {uri}; run it without --resume")
    live = holder(parent.lease)
    if live is not None:        # checked before anything is written; Lease.acquire checks again
        raise busy(name, parent.run_id, live)
    return parent


def recorded_settings(request: PlanRequest, opts: SweepOptions, parent: ParentRecord) -> tuple[PlanRequest, SweepOptions]:
    """A resumed sweep keeps the settings of its first run (plan and search), whatever is typed now."""
    args = read_sweep_args(parent.run_id, parent.args_tag)
    if args is None:
        return request, opts
    now = sweep_file_digest(request.sweep_file) if request.sweep_file else None
    if args.sweep_file_sha256 and args.sweep_file_sha256 != now:
        raise UserError(f"sweep file {request.sweep_file or request.experiment.name} has changed since sweep run "
                        f"{parent.run_id} started; put it back as it was to resume, or run it without --resume "
                        f"to start a new sweep of the new shape")
    typed_sets = [absolute_paths(s) for s in request.sets]
    typed_grids = [absolute_paths(g, grid=True) for g in request.grids]

    # the data dir is this command's (--data-dir, $ORCHESTRATOR_DATA_DIR or the default), never a
    # path from the store: trials write archives there, and a tag can be written by anyone
    def mine(entry: str) -> bool:       # keyed as make_plan parses them: ' data_dir=' too
        return entry.partition("=")[0].strip() in _NOT_FROM_STORE
    sets = [e for e in args.sets if not mine(e)] + [e for e in typed_sets if mine(e)]
    grids = [e for e in args.grids if not mine(e)]
    # a folder or template file named in the tag is read only if this command names it too
    typed_now = {str(v) for v in [*typed_sets, *typed_grids]}
    for value in [*sets, *grids]:
        if any(p in value for p in PATH_PREFIXES) and value not in typed_now:
            raise UserError(f"the interrupted sweep's recorded setting {value[:200]!r} names a path; a resume "
                            f"reads no path from the store: pass the same --set/--grid again with --resume")
    return (replace(request, sets=tuple(sets), samples=args.samples, epochs=args.epochs, grids=tuple(grids)),
            replace(opts, search=args.search, seed=args.seed, replicates=args.replicates))


def reopen(client: MlflowClient, plan: SweepPlan, exp: str, parent: str, storage: str | None,
            base: str, phase: str = "tuning") -> SweepRecord:
    """The interrupted sweep's record for one phase, rebuilt from MLflow (Ray's saved state is not
    read: see resume.py), and its parent running again."""
    trials = [t for t in read_trials(client, exp, parent, plan.experiment.metric)
              if is_replicate_cell(t.cell) == (phase == "replicates")]     # each phase has its own runs
    record = build_record(plan, trials, storage, base)
    mark_superseded(client, record, f"resume at {time.strftime('%Y-%m-%d %H:%M:%S')}: beyond its "
                                    f"cell's {plan.profile.samples} planned trials")
    client.update_run(parent, status="RUNNING")
    going = [c for v in record.unfinished.values() for c in v]
    print(f"resuming run {parent}{' (replicates)' if phase == 'replicates' else ''}: {record.n_done} of "
          f"{plan.n_trials} trials done, {len(going)} to continue "
          f"({sum(c.checkpoint is not None for c in going)} from a checkpoint), "
          f"{plan.n_trials - record.n_done - len(going)} new")
    return record


def close_parent(client: MlflowClient, store: Journal, exp: str, parent: str, status: str, why: str | None) -> None:
    """End the parent run (and any child run a killed session left RUNNING), through the journal:
    if the store is down, the writes wait on disk for the next --resume."""
    try:
        end_open_children(client, exp, parent, "the sweep was interrupted before the trial ended")
    except MlflowException:
        pass        # the store is down; a resume treats a RUNNING run as unfinished anyway
    if why:
        store.set_tag(parent, "interrupted_at", f"{time.strftime('%Y-%m-%d %H:%M:%S')} ({why})")
    if store.delayed:
        store.set_tag(parent, "delayed_writes", store.delayed)
    store.set_terminated(parent, RunStatus.to_string(RunStatus.from_string(status)))
    left = store.flush()
    if left:
        print(f"MLflow at {client.tracking_uri} did not answer: {left} writes are kept in {store.path} and are "
              f"written by the next `sweep --resume` of this sweep", file=sys.stderr)
