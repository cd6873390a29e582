"""Durable sweeps: a real sweep process (its own Ray, a SQLite MLflow store) is killed at several
different moments, and `sweep --resume` must finish it with exactly one child run per planned
trial, none deleted, and every run that had ended before the kill untouched. Also: Ctrl-C,
two drivers on one sweep, and Ray's state gone or truncated (as a kill mid-sync leaves it)."""
from __future__ import annotations

import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from clip_prompt_sweeps.names import cell_key
from clip_prompt_sweeps.store.runs import SUPERSEDED_TAG
from orchestrator.commands.cli import main
from orchestrator.sweep.plan import make_plan
from orchestrator.sweep.resume import DONE
from output import command_err

ROOT = Path(__file__).resolve().parents[1]
EPOCHS, PLANNED = 4, 8          # visual smoke: 4 cells x 2 learning rates


def _args(tmp_path: Path, data_root: Path) -> list[str]:
    return ["sweep", "visual", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db",
            "--storage-path", str(tmp_path / "ray"), "--data-dir", str(data_root), "--gpus-per-trial", "0",
            "--epochs", str(EPOCHS), "--set", "batch_size=16", "--max-concurrent", "2"]


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    # Ray snapshots its state every 10 s by default; every 1 s makes kills land mid-sync more often
    env.update(ORCHESTRATOR_NO_DOWNLOAD="1", RAY_AUTH_MODE="disabled", TUNE_GLOBAL_CHECKPOINT_S="1",
               PYTHONUNBUFFERED="1")
    return env


def _start(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "orchestrator", *args], cwd=ROOT, env=_env(),
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def _parents(client: MlflowClient):
    exp = client.get_experiment_by_name("visual")
    return [] if exp is None else client.search_runs([exp.experiment_id], "tags.role = 'sweep'")


def _children(client: MlflowClient, parent: str):
    exp = client.get_experiment_by_name("visual")
    return client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent}'", max_results=1000)


def _wait(client: MlflowClient, db: Path, driver: subprocess.Popen, moment, timeout: float = 240) -> list:
    """Poll MLflow until `moment(children)` holds; returns the children seen then."""
    deadline = time.time() + timeout
    while time.time() < deadline and driver.poll() is None:
        parents = _parents(client) if db.exists() else []
        if parents:
            runs = _children(client, parents[0].info.run_id)
            if moment(runs):
                return runs
        time.sleep(0.2)
    raise AssertionError(f"the sweep ended (exit {driver.poll()}) before the kill point was reached")


def _ended(runs) -> list:
    return [r for r in runs if r.info.status != "RUNNING"]


def _snapshot(client: MlflowClient, parent: str) -> dict:
    """What a user would check afterwards, for every run that had ended (as a trial ends)."""
    return {r.info.run_id: (r.info.status, r.info.end_time,
                            [(m.step, m.value) for m in client.get_metric_history(r.info.run_id, "val_acc")],
                            r.data.tags.get("ray_trial_ids"))
            for r in _children(client, parent) if r.data.tags.get("outcome") in DONE}


def _deleted_runs(db: Path) -> int:
    with sqlite3.connect(db) as con:
        return con.execute("select count(*) from runs where lifecycle_stage = 'deleted'").fetchone()[0]


def _check_finished(client: MlflowClient, db: Path, parent: str, before: dict, out: Path) -> list:
    (after,) = _parents(client)                                         # the same parent, reused
    assert after.info.run_id == parent and after.info.status == "FINISHED"
    children = _children(client, parent)
    assert len(children) == PLANNED                                     # one child run per trial
    # a fused trial's members share its Ray trial: each is known by its index in it too
    assert len({(c.data.tags["ray_trial_id"], c.data.tags.get("fused_member")) for c in children}) == PLANNED
    assert all(c.info.status in ("FINISHED", "KILLED") and c.data.tags["outcome"] in DONE for c in children)
    assert _deleted_runs(db) == 0                                       # nothing deleted
    _distinct_learning_rates(children)
    for c in children:
        steps = [m.step for m in client.get_metric_history(c.info.run_id, "val_acc")]
        assert steps == sorted(set(steps)), c.info.run_id               # no epoch logged twice
        if c.info.status == "FINISHED":                                 # and none missing
            assert steps == list(range(1, EPOCHS + 1)), (c.info.run_id, steps)
    for run_id, seen in before.items():                                 # ended runs untouched
        assert _snapshot(client, parent)[run_id] == seen
    assert main(["report", "visual", "--tracking-uri", f"sqlite:///{db}", "--out", str(out)]) == 0
    return children


def _distinct_learning_rates(children) -> None:
    """No two runs of one cell share a learning rate: every sample was drawn once, a continued
    trial's included (a resumed cell's sampler must not start its stream again)."""
    by_cell: dict = {}
    for c in children:
        if "replicate" not in c.data.tags:
            by_cell.setdefault(c.data.tags["cell"], []).append(c.data.params["lr"])
    for cell, lrs in by_cell.items():
        assert len(set(lrs)) == len(lrs), (cell, sorted(lrs))


def _truncate_ray_state(storage: Path) -> int:
    """What a kill in the middle of Ray's state sync can leave: empty state files, and the newest
    checkpoint of each trial cut short."""
    cut = 0
    for f in storage.rglob("*"):
        if f.is_file() and (f.name.startswith(("experiment_state", "search_gen_state", "searcher-state"))
                            or f.name == "tuner.pkl"):
            f.write_bytes(b"")
            cut += 1
    for trial in (d for exp in storage.iterdir() for d in exp.iterdir() if d.is_dir()):
        checkpoints = sorted(trial.glob("checkpoint_*"))
        if checkpoints:
            newest = checkpoints[-1]
            (newest / "learned.safetensors").write_bytes((newest / "learned.safetensors").read_bytes()[:20])
            cut += 1
    return cut


# Each kill point takes a different path through the resume (noted beside it).
KILL_POINTS = {
    # runs exist but nothing has been logged: every trial continues in its run from epoch 1
    "trials starting": lambda runs: len(runs) >= 1 and not any("epoch" in r.data.metrics for r in runs),
    # a trial is past its first checkpoint, none has ended: continued from a checkpoint
    "before the first trial ends": lambda runs: not _ended(runs) and any(
        r.data.metrics.get("epoch", 0) >= 2 for r in runs),
    # some done (their results replayed into Optuna and ASHA), some continued from a checkpoint,
    # some new (the first trial of each cell is never stopped at epoch 1, so trials 3 and 4 run on)
    "mid-run, 2 ended": lambda runs: len(_ended(runs)) >= 2 and any(
        r.info.status == "RUNNING" and r.data.metrics.get("epoch", 0) >= 2 for r in runs),
    # Ray's state files empty and the newest checkpoints truncated: older checkpoints are used
    "mid-run, 5 ended, mid-sync": lambda runs: len(_ended(runs)) >= 5 and len(_ended(runs)) < PLANNED,
    # every trial proposed: nothing new to propose, only continuations
    "right after the last trial starts": lambda runs: len(runs) == PLANNED and len(_ended(runs)) < PLANNED,
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_a_sweep_killed_anywhere_resumes_to_exactly_its_planned_trials(point, data_root, tmp_path, ray_session):
    db, args = tmp_path / "mlflow.db", _args(tmp_path, data_root)
    client = MlflowClient(f"sqlite:///{db}")
    driver = _start(args, tmp_path / "first.log")
    _wait(client, db, driver, KILL_POINTS[point])
    os.killpg(driver.pid, signal.SIGKILL)       # the driver and everything it started
    driver.wait()
    (parent,) = _parents(client)
    assert parent.info.status == "RUNNING"      # nobody closed it: a hard kill
    before = _snapshot(client, parent.info.run_id)
    if "mid-sync" in point:
        assert _truncate_ray_state(tmp_path / "ray") > 0

    # resumed in this process (Ray is already up: the test's Ray serves it)
    assert main([*args, "--resume"]) == 0, (tmp_path / "first.log").read_text()[-3000:]
    children = _check_finished(client, db, parent.info.run_id, before, tmp_path / "out")
    resumed = [int(c.data.tags["resumed_at_epoch"]) for c in children if "resumed_at_epoch" in c.data.tags]
    if point in ("before the first trial ends", "mid-run, 2 ended"):   # continued at a checkpoint's epoch
        assert any(epoch > 1 for epoch in resumed)
    if point == "mid-run, 5 ended, mid-sync":       # the cut checkpoint was skipped, not loaded
        assert resumed and all(epoch < EPOCHS for epoch in resumed)


def _epochs_logged(runs) -> int:
    return sum(int(r.data.metrics.get("epoch", 0)) for r in runs)


@pytest.mark.parametrize("how", ["SIGKILL", "Ctrl-C"])
def test_a_fused_sweep_stopped_at_a_random_moment_resumes_to_exactly_its_planned_trials(how, data_root, tmp_path,
                                                                                        ray_session):
    """`--fuse 4` (each cell's two learning rates one Ray trial), stopped after a random number
    of the members' epochs have been logged and a random fraction of a second more (the seed is
    in every message, to replay it), then `--resume`: the checks of the kill tests above."""
    seed = int(os.environ.get("FUSED_KILL_SEED", time.time_ns() % 100_000))
    rng = random.Random(seed)
    logged, pause = rng.randint(0, 16), rng.uniform(0, 1)       # a fused sweep logs 20 epochs or more
    db, args = tmp_path / "mlflow.db", [*_args(tmp_path, data_root), "--fuse", "4"]
    client = MlflowClient(f"sqlite:///{db}")
    driver = _start(args, tmp_path / "first.log")
    _wait(client, db, driver, lambda runs: len(runs) >= 1 and _epochs_logged(runs) >= logged)
    time.sleep(pause)
    assert driver.poll() is None, f"seed {seed}: the sweep ended before the stop"
    os.killpg(driver.pid, signal.SIGKILL if how == "SIGKILL" else signal.SIGINT)
    assert driver.wait(timeout=120) in ((-signal.SIGKILL,) if how == "SIGKILL" else (130,)), f"seed {seed}"
    (parent,) = _parents(client)
    assert parent.info.status == ("RUNNING" if how == "SIGKILL" else "KILLED"), f"seed {seed}"
    runs = _children(client, parent.info.run_id)
    assert {r.data.tags.get("fused_members") for r in runs} == {"2"}, f"seed {seed}"    # fused, two members each
    before = _snapshot(client, parent.info.run_id)

    assert main([*args, "--resume"]) == 0, f"seed {seed}: " + (tmp_path / "first.log").read_text()[-3000:]
    children = _check_finished(client, db, parent.info.run_id, before, tmp_path / "out")
    # each cell's two learning rates: two runs, as without --fuse
    assert sorted(Counter(c.data.tags["cell"] for c in children).values()) == [2] * 4, f"seed {seed}"


def test_ray_state_gone_rebuilds_from_mlflow_and_reruns_no_finished_trial(data_root, tmp_path, ray_session):
    db, args = tmp_path / "mlflow.db", _args(tmp_path, data_root)
    client = MlflowClient(f"sqlite:///{db}")
    driver = _start(args, tmp_path / "first.log")
    _wait(client, db, driver, lambda runs: len(_ended(runs)) >= 3 and len(_ended(runs)) < PLANNED)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    (parent,) = _parents(client)
    before = _snapshot(client, parent.info.run_id)
    # Ray's experiment folder, checkpoints and all. The killed driver's workers can outlive it for
    # a moment and still write there, so delete until it stays gone.
    deadline = time.time() + 30
    while (tmp_path / "ray").exists() and time.time() < deadline:
        shutil.rmtree(tmp_path / "ray", ignore_errors=True)
        time.sleep(0.5)
    assert not (tmp_path / "ray").exists()

    assert main([*args, "--resume"]) == 0
    children = _check_finished(client, db, parent.info.run_id, before, tmp_path / "out")
    # a finished trial was not run again: its run still names only its first Ray trial
    for c in children:
        if c.info.run_id in before:
            assert c.data.tags["ray_trial_ids"] == before[c.info.run_id][3]
    # trials that were running start again from epoch 1, in their own run
    assert any(c.data.tags.get("resumed_at_epoch") == "1" for c in children)


@pytest.mark.parametrize("presses", [1, 2, "sigterm"])
def test_ctrl_c_interrupts_and_resume_finishes(presses, data_root, tmp_path, ray_session):
    db, args = tmp_path / "mlflow.db", _args(tmp_path, data_root)
    client = MlflowClient(f"sqlite:///{db}")
    log = tmp_path / "first.log"
    driver = _start(args, log)
    _wait(client, db, driver, lambda runs: 1 <= len(_ended(runs)) < PLANNED - 2)
    if presses == "sigterm":                    # `kill PID`, or SLURM's time limit: the driver alone
        os.kill(driver.pid, signal.SIGTERM)
    else:
        os.killpg(driver.pid, signal.SIGINT)    # what a terminal sends on Ctrl-C
    if presses == 2:                            # impatient: the second one exits at once
        time.sleep(0.3)
        os.killpg(driver.pid, signal.SIGINT)
    assert driver.wait(timeout=120) == 130
    text = log.read_text()
    lines = [line for line in text.splitlines() if line.startswith("interrupted:")]
    assert len(lines) == 1 and f"of {PLANNED} trials finished; continue with " \
        "`python -m orchestrator sweep visual --resume" in lines[0], text[-2000:]
    # the command's own output has no traceback (lines a Ray worker forwards, "(name pid=N) ...",
    # are Ray's: a worker stopped mid-epoch may print its shutdown noise)
    assert not any("Traceback" in line for line in text.splitlines() if "pid=" not in line), text[-3000:]
    (parent,) = _parents(client)
    assert parent.info.status == "KILLED" and "Ctrl-C" in parent.data.tags["interrupted_at"]
    done = sum(r.data.tags.get("outcome") in DONE for r in _children(client, parent.info.run_id))
    assert lines[0].startswith(f"interrupted: {done} of {PLANNED}")
    assert not any(r.info.status == "RUNNING" for r in _children(client, parent.info.run_id))
    before = _snapshot(client, parent.info.run_id)

    assert main([*args, "--resume"]) == 0
    _check_finished(client, db, parent.info.run_id, before, tmp_path / "out")


def test_one_driver_per_sweep(data_root, tmp_path, ray_session, capsys, monkeypatch):
    db, args = tmp_path / "mlflow.db", _args(tmp_path, data_root)
    client = MlflowClient(f"sqlite:///{db}")
    driver = _start(args, tmp_path / "first.log")
    _wait(client, db, driver, lambda runs: len(_ended(runs)) >= 1)
    (parent,) = _parents(client)
    statuses = {r.info.run_id: r.info.status for r in _children(client, parent.info.run_id)}

    # a second driver while the first runs: refused in one line, nothing touched
    assert main([*args, "--resume"]) == 2
    err = command_err(capsys)
    assert err.count("\n") == 1 and f"is being run by pid {driver.pid} on " in err
    now = {r.info.run_id: r.info.status for r in _children(client, parent.info.run_id)}
    assert all(now[run_id] == status or status == "RUNNING" for run_id, status in statuses.items())

    # the first driver dies; once its lease is stale (here: its process is gone), a resume takes over
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    before = _snapshot(client, parent.info.run_id)
    assert main([*args, "--resume"]) == 0
    _check_finished(client, db, parent.info.run_id, before, tmp_path / "out")


def test_a_lease_from_another_host_is_honoured_until_it_is_stale(monkeypatch):
    import json

    from clip_prompt_sweeps.store.lease import holder
    from clip_prompt_sweeps.store.records import LEASE_TAG, read_lease

    def held(lease, now: float):
        return holder(read_lease({LEASE_TAG: lease if isinstance(lease, str) else json.dumps(lease)}), now)
    monkeypatch.setenv("ORCHESTRATOR_LEASE_TIMEOUT_S", "30")
    lease = {"host": "node-7", "pid": 4242, "time": 1000.0, "token": "t"}
    assert held(lease, now=1010.0)["pid"] == 4242             # fresh: another driver holds it
    assert held(lease, now=1031.0) is None                    # stale: taken over
    assert held({**lease, "released": True}, now=1001.0) is None
    assert held("{not json", now=1001.0) is None
    mine_dead = {**lease, "host": __import__("socket").gethostname(), "pid": 2 ** 22 - 1}
    assert held(mine_dead, now=1001.0) is None     # this host, process gone


def test_resume_without_an_interrupted_sweep_says_so(tmp_path, capsys):
    assert main(["sweep", "visual", "--resume", "--tracking-uri", f"sqlite:///{tmp_path}/m.db"]) == 2
    err = command_err(capsys)
    assert "no interrupted 'visual' sweep (smoke) to resume" in err and err.count("\n") == 1
    assert not (tmp_path / "m.db").exists()         # nothing written


def test_a_trial_continued_at_its_last_epoch_reports_it_once_and_ends(tiny_prompt_config, tmp_path):
    """Ctrl-C can land after a trial's last checkpoint was saved but before Ray knew it had ended:
    continued from that checkpoint, it must still report (Tune requires the metric), once."""
    from trainables.experiments.prompt_training import VisualPromptConfig, run_visual
    cfg = VisualPromptConfig(**{**tiny_prompt_config, "epochs": 2}, prompt="padding", prompt_size=4, lr=10.0)
    reports, kept = [], tmp_path / "last"

    def report(metrics, folder):
        reports.append(metrics)
        shutil.rmtree(kept, ignore_errors=True)
        shutil.copytree(folder, kept)

    run_visual(cfg, report)
    assert [r["epoch"] for r in reports] == [1, 2]
    again = []
    run_visual(cfg, lambda metrics, folder: again.append((metrics, sorted(p.name for p in Path(folder).iterdir()))),
               resume_dir=kept)
    (metrics, files), = again
    # a new process reports its dataset record with its first result (logged once per run)
    assert metrics.pop("dataset") == reports[0]["dataset"] and "dataset" not in reports[-1]
    assert metrics == reports[-1] and "best.safetensors" in files


def test_a_sweep_killed_after_its_last_trial_ended_resumes_to_finished(data_root, tmp_path, ray_session):
    """Every trial over, only the parent left open (a kill in the last instant): nothing runs again."""
    args = _args(tmp_path, data_root)
    args[args.index("--epochs") + 1] = "1"
    assert main(args) == 0
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (parent,) = _parents(client)
    client.update_run(parent.info.run_id, status="RUNNING")       # as a SIGKILL at that instant leaves it
    before = _snapshot(client, parent.info.run_id)
    assert len(before) == PLANNED
    assert main([*args, "--resume"]) == 0
    (after,) = _parents(client)
    assert after.info.status == "FINISHED" and _snapshot(client, parent.info.run_id) == before
    _distinct_learning_rates(_children(client, parent.info.run_id))


# --replicates: the second phase of a sweep, killed at its start, then (its first resume killed
# too) in its middle
REPLICATES = 2


def _replicas(runs, ended: bool) -> int:
    return sum("replicate" in r.data.tags and (r.info.status != "RUNNING") == ended for r in runs)


def test_a_sweep_killed_twice_in_its_replicates_resumes_to_each_cells_replicates(data_root, tmp_path, ray_session):
    db = tmp_path / "mlflow.db"
    # one dataset and 2 epochs (the last --epochs wins): the phases matter here, not the epochs
    args = [*_args(tmp_path, data_root), "--set", "dataset=cifar10", "--epochs", "2", "--replicates", str(REPLICATES)]
    client = MlflowClient(f"sqlite:///{db}")
    kills = {"first.log": lambda runs: _replicas(runs, False) >= 1 and _replicas(runs, True) == 0,   # starting
             "second.log": lambda runs: 1 <= _replicas(runs, True) < 2 * REPLICATES}                # mid-run
    for log, moment in kills.items():
        driver = _start(args if log == "first.log" else [*args, "--resume"], tmp_path / log)
        _wait(client, db, driver, moment)
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    (parent,) = _parents(client)
    before = _snapshot(client, parent.info.run_id)

    assert main([*args, "--resume"]) == 0, (tmp_path / "second.log").read_text()[-3000:]
    (after,) = _parents(client)
    assert after.info.status == "FINISHED" and _deleted_runs(db) == 0
    children = _children(client, parent.info.run_id)
    assert not [c for c in children if SUPERSEDED_TAG in c.data.tags]   # each phase resumed its own runs
    tuned = [c for c in children if "replicate" not in c.data.tags]
    replicas = [c for c in children if "replicate" in c.data.tags]
    _distinct_learning_rates(children)
    assert len(tuned) == PLANNED // 2 and all(c.data.tags["outcome"] in DONE for c in children)
    for prompt_cell in {c.data.tags["cell"] for c in tuned}:          # each cell: replicates 1..N, once each
        mine = [c for c in replicas if c.data.tags["cell"].startswith(prompt_cell + ",replicate=")]
        assert sorted(c.data.tags["replicate"] for c in mine) == [str(k) for k in range(1, REPLICATES + 1)]
        assert all(c.info.status == "FINISHED" for c in mine)
    for run_id, seen in before.items():                                 # ended runs untouched
        assert _snapshot(client, parent.info.run_id)[run_id] == seen
    assert main(["report", "visual", "--tracking-uri", f"sqlite:///{db}", "--out", str(tmp_path / "out")]) == 0
    assert "(n=2)" in (tmp_path / "out" / "visual" / "report.md").read_text()


# A sweep bigger than --trials-per-experiment runs as consecutive Tune experiments over groups of
# whole cells: here two (2 cells x 2 trials each), stopped in either and resumed.
GROUPED = ["--trials-per-experiment", "4"]


def _first_group() -> set[str]:
    plan = make_plan("visual", "smoke", epochs=EPOCHS)
    return {cell_key(c) for c in plan.groups(4)[0].cells}


def _of(runs, cells: set[str], inside: bool = True) -> list:
    return [r for r in runs if (r.data.tags.get("cell") in cells) == inside]


@pytest.mark.parametrize("how", ["SIGKILL in the first", "Ctrl-C in the first", "SIGKILL in the second"])
def test_a_sweep_run_as_two_tune_experiments_stopped_in_either_resumes_to_its_planned_trials(
        how, data_root, tmp_path, ray_session):
    db, args = tmp_path / "mlflow.db", [*_args(tmp_path, data_root), *GROUPED]
    client = MlflowClient(f"sqlite:///{db}")
    first = _first_group()
    moments = {
        # a trial of the first past its first checkpoint: the resume finds it in that experiment's folder
        "SIGKILL in the first": lambda runs: not _of(runs, first, False) and len(_ended(runs)) >= 1 and any(
            r.info.status == "RUNNING" and r.data.metrics.get("epoch", 0) >= 2 for r in runs),
        "Ctrl-C in the first": lambda runs: not _of(runs, first, False) and len(_ended(runs)) >= 1,
        "SIGKILL in the second": lambda runs: bool(_of(runs, first, False)) and len(_ended(runs)) < PLANNED,
    }
    driver = _start(args, tmp_path / "first.log")
    seen = _wait(client, db, driver, moments[how])
    if how.startswith("Ctrl-C"):
        os.killpg(driver.pid, signal.SIGINT)
        assert driver.wait(timeout=120) == 130
    else:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    (parent,) = _parents(client)
    children = _children(client, parent.info.run_id)
    if "first" in how:              # the second experiment never started
        assert not _of(children, first, False)
    else:                           # it started once every trial of the first had ended
        assert len(_of(seen, first)) == PLANNED // 2 and all(r.info.status != "RUNNING" for r in _of(seen, first))
    before = _snapshot(client, parent.info.run_id)

    assert main([*args, "--resume"]) == 0, (tmp_path / "first.log").read_text()[-3000:]
    children = _check_finished(client, db, parent.info.run_id, before, tmp_path / "out")
    assert "trials run as 2 Tune experiments" in (tmp_path / "first.log").read_text()
    folders = [p.name for p in (tmp_path / "ray").iterdir() if p.is_dir()]
    assert all(re.search(r"-cells-[12]of2$", name) for name in folders), folders
    assert {name[-4:] for name in folders} == {"1of2", "2of2"}
    if how == "SIGKILL in the first":
        assert any(int(c.data.tags.get("resumed_at_epoch", 0)) > 1 for c in children)
