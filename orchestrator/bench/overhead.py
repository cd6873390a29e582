"""The orchestration cost per trial, for `bench`: trivial trials (no model, three reports each)
through the project's whole sweep machinery (typed plan, per-cell Optuna and ASHA, parent and
child MLflow runs) and through bare `tune.Tuner` with Ray's `MLflowLoggerCallback`, on one Ray.

`bench --only scale` runs each count in a process of its own (`python -m orchestrator.bench.overhead
KIND TRIALS FOLDER [ADDRESS]`), so that the driver's peak memory is that run's alone."""
from __future__ import annotations

import json
import math
import resource
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

EPOCHS = 3


@dataclass
class TrivialConfig:
    lr: float = 0.1
    epochs: int = EPOCHS
    cell: int = 0


def trivial(config: dict) -> None:
    from ray import tune
    for epoch in range(1, int(config["epochs"]) + 1):
        tune.report({"val_acc": epoch / (1 + abs(math.log10(config["lr"]) + 1)), "epoch": epoch})


def _start_ray(address: str | None = None) -> None:
    import ray
    if not ray.is_initialized():
        ray.init(address, logging_level="ERROR", include_dashboard=False)


def project_seconds(folder: Path, trials: int) -> float:
    from orchestrator.sweep.plan import SweepPlan
    from orchestrator.sweep.driver import SweepOptions, run_sweep
    from search_spaces.experiment import Experiment, LogUniform, Profile
    from trainables.training.entry import Trainable
    _start_ray()
    folder.mkdir(parents=True)
    profile = Profile(base={"epochs": EPOCHS}, grid={"cell": list(range(max(1, trials // 2)))},
                      lr=LogUniform(1e-3, 1.0), samples=2)
    spec = Trainable("trivial", TrivialConfig, trivial, "a trivial trial", ("val_acc",))
    plan = SweepPlan(Experiment("bench", spec, "", {"bench": profile}), "bench", profile,
                     dict(profile.base), profile.cells())
    opts = SweepOptions(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}", storage_path=str(folder / "ray"),
                        verbose=0)
    start = time.perf_counter()
    run_sweep(plan, opts)
    return time.perf_counter() - start


def bare_tune_seconds(folder: Path, trials: int) -> float:
    from ray import tune
    from ray.air.integrations.mlflow import MLflowLoggerCallback
    _start_ray()
    folder.mkdir(parents=True)
    start = time.perf_counter()
    tuner = tune.Tuner(
        trivial,
        param_space={"lr": tune.loguniform(1e-3, 1.0), "epochs": EPOCHS},
        tune_config=tune.TuneConfig(num_samples=2 * max(1, trials // 2), metric="val_acc", mode="max"),
        run_config=tune.RunConfig(storage_path=str(folder / "ray"), verbose=0, callbacks=[
            MLflowLoggerCallback(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}", experiment_name="bench")]),
    )
    tuner.fit()
    return time.perf_counter() - start


KINDS = {"project": project_seconds, "bare": bare_tune_seconds}


def measure(kind: str, trials: int, folder: Path, address: str | None = None) -> dict:
    """Seconds for `trials` trivial trials (Ray's start not counted) and this process's peak RSS."""
    _start_ray(address)
    seconds = KINDS[kind](folder, trials)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with sqlite3.connect(folder / "mlflow.db") as db:       # what it logged: a run per trial (and the parent)
        runs = db.execute("select count(*) from runs").fetchone()[0]
    return {"seconds": seconds, "peak_rss_mb": peak, "runs": runs}


def measure_apart(kind: str, trials: int, folder: Path, address: str | None = None) -> dict:
    """`measure` in a new Python process: on its own Ray, or on the one at `address`."""
    argv = [sys.executable, "-m", "orchestrator.bench.overhead", kind, str(trials), str(folder), *([address] if address else [])]
    out = subprocess.run(argv, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    if out.returncode != 0:
        raise RuntimeError(f"{kind} at {trials} trials exited {out.returncode}:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    kind, count, where, *ray_address = sys.argv[1:]
    print(json.dumps(measure(kind, int(count), Path(where), ray_address[0] if ray_address else None)))
