"""`python -m orchestrator`: list, doctor, fetch, sweep, report, status, classify, bench. Entry
points only declare arguments; the work lives in the modules they call."""
from __future__ import annotations

import argparse
import csv
import os
import signal
import sys
import tempfile
from pathlib import Path

from clip_prompt_sweeps.errors import UserError


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite ./mlflow.db)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m orchestrator",
                                     description="Ray Tune sweeps of the CLIP prompting study, logged to MLflow.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_list_parser, _doctor_parser, _fetch_parser, _sweep_parser, _report_parser, _status_parser,
                _classify_parser, _bench_parser):
        add(sub)
    return parser


def _list_parser(sub) -> None:
    p = sub.add_parser("list", help="sweeps and trainables, one line each",
                       description="List the registered sweeps (with profiles) and trainables.")
    p.add_argument("--backbones", action="store_true",
                   help="instead, every open_clip MODEL:TAG, marking ViTs (deep prompts) and cached weights")


def _doctor_parser(sub) -> None:
    p = sub.add_parser("doctor", help="what this machine has: torch, GPUs, Ray, MLflow, data, weights",
                       description="Report torch, CUDA, the Ray address, the MLflow store, data and weights.")
    p.add_argument("--data-dir", help="data dir (default: $ORCHESTRATOR_DATA_DIR, else the user cache)")
    p.add_argument("--address", help="Ray address (default: $RAY_ADDRESS, else local)")
    p.add_argument("--cluster-config", metavar="YAML",
                   help="only check a cluster.yaml against Ray's schema, as `ray up` would")
    _add_common(p)


def _fetch_parser(sub) -> None:
    p = sub.add_parser("fetch", help="download CIFAR and weights into the caches ahead of time",
                       description="Download the CIFAR archives (md5-checked) and the model weights.")
    p.add_argument("--data-dir")
    p.add_argument("--datasets", nargs="*", default=["cifar10", "cifar100"],
                   help="cifar10, cifar100, or a torchvision dataset (stl10, svhn, food101, flowers102, "
                        "oxfordiiitpet, dtd, eurosat, gtsrb); default: the two CIFARs")
    p.add_argument("--weights", nargs="*", metavar="MODEL:TAG",
                   help="also fetch weights: alone, CLIP ViT-B-32 openai and ResNet-18; with values, those open_clip "
                        "backbones (e.g. ViT-B-16:laion2b_s34b_b88k; `list --backbones`)")
    p.add_argument("--data", choices=("real", "synthetic"), default="real",
                   help="synthetic: write the smoke profile's stand-in CIFAR instead (offline; to try a cluster)")


def _sweep_parser(sub) -> None:
    p = sub.add_parser("sweep", help="run a sweep on Ray Tune, logged to MLflow",
                       description="Run SWEEP: one trial per cell and learning rate, ASHA within each cell.")
    p.add_argument("sweep", help="sweep name (see `list`) or a sweep file, path/to/my_sweep.toml")
    p.add_argument("--profile", help="smoke (tiny model, synthetic data) or full (the study); default: "
                                      "$ORCHESTRATOR_PROFILE, else smoke")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a trainable config key, checked against its typed config")
    p.add_argument("--grid", dest="grids", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="a grid axis of several values (new, or in place of the profile's), e.g. "
                        "--grid backbone=ViT-B-32:openai,ViT-B-32:laion2b_s34b_b79k")
    p.add_argument("--samples", type=int, help="learning rates per cell")
    p.add_argument("--epochs", type=int)
    p.add_argument("--search", choices=("tpe", "random"), default="tpe",
                   help="how each cell's learning rates are proposed: Optuna TPE or random")
    p.add_argument("--data-dir")
    p.add_argument("--address", help="join a running Ray cluster (default: $RAY_ADDRESS, else local)")
    p.add_argument("--storage-path", help="where Ray keeps results and checkpoints (shared on a cluster)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--gpus-per-trial", type=float, help="fractional allowed (default 0.5 if GPUs, else 0)")
    p.add_argument("--max-concurrent", type=int)
    p.add_argument("--max-failures", type=int, default=2, help="retries of a crashed trial")
    p.add_argument("--trials-per-experiment", type=int, default=2000, metavar="N",
                   help="a bigger sweep runs as consecutive Tune experiments over groups of whole cells of at most "
                        "N trials each, which bounds the driver's memory (default 2000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dry-run", action="store_true",
                   help="print what the sweep would cost (trials, epochs under ASHA, images, device-hours) and stop: "
                        "no data, weights, Ray or MLflow needed, nothing written")
    p.add_argument("--deadline", type=float, metavar="HOURS", help="with --dry-run: how many GPUs finish within HOURS")
    p.add_argument("--figures", metavar="JSON", help="with --dry-run: throughput from this `bench --json` file "
                                                      "(default: the figures shipped in orchestrator/throughput.json)")
    p.add_argument("--verbose", action="store_true", help="also Ray's own trial tables (default: one progress line "
                                                           "and a line per completed cell)")
    p.add_argument("--replicates", type=int, default=0, metavar="N",
                   help="after tuning, rerun each cell's chosen learning rate with N new seeds (the split fixed); "
                        "reports then give mean ± 95%% CI")
    p.add_argument("--resume", action="store_true",
                   help="continue the latest interrupted sweep of this name and profile (same MLflow parent run)")
    _add_common(p)


def _report_parser(sub) -> None:
    p = sub.add_parser("report", help="tables and figures of a sweep, from MLflow alone",
                       description="Build the markdown report of SWEEP from its latest MLflow parent run.")
    p.add_argument("sweep", help="sweep name, `all`, or a sweep file (path/to/my_sweep.toml)")
    p.add_argument("--out", default="reports_out", help="output folder (default ./reports_out)")
    p.add_argument("--run-id", help="parent run id (default: the latest sweep run)")
    _add_common(p)


def _status_parser(sub) -> None:
    p = sub.add_parser("status", help="where each sweep stands, from MLflow alone",
                       description="For each sweep in the MLflow store (or SWEEP): trials done, cells complete, "
                                   "the best so far per dataset, its driver, and the command that resumes it.")
    p.add_argument("sweep", nargs="?", help="only this sweep (default: every sweep in the store)")
    _add_common(p)


def _classify_parser(sub) -> None:
    p = sub.add_parser("classify", help="a new CLIP classifier from a template and labels, on images",
                       description="Zero-shot CLIP on a task of your own (seed 2.1b): each image with its "
                                   "label probabilities, as a figure.")
    p.add_argument("--preset", help="the seed's tasks: colour (red/green/blue), origin (human-made/from-nature)")
    p.add_argument("--template", help="a sentence with {} for the label, e.g. \"This is an image mostly coloured {}\"")
    p.add_argument("--labels", nargs="+", help="two or more labels")
    p.add_argument("--images", metavar="FOLDER", help="classify these image files (default: CIFAR-100 test images)")
    p.add_argument("--n", type=int, default=12, help="how many random CIFAR-100 test images (default 12)")
    p.add_argument("--seed", type=int, default=0, help="which CIFAR-100 test images")
    p.add_argument("--data", choices=("real", "synthetic"), default="real")
    p.add_argument("--data-dir")
    p.add_argument("--model", default="ViT-B-32", help="any open_clip model (`list --backbones`), or tiny-clip")
    p.add_argument("--pretrained", default="openai", help="its pretrained tag, or none (random init)")
    p.add_argument("--out", default="reports_out", help="output folder (default ./reports_out)")


def _bench_parser(sub) -> None:
    p = sub.add_parser("bench", help="speed of the caches, the pipeline and the orchestration, as ratios",
                       description="Measure on this machine, in one run, each speed-up against a baseline "
                                   "measured in the same run; print a table (targets beside, not asserted).")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda where torch sees a GPU, else cpu")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    p.add_argument("--only", nargs="+", metavar="SECTION",
                   help="pipeline, deep, finetune, visual, overhead (default: these), or scale: trivial trials "
                        "at 100, 1,000 and 10,000 through the sweep and through bare Tune (hours)")
    p.add_argument("--scale-trials", nargs="+", type=int, metavar="N", help="the counts of `--only scale`")
    p.add_argument("--images", type=int, help="images per timed epoch (default 256 on CPU, 8192 on CUDA)")
    p.add_argument("--batch", type=int, help="batch size (default 64 on CPU, 256 on CUDA)")
    p.add_argument("--compile", action="store_true", help="also time the visual prompt under torch.compile")
    p.add_argument("--smoke", action="store_true", help="tiny model and a few batches: checks that it runs")
    p.add_argument("--data-dir")

def cmd_list(args) -> int:
    if args.backbones:
        from orchestrator.doctor import backbone_lines
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
        return _doctor_cluster_file(args.cluster_config)
    from orchestrator.doctor import doctor_lines
    print("\n".join(doctor_lines(args.data_dir, args.address, args.tracking_uri)))
    return 0


def _doctor_cluster_file(name: str) -> int:
    """0 when the file is ready to start a cluster, 1 with what to fix; a broken file is bad input."""
    from orchestrator.cluster import validate_batch_file, validate_cluster_config
    from orchestrator.cluster_files import check_cluster_file
    path = Path(name)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cluster config {name}: cannot read it ({getattr(err, 'strerror', None) or err})") from None
    checked = check_cluster_file(path, text)
    if "#SBATCH" in text:
        validate_batch_file(name)
        form = "valid (bash -n)"
    else:
        config = validate_cluster_config(name)
        types = config.get("available_node_types") or {}
        form = "valid (Ray's schema)" + (f"; node types: {', '.join(types)}" if types else "")
    print(f"cluster config {name}: {checked.kind}, {form}")
    for note in checked.notes:
        print(f"  {note}")
    for problem in checked.problems:
        print(f"  to fix: {problem}")
    print(f"{len(checked.problems)} thing(s) to fix" if checked.problems else "ready: nothing to fix")
    return 1 if checked.problems else 0


def cmd_fetch(args) -> int:
    from trainables.cifar import ensure_archive, is_present
    from trainables.paths import data_dir
    root = data_dir(args.data_dir)
    from trainables.image_datasets import TORCHVISION, check_image_dataset
    for name in args.datasets:
        if name in TORCHVISION and args.data == "real":
            check_image_dataset(name, root)     # torchvision's own checksummed download, under the lock
            print(f"{name}: present in {root / name}")
            continue
        if name not in ("cifar10", "cifar100"):
            raise UserError(f"fetch: unknown dataset '{name}'; known: cifar10, cifar100, {', '.join(TORCHVISION)} "
                            f"(synthetic: cifar10, cifar100)")
        ensure_archive(name, root, args.data)
        kind = "" if args.data == "real" else f" ({args.data})"
        print(f"{name}{kind}: {'present' if is_present(root, name, args.data) else 'missing'} in {root}")
    if args.weights is not None:
        from trainables.backbones import check_backbone, parse_backbone
        from trainables.clip import fetch_clip_weights
        wanted = [parse_backbone(b) for b in args.weights] or [("ViT-B-32", "openai")]
        for model, tag in wanted:           # every name checked before the first download
            check_backbone(model, tag)
        for model, tag in wanted:
            print(f"CLIP {model} {tag}: {fetch_clip_weights(model, tag) if tag != 'none' else 'random init, nothing to fetch'}")
        if not args.weights:
            from trainables.resnet import load_resnet18
            load_resnet18("IMAGENET1K_V1")
            print("ResNet-18 IMAGENET1K_V1: cached")
    return 0


def _data_dir_set(args, experiment) -> list[str]:
    """--data-dir as a config key, for the sweeps whose trials read CIFAR (compare reads none)."""
    from trainables.config import field_types
    if not args.data_dir or "data_dir" not in field_types(experiment.trainable.config_cls):
        return []
    return [f"data_dir={Path(args.data_dir).resolve()}"]


def _resume_command(args) -> str:
    """The command that continues this sweep: the same store, storage, cluster and profile."""
    from orchestrator.status import resume_command
    return resume_command(args.sweep, args.profile, tracking_uri=args.tracking_uri,
                          storage_path=args.storage_path, address=args.address)


def cmd_sweep(args) -> int:
    from orchestrator.plan import (
        PROFILE_ENV,
        choose_profile,
        make_plan,
        resolve_experiment,
    )
    from orchestrator.sweep import SweepInterrupted, SweepOptions, run_sweep
    args.profile, why = choose_profile(args.profile, os.environ)
    if args.trials_per_experiment < 1:
        raise UserError(f"--trials-per-experiment must be at least 1, got {args.trials_per_experiment}")
    experiment = resolve_experiment(args.sweep)
    known = experiment.profiles
    if args.profile not in known and why == f"from ${PROFILE_ENV}":
        raise UserError(f"${PROFILE_ENV}={args.profile!r} is not a profile of sweep '{args.sweep}'; "
                        f"known: {', '.join(sorted(known))} (or pass --profile)")
    plan = make_plan(experiment, args.profile, args.sets + _data_dir_set(args, experiment), args.samples, args.epochs,
                     args.grids)
    if args.dry_run:
        print("\n".join(_dry_run_lines(plan, args, why)))
        return 0
    _print_header(plan, args, why)
    opts = SweepOptions(args.address, args.tracking_uri, args.storage_path, args.cpus_per_trial,
                        args.gpus_per_trial, args.max_concurrent, args.search, args.seed, args.max_failures,
                        resume=args.resume, verbose=1 if args.verbose else 0, replicates=args.replicates,
                        trials_per_experiment=args.trials_per_experiment)
    # SLURM's time limit and `kill` send SIGTERM: stop as gracefully as on Ctrl-C (Tune's handler)
    previous = signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
    try:
        out = run_sweep(plan, opts)
    except (SweepInterrupted, KeyboardInterrupt) as stop:
        counts = f"{stop.done} of {stop.planned} trials finished; " if isinstance(stop, SweepInterrupted) else ""
        print(f"\ninterrupted: {counts}continue with `{_resume_command(args)}`", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    _print_footer(plan, out)
    return 0 if out.errors == 0 else 1


def _dry_run_lines(plan, args, why: str) -> list[str]:
    from orchestrator.cost import bench_figures, cost_lines, shipped_figures
    if args.deadline is not None and args.deadline <= 0:
        raise UserError(f"--deadline must be a positive number of hours, got {args.deadline:g}")
    figures = bench_figures(args.figures) if args.figures else shipped_figures()
    lines = cost_lines(plan, figures, args.deadline)
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
    from orchestrator.status import status_lines
    uri = resolve_tracking_uri(args.tracking_uri)
    check_tracking(uri)
    if not store_exists(uri):
        raise UserError(f"no MLflow store at {uri}; pass the store your sweeps use with --tracking-uri")
    check_existing_store(uri)
    print("\n".join(status_lines(MlflowClient(uri), args.sweep, tracking_uri=args.tracking_uri)))
    return 0


FIGURE_IMAGES = 24      # the figure shows the first images; the CSV holds every one


def cmd_classify(args) -> int:
    import torch

    from reports.figures import probability_grid
    from trainables import freeform
    from trainables.clip import load_clip
    task = freeform.task_from(args.preset, args.template, args.labels)
    if args.images:
        paths = freeform.image_files(Path(args.images))
        names = [p.name for p in paths]
    else:
        from trainables.cifar import load_cifar
        from trainables.paths import data_dir
        if args.n < 1:
            raise UserError(f"--n must be at least 1, got {args.n}")
        cifar = load_cifar("cifar100", data_dir(args.data_dir), args.data)
        idx = torch.randperm(len(cifar.test.labels), generator=torch.Generator().manual_seed(args.seed))[:args.n]
        names = [f"#{i} {cifar.classes[cifar.test.labels[i]]}" for i in idx.tolist()]
    clip = load_clip(args.model, args.pretrained, "cuda" if torch.cuda.is_available() else "cpu")
    probs = (freeform.probabilities_for_files(clip, paths, task) if args.images
             else freeform.probabilities_for_cifar(clip, cifar.test.images[idx], task))
    for name, p in zip(names, probs):
        print(f"{name:<32} {task.labels[int(p.argmax())]:<16} " +
              "  ".join(f"{label} {v:.2f}" for label, v in zip(task.labels, p.tolist())))
    shown = min(len(names), FIGURE_IMAGES)
    images = ([freeform.read_image(p) for p in paths[:shown]] if args.images
              else [im.permute(1, 2, 0).numpy() for im in cifar.test.images[idx[:shown]]])
    out = Path(args.out) / "classify"
    slug = _task_slug(args.preset if args.preset and not args.template and not args.labels else None, task)
    title = (f"{task.template.replace('{}', '___')}: {', '.join(task.labels)} ({args.model}, {args.pretrained})"
             + (f"; first {shown} of {len(names)}" if shown < len(names) else ""))
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".classify-") as tmp:   # both files, or neither
        probability_grid(images, names[:shown], task.labels, probs[:shown].numpy(), title, Path(tmp) / "f.png")
        with open(Path(tmp) / "f.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["image", "predicted", *task.labels])
            writer.writerows([name, task.labels[int(p.argmax())], *(f"{v:.6f}" for v in p.tolist())]
                             for name, p in zip(names, probs))
        os.replace(Path(tmp) / "f.png", out / f"{slug}.png")
        os.replace(Path(tmp) / "f.csv", out / f"{slug}.csv")
    print(f"figure written to {out / f'{slug}.png'}; every image's probabilities in {out / f'{slug}.csv'}")
    return 0


def _task_slug(preset: str | None, task) -> str:
    """The seed's presets keep their names (`report all` shows them as Figures 5 and 6); any
    other task is `custom-...`, so it can never replace a preset's figure."""
    import hashlib
    import re
    if preset:
        return preset
    words = re.sub(r"[^a-z0-9]+", "-", task.template.replace("{}", "_").lower()).strip("-")[:40]
    digest = hashlib.sha1("\n".join((task.template, *task.labels)).encode()).hexdigest()[:8]
    return f"custom-{words}-{digest}".replace("--", "-")


def cmd_bench(args) -> int:
    import torch

    from orchestrator.bench import SECTIONS, format_table, run_bench, write_json
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    result = run_bench(device, tuple(args.only or SECTIONS), args.smoke, args.images, args.batch,
                       args.compile, args.data_dir, scale_trials=args.scale_trials)
    print(format_table(result))
    if args.json:
        write_json(result, args.json)
        print(f"figures written to {args.json}")
    return 0


COMMANDS = {"list": cmd_list, "doctor": cmd_doctor, "fetch": cmd_fetch, "sweep": cmd_sweep,
            "report": cmd_report, "status": cmd_status, "classify": cmd_classify, "bench": cmd_bench}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")    # one bar per figure otherwise
    try:
        return COMMANDS[args.command](args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
