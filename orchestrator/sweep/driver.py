"""A sweep end to end, in steps a reader follows top to bottom: `run_sweep` prepares (the plan,
every check, then the parent run: parent.py), runs the phases under the sweep's lease (each phase
as Tune experiments of whole cells, assembled by tuner.py), and closes the parent run whatever
happened; SIGTERM and a second Ctrl-C are signals.py's."""
from __future__ import annotations

import gc
import os
from collections import Counter
from dataclasses import dataclass
from typing import Callable

from mlflow.tracking import MlflowClient

from clip_prompt_sweeps.errors import UserError
from clip_prompt_sweeps.names import cell_key
from clip_prompt_sweeps.store.journal import Journal
from clip_prompt_sweeps.store.lease import Lease
from clip_prompt_sweeps.store.records import read_sources
from clip_prompt_sweeps.store.runs import ROLE_TAG, TRIAL_ROLE
from clip_prompt_sweeps.store.uri import check_existing_store, check_tracking, prepare_store, resolve_tracking_uri
from orchestrator.clusters.connect import check_storage, connect, resolve_address, resolve_storage
from orchestrator.sweep.options import Sweep, SweepOptions
from orchestrator.sweep.parent import close_parent, interrupted_parent, open_parent, recorded_settings, reopen
from orchestrator.sweep.plan import PlanRequest, SweepPlan
from orchestrator.sweep.preflight import check_inputs
from orchestrator.sweep.progress import SweepProgress
from orchestrator.sweep.replicates import check_replicates, phases
from orchestrator.sweep.resume import DONE, SweepRecord, session_name
from orchestrator.sweep.signals import second_ctrl_c, sigterm_is_ctrl_c
from orchestrator.sweep.source_runs import attach_sources
from orchestrator.sweep.tuner import (
    check_fuse,
    exclusive,
    experiment_path,
    fuse_of,
    gpus_per_trial,
    make_tuner,
    pending_trials,
)

__all__ = ["SweepInterrupted", "SweepOptions", "SweepOutcome", "run_sweep"]


@dataclass(frozen=True)
class SweepOutcome:
    parent_run_id: str
    tracking_uri: str
    experiment: str
    trials: int
    errors: int
    experiment_id: str = ""


class SweepInterrupted(Exception):
    """Ctrl-C (or SIGTERM): the sweep stopped before its trials did, and can be resumed."""

    def __init__(self, done: int, planned: int):
        super().__init__(f"{done} of {planned} trials finished")
        self.done, self.planned = done, planned


def run_sweep(asked: PlanRequest | SweepPlan, opts: SweepOptions,
              show: Callable[[SweepPlan], None] | None = None) -> SweepOutcome:
    """Prepare (the plan, built once; every check; then the parent run), run the phases under the
    sweep's lease, finish (the parent run closed whatever happened). `show` sees the plan as it
    will run (on a resume: as its first run recorded it) before anything is started."""
    _quiet_defaults(opts)
    plan, sweep, resumed = _prepare(asked, opts, show or (lambda plan: None))
    planned = plan.n_trials + sweep.opts.replicates * len(plan.cells)
    done = failed = 0
    with sigterm_is_ctrl_c(), Lease(sweep.uri, sweep.parent, plan.experiment.name) as lease:
        status, why = "FAILED", "error"
        try:
            done, failed, complete = _run_phases(sweep, plan, resumed)
            status, why = ("FINISHED", None) if complete else ("KILLED", "Ctrl-C")
        finally:
            if not lease.lost.is_set():     # a driver that lost its lease writes nothing more
                close_parent(sweep.client, sweep.store, sweep.exp, sweep.parent, status, why)
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
             show: Callable[[SweepPlan], None]) -> tuple[SweepPlan, Sweep, bool]:
    """Every check first (the plan, store, resume, sources, data, Ray, storage), then the first
    write: the parent run, or the interrupted one's with its journal flushed. (plan, sweep, resumed)."""
    from ray import tune
    if not opts.resume:         # what is typed is checked before anything else
        plan = asked.build() if isinstance(asked, PlanRequest) else asked
    uri = resolve_tracking_uri(opts.tracking_uri)
    check_tracking(uri)
    check_existing_store(uri, fresh=not opts.resume)    # never migrate another program's SQLite file
    previous = interrupted_parent(asked, uri) if opts.resume else None
    if previous is not None:
        request, opts = recorded_settings(asked if isinstance(asked, PlanRequest) else asked.request(), opts, previous)
        plan = request.build()
    show(plan)
    # a resumed sweep evaluates the source runs it started with, whatever has run since
    recorded = read_sources(previous.run_id, previous.sources_tag) if previous else None
    plan, sources = attach_sources(plan, uri, recorded)
    check_inputs(plan, sources)
    check_replicates(plan, opts.replicates)
    check_fuse(plan, opts)
    connect(resolve_address(opts.address))
    storage = resolve_storage(opts.storage_path)
    check_storage(storage)
    prepare_store(uri)              # the first write: every check above has passed
    client = MlflowClient(uri)
    opts = exclusive(plan, opts)
    resources = {"cpu": opts.cpus_per_trial, "gpu": gpus_per_trial(opts.gpus_per_trial)}
    # a source model travels through Ray's object store, not through MLflow (see sources.py)
    fn = tune.with_parameters(plan.trainable.fn, sources=sources) if sources else plan.trainable.fn
    if previous is not None:
        exp, parent = previous.experiment_id, previous.run_id
        if Journal(client, parent).flush():     # what an earlier session could not write, first
            raise UserError(f"MLflow at {uri} still refuses the writes an earlier session of this sweep kept in "
                            f"{Journal(client, parent).path}; check the store, then --resume again")
        child_tags = {**previous.tags_for_children, ROLE_TAG: TRIAL_ROLE}
    else:
        exp, parent, child_tags = open_parent(client, plan, uri, opts)
    # learning rates per fused trial in this session (a tag: a resume may choose another; the
    # results do not depend on it beyond floating-point order)
    client.set_tag(parent, "fuse", str(fuse_of(plan, opts)))
    sweep = Sweep(opts, client, uri, storage, tune.with_resources(fn, resources), exp, parent, child_tags,
                  Journal(client, parent), f"{plan.experiment.name}-{plan.profile_name}-{parent[:8]}")
    return plan, sweep, previous is not None


def _run_phases(sweep: Sweep, plan: SweepPlan, resumed: bool) -> tuple[int, int, bool]:
    """The tuning phase, then (--replicates) each cell's chosen learning rate again with new
    seeds. Returns (trials done, failed, whether every trial ended)."""
    done = failed = 0
    for phase in phases(sweep.opts.replicates):
        phase_plan, base = phase.plan(sweep.client, sweep.exp, sweep.parent, plan), sweep.base + phase.suffix
        record = reopen(sweep.client, phase_plan, sweep.exp, sweep.parent, sweep.storage, base, phase.name) \
            if resumed else None
        phase_done, phase_failed, complete = _run_phase(sweep, phase_plan, base, record)
        done, failed = done + phase_done, failed + phase_failed
        if not complete:
            return done, failed, False
    return done, failed, True


def _run_phase(sweep: Sweep, plan: SweepPlan, base: str, record: SweepRecord | None) -> tuple[int, int, bool]:
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
        sweep.client.set_tag(sweep.parent, "ray_experiment", experiment_path(sweep.storage, name))  # for people
        mine = record.only({cell_key(c) for c in group.cells}) if record else None
        callback, tuner = make_tuner(group, sweep, mine, name, progress)
        interrupted = False
        try:
            with pending_trials(min(len(group.cells), sweep.opts.max_concurrent or len(group.cells))), \
                    second_ctrl_c() as pressed:
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
