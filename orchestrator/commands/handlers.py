"""What each command of `python -m orchestrator` does with its parsed arguments: call the module
that does the work, and print what it says. orchestrator/commands/cli.py parses and dispatches."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from clip_prompt_sweeps.errors import UserError


def cmd_list(args) -> int:
    if args.backbones:
        from orchestrator.commands.doctor import backbone_lines
        print("\n".join(backbone_lines()))
        return 0
    from search_spaces.registry import list_experiments, list_trainables
    print("sweeps:")
    for s in list_experiments():
        print(f"  {s.name:<12} [{', '.join(sorted(s.profiles))}] {s.summary}")
    print("trainables:")
    for t in list_trainables():
        print(f"  {t.name:<14} {t.summary}")
    return 0


def cmd_doctor(args) -> int:
    if args.cluster_config:
        from orchestrator.clusters.files import doctor_cluster_file
        lines, ready = doctor_cluster_file(args.cluster_config)
        print("\n".join(lines))
        return 0 if ready else 1
    from orchestrator.commands.doctor import doctor_lines
    print("\n".join(doctor_lines(args.data_dir, args.address, args.tracking_uri)))
    return 0


def cmd_fetch(args) -> int:
    from orchestrator.commands.fetch import fetch_datasets, fetch_weights
    from trainables.paths import data_dir
    for line in fetch_datasets(args.datasets, data_dir(args.data_dir), args.data):
        print(line)
    if args.weights is not None:
        for line in fetch_weights(args.weights):
            print(line)
    return 0


def _data_dir_set(args, experiment) -> list[str]:
    """--data-dir as a config key, for the sweeps whose trials read CIFAR (compare reads none)."""
    from trainables.training.config import field_types
    if not args.data_dir or "data_dir" not in field_types(experiment.trainable.config_cls):
        return []
    return [f"data_dir={Path(args.data_dir).resolve()}"]


def _resume_command(args) -> str:
    """The command that continues this sweep: the same store, storage, cluster and profile."""
    from orchestrator.commands.status import resume_command
    return resume_command(args.sweep, args.profile, tracking_uri=args.tracking_uri,
                          storage_path=args.storage_path, address=args.address)


def cmd_sweep(args) -> int:
    from orchestrator.sweep.plan import PROFILE_ENV, PlanRequest, choose_profile, resolve_experiment
    from orchestrator.sweep.driver import SweepInterrupted, SweepOptions, run_sweep
    args.profile, why = choose_profile(args.profile, os.environ)
    if args.trials_per_experiment < 1:
        raise UserError(f"--trials-per-experiment must be at least 1, got {args.trials_per_experiment}")
    if args.fuse is not None and args.fuse < 1:
        raise UserError(f"--fuse must be at least 1 (1: each learning rate a Ray trial of its own), got {args.fuse}")
    experiment = resolve_experiment(args.sweep)
    known = experiment.profiles
    if args.profile not in known and why == f"from ${PROFILE_ENV}":
        raise UserError(f"${PROFILE_ENV}={args.profile!r} is not a profile of sweep '{args.sweep}'; "
                        f"known: {', '.join(sorted(known))} (or pass --profile)")
    request = PlanRequest(args.sweep, args.profile, tuple(args.sets + _data_dir_set(args, experiment)), args.samples,
                          args.epochs, tuple(args.grids))
    if args.dry_run:
        print("\n".join(_dry_run_lines(request.build(), args, why)))
        return 0
    opts = SweepOptions(args.address, args.tracking_uri, args.storage_path, args.cpus_per_trial,
                        args.gpus_per_trial, args.max_concurrent, args.search, args.seed, args.max_failures,
                        resume=args.resume, verbose=1 if args.verbose else 0, replicates=args.replicates,
                        trials_per_experiment=args.trials_per_experiment, fuse=args.fuse)
    shown = []          # the plan as it runs: a resume's is what its first run recorded

    def show(plan) -> None:
        shown.append(plan)
        _print_header(plan, args, why)
    try:
        out = run_sweep(request, opts, show)
    except (SweepInterrupted, KeyboardInterrupt) as stop:
        counts = f"{stop.done} of {stop.planned} trials finished; " if isinstance(stop, SweepInterrupted) else ""
        print(f"\ninterrupted: {counts}continue with `{_resume_command(args)}`", file=sys.stderr)
        return 130
    _print_footer(shown[-1], out)
    return 0 if out.errors == 0 else 1


def _dry_run_lines(plan, args, why: str) -> list[str]:
    from orchestrator.sweep.cost import bench_figures, cost_lines, shipped_figures
    from orchestrator.sweep.options import SweepOptions
    from orchestrator.sweep.tuner import fuse_of
    if args.deadline is not None and args.deadline <= 0:
        raise UserError(f"--deadline must be a positive number of hours, got {args.deadline:g}")
    figures = bench_figures(args.figures) if args.figures else shipped_figures()
    lines = cost_lines(plan, figures, args.deadline)
    fuse = fuse_of(plan, SweepOptions(fuse=args.fuse))
    if fuse > 1:        # the counts above are of trials: a fused trial's members are trials
        ray_trials = len(plan.cells) * -(-plan.profile.samples // fuse)
        lines.insert(1, f"fused (--fuse {fuse}): these {plan.n_trials} trials run as {ray_trials} Ray trials of up to "
                        f"{fuse} learning rates of a cell each, every one still a trial (its own MLflow run); "
                        f"the device time below is that of separate trials")
    if args.replicates:
        epochs = plan.base.get("epochs", 1)
        lines.insert(1, f"then --replicates {args.replicates}: {args.replicates * len(plan.cells)} more trials "
                        f"(each cell's chosen learning rate, {epochs} epochs each, none stopped early; "
                        f"not in the estimate below)")
    return [*lines, f"profile {plan.profile_name}: {why}"]


def _print_header(plan, args, why: str) -> None:
    from clip_prompt_sweeps.store.uri import resolve_tracking_uri
    per_cell = (f"{plan.profile.samples} learning rate" + ("s" if plan.profile.samples > 1 else "")) if plan.profile.lr else "1 trial"
    print(f"sweep {plan.experiment.name} ({plan.profile_name}): {len(plan.cells)} cells x {per_cell} = "
          f"{plan.n_trials} trials, trainable {plan.trainable.name}"
          + (f"; then {args.replicates} replicate(s) of each cell's chosen learning rate" if args.replicates else ""))
    print(f"profile {plan.profile_name}: {why}")
    print(f"MLflow {resolve_tracking_uri(args.tracking_uri)}; Ray {args.address or os.environ.get('RAY_ADDRESS') or 'local'}")


def _print_footer(plan, out) -> None:
    from clip_prompt_sweeps.store.uri import runs_page
    print(f"\n{out.trials} trials, {out.errors} failed; MLflow parent run {out.parent_run_id} "
          f"in experiment '{out.experiment}' at {out.tracking_uri}")
    serve, page = runs_page(out.tracking_uri, out.experiment_id)
    print(f"open the runs:  {serve + ', then ' if serve else ''}{page}")
    if plan.experiment.report is not None:
        print(f"build a report: python -m orchestrator report {plan.experiment.name}")


def cmd_report(args) -> int:
    from clip_prompt_sweeps.store.uri import (
        check_existing_store,
        check_tracking,
        resolve_tracking_uri,
        store_exists,
    )
    from reports.build import build_report, check_report_name
    from search_spaces.registry import list_experiments
    from search_spaces.sweep_file import is_sweep_file, load_sweep_file
    experiments = list_experiments()
    if is_sweep_file(args.sweep):      # `report my_sweep.toml`: the sweep that file defines
        experiments.append(load_sweep_file(args.sweep))
        args.sweep = experiments[-1].name
    check_report_name(args.sweep, experiments)
    if args.sweep == "all" and args.run_id:
        raise UserError("report all takes each sweep's latest run; --run-id picks one sweep's run: "
                        "use it with `report SWEEP`")
    uri = resolve_tracking_uri(args.tracking_uri)
    check_tracking(uri)
    if not store_exists(uri):
        first = "the study's sweeps (`python -m orchestrator list`)" if args.sweep == "all" else \
            f"`python -m orchestrator sweep {args.sweep}`"
        raise UserError(f"no MLflow store at {uri}; run {first} first, or pass the store they used "
                        f"with --tracking-uri")
    check_existing_store(uri)
    path = build_report(args.sweep, experiments, uri, Path(args.out), args.run_id)
    print(f"report written: {path}")
    if path.with_suffix(".html").is_file():
        print(f"one self-contained page: {path.with_suffix('.html')}")
    return 0


def cmd_status(args) -> int:
    from mlflow.tracking import MlflowClient

    from clip_prompt_sweeps.store.uri import (
        check_existing_store,
        check_tracking,
        resolve_tracking_uri,
        store_exists,
    )
    from orchestrator.commands.status import status_lines
    uri = resolve_tracking_uri(args.tracking_uri)
    check_tracking(uri)
    if not store_exists(uri):
        raise UserError(f"no MLflow store at {uri}; pass the store your sweeps use with --tracking-uri")
    check_existing_store(uri)
    print("\n".join(status_lines(MlflowClient(uri), args.sweep, tracking_uri=args.tracking_uri)))
    return 0


def cmd_classify(args) -> int:
    from orchestrator.commands.classify import Request, classify
    lines, figure = classify(Request(args.preset, args.template, args.labels, args.images, args.n, args.seed,
                                     args.data, args.data_dir, args.model, args.pretrained, args.out))
    print("\n".join(lines))
    print(f"figure written to {figure}; every image's probabilities in {figure.with_suffix('.csv')}")
    return 0


def cmd_bench(args) -> int:
    import torch

    from orchestrator.bench.fused import bench_fused
    from orchestrator.bench.speed import BENCHES, SECTIONS, format_table, run_bench, write_json
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    result = run_bench(device, tuple(args.only or SECTIONS), args.smoke, args.images, args.batch,
                       args.compile, args.data_dir, scale_trials=args.scale_trials,
                       benches={**BENCHES, "fused": bench_fused})
    print(format_table(result))
    if args.json:
        write_json(result, args.json)
        print(f"figures written to {args.json}")
    return 0
