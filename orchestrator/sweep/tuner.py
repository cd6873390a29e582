"""A Tune experiment of a sweep assembled: the trial's resources and concurrency (a timing sweep
alone on its device), the per-cell ASHA and Optuna searcher replayed from a resumed record, the
MLflow callback, and the Tuner itself."""
from __future__ import annotations

import contextlib
import os
from dataclasses import replace

from clip_prompt_sweeps.errors import UserError
from orchestrator.sweep.options import Sweep, SweepOptions
from orchestrator.sweep.plan import SweepPlan, cell_epochs
from orchestrator.sweep.progress import SweepProgress
from orchestrator.sweep.resume import SweepRecord
from orchestrator.sweep.schedulers import PerCellASHA, PostedStops
from orchestrator.sweep.searchers import CellSearcher
from orchestrator.sweep.tracking import MLflowTrials


def fuse_of(plan: SweepPlan, opts: SweepOptions) -> int:
    """Learning rates per fused trial: --fuse, else the profile's; 1 where the trainable cannot
    fuse or nothing is tuned."""
    asked = opts.fuse if opts.fuse is not None else plan.profile.fuse
    return asked if plan.trainable.fusable and plan.profile.lr is not None else 1


def check_fuse(plan: SweepPlan, opts: SweepOptions) -> None:
    """Before Ray starts: what a fused trial cannot do is refused in one line."""
    if fuse_of(plan, opts) > 1 and any(getattr(cfg, "compile", False) for cfg in plan.typed.values()):
        raise UserError("compile=true does not apply to fused trials; run with --fuse 1 to compile each trial")


def gpus_per_trial(requested: float | None) -> float:
    import ray
    if requested is not None:
        return requested
    return 0.5 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


def exclusive(plan: SweepPlan, opts: SweepOptions) -> SweepOptions:
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


@contextlib.contextmanager
def pending_trials(n: int):
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


def experiment_path(storage: str | None, name: str) -> str:
    root = storage or os.path.expanduser("~/ray_results")       # Ray's default
    return f"{root.rstrip('/')}/{name}"


def make_tuner(plan: SweepPlan, sweep: Sweep, record: SweepRecord | None, name: str,
               progress: SweepProgress | None):
    """(the MLflow callback, the Tuner) of one Tune experiment of whole cells; no Tuner where a
    resumed record left nothing to run (every trial had ended, only the parent was open)."""
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
    # a fused trial trains up to --fuse new learning rates of a cell together (issue #38)
    fuse = fuse_of(plan, opts)
    stops = f"member-stops-{name}" if fuse > 1 else None
    searcher = CellSearcher(plan, opts.search, opts.seed, record, fuse, stops)
    callback = MLflowTrials(sweep.uri, sweep.exp, sweep.parent, sweep.child_tags, scheduler.stopped, sweep.store)
    if not searcher.queue:
        return callback, None
    if stops is not None:
        scheduler.member_stops = PostedStops(stops)
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
