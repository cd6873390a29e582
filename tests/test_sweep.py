"""Sweeps through real Ray Tune and a real MLflow SQLite store."""
from __future__ import annotations

import json
import math
import re
import sys
import time

import ray.cloudpickle
from mlflow.tracking import MlflowClient
from ray import tune
from ray.tune.schedulers import AsyncHyperBandScheduler
from safetensors.torch import load_file

from orchestrator.commands.cli import main
from orchestrator.sweep.plan import make_plan
from orchestrator.sweep.schedulers import PerCellASHA
from orchestrator.sweep.searchers import CellSearcher

# Ray's workers cannot import this test module: ship its test-only trainables by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _children(client, parent_id):
    exp = client.get_experiment_by_name("deep")
    return client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'", max_results=1000)


def test_smoke_deep_sweep_end_to_end(ray_session, data_root, tmp_path):
    """One dataset: the grid's other axes, the report's shape and the store are what is checked;
    the study store runs deep on the same dataset, visual on both."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    plan = make_plan("deep", "smoke", ["dataset=cifar10"])
    assert main(["sweep", "deep", "--set", "dataset=cifar10", "--tracking-uri", uri, "--storage-path",
                 str(tmp_path / "ray"), "--data-dir", str(data_root), "--gpus-per-trial", "0"]) == 0
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("deep")
    parents = client.search_runs([exp.experiment_id], "tags.role = 'sweep'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = _children(client, parents[0].info.run_id)
    assert len(children) == plan.n_trials == 36                        # one child per trial
    assert len({c.data.tags["ray_trial_id"] for c in children}) == 36  # no duplicates
    assert all(c.info.status in ("FINISHED", "KILLED") for c in children)
    assert len({c.data.tags["cell"] for c in children}) == 18
    child = children[0]
    assert {"sweep", "cell", "profile", "data_kind", "git_commit", "ray_trial_id", "node"} <= child.data.tags.keys()
    assert child.data.tags["data_kind"] == "synthetic" and child.data.params["model"] == "tiny-clip"
    history = client.get_metric_history(child.info.run_id, "val_acc")
    assert [m.step for m in history] == list(range(1, len(history) + 1))
    # learned parameters load back as safetensors (no pickle code runs)
    local = client.download_artifacts(child.info.run_id, "learned/best.safetensors", str(tmp_path))
    prompts = load_file(local)["prompts"]
    assert prompts.shape == (int(child.data.params["n_prompts"]), 64)

    out = tmp_path / "out"
    assert main(["report", "deep", "--tracking-uri", uri, "--out", str(out)]) == 0
    report = (out / "deep" / "report.md").read_text()
    assert "SYNTHETIC DATA" in report.splitlines()[0]
    rows = [l for l in report.splitlines() if re.match(r"\| cifar10 \| (first|middle|last) \(seed \d+\) \| \d \|", l)]
    assert len(rows) == 9                         # layer x prompts; front/back columns
    assert all(l.count("—") == 0 for l in rows)   # every cell of the grid has a reproduced number
    assert len(list((out / "deep").glob("deep_heatmap_*.png"))) == 2


def test_visual_report_with_padding_prompt(study_store, tmp_path):
    uri, _ = study_store
    out = tmp_path / "out"
    assert main(["report", "visual", "--tracking-uri", uri, "--out", str(out)]) == 0
    report = (out / "visual" / "report.md").read_text()
    assert "Table 2" in report and "| cifar10 |" in report and "| cifar100 |" in report
    for dataset in ("cifar10", "cifar100"):
        assert (out / "visual" / f"visual_padding_{dataset}.png").stat().st_size > 1000


def _quality_trainable(config):
    for epoch in range(1, 5):
        tune.report({"val_acc": config["q"] * epoch / 4})


QUALITIES = [0.9, 0.8, 0.7, 0.6, 0.3, 0.2, 0.1, 0.05]     # cell A: >0.5, cell B: the rest


def _iterations(scheduler, tmp_path, callbacks=()):
    tuner = tune.Tuner(
        _quality_trainable,
        param_space={"q": tune.grid_search(QUALITIES),
                     "_cell": tune.sample_from(lambda spec: "A" if spec.config.q > 0.5 else "B")},
        tune_config=tune.TuneConfig(scheduler=scheduler, max_concurrent_trials=1),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0, callbacks=list(callbacks)))
    return {r.config["q"]: r.metrics["training_iteration"] for r in tuner.fit()}


def test_asha_stops_trials_only_inside_their_cell(ray_session, tmp_path):
    from orchestrator.sweep.tracking import MLflowTrials
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment("asha")
    parent = client.create_run(exp).info.run_id
    per_cell = PerCellASHA("val_acc", "max", max_t=4, grace_period=1, reduction_factor=2)
    iters = _iterations(per_cell, tmp_path, [MLflowTrials(uri, exp, parent, {}, per_cell.stopped)])
    assert iters[0.9] == 4 and iters[0.3] == 4           # every cell keeps its best trial
    assert iters[0.8] < 4 and iters[0.2] < 4             # and weaker learning rates stop early
    assert set(per_cell.cells) == {"A", "B"}
    # in MLflow: a trial ASHA stopped is KILLED with its reason, one that ran its epochs FINISHED
    runs = client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parent}'")
    ended = {float(r.data.params["q"]): (r.info.status, r.data.tags.get("stop_reason")) for r in runs}
    assert ended == {q: ("FINISHED", None) if iters[q] == 4 else
                     ("KILLED", f"stopped early by ASHA within cell {'A' if q > 0.5 else 'B'}") for q in QUALITIES}
    # One ASHA over the whole grid would have stopped cell B's best trial: the row would be lost.
    plain = AsyncHyperBandScheduler(metric="val_acc", mode="max", max_t=4, grace_period=1, reduction_factor=2)
    assert _iterations(plain, tmp_path)[0.3] < 4


def test_cell_searcher_keeps_one_optuna_tpe_study_per_cell():
    plan = make_plan("visual", "smoke", samples=24)
    searcher = CellSearcher(plan, "tpe", seed=1)
    peaks = {"cifar10": 10.0, "cifar100": 200.0}           # each dataset prefers its own lr
    configs = []
    while (config := searcher.suggest(f"t{len(configs)}")) != "FINISHED":
        configs.append(config)
        score = -abs(math.log(config["lr"] / peaks[config["dataset"]]))
        searcher.on_trial_complete(f"t{len(configs) - 1}", {"val_acc": score})
    assert len(configs) == plan.n_trials == 4 * 24
    assert all(plan.profile.lr.low <= c["lr"] <= plan.profile.lr.high for c in configs)
    for key, study in searcher.studies.items():
        assert len(study.trials) == 24 and type(study.sampler).__name__ == "TPESampler"
        dataset = key.split(",")[0].split("=")[1]
        assert abs(math.log(study.best_params["lr"] / peaks[dataset])) < 0.25
        late = [t.params["lr"] for t in study.trials[12:]]
        assert sum(abs(math.log(lr / peaks[dataset])) < 0.7 for lr in late) >= 8


def _timed_trainable(config):
    """Each trial says it started, then waits until all four have: only trials that run at once
    get past the barrier (a trial left waiting for a GPU share would time it out)."""
    from pathlib import Path
    start = time.time()
    barrier = Path(config["barrier"])
    (barrier / str(config["i"])).touch()
    while len(list(barrier.iterdir())) < 4:
        if time.time() - start > 120:
            raise TimeoutError("the four trials never ran at the same time")
        time.sleep(0.05)
    with open(config["log"], "a") as f:
        f.write(json.dumps([start, time.time()]) + "\n")


def test_four_half_gpu_trials_share_two_fake_gpus(ray_session, tmp_path):
    log, barrier = tmp_path / "times.jsonl", tmp_path / "barrier"
    barrier.mkdir()
    # a quarter CPU each: the session's Ray has one (tests/conftest.py), the GPUs are what is shared
    tuner = tune.Tuner(tune.with_resources(_timed_trainable, {"cpu": 0.25, "gpu": 0.5}),
                       param_space={"log": str(log), "barrier": str(barrier), "i": tune.grid_search([0, 1, 2, 3])},
                       run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0))
    results = tuner.fit()
    assert not results.errors
    spans = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(spans) == 4
    assert max(s for s, _ in spans) < min(e for _, e in spans)   # all four ran at once
