"""Resume: a real sweep process is killed with SIGKILL after some trials finished, and
`sweep --resume` finishes it: finished trials are not run again, unfinished ones continue from
their last checkpoint, the parent run is reused and every trial keeps exactly one child run."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from orchestrator.plan import make_plan

ROOT = Path(__file__).resolve().parents[1]


def _children(client: MlflowClient, parent: str):
    exp = client.get_experiment_by_name("visual")
    return client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent}'", max_results=1000)


def _parents(client: MlflowClient):
    exp = client.get_experiment_by_name("visual")
    return [] if exp is None else client.search_runs([exp.experiment_id], "tags.role = 'sweep'")


def test_sweep_resumes_after_the_driver_is_killed(data_root, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    # 8 trials of 8 epochs, two at a time, so that the kill lands between finished and unfinished ones
    args = [sys.executable, "-m", "orchestrator", "sweep", "visual", "--tracking-uri", uri,
            "--storage-path", str(tmp_path / "ray"), "--data-dir", str(data_root), "--gpus-per-trial", "0",
            "--epochs", "8", "--set", "batch_size=16", "--max-concurrent", "2"]
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    # Ray snapshots a sweep's state every 10 s by default; these trials last seconds, so every 1 s
    env.update(ORCHESTRATOR_NO_DOWNLOAD="1", RAY_AUTH_MODE="disabled", TUNE_GLOBAL_CHECKPOINT_S="1")
    driver = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    client = MlflowClient(uri)
    deadline = time.time() + 300
    ended: dict[str, int] = {}
    while time.time() < deadline and driver.poll() is None:
        parents = _parents(client) if (tmp_path / "mlflow.db").exists() else []
        if parents:
            runs = _children(client, parents[0].info.run_id)
            ended = {r.info.run_id: r.info.end_time for r in runs if r.info.status != "RUNNING"}
            running = [r for r in runs if r.info.status == "RUNNING" and r.data.metrics.get("epoch", 0) >= 3]
            if len(ended) >= 2 and running:
                break
        time.sleep(0.5)
    assert driver.poll() is None, "the sweep ended before it could be interrupted"
    os.killpg(driver.pid, signal.SIGKILL)       # the driver and everything it started
    driver.wait()
    (parent,) = _parents(client)
    assert parent.info.status == "RUNNING"      # nobody closed it: a hard kill
    histories_before = {run_id: len(client.get_metric_history(run_id, "val_acc")) for run_id in ended}

    resumed = subprocess.run([*args, "--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    n_trials = make_plan("visual", "smoke").n_trials
    (after,) = _parents(client)                                         # the same parent, reused
    assert after.info.run_id == parent.info.run_id and after.info.status == "FINISHED"
    children = _children(client, parent.info.run_id)
    assert len(children) == n_trials                                    # one child run per trial
    assert len({c.data.tags["ray_trial_id"] for c in children}) == n_trials
    assert all(c.info.status in ("FINISHED", "KILLED") for c in children)
    for c in children:                                                  # no epoch logged twice
        steps = [m.step for m in client.get_metric_history(c.info.run_id, "val_acc")]
        assert steps == sorted(set(steps))
    for run_id, end_time in ended.items():                              # finished trials not run again
        assert client.get_run(run_id).info.end_time == end_time
        assert len(client.get_metric_history(run_id, "val_acc")) == histories_before[run_id]
    # a trial that was running continued from its last checkpoint, not from epoch 1
    assert any(int(c.data.tags.get("resumed_at_epoch", "0")) > 1 for c in children)


def test_resume_without_an_interrupted_sweep_says_so(tmp_path, capsys):
    from orchestrator.cli import main
    assert main(["sweep", "visual", "--resume", "--tracking-uri", f"sqlite:///{tmp_path}/m.db"]) == 2
    err = capsys.readouterr().err
    assert "no interrupted 'visual' sweep (smoke) to resume" in err and err.count("\n") == 1
    assert not (tmp_path / "m.db").exists()         # nothing written
