"""The report's choice within a cell (best on validation, finite) and the source run's choice
among candidates, from raw rows and a real SQLite store. The mutation run drives these."""
from __future__ import annotations

import pytest
from stores import empty_store as _store

from clip_prompt_sweeps.errors import UserError
from orchestrator.sweep.plan import make_plan

# --- the report's choice within a cell, and the source run's choice among candidates ----------


def test_best_per_cell_is_each_cells_best_on_validation_finite_trial():
    import pandas as pd

    from reports.trials import best_per_cell, best_test
    rows = [  # cell (a, b): best val 0.8 -> test 0.50; the diverged 0.99 and the NaN are out (the
              # cell each trial logged is added below, as MLflow's `cell` tag gives it)
        dict(a=1, b="x", best_val_acc=0.8, test_acc=0.50, diverged=0, run_id="r1"),
        dict(a=1, b="x", best_val_acc=0.6, test_acc=0.90, diverged=0, run_id="r2"),
        dict(a=1, b="x", best_val_acc=0.7, test_acc=0.10, diverged=0, run_id="r3"),
        dict(a=1, b="x", best_val_acc=0.99, test_acc=0.95, diverged=1, run_id="r4"),
        dict(a=1, b="x", best_val_acc=float("nan"), test_acc=0.97, diverged=0, run_id="r5"),
        dict(a=1, b="y", best_val_acc=0.3, test_acc=0.20, diverged=0, run_id="r6"),
        dict(a=1, b="y", best_val_acc=0.4, test_acc=0.15, diverged=0, run_id="r7"),
        dict(a=2, b="x", best_val_acc=0.5, test_acc=0.30, diverged=0, run_id="r8"),
    ]
    rows = [{**r, "cell": f"a={r['a']},b={r['b']}"} for r in rows]
    best = best_per_cell(pd.DataFrame(rows))
    assert sorted(best["run_id"]) == ["r1", "r7", "r8"]
    assert best_test(best, a=1) == 0.50                 # (1, x) beats (1, y) on validation
    assert best_test(best, a=1, b="y") == 0.15 and best_test(best, a=2) == 0.30
    assert best_test(best, a=3) is None
    no_flag = pd.DataFrame(rows).drop(columns="diverged")   # a trainable that never diverges
    assert sorted(best_per_cell(no_flag.iloc[[1, 2, 5]])["run_id"]) == ["r3", "r6"]


def test_best_per_cell_groups_by_the_logged_cell_and_orders_rows_by_the_grids_axes():
    import pandas as pd

    from reports.trials import best_per_cell

    # layer 10 sorts before layer 2 as text; the grid's order is numeric, axis by axis
    rows = [dict(cell=f"layer={layer},n={n}", layer=layer, n=n, best_val_acc=v, test_acc=v, run_id=f"{layer}-{n}-{v}")
            for layer in (10, 2) for n in (4, 1) for v in (0.1, 0.2)]
    best = best_per_cell(pd.DataFrame(rows))
    assert [(r.layer, r.n) for r in best.itertuples()] == [(2, 1), (2, 4), (10, 1), (10, 4)]
    assert set(best["best_val_acc"]) == {0.2}
    # a param that is not an axis of the grid splits nothing: the logged cell decides
    other = pd.DataFrame([{**rows[0], "seed": 1}, {**rows[1], "seed": 2}])
    assert list(best_per_cell(other)["run_id"]) == [rows[1]["run_id"]]
    # cells whose names carry no axis the frame has (a store's own naming): ordered by name
    named = pd.DataFrame([dict(cell=c, best_val_acc=0.5, test_acc=0.5, run_id=c) for c in ("b", "a", "c")])
    assert list(best_per_cell(named)["run_id"]) == ["a", "b", "c"]


def test_the_source_run_is_the_best_on_validation_candidate_of_the_latest_sweep(tmp_path):
    from mlflow.tracking import MlflowClient

    from clip_prompt_sweeps.store.runs import SUPERSEDED_TAG
    from orchestrator.sweep.source_runs import best_source_run
    from trainables.experiments.source_models import Source
    uri = _store(tmp_path)
    client = MlflowClient(uri)
    exp = client.create_experiment("visual")

    def sweep(profile: str) -> str:
        return client.create_run(exp, tags={"role": "sweep", "profile": profile}).info.run_id

    def trial(parent, val, status="FINISHED", diverged=0, tags=None, **params) -> str:
        run = client.create_run(exp, tags={"mlflow.parentRunId": parent, **(tags or {})}).info.run_id
        for k, v in {"dataset": "cifar100", "prompt": "padding", **params}.items():
            client.log_param(run, k, v)
        if val is not None:
            client.log_metric(run, "best_val_acc", val)
        client.log_metric(run, "diverged", diverged)
        client.set_terminated(run, status)
        return run

    old = sweep("smoke")
    trial(old, 0.99)                                   # an older sweep's better run is not taken
    other_profile = sweep("full")
    latest = sweep("smoke")
    trial(other_profile, 0.98)
    expected = trial(latest, 0.7)
    for val in (0.5, 0.6):
        trial(latest, val)
    trial(latest, 0.97, diverged=1)
    trial(latest, 0.96, status="RUNNING")
    trial(latest, 0.95, status="FAILED")
    trial(latest, 0.94, tags={SUPERSEDED_TAG: "resume"})
    trial(latest, 0.93, prompt="fixed_patch")                    # another cell
    trial(latest, None)                                          # ended before its first epoch
    plan = make_plan("robustness", "smoke")
    run = best_source_run(client, plan, Source("visual", {"dataset": "cifar100", "prompt": "padding"}), uri)
    assert run.run_id == expected
    with pytest.raises(UserError, match="no finished trial of that cell in sweep run " + other_profile):
        best_source_run(client, make_plan("robustness", "full"),
                        Source("visual", {"dataset": "cifar10", "prompt": "padding"}), uri)
    with pytest.raises(UserError, match="no 'finetune' sweep of profile 'smoke'"):
        best_source_run(client, plan, Source("finetune", {"variant": "fc"}), uri)


def test_the_source_run_may_be_stopped_early_and_need_not_log_divergence(tmp_path):
    """A KILLED trial (stopped early by ASHA) is a candidate, and so is one that never logged a
    `diverged` metric (a trainable that cannot diverge); the error names the store."""
    from mlflow.tracking import MlflowClient

    from orchestrator.sweep.source_runs import best_source_run
    from trainables.experiments.source_models import Source
    uri = _store(tmp_path)
    client = MlflowClient(uri)
    exp = client.create_experiment("finetune")
    parent = client.create_run(exp, tags={"role": "sweep", "profile": "smoke"}).info.run_id
    runs = {}
    for name, val, status in (("killed", 0.9, "KILLED"), ("plain", 0.8, "FINISHED")):
        runs[name] = client.create_run(exp, tags={"mlflow.parentRunId": parent}).info.run_id
        client.log_param(runs[name], "variant", "fc")
        client.log_metric(runs[name], "best_val_acc", val)
        client.set_terminated(runs[name], status)
    plan = make_plan("robustness", "smoke")
    assert best_source_run(client, plan, Source("finetune", {"variant": "fc"}), uri).run_id == runs["killed"]
    client.log_metric(runs["killed"], "diverged", 1)
    assert best_source_run(client, plan, Source("finetune", {"variant": "fc"}), uri).run_id == runs["plain"]
    with pytest.raises(UserError, match=f"no finished trial of that cell in sweep run {parent} in {uri}"):
        best_source_run(client, plan, Source("finetune", {"variant": "none"}), uri)
    with pytest.raises(UserError, match=f"no 'visual' sweep of profile 'smoke' in {uri}"):
        best_source_run(client, plan, Source("visual", {}), uri)


def test_best_per_cell_keeps_the_trials_columns():
    import pandas as pd

    from reports.trials import best_per_cell
    frame = pd.DataFrame([dict(cell="a=1", a=1, best_val_acc=0.5, test_acc=0.4),
                          dict(cell="a=1", a=1, best_val_acc=0.6, test_acc=0.3)])
    best = best_per_cell(frame)
    assert list(best.columns) == list(frame.columns) and list(best.index) == [0]


def test_best_source_run_without_a_store_names_the_sweep_to_run(tmp_path):
    from orchestrator.sweep.source_runs import best_source_run
    from trainables.experiments.source_models import Source
    with pytest.raises(UserError, match="no 'visual' sweep of profile 'smoke' in sqlite:///nowhere"):
        best_source_run(None, make_plan("robustness", "smoke"), Source("visual", {}), "sqlite:///nowhere")


def test_the_store_finds_the_latest_parent_of_any_or_one_profile_and_filters_children_by_status(tmp_path):
    import time

    from mlflow.tracking import MlflowClient

    from clip_prompt_sweeps.store.records import read_parent
    from clip_prompt_sweeps.store.runs import children, current_trials, latest_parent
    uri = _store(tmp_path)
    client = MlflowClient(uri)
    assert latest_parent(client, "deep") is None and latest_parent(None, "deep") is None
    exp = client.create_experiment("deep")
    assert latest_parent(client, "deep") is None                         # an experiment with no sweep yet
    parents = []
    for profile in ("smoke", "full", "smoke", "full"):
        parents.append(client.create_run(exp, tags={"role": "sweep", "profile": profile}).info.run_id)
        time.sleep(0.01)                                                 # distinct start times
    client.create_run(exp, tags={"role": "trial", "profile": "full"})     # a trial is never a parent
    assert latest_parent(client, "deep").info.run_id == parents[3]       # any profile: the newest
    assert latest_parent(client, "deep", "smoke").info.run_id == parents[2]
    assert latest_parent(client, "deep", "other") is None
    ended = client.create_run(exp, tags={"mlflow.parentRunId": parents[3]}).info.run_id
    client.set_terminated(ended, "FINISHED")
    running = client.create_run(exp, tags={"mlflow.parentRunId": parents[3]}).info.run_id
    client.create_run(exp, tags={"mlflow.parentRunId": parents[2]})      # another sweep's child
    assert {r.info.run_id for r in children(client, exp, parents[3])} == {ended, running}
    assert [r.info.run_id for r in children(client, exp, parents[3], "RUNNING")] == [running]
    client.set_tag(running, "superseded_by", "a resume")        # kept in MLflow, left out of reports
    kept, superseded = current_trials(client, read_parent(client.get_run(parents[3])))
    assert [r.run_id for r in kept] == [ended] and superseded == 1
