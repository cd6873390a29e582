"""The plan (orchestrator/sweep/plan.py), piece by piece: --set and --grid parsed and typed, paths
made absolute, every refusal in its one line, the cells, their epochs and groups, and the request a
resume rebuilds the plan from. The mutation run drives these."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from clip_prompt_sweeps.errors import UserError
from orchestrator.sweep.plan import (
    PlanRequest,
    absolute_paths,
    cell_epochs,
    make_plan,
    parse_grids,
    parse_sets,
    sweep_file_digest,
    trial_config,
)


def test_set_entries_are_key_value_stripped_or_refused_in_one_line():
    assert parse_sets([" epochs = 5 ", "a=b=c", "empty="]) == {"epochs": "5", "a": "b=c", "empty": ""}
    assert parse_sets([]) == {}
    for bad in ("epochs", "=5", ""):
        with pytest.raises(UserError) as err:
            parse_sets(["ok=1", bad])
        assert str(err.value) == f"--set {bad!r} is not key=value; e.g. --set epochs=5"


def test_grid_entries_are_axes_of_typed_values_once_each_or_refused_in_one_line():
    from trainables.experiments.prompt_training import DeepPromptConfig
    assert parse_grids([" n_prompts = 1, 4 ,,1", "dataset=cifar10"], DeepPromptConfig) == {
        "n_prompts": [1, 4], "dataset": ["cifar10"]}
    for bad in ("n_prompts", "=1,2", " =1", "n_prompts=", "n_prompts= , ,"):
        with pytest.raises(UserError) as err:
            parse_grids([bad], DeepPromptConfig)
        assert str(err.value) == (f"--grid {bad!r} is not KEY=V1,V2,...; e.g. --grid "
                                  f"backbone=ViT-B-32:openai,ViT-B-16:openai")


def test_path_values_of_set_and_grid_entries_are_made_absolute_and_nothing_else_is(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    here = Path(tmp_path).resolve()
    assert absolute_paths("dataset=folder:imgs") == f"dataset=folder:{here}/imgs"
    assert absolute_paths("dataset= folder:imgs ") == f"dataset=folder:{here}/imgs"
    assert absolute_paths("template_set=file:t.txt") == f"template_set=file:{here}/t.txt"
    assert absolute_paths("template_set=file:~/t.txt") == f"template_set=file:{Path.home().resolve()}/t.txt"
    assert absolute_paths("dataset=folder:") == "dataset=folder:"              # no path: left as typed
    assert absolute_paths("dataset=cifar10") == "dataset=cifar10" and absolute_paths("no-equals") == "no-equals"
    assert absolute_paths("dataset=folder:a,cifar10,folder:b", grid=True) == (
        f"dataset=folder:{here}/a,cifar10,folder:{here}/b")
    # a --set value is one value, commas and all
    assert absolute_paths("dataset=folder:a,b") == f"dataset=folder:{here}/a,b"
    assert absolute_paths("dataset=folder:a,folder:b") == f"dataset=folder:{here}/a,folder:b"
    # the key ends at the first '=': a path may hold one
    assert absolute_paths("dataset=folder:v=2") == f"dataset=folder:{here}/v=2"


def test_a_trials_config_is_base_cell_filled_lr_and_its_cell_key_in_that_order():
    config = trial_config({"a": 1, "b": 1}, {"b": 2, "dataset": "x"}, 0.5, {"b=2,dataset=x": {"source_run": "r"}})
    assert config == {"a": 1, "b": 2, "dataset": "x", "source_run": "r", "lr": 0.5, "_cell": "b=2,dataset=x"}
    assert "lr" not in trial_config({}, {"b": 1}, None) and trial_config({}, {"b": 1}, None)["_cell"] == "b=1"


def test_each_refusal_of_make_plan_is_its_one_line():
    cases = [
        (dict(sets=["dataset=cifar10"], grids=["dataset=cifar10,cifar100"]), "--set and --grid both name dataset; keep one"),
        (dict(grids=["lr=1,2"]), "--grid lr: the learning rate is tuned within each cell; use --samples to try more"),
        (dict(sets=["lr=1"]), "--set lr: the learning rate is tuned within each cell (4 to 400); use --samples to try more"),
        (dict(samples=0), "--samples must be at least 1, got 0"),
        (dict(samples=-2), "--samples must be at least 1, got -2"),
    ]
    for kw, line in cases:
        with pytest.raises(UserError) as err:
            make_plan("visual", "smoke", **kw)
        assert str(err.value) == line, kw
    with pytest.raises(UserError) as err:
        make_plan("zeroshot", "smoke", samples=2)
    assert str(err.value) == "--samples: sweep 'zeroshot' tunes no learning rate; it runs one trial per cell"
    assert make_plan("zeroshot", "smoke", samples=1).n_trials == 2          # one trial per cell is what it runs


def test_a_plan_holds_its_overrides_cells_typed_configs_and_the_arguments_it_was_made_from():
    plan = make_plan("visual", "smoke", sets=["dataset=cifar10", "batch_size=16"], samples=3, epochs=2)
    assert plan.base["epochs"] == 2 and plan.base["batch_size"] == 16 and plan.base["dataset"] == "cifar10"
    assert [c for c in plan.cells] == [{"prompt": "padding", "prompt_size": 4}, {"prompt": "fixed_patch", "prompt_size": 1}]
    assert plan.n_trials == 6 and plan.profile.samples == 3 and plan.profile_name == "smoke"
    assert set(plan.typed) == {"prompt=padding,prompt_size=4", "prompt=fixed_patch,prompt_size=1"}
    assert all(t.epochs == 2 and t.batch_size == 16 for t in plan.typed.values())
    assert plan.args == dict(sets=["dataset=cifar10", "batch_size=16"], samples=3, epochs=2, grids=[])
    assert plan.sweep_file is None and plan.filled == {}
    grid = make_plan("deep", "smoke", grids=["layer=last", "n_prompts=2,3"])
    assert grid.profile.grid["layer"] == ["last"] and grid.profile.grid["n_prompts"] == [2, 3]
    assert len(grid.cells) == 2 * 1 * 2 * 2 and grid.args["grids"] == ["layer=last", "n_prompts=2,3"]
    assert make_plan("visual", "smoke").profile.samples == 2         # the profile's own, where none is given


def test_a_plan_from_a_sweep_file_records_the_files_path_and_digest(tmp_path):
    import shutil
    toml = tmp_path / "deep_grid.toml"
    shutil.copy(Path(__file__).resolve().parents[1] / "examples" / "deep_grid.toml", toml)
    plan = make_plan(str(toml), "smoke")
    assert plan.sweep_file == str(toml.resolve()) and plan.args["sweep_file_sha256"] == sweep_file_digest(str(toml))
    import hashlib
    assert sweep_file_digest(str(toml)) == hashlib.sha256(toml.read_bytes()).hexdigest()
    assert PlanRequest(str(toml), "smoke").sweep_file == str(toml.resolve())
    assert PlanRequest("visual", "smoke").sweep_file is None and "sweep_file_sha256" not in make_plan("visual", "smoke").args


def test_each_cell_runs_its_own_epochs_and_at_least_one():
    plan = make_plan("visual", "smoke", grids=["epochs=1,3"])
    assert sorted(cell_epochs(plan).values()) == [1, 1, 1, 1, 3, 3, 3, 3]
    assert set(cell_epochs(make_plan("visual", "smoke", epochs=2)).values()) == {2}
    assert set(cell_epochs(make_plan("zeroshot", "smoke")).values()) == {1}      # no epochs key: one
    plan = make_plan("visual", "smoke")
    assert cell_epochs(replace(plan, base={**plan.base, "epochs": 0})) == {k: 1 for k in plan.typed}   # never 0


def test_a_plan_in_groups_keeps_whole_cells_and_at_most_the_trials_asked_for():
    plan = make_plan("visual", "smoke", samples=2)                              # 4 cells x 2
    assert [len(g.cells) for g in plan.groups(4)] == [2, 2] and [len(g.cells) for g in plan.groups(5)] == [2, 2]
    assert [len(g.cells) for g in plan.groups(6)] == [3, 1] and [len(g.cells) for g in plan.groups(8)] == [4]
    assert [len(g.cells) for g in plan.groups(1)] == [1, 1, 1, 1]                # a cell is never split
    assert [g.cells for g in plan.groups(2)] == [[c] for c in plan.cells]
    assert all(g.base == plan.base and g.profile == plan.profile for g in plan.groups(2))


def test_a_plan_built_from_its_request_is_the_plan():
    asked = PlanRequest("deep", "smoke", ("batch_size=8",), 1, 2, ("layer=first,last",))
    plan = asked.build()
    assert (plan.base["batch_size"], plan.profile.samples, plan.base["epochs"]) == (8, 1, 2)
    assert plan.profile.grid["layer"] == ["first", "last"] and asked.experiment.name == "deep"
    again = plan.request()          # the plan's record stands for its name, everything else as asked
    assert again.experiment is plan.experiment and again == replace(asked, sweep=plan.experiment)
    assert again.build().cells == plan.cells and again.build().base == plan.base
