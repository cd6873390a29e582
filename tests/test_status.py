"""`status` reads MLflow only: a finished sweep, an interrupted one (a real driver stopped with
Ctrl-C) and a running one (a real driver in a subprocess, still holding its lease)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from orchestrator.commands.cli import main
from orchestrator.sweep.resume import DONE

ROOT = Path(__file__).resolve().parents[1]


def _start(args: list[str], log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    return subprocess.Popen([sys.executable, "-m", "orchestrator", *args], cwd=ROOT, env={**env, "PYTHONUNBUFFERED": "1"},
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for_an_epoch(client: MlflowClient, sweep: str, driver: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and driver.poll() is None:
        exp = client.get_experiment_by_name(sweep)
        runs = [] if exp is None else client.search_runs([exp.experiment_id], "tags.role = 'trial'")
        if any("best_val_acc" in r.data.metrics for r in runs):
            return
        time.sleep(0.5)
    raise AssertionError(f"the {sweep} driver ended (exit {driver.poll()}) before a trial reported")


def _expected_done(client: MlflowClient, sweep: str) -> int:
    exp = client.get_experiment_by_name(sweep)
    return sum(r.data.tags.get("outcome") in DONE for r in client.search_runs([exp.experiment_id], "tags.role = 'trial'"))


def test_status_of_a_finished_an_interrupted_and_a_running_sweep(ray_session, data_root, tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    common = ["--tracking-uri", uri, "--data-dir", str(data_root), "--gpus-per-trial", "0"]
    assert main(["sweep", "linear", "--samples", "1", "--epochs", "1", "--storage-path", str(tmp_path / "r1"),
                 *common]) == 0
    client = MlflowClient(uri)
    slow = ["--epochs", "60", "--set", "batch_size=8", "--max-concurrent", "1"]
    stopped = _start(["sweep", "visual", *slow, "--storage-path", str(tmp_path / "r2"), *common], tmp_path / "visual.log")
    try:
        _wait_for_an_epoch(client, "visual", stopped)
        stopped.send_signal(signal.SIGINT)
        assert stopped.wait(timeout=120) == 130
        running = _start(["sweep", "deep", "--set", "dataset=cifar10", *slow, "--storage-path", str(tmp_path / "r3"),
                          *common], tmp_path / "deep.log")
        try:
            _wait_for_an_epoch(client, "deep", running)
            capsys.readouterr()
            assert main(["status", "--tracking-uri", uri]) == 0
            out = capsys.readouterr().out.splitlines()
        finally:
            running.send_signal(signal.SIGINT)
            running.wait(timeout=120)
    finally:
        if stopped.poll() is None:
            stopped.kill()
    blocks: dict[str, list[str]] = {}
    for line in out:        # a sweep's first line, then its indented lines
        if not line.startswith(" "):
            name = line.split(" ")[0]
        blocks.setdefault(name, []).append(line)
    assert list(blocks) == ["deep", "linear", "visual"]             # by name, one block each

    linear = blocks["linear"]
    assert len(linear) == 1 and linear[0].startswith("linear (smoke): finished, run ")
    assert linear[0].endswith(": 2 of 2 trials on 1 node; report: python -m orchestrator report linear")

    deep = "\n".join(blocks["deep"])
    assert deep.startswith("deep (smoke): running, run ")
    assert f"driver: pid {running.pid} on {socket.gethostname()}, heartbeat " in deep
    assert "best so far, test top-1 of the best-on-validation trial: cifar10 " in deep
    assert "of 36 done, 1 running on 1 node; cells complete: " in deep and " of 18" in deep     # 18 cells x 2 lr
    assert "resume:" not in deep                                                    # it runs

    visual = "\n".join(blocks["visual"])
    assert visual.startswith("visual (smoke): interrupted, run ")
    assert f"trials: {_expected_done(client, 'visual')} of 8 done, 0 running on 1 node; cells complete: " in visual
    assert f"driver: none alive (the last, pid {stopped.pid} on {socket.gethostname()}, released it" in visual
    assert f"resume: python -m orchestrator sweep visual --resume --tracking-uri {uri}" in visual

    assert main(["status", "visual", "--tracking-uri", uri]) == 0
    again = capsys.readouterr().out.splitlines()      # the same block (but for the seconds since the lease)
    assert [line.split(", released")[0] for line in again] == [line.split(", released")[0] for line in blocks["visual"]]
    assert main(["status", "nope", "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no 'nope' sweep in MLflow at " in err


def test_status_prints_no_control_character_a_store_holds(tmp_path):
    from orchestrator.commands.status import status_lines
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment("deep")
    forged = "deep\x1b[2J\nvisual (smoke): finished"          # a terminal escape and a fake line
    client.create_run(exp, tags={"role": "sweep", "profile": "smoke", "sweep": forged,
                                 "driver_lease": '{"host": "h\\nx", "pid": 1, "time": 0}'})
    lines = status_lines(client)
    assert lines and all(c.isprintable() for line in lines for c in line)
    assert not any(line.startswith("visual") for line in lines)           # the forged line stays inside


def test_status_shows_the_newest_sweep_of_each_name_and_profile(tmp_path):
    """A sweep run again under the same name is what `status` shows, not the first one: the store
    lists parent runs newest first, and the first of each (name, profile) is kept."""
    from stores import empty_store

    from orchestrator.commands.status import latest_sweeps, status_lines
    client = MlflowClient(empty_store(tmp_path))
    exp = client.create_experiment("deep")
    tags = {"role": "sweep", "sweep": "deep"}
    old, new, other = (client.create_run(exp, start_time=t, tags={**tags, "profile": p}).info.run_id
                       for t, p in ((1_000, "smoke"), (2_000, "smoke"), (1_500, "full")))
    for run in (old, new):
        client.set_terminated(run, "FINISHED")
    assert [r.info.run_id for r in latest_sweeps(client, "deep")] == [other, new]      # full, then smoke
    lines = "\n".join(status_lines(client, "deep"))
    assert f"run {new}" in lines and f"run {other}" in lines and old not in lines
