"""What a crash, a diverging learning rate or a second sweep does to a sweep: trials retried from
their checkpoints with the failure recorded, divergence confined to its trial, and two sweeps
sharing one SQLite store."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import ray.cloudpickle
from mlflow.tracking import MlflowClient

from orchestrator.commands.cli import main
from orchestrator.sweep.plan import SweepPlan, make_plan
from orchestrator.sweep.driver import SweepOptions, run_sweep
from search_spaces.experiment import Experiment, LogUniform, Profile
from trainables.training.entry import Trainable

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 4


class FlakyConfig:
    pass


def flaky(config: dict) -> None:
    """Checkpoints every epoch and raises once, at epoch 3 of its first attempt."""
    import tempfile

    from ray import tune
    marker = Path(config["marker_dir"]) / f"{config['_cell']}-{config['lr']:.6g}"
    start = 1
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            start = json.loads((Path(folder) / "state.json").read_text())["epoch"] + 1
    for epoch in range(start, EPOCHS + 1):
        if epoch == 3 and not marker.exists():
            marker.touch()
            raise RuntimeError("injected failure at epoch 3")
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / "state.json").write_text(json.dumps({"epoch": epoch}))
            tune.report({"val_acc": epoch / 10, "epoch": epoch, "start_epoch": start},
                        checkpoint=tune.Checkpoint.from_directory(folder))


def _flaky_plan(marker_dir: Path) -> SweepPlan:
    profile = Profile(base={"epochs": EPOCHS, "marker_dir": str(marker_dir)}, grid={"cell": [0, 1]},
                      lr=LogUniform(0.1, 1.0), samples=2, grace_period=EPOCHS)
    spec = Trainable("flaky", FlakyConfig, flaky, "fails once per trial", ("val_acc",))
    return SweepPlan(Experiment("flaky", spec, "", {"test": profile}), "test", profile,
                     dict(profile.base), profile.cells())


def _flaky_sweep(tmp_path: Path, max_failures: int):
    """The flaky sweep through the project's machinery: (outcome, MLflow client, experiment id)."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    (tmp_path / "markers").mkdir()
    out = run_sweep(_flaky_plan(tmp_path / "markers"),
                    SweepOptions(tracking_uri=uri, storage_path=str(tmp_path / "ray"), gpus_per_trial=0,
                                 max_failures=max_failures, verbose=0))
    client = MlflowClient(uri)
    return out, client, client.get_experiment_by_name("flaky").experiment_id


def test_a_crashed_trial_is_retried_from_its_checkpoint_and_the_failure_recorded(ray_session, tmp_path):
    out, client, exp = _flaky_sweep(tmp_path, max_failures=2)
    assert out.trials == 4 and out.errors == 0                  # every trial failed once, and finished
    runs = client.search_runs([exp], "tags.role = 'trial'")
    assert len(runs) == 4
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.tags["failures"] == "1" and "injected failure at epoch 3" in run.data.tags["last_failure"]
        starts = [m.value for m in client.get_metric_history(run.info.run_id, "start_epoch")]
        assert starts == [1, 1, 3, 3]               # the retry began at epoch 3, from the epoch-2 checkpoint
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")] == [1, 2, 3, 4]


def test_a_crash_beyond_max_failures_fails_only_that_trial(ray_session, tmp_path):
    out, client, exp = _flaky_sweep(tmp_path, max_failures=0)
    assert out.errors == 4
    runs = client.search_runs([exp], "tags.role = 'trial'")
    assert {r.info.status for r in runs} == {"FAILED"}
    assert all("injected failure at epoch 3" in r.data.tags["stop_reason"] for r in runs)
    (parent,) = client.search_runs([exp], "tags.role = 'sweep'")
    assert parent.info.status == "FINISHED"


def test_divergence_stops_only_its_trial_and_the_report_keeps_the_cells_best_finite_run(ray_session, data_root,
                                                                                       tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    plan = make_plan("visual", "smoke", [f"data_dir={data_root}", "dataset=cifar10"], samples=4, epochs=2)
    # learning rates from sane to absurd: the absurd ones make the loss non-finite
    plan = replace(plan, profile=replace(plan.profile, lr=LogUniform(1.0, 1e32)))
    out = run_sweep(plan, SweepOptions(tracking_uri=uri, storage_path=str(tmp_path / "ray"), gpus_per_trial=0,
                                       search="random", verbose=0))
    assert out.errors == 0
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("visual").experiment_id], "tags.role = 'trial'")
    diverged = [r for r in runs if r.data.metrics.get("diverged") == 1]
    finite = [r for r in runs if r.data.metrics.get("diverged") == 0]
    assert diverged and finite and len(diverged) + len(finite) == len(runs) == 8
    for r in diverged:
        assert r.info.status == "KILLED" and r.data.tags["stop_reason"].startswith("non-finite training loss")
        assert not math.isfinite(r.data.metrics["train_loss"])
    for cell in {r.data.tags["cell"] for r in diverged}:       # the cell still has a finite best run
        assert any(r.data.tags["cell"] == cell for r in finite), cell
    assert main(["report", "visual", "--tracking-uri", uri, "--out", str(tmp_path / "out")]) == 0
    report = (tmp_path / "out" / "visual" / "report.md").read_text()
    table = [line for line in report.splitlines() if line.startswith("| cifar10 |")]
    assert table and all("nan" not in line.lower() for line in table)


def test_two_sweeps_at_once_share_one_sqlite_store(data_root, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env_args = ["--tracking-uri", uri, "--data-dir", str(data_root), "--gpus-per-trial", "0", "--samples", "1"]
    sweeps = [subprocess.Popen([sys.executable, "-m", "orchestrator", "sweep", name, "--storage-path",
                                str(tmp_path / f"ray-{name}"), *env_args, "--set", "dataset=cifar10"],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
              for name in ("visual", "linear")]
    errors = [p.communicate(timeout=600)[1] for p in sweeps]
    assert [p.returncode for p in sweeps] == [0, 0], [e[-2000:] for e in errors]
    client = MlflowClient(uri)
    for name, n_trials in (("visual", 2), ("linear", 1)):
        exp = client.get_experiment_by_name(name).experiment_id
        (parent,) = client.search_runs([exp], "tags.role = 'sweep'")
        children = client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
        assert parent.info.status == "FINISHED" and len(children) == n_trials
        assert all(c.info.status in ("FINISHED", "KILLED") and "val_acc" in c.data.metrics for c in children)
    integrity = subprocess.run(["python3", "-c", f"import sqlite3; print(sqlite3.connect('{tmp_path}/mlflow.db')"
                                ".execute('pragma integrity_check').fetchone()[0])"], capture_output=True, text=True)
    assert integrity.stdout.strip() == "ok"
