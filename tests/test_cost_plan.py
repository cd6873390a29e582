"""`--dry-run`'s cost plan line by line against a hand count (issue #28): trial-epochs, images,
device-hours from figures chosen so the arithmetic is done by hand, the figure each cell stands
for, and the lines that say why there is no estimate. In-process, no Ray: the mutation run drives
these (scripts/mutation.py)."""
from __future__ import annotations

import json

import pytest

from clip_prompt_sweeps.errors import UserError
from orchestrator.sweep.cost import (
    Figures,
    _hours,
    asha_epochs,
    bench_figures,
    cost_lines,
    figure_key,
    shipped_figures,
    split_sizes,
)
from orchestrator.sweep.plan import make_plan

LAST = "nothing was run or written; run it without --dry-run"
# deep, full profile, CIFAR-10, 2 learning rates: 18 cells (6 per layer), 20 epochs, grace 2, rf 2.
# Per cell: 2 trials to epoch 2, then 1 to 4, 8, 16 and 20: 2*2 + 2 + 4 + 8 + 4 = 22 trial-epochs
# (at most 2*20 = 40). CIFAR-10: 45,000 train + 5,000 validation images an epoch, 10,000 test.
RATES = {"deep_prompt/first": 1000.0, "deep_prompt/middle": 2000.0, "deep_prompt/last": 4000.0,
         "deep_prompt/last/cache_build": 600.0}


def _figures(device="cuda", model="ViT-B-32", throughput=None) -> Figures:
    return Figures(device, "Box", "2026-11-30", model, "python -m orchestrator bench --json b.json",
                   RATES if throughput is None else throughput)


@pytest.fixture(scope="module")
def deep():
    return make_plan("deep", "full", ["dataset=cifar10"], samples=2)


def test_the_plan_of_the_full_deep_grid_is_the_hand_count(deep):
    lines = cost_lines(deep, [_figures()], 2.0)
    assert lines[0] == "plan for sweep deep (full): 18 cells x 2 learning rates = 36 trials, up to 20 epochs each"
    assert lines[1] == ("ASHA per cell (grace 2, reduction factor 2, rungs at epochs 2, 4, 8, 16): at most 720 "
                        "trial-epochs if nothing is stopped; 396 if each rung promotes its top 1/2")
    # 720 * 50,000 and 396 * 50,000 images
    assert lines[2] == "images through the model (train + validation each epoch): at most 36.0 M, expected 19.8 M"
    assert lines[3] == ("device time, from measured training throughput (expected epochs; a frozen-part cache is "
                        "counted where its build was measured):")
    # expected: 6 cells a layer x 22 epochs x 50,000 images / rate, plus the last layer's cache built once
    # per trial (60,000 images / 600 per s = 100 s) x 2 trials x 6 cells:
    # 6.6 M x (1/1000 + 1/2000 + 1/4000) + 1,200 = 11,550 + 1,200 = 12,750 s = 3.54 h
    # at most: 6 cells x 2 trials x (1 M / rate) + the cache: 6 x (2,000 + 1,000 + 500 + 200) = 22,200 s = 6.17 h
    assert lines[4] == "  Box, measured 2026-11-30: about 3.54 device-hours (at most 6.17); 2 GPUs finish it within 2 h"
    assert lines[5] == "    figures: python -m orchestrator bench --json b.json"
    assert lines[6:] == [LAST]


def test_one_machine_and_the_cpu_word_and_no_deadline(deep):
    lines = cost_lines(deep, [_figures(device="cpu")], 4.0)
    assert lines[4].endswith("; 1 such machine finishes it within 4 h")
    many = cost_lines(deep, [_figures(device="cpu")], 0.5)
    assert many[4].endswith("; 8 such machines finish it within 0.5 h")             # ceil(3.54 / 0.5)
    assert cost_lines(deep, [_figures()], None)[4].endswith("about 3.54 device-hours (at most 6.17)")


def test_without_a_cache_build_figure_the_frozen_part_costs_nothing_extra(deep):
    rates = {k: v for k, v in RATES.items() if "cache_build" not in k}
    line = cost_lines(deep, [_figures(throughput=rates)], None)[4]
    assert line.endswith("about 3.21 device-hours (at most 5.83)")       # 11,550 s and 21,000 s


def test_no_estimate_where_a_figure_is_missing_or_measured_on_another_model(deep):
    rates = {k: v for k, v in RATES.items() if k != "deep_prompt/middle"}
    assert cost_lines(deep, [_figures(throughput=rates)], 1.0)[4] == \
        "  Box, measured 2026-11-30: no figure for deep_prompt/middle: no estimate"
    zero = {**RATES, "deep_prompt/first": 0.0}
    assert cost_lines(deep, [_figures(throughput=zero)], 1.0)[4].endswith("no figure for deep_prompt/first: no estimate")
    assert cost_lines(deep, [_figures(model="RN50")], 1.0)[4] == \
        "  Box, measured 2026-11-30: measured on RN50, not ViT-B-32: no estimate"
    # several figures: one estimate line and one source line each
    lines = cost_lines(deep, [_figures(), _figures(model="RN50")], None)
    assert len(lines) == 9 and lines[6].endswith("no estimate") and lines[-1] == LAST


def test_a_linear_probe_has_no_training_figure():
    plan = make_plan("linear", "full", [], samples=1)
    lines = cost_lines(plan, [_figures(throughput={"visual_prompt": 1.0})], None)
    assert lines[4].endswith("no figure for linear_probe: no estimate")


def test_a_sweep_that_trains_nothing_says_so():
    plan = make_plan("zeroshot", "full", [])
    assert cost_lines(plan, [_figures()], 1.0) == [
        "plan for sweep zeroshot (full): 2 cells x 1 trial = 2 trials, one pass each",
        "nothing is trained: no epochs to count and no throughput figure to estimate it from", LAST]


def test_one_learning_rate_and_no_rungs():
    plan = make_plan("visual", "smoke", ["dataset=cifar10", "prompt=padding", "prompt_size=4"], samples=1, epochs=1)
    lines = cost_lines(plan, [], None)
    assert lines[0].endswith("1 cells x 1 learning rate = 1 trials, up to 1 epochs each")
    assert "rungs at epochs none): at most 1 trial-epochs if nothing is stopped; 1 if" in lines[1]


def test_each_cell_stands_for_the_figure_of_its_layer_cache_and_variant(deep):
    keys = [figure_key(deep, c) for c in deep.cells]
    assert [keys.count(f"deep_prompt/{w}") for w in ("first", "middle", "last")] == [6, 6, 6]
    assert [figure_key(deep, c) for c in deep.cells if c["layer"] == "middle"] == ["deep_prompt/middle"] * 6
    uncached = make_plan("deep", "smoke", ["dataset=cifar10", "prefix_cache=false", "layer=first"])
    assert {figure_key(uncached, c) for c in uncached.cells} == {"deep_prompt/first/uncached"}
    finetune = make_plan("finetune", "full", ["dataset=cifar10"])
    cached = {c["variant"]: figure_key(finetune, c) for c in finetune.cells if c["augment"] == "none"}
    assert cached == {"fc": "finetune/cached", "fc_first_conv": "finetune/uncached", "fc_last_conv": "finetune/uncached"}
    visual = make_plan("visual", "full", ["dataset=cifar10"])
    assert {figure_key(visual, c) for c in visual.cells} == {"visual_prompt"}


@pytest.mark.parametrize("dataset,sizes", [("cifar10", (45_000, 5_000, 10_000)),
                                           ("flowers102", (1_020, 1_020, 6_149)),     # its own validation split
                                           ("stl10", (4_500, 500, 8_000))])          # carved from train
def test_split_sizes_are_the_datasets_own(dataset, sizes):
    plan = make_plan("visual", "full", [f"dataset={dataset}"])
    assert split_sizes(plan.typed[next(iter(plan.typed))]) == sizes


def test_hours_are_shown_with_the_precision_their_size_deserves():
    assert [_hours(h) for h in (0.5, 9.994, 10.0, 99.94, 100.0, 1234.6)] == \
        ["0.50", "9.99", "10.0", "99.9", "100", "1,235"]


def test_a_bench_json_file_gives_its_figures_and_anything_else_one_line(tmp_path):
    path = tmp_path / "b.json"
    path.write_text(json.dumps({"machine": {"device": "cpu", "cpus": 2}, "date": "2026-11-30", "model": "RN50",
                                "throughput": {"visual_prompt": "7.5"}}))
    assert bench_figures(str(path)) == [Figures("cpu", "2-core CPU", "2026-11-30", "RN50",
                                                f"python -m orchestrator bench --json {path}", {"visual_prompt": 7.5})]
    path.write_text(json.dumps({"machine": {"device": "cuda", "gpu": "H200", "cpus": 16}, "model": "m",
                                "throughput": {}}))
    (f,) = bench_figures(str(path))
    assert (f.name, f.date, f.device) == ("H200", "undated", "cuda")
    path.write_text("{}")
    with pytest.raises(UserError, match=r"\(KeyError: 'machine'\)"):
        bench_figures(str(path))
    for bad in ("[1]", "not json", json.dumps({"machine": {"device": "cpu"}, "model": "m", "throughput": {}}),
                json.dumps({"machine": {"device": "cpu", "cpus": 2}, "model": "m", "throughput": {"x": "fast"}})):
        path.write_text(bad)
        with pytest.raises(UserError, match=r"--figures .*b\.json: not a `bench --json` file .*; write one with "
                                            r"`python -m orchestrator bench --json"):
            bench_figures(str(path))
    with pytest.raises(UserError, match="not a `bench --json` file"):
        bench_figures(str(tmp_path / "missing.json"))


def test_the_shipped_figures_are_a_gpu_and_the_ci_cpu():
    figures = shipped_figures()
    assert [f.device for f in figures] == ["cuda", "cpu"] and all(f.model == "ViT-B-32" for f in figures)
    assert all(f.throughput["deep_prompt/last"] > 0 for f in figures)


def test_the_expected_count_never_exceeds_every_trial_to_the_end_nor_falls_below_one_trial_to_the_end():
    for trials in (1, 2, 5, 17, 100):
        for rf in (2, 3, 4):
            n = asha_epochs(trials, 30, 1, rf)
            assert 30 <= n <= trials * 30
            assert (n == 30) == (trials == 1)       # one trial, and only one, always runs to the end


def test_one_trial_of_one_epoch_to_the_last_rounding_digit():
    # 50,000 images: 0.05 M, shown as 0.1; at 50,000 / 486.072 images a second, 486.072 s: 0.13502 h,
    # shown as 0.14 (a divisor off by one in either place shows: 0.0 M, 0.13 h)
    plan = make_plan("visual", "full", ["dataset=cifar10", "prompt=padding", "prompt_size=30"], samples=1, epochs=1)
    lines = cost_lines(plan, [_figures(model="ViT-B-32", throughput={"visual_prompt": 50_000 / 486.072})], None)
    assert lines[0] == "plan for sweep visual (full): 1 cells x 1 learning rate = 1 trials, up to 1 epochs each"
    assert lines[2].endswith("at most 0.1 M, expected 0.1 M")
    assert lines[4].endswith("about 0.14 device-hours (at most 0.14)")
    # a cache build of 60,000 images at 60,000 / 35.9 per s adds 35.9 s: 521.972 s = 0.14499 h
    build = {"visual_prompt": 50_000 / 486.072, "visual_prompt/cache_build": 60_000 / 35.9}
    assert cost_lines(plan, [_figures(throughput=build)], None)[4].endswith("about 0.14 device-hours (at most 0.14)")
    build["visual_prompt/cache_build"] = 60_000 / 36.1           # 522.172 s = 0.14505 h
    assert cost_lines(plan, [_figures(throughput=build)], None)[4].endswith("about 0.15 device-hours (at most 0.15)")


def test_the_rungs_say_when_cells_run_to_different_epochs():
    same = make_plan("visual", "smoke", ["dataset=cifar10", "prompt=padding"], samples=2, grids=["prompt_size=2,4"])
    assert "(within each cell's own epochs)" not in cost_lines(same, [], None)[1]
    ragged = make_plan("visual", "smoke", ["dataset=cifar10", "prompt=padding", "prompt_size=4"], samples=2,
                       grids=["epochs=2,6"])
    assert "rungs at epochs 1, 2, 4 (within each cell's own epochs)): at most" in cost_lines(ragged, [], None)[1]


def test_a_sweep_without_a_training_figure_and_a_synthetic_dataset():
    linear = make_plan("linear", "full", [])
    assert {figure_key(linear, c) for c in linear.cells} == {None}
    from trainables.data.synthetic_archives import image_counts
    plan = make_plan("visual", "smoke", ["dataset=cifar100", "prompt=padding", "prompt_size=4"])
    train, test = image_counts("cifar100")
    cfg = plan.typed[next(iter(plan.typed))]
    assert cfg.data == "synthetic"
    assert split_sizes(cfg) == (train - round(train * 0.1), round(train * 0.1), test)


def test_no_estimate_names_every_missing_figure_and_model():
    plan = make_plan("deep", "smoke", ["dataset=cifar10", "layer=first"], grids=["model=tiny-clip,ViT-B-32"])
    assert cost_lines(plan, [_figures(model="RN50")], None)[4].endswith(
        "measured on RN50, not ViT-B-32, tiny-clip: no estimate")
    full = make_plan("deep", "full", ["dataset=cifar10"], samples=2)
    rates = {"deep_prompt/last": 1.0}
    assert cost_lines(full, [_figures(throughput=rates)], None)[4].endswith(
        "no figure for deep_prompt/first, deep_prompt/middle: no estimate")


def test_finetune_is_estimated_from_its_own_figures_whatever_clip_model_they_were_measured_on():
    # ResNet-18 fine-tuning: 9 cells (3 variants x 3 augmentations), one trial each to the last epoch
    # (one trial: nothing to compare), 50,000 images an epoch; only `fc` without augmentation runs
    # on cached features
    plan = make_plan("finetune", "full", ["dataset=cifar10"], samples=1)
    epochs = plan.base["epochs"]
    cached = sum(1 for c in plan.cells if figure_key(plan, c) == "finetune/cached")
    line = cost_lines(plan, [_figures(model="RN50", throughput={"finetune/cached": 1000.0,
                                                                 "finetune/uncached": 100.0})], None)[4]
    hours = (cached * epochs * 50_000 / 1000 + (9 - cached) * epochs * 50_000 / 100) / 3600
    assert cached == 2 and line.endswith(f"about {_hours(hours)} device-hours (at most {_hours(hours)})")
