"""What a sweep prints, where stdout is a log file: a header, a plain progress line every few
seconds, a line per completed cell with its best accuracy and learning rate, a closing count,
and none of Ray's trial tables (they come back with --verbose)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from orchestrator.sweep.plan import make_plan

ROOT = Path(__file__).resolve().parents[1]


def test_a_smoke_sweep_prints_a_short_log(data_root, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env.update(ORCHESTRATOR_PROGRESS_S="2", PYTHONUNBUFFERED="1")
    out = subprocess.run([sys.executable, "-m", "orchestrator", "sweep", "visual", "--epochs", "2",
                          "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--storage-path", str(tmp_path / "ray"),
                          "--data-dir", str(data_root), "--gpus-per-trial", "0"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = (out.stdout + out.stderr).splitlines()
    assert len(lines) < 80, "\n".join(lines)
    assert lines[0] == "sweep visual (smoke): 4 cells x 2 learning rates = 8 trials, trainable visual_prompt"
    assert lines[1].startswith("profile smoke: the default")
    cells = make_plan("visual", "smoke").cells
    done = [line for line in lines if line.startswith("cell ")]
    assert len(done) == len(cells) and all(
        re.fullmatch(r"cell .+: complete, best val_acc \d+\.\d\d % \(test \d+\.\d\d %\) at lr \d.*", line) for line in done)
    assert {line.split(":")[0][len("cell "):] for line in done} == {
        ",".join(f"{k}={v}" for k, v in c.items()) for c in cells}
    progress = [line for line in lines if re.match(r"\d+/8 done, ", line)]
    assert progress and progress[-1].startswith("8/8 done, 0 running, 0 pending") and "cells complete 4/4" in progress[-1]
    assert not any(w in out.stdout for w in ("Trial status", "Configuration for experiment", "╭", "| Trial name"))
    assert "8 trials, 0 failed; MLflow parent run " in out.stdout
    # the link that opens the runs, not MLflow 3's GenAI overview (tests/test_mlflow_ui.py opens it)
    assert f"open the runs:  mlflow ui --backend-store-uri sqlite:///{tmp_path}/mlflow.db, then " \
           "http://127.0.0.1:5000/#/experiments/1?workflowType=machine_learning" in out.stdout


def test_the_progress_callback_counts_by_hand_on_a_terminal_and_in_a_log():
    import io
    from types import SimpleNamespace

    from orchestrator.sweep.progress import SweepProgress
    for live in (False, True):
        out = io.StringIO()
        stopped: dict = {}
        progress = SweepProgress(4, 2, ["a=1", "a=2"], "val_acc", stopped, out=out, live=live, every_s=3600)
        progress.setup()
        trials = [SimpleNamespace(trial_id=f"t{i}", config={"_cell": f"a={1 + i // 2}", "lr": 0.1 * (i + 1)})
                  for i in range(4)]
        for i, trial in enumerate(trials):
            progress.on_trial_start(0, trials, trial)
            progress.on_trial_result(0, trials, trial, {"val_acc": 0.1 * (i + 1), "test_acc": 0.05 * (i + 1)})
        stopped["t0"] = "a=1"                                   # ASHA stopped the first
        for trial in trials[:3]:
            progress.on_trial_complete(0, trials, trial)
        progress.on_trial_error(0, trials, trials[3])
        progress.on_experiment_end(trials)
        text = out.getvalue()
        assert "cell a=1: complete, best val_acc 20.00 % (test 10.00 %) at lr 0.2" in text
        assert "cell a=2: complete, best val_acc 40.00 % (test 20.00 %) at lr 0.4" in text
        assert text.rstrip().splitlines()[-1].startswith(
            "4/4 done, 0 running, 0 pending, 1 stopped by ASHA, 1 failed; cells complete 2/2"), live


def test_the_progress_callback_pickles_as_tune_saves_it_whatever_its_stream():
    import io
    import pickle

    from orchestrator.sweep.progress import SweepProgress
    progress = SweepProgress(2, 1, ["a=1", "a=2"], "val_acc", {}, out=io.StringIO(), live=True)
    progress.setup()                                      # a live rich display, running
    try:
        copy = pickle.loads(pickle.dumps(progress))
    finally:
        progress.on_experiment_end([])
    assert copy.planned == 2 and copy._bar is None and copy.out is not None


def test_a_sweep_of_thousands_of_cells_prints_about_a_hundred_lines_at_most(monkeypatch):
    """10,000 trials (5,000 cells of 2), hours of them: the log stays readable. The first cells get
    a line each, then one per tenth of the cells; plain lines grow sparser as the sweep grows old."""
    import io
    from types import SimpleNamespace

    import orchestrator.sweep.progress as progress_module
    from orchestrator.sweep.progress import CELL_LINES, SweepProgress
    clock = [1_000.0]
    monkeypatch.setattr(progress_module.time, "time", lambda: clock[0])
    cells = [f"c={i}" for i in range(5000)]
    out = io.StringIO()
    progress = SweepProgress(10_000, 2, cells, "val_acc", {}, out=out, live=False, every_s=30)
    progress.setup()
    for i in range(10_000):
        trial = SimpleNamespace(trial_id=f"t{i}", config={"_cell": cells[i // 2], "lr": 0.1})
        progress.on_trial_start(0, [], trial)
        progress.on_trial_result(0, [], trial, {"val_acc": 0.5})
        clock[0] += 3.6                         # ten hours in all
        progress.on_step(0, [])
        progress.on_trial_complete(0, [], trial)
    progress.on_experiment_end([])
    lines = out.getvalue().splitlines()
    assert len(lines) <= 100, len(lines)
    assert sum(line.startswith("cell ") for line in lines) == CELL_LINES
    assert [line for line in lines if line.startswith("cells complete")][-1] == "cells complete: 5000 of 5000"
    assert lines[-1].startswith("10000/10000 done")
