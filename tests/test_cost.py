"""`sweep --dry-run`: the epoch arithmetic against a hand count, the plan of a real sweep (nothing
run, nothing written), and the figures of a `bench --json` file read back."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.commands.cli import main
from orchestrator.sweep.cost import asha_epochs, asha_rungs
from output import command_err

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("trials,max_t,grace,rf,rungs,epochs", [
    # 4 trials to epoch 2; 2 on to 4; then 1 to 8, to 16 and to 20: 4*2 + 2*2 + 1*4 + 1*8 + 1*4
    (4, 20, 2, 2, [2, 4, 8, 16], 28),
    # 3 trials to epoch 1; 1 on to 3; 1 to 9: 3 + 1*2 + 1*6
    (3, 9, 1, 3, [1, 3], 11),
    # the smoke deep grid: 2 trials to epoch 1, 1 on to 2
    (2, 2, 1, 2, [1], 3),
    # a grace period beyond the last epoch: nothing is compared, every trial runs to the end
    (4, 2, 5, 2, [], 8),
    # one trial: it always goes on
    (1, 20, 2, 2, [2, 4, 8, 16], 20),
    # cases large enough that promoting the top 1/rf differs from 1/(rf+1) and 1/(rf-1):
    # 64 to 1; 32 on to 2; 16 to 4; 8 to 8; 4 to 16: 64 + 32*1 + 16*2 + 8*4 + 4*8 (1/3: 122)
    (64, 16, 1, 2, [1, 2, 4, 8], 192),
    # 100 to 1; 34 on to 3; 12 to 9; 4 to 27: 100 + 34*2 + 12*6 + 4*18 (1/4: 228; 1/2: 584)
    (100, 27, 1, 3, [1, 3, 9], 312),
    # the full deep grid's rungs with 48 trials: 48*2 + 24*2 + 12*4 + 6*8 + 3*4 (1/3: 172)
    (48, 20, 2, 2, [2, 4, 8, 16], 252),
])
def test_asha_epochs_are_the_hand_count(trials, max_t, grace, rf, rungs, epochs):
    assert asha_rungs(max_t, grace, rf) == rungs
    assert asha_epochs(trials, max_t, grace, rf) == epochs


def test_dry_run_of_the_full_deep_grid_prints_the_plan_and_writes_nothing(tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
           "ORCHESTRATOR_STORAGE_PATH": str(tmp_path / "ray"), "ORCHESTRATOR_DATA_DIR": str(tmp_path / "data"),
           "RAY_ADDRESS": "", "HOME": str(tmp_path / "home")}   # nothing of the user's: no data, weights, Ray
    out = subprocess.run([sys.executable, "-m", "orchestrator", "sweep", "deep", "--profile", "full", "--dry-run",
                          "--set", "dataset=cifar10", "--samples", "2", "--deadline", "0.5"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "plan for sweep deep (full): 18 cells x 2 learning rates = 36 trials, up to 20 epochs each"
    # per cell: 2 trials to epoch 2, then 1 to 4, 8, 16 and 20: 2*2 + 2 + 4 + 8 + 4 = 22 epochs
    assert "at most 720 trial-epochs if nothing is stopped; 396 if each rung promotes its top 1/2" in lines[1]
    assert lines[2].endswith("at most 36.0 M, expected 19.8 M")          # 45,000 + 5,000 images an epoch
    h200 = next(line for line in lines if "H200" in line)
    assert "measured 2026-11-27: about " in h200 and "GPU finishes it within 0.5 h" in h200
    assert any(line.strip().startswith("figures: python -m orchestrator bench") for line in lines)
    assert lines[-1] == "profile full: from --profile"
    # no store, no Ray folder, no data, no cache of ours (the libraries' own caches aside)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]
    assert not [p for p in (tmp_path / "home").rglob("*") if "clip-prompt-sweeps" in str(p) or "ray" in p.name]


def test_dry_run_reads_a_bench_json_profile(ray_session, tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert main(["bench", "--smoke", "--device", "cpu", "--only", "deep", "--json", str(path)]) == 0
    figures = json.loads(path.read_text())["throughput"]
    assert {"deep_prompt/first", "deep_prompt/middle", "deep_prompt/last/cache_build"} <= figures.keys()
    capsys.readouterr()
    # the smoke deep grid runs tiny-clip, as `bench --smoke` measured it
    assert main(["sweep", "deep", "--dry-run", "--figures", str(path), "--deadline", "1"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if "-core CPU, measured" in x)
    assert "about " in line and "device-hours" in line and "such machine finishes it within 1 h" in line
    assert f"figures: python -m orchestrator bench --json {path}" in out
    (tmp_path / "bad.json").write_text("{}")
    assert main(["sweep", "deep", "--dry-run", "--figures", str(tmp_path / "bad.json")]) == 2
    err = command_err(capsys)
    assert err.count("\n") == 1 and "not a `bench --json` file" in err


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_the_plan_counts_the_images_the_dataset_has(data_root, name):
    from trainables.data.sources.cifar import image_counts, load_cifar
    data = load_cifar(name, data_root, "synthetic")
    assert image_counts(name, "synthetic") == (len(data.train.labels), len(data.test.labels))
    assert image_counts(name, "real") == (50_000, 10_000)


def test_a_grid_over_epochs_is_counted_with_each_cells_own_epochs():
    """--grid epochs=2,6: each cell runs (and is counted to) its own last epoch, as PerCellASHA runs it."""
    from orchestrator.sweep.cost import cost_lines
    from orchestrator.sweep.plan import make_plan
    plan = make_plan("visual", "smoke", ["dataset=cifar10", "prompt=padding", "prompt_size=4"], samples=4,
                     grids=["epochs=2,6"])
    lines = cost_lines(plan, [], None)
    # 4 trials to epoch 2 and 4 to epoch 6 at most; grace 1, rf 2 (the smoke profile):
    # epochs 2: 4 to 1, 2 on to 2 = 6; epochs 6: 4 to 1, 2 to 2, 1 to 4, 1 to 6 = 4 + 2 + 2 + 2 = 10
    assert lines[0].endswith("2 cells x 4 learning rates = 8 trials, up to 6 epochs each")
    assert "at most 32 trial-epochs if nothing is stopped; 16 if each rung promotes its top 1/2" in lines[1]
