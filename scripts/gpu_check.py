"""Everything a GPU changes, measured in one call (issue #29), for a machine lent for minutes:

    python scripts/gpu_check.py --out gpu-check                          # a GPU machine: under 10 minutes
    python scripts/gpu_check.py --device cpu --smoke --out /tmp/rehearsal  # the same steps here, tiny

1. `tests/gpu_check.py`: the caches in bf16 against the uncached paths, every trainable on CUDA,
   a real-size ViT-B-16;
2. `bench` of the sections the deep grid depends on (its figures: this machine's throughput);
3. a slice of the full deep grid (CIFAR-10, 8 prompts, every layer and position, 4 learning
   rates, the study's epochs) on synthetic data of CIFAR's real size: the dry run's estimate
   (from the shipped figures and from step 2's), then the slice itself, timed;
4. one cell's 4 learning rates at 1, 2 and 4 trials per GPU: images/s per GPU and peak memory;
5. the same 4 learning rates as fused trials (issue #38: `--fuse 1, 2, 4`, one trial at a time on
   the whole GPU): images/s per GPU and peak memory, beside step 4's.

Everything lands in one folder: `gpu_check.json` (the figures) and `logs/` (each step's output).
A step that fails is recorded and the next one still runs; the exit status is 1 if any failed.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PACKING = (1, 2, 4)                 # trials per GPU
FUSING = (1, 2, 4)                  # learning rates per fused trial
REAL_SIZE = {"cifar10": (5000, 1000)}    # images per class (train, test), as the real CIFAR-10


def slice_args(smoke: bool, epochs: int | None) -> list[str]:
    """The slice of the deep grid: one dataset and one prompt count, every layer and position."""
    profile = ["--profile", "smoke", "--samples", "1"] if smoke else ["--profile", "full", "--samples", "4"]
    data = ["--set", "data=synthetic"] if smoke else ["--set", "data=real"]
    return ["deep", *profile, *data, "--set", "dataset=cifar10", "--set", f"n_prompts={4 if smoke else 8}",
            *(["--epochs", str(epochs)] if epochs else [])]


def packing_args(smoke: bool, epochs: int) -> list[str]:
    """One cell (the middle layer, in front) of the slice, its learning rates, a few epochs each."""
    return [*slice_args(smoke, epochs), "--set", "layer=middle", "--set", "position=front",
            "--samples", "2" if smoke else "4"]


class Step:
    """One command, its output in logs/NAME.log, its time and exit status in the JSON."""

    def __init__(self, out: Path, env: dict):
        self.out, self.env, self.failed = out, env, []

    def run(self, name: str, argv: list[str], timeout: float) -> dict:
        log = self.out / "logs" / f"{name}.log"
        start = time.monotonic()
        try:
            done = subprocess.run(argv, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout)
            code, text = done.returncode, done.stdout + done.stderr
        except subprocess.TimeoutExpired as err:
            code, text = 124, f"{err.stdout or ''}{err.stderr or ''}\n(timed out after {timeout:.0f} s)"
        seconds = time.monotonic() - start
        log.write_text(f"$ {' '.join(argv)}\n{text}")
        print(f"{'ok  ' if code == 0 else 'FAIL'} {name}: {seconds:.1f} s (logs/{name}.log)", flush=True)
        if code != 0:
            self.failed.append(name)
        return {"command": " ".join(argv[2:] if argv[1] == "-m" else argv[1:]), "exit": code,
                "seconds": round(seconds, 1), "output": text}


def write_real_size_data(root: Path) -> None:
    """CIFAR-10 in its archive format at its real size (50,000 + 10,000 images), laid out where the
    real archive extracts: what a trial reads and how long it takes are those of the real data."""
    from trainables.data.sources.cifar import ARCHIVES, is_present
    from trainables.data.synthetic_archives import write_synthetic_archive
    for name, per_class in REAL_SIZE.items():
        if not is_present(root, name):
            write_synthetic_archive(name, ARCHIVES[name], root, per_class)


def estimate_seconds(dry_run: str) -> dict[str, float | None]:
    """machine -> the dry run's expected device-seconds (None: no figure for this model)."""
    found: dict[str, float | None] = {}
    for line in dry_run.splitlines():
        hit = re.match(r"\s+(.+?), measured [^:]*: (?:about ([\d,.]+) device-hours|(.*))", line)
        if hit:
            found[hit.group(1)] = float(hit.group(2).replace(",", "")) * 3600 if hit.group(2) else None
    return found


def run_summary(uri: str, smoke: bool) -> dict:
    """From the latest deep sweep in MLflow: trials, epochs run, images through the model and the
    peak memory any trial reached. The images per epoch come from the slice's own settings (the
    plan this script typed), never from a value read back from the store."""
    from mlflow.tracking import MlflowClient

    from clip_prompt_sweeps.store.records import read_parent
    from clip_prompt_sweeps.store.runs import latest_parent, trials
    from orchestrator.sweep.cost import split_sizes
    from orchestrator.sweep.plan import make_plan
    client = MlflowClient(uri)
    parent = read_parent(latest_parent(client, "deep"))
    runs = trials(client, parent.experiment_id, parent.run_id)
    epochs = sum(int(r.metric("epoch") or 0) for r in runs)
    memory = [r.metric("system/peak_gpu_memory_mb") or r.metric("system/peak_rss_mb") or 0.0 for r in runs]
    cfg = next(iter(make_plan("deep", "smoke" if smoke else "full",
                              ["dataset=cifar10", f"data={'synthetic' if smoke else 'real'}"]).typed.values()))
    train, val, _ = split_sizes(cfg)
    return {"trials": len(runs), "trial_epochs": epochs, "images": epochs * (train + val),
            "peak_memory_mb": round(max(memory, default=0.0), 1),
            "memory_kind": "GPU (torch allocator)" if any(r.metric("system/peak_gpu_memory_mb") for r in runs)
            else "process RSS"}


def parse_args(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--smoke", action="store_true", help="tiny model and data: the rehearsal of every step")
    parser.add_argument("--out", required=True, help="the folder of gpu_check.json and logs/")
    parser.add_argument("--slice-epochs", type=int, help="epochs of the slice's trials (default: the profile's)")
    parser.add_argument("--packing-epochs", type=int, default=2, help="epochs of each packing trial (default 2)")
    parser.add_argument("--address", help="run the sweeps on this Ray cluster (default: each starts a local Ray)")
    return parser.parse_args(argv)


def environment(out: Path, address: str | None) -> dict:
    """The sweeps' environment: data, store, storage and journal all under `out`, never the user's."""
    env = {**os.environ, "ORCHESTRATOR_DATA_DIR": str(out / "data"), "ORCHESTRATOR_NO_DOWNLOAD": "1",
           "MLFLOW_TRACKING_URI": f"sqlite:///{out}/mlflow.db", "ORCHESTRATOR_STORAGE_PATH": str(out / "ray"),
           "ORCHESTRATOR_JOURNAL_DIR": str(out / "journal"), "PYTHONPATH": str(ROOT)}
    env.pop("ORCHESTRATOR_PROFILE", None)
    if address:
        env["RAY_ADDRESS"] = address
    return env


def check_and_bench(step: Step, args, out: Path) -> dict:
    """tests/gpu_check.py (the real-size model, bf16 caches against the uncached paths), then bench."""
    py, smoke = sys.executable, ["--smoke"] if args.smoke else []
    check = [py, "tests/gpu_check.py", "--device", args.device, *smoke]
    bench = [py, "-m", "orchestrator", "bench", "--device", args.device, "--only", "pipeline", "deep", "visual", "fused",
             "--json", str(out / "bench.json"), *smoke, *(["--compile"] if args.device == "cuda" else [])]
    return {"gpu_check": step.run("gpu_check", check, 300), "bench": step.run("bench", bench, 240)}


def provide_data(args, env: dict, out: Path) -> None:
    if args.smoke:
        subprocess.run([sys.executable, "-m", "orchestrator", "fetch", "--data", "synthetic", "--datasets", "cifar10"],
                       cwd=ROOT, env=env, check=True, capture_output=True)
    else:
        write_real_size_data(out / "data")


def run_slice(step: Step, args, env: dict, out: Path) -> dict:
    """The slice of the deep grid, timed, beside the dry run's estimates (shipped figures, measured ones)."""
    sweep = [sys.executable, "-m", "orchestrator", "sweep", *slice_args(args.smoke, args.slice_epochs)]
    figures = ["--figures", str(out / "bench.json")] if (out / "bench.json").is_file() else []
    dry = step.run("slice_dry_run_shipped", [*sweep, "--dry-run"], 60)
    dry_here = step.run("slice_dry_run_measured", [*sweep, "--dry-run", *figures], 60) if figures else dry
    gpus = "0" if args.device == "cpu" else "0.5"
    run = step.run("slice", [*sweep, "--gpus-per-trial", gpus], 900)
    return {"dry_run": dry["output"], "estimate_s": {**estimate_seconds(dry["output"]),
                                                     **estimate_seconds(dry_here["output"])},
            "measured_s": run["seconds"], "exit": run["exit"], "gpus_per_trial": float(gpus),
            **(run_summary(env["MLFLOW_TRACKING_URI"], args.smoke) if run["exit"] == 0 else {})}


def _sweep_row(step: Step, args, env: dict, name: str, extra: list[str], row: dict) -> dict:
    """One sweep of the packing cell with `extra` options, timed: `row` with its images/s per GPU,
    peak memory and the runs' counts (from MLflow) where it exited 0."""
    argv = [sys.executable, "-m", "orchestrator", "sweep", *packing_args(args.smoke, args.packing_epochs), *extra]
    done = step.run(name, argv, 600)
    row = {**row, "seconds": done["seconds"], "exit": done["exit"]}
    if done["exit"] == 0:
        summary = run_summary(env["MLFLOW_TRACKING_URI"], args.smoke)
        row.update(summary, images_per_s_per_gpu=round(summary["images"] / done["seconds"], 1))
    return row


def _device_share(args, share: float) -> list[str]:
    """A trial's share of a GPU (on a CPU: of one CPU)."""
    return ["--gpus-per-trial", f"{share:g}"] if args.device == "cuda" else \
        ["--gpus-per-trial", "0", "--cpus-per-trial", f"{share:g}"]


def run_packing(step: Step, args, env: dict) -> list[dict]:
    """1, 2 and 4 trials sharing one GPU (on a CPU: one CPU): images/s per GPU and peak memory."""
    return [_sweep_row(step, args, env, f"packing_{n}_per_gpu", [*_device_share(args, 1 / n), "--max-concurrent", str(n)],
                       {"trials_per_gpu": n}) for n in PACKING]


def run_fusing(step: Step, args, env: dict) -> list[dict]:
    """The packing step's learning rates as fused trials of 1, 2 and 4 members, one trial at a
    time on the whole GPU (on a CPU: one CPU): images/s per GPU and peak memory."""
    return [_sweep_row(step, args, env, f"fused_{k}", [*_device_share(args, 1.0), "--max-concurrent", "1", "--fuse", str(k)],
                       {"fuse": k}) for k in FUSING]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out).absolute()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    env = environment(out, args.address)
    step = Step(out, env)
    result: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "device": args.device, "smoke": args.smoke}
    result.update(check_and_bench(step, args, out))
    provide_data(args, env, out)
    result["slice"] = run_slice(step, args, env, out)
    result["packing"] = run_packing(step, args, env)
    result["fused"] = run_fusing(step, args, env)
    for key in ("gpu_check", "bench"):      # the logs hold the output; the JSON keeps the figures
        result[key].pop("output", None)
    result["failed"] = step.failed
    (out / "gpu_check.json").write_text(json.dumps(result, indent=2))
    print(format_summary(result))
    print(f"figures: {out / 'gpu_check.json'}; logs: {out / 'logs'}")
    return 1 if step.failed else 0


def format_summary(result: dict) -> str:
    s = result["slice"]
    lines = [f"slice of the deep grid: {s.get('trials', '?')} trials, {s.get('trial_epochs', '?')} trial-epochs, "
             f"measured {s['measured_s']:.0f} s wall at {s['gpus_per_trial']:g} GPU per trial"]
    lines += [f"  dry-run estimate ({where}): " + (f"{est:.0f} s" if est is not None else "no figure for this model")
              for where, est in s["estimate_s"].items()]
    lines.append("trials per GPU | images/s per GPU | peak memory (MB) | seconds")
    lines += [f"{r['trials_per_gpu']:>14} | {r.get('images_per_s_per_gpu', 'failed'):>16} | "
              f"{r.get('peak_memory_mb', '-'):>16} | {r['seconds']:.0f}" for r in result["packing"]]
    lines.append("learning rates per fused trial | images/s per GPU | peak memory (MB) | seconds")
    lines += [f"{r['fuse']:>30} | {r.get('images_per_s_per_gpu', 'failed'):>16} | "
              f"{r.get('peak_memory_mb', '-'):>16} | {r['seconds']:.0f}" for r in result["fused"]]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
