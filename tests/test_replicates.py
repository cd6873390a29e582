"""`--replicates N`: each cell's chosen learning rate rerun with N new seeds (the split fixed), as
child runs tagged replicate=k; the deep report's mean ± 95 % CI against a hand computation, and
its significance marks on a trainable whose accuracy is planted: a large front/back difference
is marked, a nil difference between layers is not."""
from __future__ import annotations

import math
import statistics
import sys
from dataclasses import dataclass

import numpy as np
import pytest
import ray.cloudpickle
import torch
from mlflow.tracking import MlflowClient

from clip_prompt_sweeps.errors import UserError
from orchestrator.sweep.plan import SweepPlan, make_plan
from orchestrator.sweep.replicates import check_replicates
from orchestrator.sweep.driver import SweepOptions, run_sweep
from reports import deep
from reports.stats import holm, mean_ci, welch_p
from reports.trials import load_sweep
from search_spaces.experiment import Experiment, LogUniform, Profile
from trainables.data.config import DataConfig, load_splits
from trainables.data.pipeline import Preprocess
from trainables.training.entry import Trainable

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
T_975_3 = 3.182446305284263         # Student's t, 97.5 % quantile, 3 degrees of freedom (tables)
FRONT_GAIN = 0.20                   # planted: front beats back by 20 points
NOISE = 0.01                        # per-seed spread of the planted accuracy


@dataclass
class PlantedConfig:
    dataset: str = "cifar10"
    layer: str = "first"
    n_prompts: int = 1
    position: str = "front"
    lr: float = 0.5
    seed: int = 0
    replicate: int = 0
    epochs: int = 2


def planted(config: dict) -> None:
    """Accuracy set by the cell (front +20 points; the layer changes nothing) plus seeded noise."""
    from ray import tune
    seed = config["seed"] + 1_000_003 * config.get("replicate", 0) + (7 if config["layer"] == "last" else 0) \
        + (11 if config["position"] == "back" else 0)
    rng = np.random.default_rng(seed)
    base = 0.6 + (FRONT_GAIN if config["position"] == "front" else 0.0) - 0.02 * abs(math.log(config["lr"]))
    best = 0.0
    for epoch in range(1, config["epochs"] + 1):
        acc = base + rng.normal(0, NOISE)
        best = max(best, acc)
        tune.report({"val_acc": acc, "best_val_acc": best, "test_acc": acc, "epoch": epoch, "diverged": 0.0})


def _plan(data_root) -> SweepPlan:
    # synthetic CIFAR-10 is named only so the preflight finds what a 'dataset' key asks for
    profile = Profile(base={"epochs": 2, "dataset": "cifar10", "data": "synthetic", "data_dir": str(data_root), "seed": 0},
                      grid={"layer": ["first", "last"], "n_prompts": [1], "position": ["front", "back"]},
                      lr=LogUniform(0.1, 1.0), samples=2, grace_period=2)
    spec = Trainable("planted", PlantedConfig, planted, "planted accuracy", ("val_acc",))
    return SweepPlan(Experiment("planted", spec, "", {"test": profile}), "test", profile, dict(profile.base),
                     profile.cells())


def test_replicates_rerun_the_chosen_lr_and_the_report_marks_only_the_planted_difference(ray_session, data_root,
                                                                                         tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    out = run_sweep(_plan(data_root), SweepOptions(tracking_uri=uri, storage_path=str(tmp_path / "ray"), gpus_per_trial=0,
                                          replicates=4, progress=False))
    assert out.trials == 4 * 2 + 4 * 4 and out.errors == 0
    client = MlflowClient(uri)
    runs = client.search_runs([out.experiment_id], "tags.role = 'trial'")
    tuned = [r for r in runs if "replicate" not in r.data.tags]
    replicas = [r for r in runs if "replicate" in r.data.tags]
    assert len(tuned) == 8 and len(replicas) == 16
    for cell in {r.data.tags["cell"] for r in tuned}:
        chosen = max((r for r in tuned if r.data.tags["cell"] == cell), key=lambda r: r.data.metrics["best_val_acc"])
        mine = [r for r in replicas if r.data.tags["cell"].startswith(cell + ",replicate=")]
        assert sorted(r.data.tags["replicate"] for r in mine) == ["1", "2", "3", "4"]
        assert {r.data.params["lr"] for r in mine} == {chosen.data.params["lr"]}     # the chosen lr, fixed
        assert {r.data.params["seed"] for r in mine} == {"0"}                         # the split's seed stays
    (tmp_path / "out").mkdir()
    from orchestrator.commands.status import status_lines
    assert ": 24 of 24 trials on 1 node;" in "\n".join(status_lines(client, "planted"))   # tuned + replicates
    sw = load_sweep(client, "planted", tmp_path / "out")
    assert len(sw.trials) == 8 and len(sw.replicates) == 16      # tables read the tuned trials; CIs the replicates
    md = "\n".join(deep.report(sw))

    # the CI of one cell, by hand from the runs: mean ± t(0.975, 3) * sd / sqrt(4)
    cell = "layer=first,n_prompts=1,position=front"
    values = [r.data.metrics["test_acc"] for r in replicas if r.data.tags["cell"].startswith(cell + ",")]
    m, half = statistics.mean(values), T_975_3 * statistics.stdev(values) / 2
    assert f"{100 * m:.2f} ± {100 * half:.2f} (n=4)" in md

    # front vs back: planted large, marked at both layers; first vs last: planted nil, not marked
    rows = [line for line in md.splitlines() if line.startswith("| cifar10 | first") or line.startswith("| cifar10 | last")]
    assert len(rows) == 2 and all(line.rstrip(" |").endswith("*") for line in rows), rows
    layer_rows = [line for line in md.splitlines() if "layer first − layer last" in line]
    assert len(layer_rows) == 2 and all(line.rstrip(" |").endswith("n.s.") for line in layer_rows), layer_rows
    assert "Welch's two-sided t-test, Holm-corrected across the 4 comparisons" in md


def test_statistics_against_known_values():
    m, half, n = mean_ci([0.79, 0.80, 0.81])
    assert (n, m) == (3, pytest.approx(0.80)) and half == pytest.approx(4.302652729911275 * 0.01 / math.sqrt(3))
    assert math.isnan(mean_ci([0.5])[1]) and math.isnan(welch_p([0.5], [0.4, 0.6]))
    # Welch's t for two fixed samples: t = -3 / sqrt(1/3 + 1/3) = -3.674, df = 4, two-sided p = 0.02131
    assert welch_p([1, 2, 3], [4, 5, 6]) == pytest.approx(0.021312, abs=1e-5)
    # Holm: sorted p's times (m - rank), made monotone, capped at 1; nan left out
    assert holm([0.01, 0.04, 0.03, float("nan")]) == pytest.approx([0.03, 0.06, 0.06, float("nan")], nan_ok=True)


def test_a_replicate_keeps_the_split_and_changes_the_training_seed(data_root):
    base = dict(dataset="cifar10", data="synthetic", data_dir=str(data_root), seed=3)
    tuned, rerun = DataConfig(**base), DataConfig(**base, replicate=2)
    assert tuned.split_seed == rerun.split_seed == 3 and tuned.train_seed == 3 != rerun.train_seed
    pre = Preprocess(32)
    _, a = load_splits(tuned, pre, torch.device("cpu"))
    _, b = load_splits(rerun, pre, torch.device("cpu"))
    assert torch.equal(a.val.images, b.val.images) and torch.equal(a.train.labels, b.train.labels)
    assert not torch.equal(torch.randperm(100, generator=a.train.generator),
                           torch.randperm(100, generator=b.train.generator))


def test_replicates_are_refused_where_nothing_is_tuned():
    with pytest.raises(UserError, match="--replicates: sweep 'zeroshot' tunes nothing"):
        check_replicates(make_plan("zeroshot", "smoke"), 3)
    with pytest.raises(UserError, match="--replicates must be 0 or more"):
        check_replicates(make_plan("deep", "smoke"), -1)
