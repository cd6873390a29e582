"""`python -m orchestrator`: list, doctor, fetch, sweep, report, status, classify, bench. This
module only parses the command line and dispatches: each command is a function of
orchestrator/commands/handlers.py, and the work lives in the modules those call."""
from __future__ import annotations

import argparse
import os
import sys

from clip_prompt_sweeps.errors import UserError
from orchestrator.commands import handlers


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
                   help="datasets by the names a sweep takes (docs/data.md: the CIFARs, torchvision's by name, "
                        "an image folder to check); default: the two CIFARs")
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
    p.add_argument("--fuse", type=int, metavar="K",
                   help="train up to K learning rates of a cell together, one pass over the frozen backbone for all "
                        "(deep and visual prompts, the linear probe); each is still its own trial to ASHA, Optuna and MLflow "
                        "(default: the profile's `fuse`, else 1)")
    p.add_argument("--dry-run", action="store_true",
                   help="print what the sweep would cost (trials, epochs under ASHA, images, device-hours) and stop: "
                        "no data, weights, Ray or MLflow needed, nothing written")
    p.add_argument("--deadline", type=float, metavar="HOURS", help="with --dry-run: how many GPUs finish within HOURS")
    p.add_argument("--figures", metavar="JSON", help="with --dry-run: throughput from this `bench --json` file "
                                                      "(default: the figures shipped in orchestrator/sweep/throughput.json)")
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
                        "at 100, 1,000 and 10,000 through the sweep and through bare Tune (hours), or fused: "
                        "K = 1, 2, 4 learning rates as one fused trial against K separate trials")
    p.add_argument("--scale-trials", nargs="+", type=int, metavar="N", help="the counts of `--only scale`")
    p.add_argument("--images", type=int, help="images per timed epoch (default 256 on CPU, 8192 on CUDA)")
    p.add_argument("--batch", type=int, help="batch size (default 64 on CPU, 256 on CUDA)")
    p.add_argument("--compile", action="store_true", help="also time the visual prompt under torch.compile")
    p.add_argument("--smoke", action="store_true", help="tiny model and a few batches: checks that it runs")
    p.add_argument("--data-dir")

COMMANDS = {"list": handlers.cmd_list, "doctor": handlers.cmd_doctor, "fetch": handlers.cmd_fetch,
            "sweep": handlers.cmd_sweep, "report": handlers.cmd_report, "status": handlers.cmd_status,
            "classify": handlers.cmd_classify, "bench": handlers.cmd_bench}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")    # one bar per figure otherwise
    try:
        return COMMANDS[args.command](args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
