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

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.commands.cli import main
from orchestrator.sweep.resume import DONE
from output import command_err

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
    err = command_err(capsys)
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


# --- each piece of `status`, exactly as a user reads it ------------------------------------------

def _parent(**kw):
    from clip_prompt_sweeps.store.records import ParentRecord
    base = dict(run_id="p1", experiment_id="1", sweep="deep", profile="smoke", status="RUNNING", start_time=0,
                end_time=0, cells=None, samples_per_cell=None, replicates=0, search="tpe", git_commit="",
                data_kind=None, lease=None, sweep_file=None)
    return ParentRecord(**{**base, **kw})


def _trial(**kw):
    from clip_prompt_sweeps.store.records import TrialRecord
    base = dict(run_id="r", cell="c=1", lr=0.1, status="FINISHED", outcome="finished", stop_reason="", replicate=None,
                trial_ids=(), nodes=(), superseded=False, start_time=0, params={}, metrics={}, tags={})
    return TrialRecord(**{**base, **kw})


def test_the_resume_command_names_the_profile_only_where_it_is_not_the_default_and_quotes_every_value():
    from orchestrator.commands.status import resume_command
    assert resume_command("deep", "smoke") == "python -m orchestrator sweep deep --resume"
    assert resume_command("/my sweeps/a.toml", "full", tracking_uri="sqlite:///a b.db", storage_path=None,
                          address="ray://h:10001") == (
        "python -m orchestrator sweep '/my sweeps/a.toml' --resume --profile full "
        "--tracking-uri 'sqlite:///a b.db' --address ray://h:10001")
    assert resume_command("deep", "it's") == "python -m orchestrator sweep deep --resume --profile 'it'\"'\"'s'"


@pytest.mark.parametrize("seconds, said", [(-5, "0 s ago"), (0, "0 s ago"), (119.4, "119 s ago"), (120, "2 min ago"),
                                           (7199, "120 min ago"), (7200, "2.0 h ago"), (9000, "2.5 h ago")])
def test_how_long_ago_is_said_in_seconds_minutes_then_hours(seconds, said):
    from orchestrator.commands.status import _ago
    assert _ago(seconds) == said


def test_the_driver_line_names_a_live_driver_the_last_one_or_the_last_write(monkeypatch):
    from clip_prompt_sweeps.store.records import LeaseRecord
    from orchestrator.commands.status import _driver
    monkeypatch.setenv("ORCHESTRATOR_LEASE_TIMEOUT_S", "60")
    lease = LeaseRecord("node-7", 4242, 1000.0, "t")
    assert _driver(_parent(lease=lease), [], now=1005.0) == (True, "pid 4242 on node-7, heartbeat 5 s ago")
    assert _driver(_parent(lease=lease), [], now=1300.0) == (
        False, "none alive (the last, pid 4242 on node-7, beat 5 min ago)")
    released = LeaseRecord("node-7", 4242, 1000.0, "t", released=True)
    assert _driver(_parent(lease=released), [], now=1010.0) == (
        False, "none alive (the last, pid 4242 on node-7, released it 10 s ago)")
    runs = [_trial(start_time=1_030_000), _trial(start_time=1_010_000)]
    assert _driver(_parent(start_time=1_000_000, end_time=1_020_000), runs, now=1040.0) == (
        False, "no lease recorded; last write 10 s ago")           # the newest of every time, in ms
    assert _driver(_parent(start_time=1_000_000), [], now=1040.0) == (False, "no lease recorded; last write 40 s ago")
    assert _driver(_parent(), [], now=1040.0) == (False, "no lease recorded")


def test_the_best_so_far_is_per_dataset_the_test_score_of_the_best_on_validation_finite_trial():
    from orchestrator.commands.status import _best
    runs = [_trial(params={"dataset": "cifar10"}, metrics={"best_val_acc": 0.5, "test_acc": 0.4}),
            _trial(params={"dataset": "cifar10"}, metrics={"best_val_acc": 0.7, "test_acc": 0.6}),
            _trial(params={"dataset": "cifar10"}, metrics={"best_val_acc": 0.6, "test_acc": 0.9}),
            _trial(params={"dataset": "cifar10"}, metrics={"best_val_acc": 0.99, "test_acc": 0.99, "diverged": 1.0}),
            _trial(params={"dataset": "cifar10"}, metrics={"test_acc": 1.0}),               # not yet validated
            _trial(params={"dataset": "cifar10"}, metrics={"best_val_acc": float("nan"), "test_acc": 1.0}),
            _trial(params={"dataset": "a"}, metrics={"best_val_acc": 0.2}),
            _trial(metrics={"best_val_acc": 0.3, "test_acc": 0.25})]
    best = _best(runs)
    assert best == {"a": (None, 0.2), "all": (0.25, 0.3), "cifar10": (0.6, 0.7)} and list(best) == ["a", "all", "cifar10"]


@pytest.mark.parametrize("n, said", [(0, ""), (1, " on 1 node"), (3, " on 3 nodes")])
def test_the_nodes_of_a_sweep_are_counted_in_words(n, said):
    from orchestrator.commands.status import _on_nodes
    assert _on_nodes(n) == said


def _status(**kw):
    from orchestrator.commands.status import SweepStatus
    base = dict(name="deep", profile="smoke", run_id="abc", state="interrupted", done=3, running=1, planned=8,
                cells_done=1, cells=4)
    return SweepStatus(**{**base, **kw})


def test_a_finished_sweep_is_one_line_with_its_report_command_and_an_unfinished_one_says_where_it_stands():
    from orchestrator.commands.status import format_status
    assert format_status(_status(state="finished", done=8, nodes=2, sweep_file="/s/my sweep.toml")) == [
        "deep (smoke): finished, run abc: 8 of 8 trials on 2 nodes; report: python -m orchestrator report "
        "'/s/my sweep.toml'"]
    assert format_status(_status(state="finished", done=8)) == [
        "deep (smoke): finished, run abc: 8 of 8 trials; report: python -m orchestrator report deep"]
    assert format_status(_status(best={"cifar10": (0.5, 0.625), "cifar100": (None, 0.125)}, driver="pid 1 on h",
                                 resume="python -m orchestrator sweep deep --resume", nodes=1)) == [
        "deep (smoke): interrupted, run abc",
        "  trials: 3 of 8 done, 1 running on 1 node; cells complete: 1 of 4",
        "  best so far, test top-1 of the best-on-validation trial: cifar10 50.00 % (val 62.50 %), "
        "cifar100 — % (val 12.50 %)",
        "  driver: pid 1 on h",
        "  resume: python -m orchestrator sweep deep --resume"]
    running = format_status(_status(state="running", driver="pid 1 on h"))
    assert running[2].endswith(": none yet") and len(running) == 4          # no resume line while it runs


def test_a_sweeps_status_counts_its_trials_cells_replicates_and_nodes_from_mlflow(tmp_path):
    from stores import empty_store

    from orchestrator.commands.status import sweep_status
    client = MlflowClient(empty_store(tmp_path))
    exp = client.create_experiment("deep")
    parent = client.create_run(exp, tags={"role": "sweep", "sweep": "deep", "profile": "full"})
    pid = parent.info.run_id
    for key, value in (("cells", "2"), ("samples_per_cell", "2"), ("replicates", "1")):
        client.log_param(pid, key, value)

    def child(cell, outcome, status="FINISHED", nodes="10.0.0.1", replicate=None, **metrics):
        tags = {"mlflow.parentRunId": pid, "role": "trial", "cell": cell, "nodes": nodes,
                **({"outcome": outcome} if outcome else {}), **({"replicate": replicate} if replicate else {})}
        run = client.create_run(exp, tags=tags).info.run_id
        client.log_param(run, "dataset", cell.split("=")[1])
        for k, v in metrics.items():
            client.log_metric(run, k, v)
        if status != "RUNNING":
            client.set_terminated(run, status)
    child("d=cifar10", "finished", best_val_acc=0.5, test_acc=0.45)
    child("d=cifar10", "stopped_early", "KILLED", nodes="10.0.0.2", best_val_acc=0.25, test_acc=0.2)
    child("d=cifar10", "finished", replicate="1", best_val_acc=0.9, test_acc=0.9)     # a replicate: not best
    child("d=cifar100", "diverged", "KILLED", best_val_acc=0.8, test_acc=0.8, diverged=1)
    child("d=cifar100", None, "RUNNING", nodes="10.0.0.3", best_val_acc=0.1, test_acc=0.05)
    child("d=cifar100", "failed", "FAILED", nodes="10.0.0.1 10.0.0.4")
    s = sweep_status(client, client.get_run(pid), now=0.0, tracking_uri="sqlite:///x.db")
    assert (s.name, s.profile, s.run_id, s.state) == ("deep", "full", pid, "interrupted")
    assert (s.done, s.running, s.planned, s.cells_done, s.cells) == (4, 1, 2 * (2 + 1), 1, 2)
    assert s.best == {"cifar10": (0.45, 0.5), "cifar100": (0.05, 0.1)} and s.nodes == 4
    assert s.resume == "python -m orchestrator sweep deep --resume --profile full --tracking-uri sqlite:///x.db"
    client.set_terminated(pid, "FAILED")
    assert sweep_status(client, client.get_run(pid), now=0.0).state == "failed"
    client.set_terminated(pid, "FINISHED")
    done = sweep_status(client, client.get_run(pid), now=0.0)
    assert done.state == "finished" and done.resume is None


def test_a_sweep_without_its_plans_params_counts_its_cells_from_its_runs(tmp_path):
    from stores import empty_store

    from orchestrator.commands.status import sweep_status
    client = MlflowClient(empty_store(tmp_path))
    exp = client.create_experiment("visual")
    pid = client.create_run(exp, tags={"role": "sweep", "sweep": "visual", "sweep_file": "/s/v.toml"}).info.run_id
    for cell in ("a", "b", "b"):
        run = client.create_run(exp, tags={"mlflow.parentRunId": pid, "role": "trial", "cell": cell,
                                           "outcome": "finished"}).info.run_id
        client.set_terminated(run, "FINISHED")
    s = sweep_status(client, client.get_run(pid), now=0.0)
    assert (s.profile, s.planned, s.cells, s.cells_done, s.done) == ("smoke", 2, 2, 2, 3)
    assert s.sweep_file == "/s/v.toml" and s.resume == "python -m orchestrator sweep /s/v.toml --resume"


def test_status_of_an_empty_store_and_of_a_sweep_it_does_not_hold_is_one_line_each(tmp_path):
    from stores import empty_store

    from clip_prompt_sweeps.errors import UserError
    from orchestrator.commands.status import latest_sweeps, status_lines
    uri = empty_store(tmp_path)
    client = MlflowClient(uri)
    assert status_lines(client) == [f"no sweep in MLflow at {uri} yet; `python -m orchestrator list` shows them"]
    client.create_experiment("deep")
    with pytest.raises(UserError) as err:
        latest_sweeps(client, "visual")
    assert str(err.value) == (f"no 'visual' sweep in MLflow at {uri}; `python -m orchestrator status` lists "
                              f"those it holds")
    exp = client.get_experiment_by_name("deep").experiment_id
    vis = client.create_experiment("visual")
    runs = {(e, p): client.create_run(x, tags={"role": "sweep", "sweep": e, **({"profile": p} if p else {})}).info.run_id
            for e, x, p in (("visual", vis, "smoke"), ("deep", exp, "smoke"), ("deep", exp, None), ("deep", exp, "full"))}
    assert [r.info.run_id for r in latest_sweeps(client)] == [
        runs["deep", None], runs["deep", "full"], runs["deep", "smoke"], runs["visual", "smoke"]]   # by name, profile
    assert [r.info.run_id for r in latest_sweeps(client, "visual")] == [runs["visual", "smoke"]]
    lines = status_lines(client, "visual", now=1e12)
    assert lines[0] == f"visual (smoke): interrupted, run {runs['visual', 'smoke']}"
