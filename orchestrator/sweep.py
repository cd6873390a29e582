"""A sweep end to end: Ray, a parent MLflow run, a Tuner with per-cell ASHA and Optuna, and the
child runs closed whatever happens."""
from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, replace
from typing import Callable

from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from clip_prompt_sweeps.errors import UserError
from clip_prompt_sweeps.names import cell_key, is_replicate_cell
from clip_prompt_sweeps.store.journal import Journal
from clip_prompt_sweeps.store.lease import Lease, busy, holder
from clip_prompt_sweeps.store.records import (
    ARGS_TAG,
    SOURCES_TAG,
    SWEEP_FILE_TAG,
    ParentRecord,
    read_parent,
    read_sources,
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
from clip_prompt_sweeps.store.uri import (
    check_existing_store,
    check_tracking,
    prepare_store,
    resolve_tracking_uri,
    store_exists,
)
from orchestrator.cluster import (
    check_storage,
    connect,
    resolve_address,
    resolve_storage,
)
from orchestrator.plan import (
    PATH_PREFIXES,
    PlanRequest,
    SweepPlan,
    absolute_paths,
    cell_epochs,
    sweep_file_digest,
)
from orchestrator.preflight import check_inputs
from orchestrator.progress import SweepProgress
from orchestrator.replicates import check_replicates, phases
from orchestrator.resume import (
    DONE,
    SweepRecord,
    build_record,
    mark_superseded,
    read_trials,
    session_name,
)
from orchestrator.schedulers import PerCellASHA
from orchestrator.searchers import CellSearcher
from orchestrator.source_runs import attach_sources
from orchestrator.tracking import MLflowTrials, git_commit

# settings a resume never takes from the store: the data dir is this command's
_NOT_FROM_STORE = ("data_dir",)


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
    verbose: int = 0                     # Ray's own trial tables (1, `--verbose`); 0: the project's progress only
    progress: bool = True                # the progress line and a line per completed cell (progress.py)
    resume: bool = False                 # continue the latest interrupted sweep (rebuilt from MLflow)
    replicates: int = 0                  # after tuning, each cell's chosen lr again with this many new seeds
    # a bigger sweep runs as consecutive Tune experiments over groups of whole cells (sweep._run_phase)
    trials_per_experiment: int = 2000


@dataclass(frozen=True)
class SweepOutcome:
    parent_run_id: str
    tracking_uri: str
    experiment: str
    trials: int
    errors: int
    experiment_id: str = ""


def _gpus_per_trial(requested: float | None) -> float:
    import ray
    if requested is not None:
        return requested
    return 0.5 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


def _parent_run(client: MlflowClient, plan: SweepPlan, uri: str, opts: SweepOptions) -> tuple[str, str, dict]:
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


@contextlib.contextmanager
def _pending_trials(n: int):
    """With a custom searcher Tune keeps one trial pending at a time: the autoscaler then sees
    the demand of one trial, and a cluster scales up (and fills) one trial at a time, and Ray
    places each lone pending trial on the first node with room (the driver's). A wave of one
    pending trial per cell (at most --max-concurrent) fills the nodes at once; a cell's next learning
    rate is still proposed only after its previous one started. $TUNE_MAX_PENDING_TRIALS_PG, if set, wins."""
    if "TUNE_MAX_PENDING_TRIALS_PG" in os.environ:
        yield
        return
    os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = str(max(1, n))
    try:
        yield
    finally:
        del os.environ["TUNE_MAX_PENDING_TRIALS_PG"]


@contextlib.contextmanager
def _sigterm_is_ctrl_c():
    """The one place a sweep sets SIGTERM: SLURM's time limit and `kill` stop it as Ctrl-C does
    (Tune stops the trials gracefully, the parent run is closed). Entered once Ray is up, since
    ray.init gives the driver Ray's own SIGTERM handler, which aborts the process."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _second_ctrl_c():
    """An Event set by a second Ctrl-C. Tune's own handler takes the first (it stops the trials
    gracefully) and then puts back the handler it found: this one."""
    pressed = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield pressed
        return

    def on_sigint(signum, frame):
        pressed.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield pressed
    finally:
        signal.signal(signal.SIGINT, previous)


def _exclusive(plan: SweepPlan, opts: SweepOptions) -> SweepOptions:
    """A timing sweep runs one trial at a time, on a whole GPU where there is one, else on every
    core of the largest node: trials sharing a device would time each other. A GPU count or a
    concurrency the user set stands."""
    if not plan.experiment.exclusive:
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


class SweepInterrupted(Exception):
    """Ctrl-C (or SIGTERM): the sweep stopped before its trials did, and can be resumed."""

    def __init__(self, done: int, planned: int):
        super().__init__(f"{done} of {planned} trials finished")
        self.done, self.planned = done, planned


def _interrupted(asked: PlanRequest | SweepPlan, uri: str) -> ParentRecord:
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


def _recorded(request: PlanRequest, opts: SweepOptions, parent: ParentRecord) -> tuple[PlanRequest, SweepOptions]:
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


def run_sweep(asked: PlanRequest | SweepPlan, opts: SweepOptions,
              show: Callable[[SweepPlan], None] | None = None) -> SweepOutcome:
    """Prepare (the plan, built once; every check; then the parent run), run the phases under the
    sweep's lease, finish (the parent run closed whatever happened). `show` sees the plan as it
    will run (on a resume: as its first run recorded it) before anything is started."""
    _quiet_defaults(opts)
    plan, sweep, resumed = _prepare(asked, opts, show or (lambda plan: None))
    planned = plan.n_trials + sweep.opts.replicates * len(plan.cells)
    done = failed = 0
    with _sigterm_is_ctrl_c(), Lease(sweep.uri, sweep.parent, plan.experiment.name) as lease:
        status, why = "FAILED", "error"
        try:
            done, failed, complete = _run_phases(sweep, plan, resumed)
            status, why = ("FINISHED", None) if complete else ("KILLED", "Ctrl-C")
        finally:
            if not lease.lost.is_set():     # a driver that lost its lease writes nothing more
                _close(sweep.client, sweep.store, sweep.exp, sweep.parent, status, why)
    if lease.lost.is_set():
        raise lease.lost_error()
    if status == "KILLED":
        raise SweepInterrupted(done, planned)
    return SweepOutcome(sweep.parent, sweep.uri, plan.experiment.name, planned, failed, sweep.exp)


def _quiet_defaults(opts: SweepOptions) -> None:
    """Ray's and MLflow's settings for a sweep's driver, where the user has not set them."""
    # Keeping 2 checkpoints per trial forces a state snapshot each epoch; Ray warns every time.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if opts.verbose == 0:
        # Tune's newer console output prints its configuration box and result paths even at
        # verbose=0; the classic reporter prints nothing there, and progress.py says the rest
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        # Tune warns of every callback over 0.5 s; logging a trial to SQLite on a busy laptop
        # takes that long now and then, and the user can do nothing about it
        os.environ.setdefault("TUNE_WARN_THRESHOLD_S", "2")
    # MLflow's HTTP client retries a dead server for minutes per call; the journal retries
    # instead and keeps what fails, so the driver's Tune loop is never held that long. Against a
    # server, MLflow prints two links each time a run ends (two lines per trial); the sweep prints
    # the runs' page once at its end.
    for key, value in (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2"), ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
                       ("MLFLOW_HTTP_REQUEST_TIMEOUT", "20"), ("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")):
        os.environ.setdefault(key, value)


def _prepare(asked: PlanRequest | SweepPlan, opts: SweepOptions,
             show: Callable[[SweepPlan], None]) -> tuple[SweepPlan, _Sweep, bool]:
    """Every check first (the plan, store, resume, sources, data, Ray, storage), then the first
    write: the parent run, or the interrupted one's with its journal flushed. (plan, sweep, resumed)."""
    from ray import tune
    if not opts.resume:         # what is typed is checked before anything else
        plan = asked.build() if isinstance(asked, PlanRequest) else asked
    uri = resolve_tracking_uri(opts.tracking_uri)
    check_tracking(uri)
    check_existing_store(uri, fresh=not opts.resume)    # never migrate another program's SQLite file
    previous = _interrupted(asked, uri) if opts.resume else None
    if previous is not None:
        request, opts = _recorded(asked if isinstance(asked, PlanRequest) else asked.request(), opts, previous)
        plan = request.build()
    show(plan)
    # a resumed sweep evaluates the source runs it started with, whatever has run since
    recorded = read_sources(previous.run_id, previous.sources_tag) if previous else None
    plan, sources = attach_sources(plan, uri, recorded)
    check_inputs(plan, sources)
    check_replicates(plan, opts.replicates)
    connect(resolve_address(opts.address))
    storage = resolve_storage(opts.storage_path)
    check_storage(storage)
    prepare_store(uri)              # the first write: every check above has passed
    client = MlflowClient(uri)
    opts = _exclusive(plan, opts)
    resources = {"cpu": opts.cpus_per_trial, "gpu": _gpus_per_trial(opts.gpus_per_trial)}
    # a source model travels through Ray's object store, not through MLflow (see sources.py)
    fn = tune.with_parameters(plan.trainable.fn, sources=sources) if sources else plan.trainable.fn
    if previous is not None:
        exp, parent = previous.experiment_id, previous.run_id
        if Journal(client, parent).flush():     # what an earlier session could not write, first
            raise UserError(f"MLflow at {uri} still refuses the writes an earlier session of this sweep kept in "
                            f"{Journal(client, parent).path}; check the store, then --resume again")
        child_tags = {**previous.tags_for_children, ROLE_TAG: TRIAL_ROLE}
    else:
        exp, parent, child_tags = _parent_run(client, plan, uri, opts)
    sweep = _Sweep(opts, client, uri, storage, tune.with_resources(fn, resources), exp, parent, child_tags,
                   Journal(client, parent), f"{plan.experiment.name}-{plan.profile_name}-{parent[:8]}")
    return plan, sweep, previous is not None


def _run_phases(sweep: _Sweep, plan: SweepPlan, resumed: bool) -> tuple[int, int, bool]:
    """The tuning phase, then (--replicates) each cell's chosen learning rate again with new
    seeds. Returns (trials done, failed, whether every trial ended)."""
    done = failed = 0
    for phase in phases(sweep.opts.replicates):
        phase_plan, base = phase.plan(sweep.client, sweep.exp, sweep.parent, plan), sweep.base + phase.suffix
        record = _reopen(sweep.client, phase_plan, sweep.exp, sweep.parent, sweep.storage, base, phase.name) \
            if resumed else None
        phase_done, phase_failed, complete = _run_phase(sweep, phase_plan, base, record)
        done, failed = done + phase_done, failed + phase_failed
        if not complete:
            return done, failed, False
    return done, failed, True


@dataclass(frozen=True)
class _Sweep:
    """What every phase and Tune experiment of one sweep shares."""
    opts: SweepOptions
    client: MlflowClient
    uri: str
    storage: str | None
    trainable: object
    exp: str
    parent: str
    child_tags: dict
    store: Journal          # the sweep's one journal: every write of every experiment goes through it
    base: str               # the name of its Ray experiments: NAME-PROFILE-PARENT[:8], then each phase's own


def _run_phase(sweep: _Sweep, plan: SweepPlan, base: str, record: SweepRecord | None) -> tuple[int, int, bool]:
    """A phase's trials, as one Tune experiment per group of whole cells (`SweepPlan.groups`):
    an experiment keeps every trial it ran in the driver until it ends, so a sweep of thousands
    runs as several, one after the other, and the driver's memory stays that of one group. Each
    cell's Optuna study and ASHA rungs live within its group. Returns (trials done, counting the
    record's; trials failed; whether every trial ended)."""
    groups = plan.groups(sweep.opts.trials_per_experiment)
    session = session_name(base, resumed=record is not None)
    progress = _progress(plan, sweep.opts, record)
    done, failed = (record.n_done if record else 0), 0
    if len(groups) > 1:
        print(f"{plan.n_trials} trials run as {len(groups)} Tune experiments of whole cells, at most "
              f"{sweep.opts.trials_per_experiment} trials each (--trials-per-experiment), one after the other")
        sweep.client.set_tag(sweep.parent, "tune_experiments", str(len(groups)))
    for number, group in enumerate(groups, 1):
        name = session if len(groups) == 1 else f"{session}-cells-{number}of{len(groups)}"
        sweep.client.set_tag(sweep.parent, "ray_experiment", _experiment_path(sweep.storage, name))  # for people
        mine = record.only({cell_key(c) for c in group.cells}) if record else None
        callback, tuner = _tuner(group, sweep, mine, name, progress)
        interrupted = False
        try:
            with _pending_trials(min(len(group.cells), sweep.opts.max_concurrent or len(group.cells))), \
                    _second_ctrl_c() as pressed:
                if tuner is not None:       # None: every trial had ended, only the parent was open
                    tuner.fit()
        except BaseException:
            # a second Ctrl-C raises wherever Tune is, and Ray may wrap it: any error after it
            # is the interruption, not a failure of the sweep
            if not pressed.is_set():
                raise
            interrupted = True
        finally:
            # counted from what this driver knows, so that a store that is down cannot stop the count
            outcomes = list(callback.ended.values())
            ended, lost = sum(o in DONE for o in outcomes), outcomes.count("failed")
            done, failed = done + ended, failed + lost
        if interrupted or (mine.n_done if mine else 0) + ended + lost < group.n_trials:
            return done, failed, False      # the first Ctrl-C returns from fit
        del tuner, callback
        gc.collect()        # the finished experiment's trials go before the next one's come
    return done, failed, True


def _progress(plan: SweepPlan, opts: SweepOptions, record: SweepRecord | None) -> SweepProgress | None:
    """One progress display for the whole phase, whatever the number of its Tune experiments."""
    if not opts.progress:
        return None
    done = Counter({cell: len(trials) for cell, trials in (record.done if record else {}).items()})
    return SweepProgress(plan.n_trials, plan.profile.samples, [cell_key(c) for c in plan.cells],
                         plan.experiment.metric, {}, done, live=None if opts.verbose == 0 else False)


def _reopen(client: MlflowClient, plan: SweepPlan, exp: str, parent: str, storage: str | None,
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


def _close(client: MlflowClient, store: Journal, exp: str, parent: str, status: str, why: str | None) -> None:
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


def _tuner(plan: SweepPlan, sweep: _Sweep, record: SweepRecord | None, name: str,
           progress: SweepProgress | None):
    from ray import tune
    opts = sweep.opts
    # each cell's own epochs (a grid over epochs), so that ASHA never ends a cell's trials early
    scheduler = PerCellASHA(plan.experiment.metric, "max", cell_epochs(plan),
                            plan.profile.grace_period, plan.profile.reduction_factor)
    if record is not None:      # the rungs as the interrupted session left them
        for cell, trials in record.done.items():
            for t in trials:
                scheduler.replay(cell, t.run_id, t.history, done=True)
        for cell, going in record.unfinished.items():
            for c in going:
                scheduler.replay(cell, c.run_id, c.history, done=False)
    searcher = CellSearcher(plan, opts.search, opts.seed, record)
    callback = MLflowTrials(sweep.uri, sweep.exp, sweep.parent, sweep.child_tags, scheduler.stopped, sweep.store)
    if not searcher.queue:
        return callback, None
    if progress is not None:
        progress.stopped = scheduler.stopped        # this experiment's trials stopped by ASHA
    return callback, tune.Tuner(
        sweep.trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler,
                                    num_samples=len(searcher.queue),
                                    max_concurrent_trials=opts.max_concurrent, reuse_actors=True),
        run_config=tune.RunConfig(
            name=name, storage_path=sweep.storage,
            callbacks=[callback] + ([progress] if progress else []),
            failure_config=tune.FailureConfig(max_failures=opts.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2), verbose=opts.verbose),
    )
