"""The report's numbers, the source choice and the failure path of a sweep, checked against
values the test computes its own way from the raw runs in MLflow (see also test_best_and_sources.py, the
fast unit checks that the mutation run uses)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from clip_prompt_sweeps.names import cell_key
from orchestrator.sweep.plan import make_plan

# --- reports and source choice: the best-on-validation trial, among runs whose values we set ---

# Per sweep a range of test scores no other sweep's runs use, under 10 %: no seed number, and no
# signed Δ, reads as one of them in a table cell.
PLANTED = {"deep": 100, "visual": 300, "finetune": 500, "linear": 700}     # first value, in 1/100 %


def _plant(client, sweep: str, tmp_path) -> str:
    """Give every cell of the latest `sweep` run three more trials beside its own, and set all
    four's validation and test scores: the best on validation has neither the best nor the worst
    test score. A fifth, diverged, has the best validation score of all. Returns the parent id."""
    from mlflow.entities import Metric, Param
    exp = client.get_experiment_by_name(sweep).experiment_id
    parent = client.search_runs([exp], "tags.role = 'sweep'", order_by=["attributes.start_time DESC"])[0]
    children = client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    rng = np.random.default_rng(len(sweep))
    tests = iter(rng.permutation(190) + PLANTED[sweep])
    for child in children:
        artifact = client.download_artifacts(child.info.run_id, "learned/best.safetensors", str(tmp_path / child.info.run_id))
        siblings = [child.info.run_id]
        for _ in range(4):
            tags = {k: v for k, v in child.data.tags.items() if not k.startswith("mlflow.") or k == "mlflow.parentRunId"}
            run = client.create_run(exp, tags=tags).info.run_id
            client.log_batch(run, params=[Param(k, v) for k, v in child.data.params.items()])
            client.log_artifact(run, artifact, "learned")
            client.set_terminated(run, "FINISHED")
            siblings.append(run)
        vals = sorted(rng.uniform(0.2, 0.8, 4))            # worst ... best on validation
        t = sorted(next(tests) / 10_000 for _ in range(4))
        test_of = [t[3], t[0], t[2], t[1]]                # the best on validation: second-lowest test
        for run, val, test in zip(siblings, vals, test_of):
            client.log_batch(run, metrics=[Metric("best_val_acc", val, 0, 10**6), Metric("test_acc", test, 0, 10**6),
                                           Metric("diverged", 0, 0, 10**6)])
        client.log_batch(siblings[4], metrics=[Metric("best_val_acc", 0.99, 0, 10**6),
                                               Metric("test_acc", next(tests) / 10_000, 0, 10**6),
                                               Metric("diverged", 1, 0, 10**6)])
    return parent.info.run_id


def _runs_frame(client, sweep: str, parent: str):
    """Every trial of the sweep as MLflow holds it, read here without the reports' code."""
    import pandas as pd
    exp = client.get_experiment_by_name(sweep).experiment_id
    rows = [{**r.data.params, "val": r.data.metrics.get("best_val_acc"), "test": r.data.metrics.get("test_acc"),
             "diverged": r.data.metrics.get("diverged", 0), "run_id": r.info.run_id}
            for r in client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parent}'", max_results=5000)]
    return pd.DataFrame(rows)


def _expected(frame, groups: list[str]):
    """(per group, the test score of its best-on-validation non-diverged trial; every other test
    score of the sweep)."""
    ok = frame[frame["diverged"] != 1]
    best = {key if len(groups) > 1 else key[0]: g.loc[g["val"].idxmax(), "test"] for key, g in ok.groupby(groups)}
    others = set(frame["test"]) - set(best.values())
    return best, others


def _shown(value: float) -> str:
    return f"| {100 * value:.2f} |"


@pytest.fixture(scope="module")
def planted_store(study_store, tmp_path_factory):
    from mlflow.tracking import MlflowClient
    uri, folder = study_store
    tmp = tmp_path_factory.mktemp("planted")
    shutil.copy(folder / "mlflow.db", tmp / "mlflow.db")
    shutil.copytree(folder / "mlartifacts", tmp / "mlartifacts")    # a copy's artifacts stay its own
    _rehome_artifacts(tmp / "mlflow.db", folder, tmp)
    uri = f"sqlite:///{tmp}/mlflow.db"
    client = MlflowClient(uri)
    parents = {sweep: _plant(client, sweep, tmp) for sweep in PLANTED}
    return uri, client, parents, tmp


def _rehome_artifacts(db, old, new) -> None:
    import sqlite3
    with sqlite3.connect(db) as con:
        for table, column in (("experiments", "artifact_location"), ("runs", "artifact_uri")):
            con.execute(f"update {table} set {column} = replace({column}, ?, ?)", (str(old), str(new)))


REPORT_GROUPS = {"deep": ["dataset", "layer", "n_prompts", "position"], "visual": ["dataset", "prompt"],
                 "finetune": ["variant", "augment"], "linear": ["dataset"]}


@pytest.mark.parametrize("sweep", list(REPORT_GROUPS))
def test_every_reported_number_is_the_best_on_validation_trials_test_score(planted_store, sweep, tmp_path):
    from orchestrator.commands.cli import main
    uri, client, parents, _ = planted_store
    assert main(["report", sweep, "--tracking-uri", uri, "--out", str(tmp_path)]) == 0
    report = (tmp_path / sweep / "report.md").read_text()
    frame = _runs_frame(client, sweep, parents[sweep])
    best, others = _expected(frame, REPORT_GROUPS[sweep])
    assert len(best) >= 2 and len(others) >= 3 * len(best)
    missing = {k: v for k, v in best.items() if _shown(v) not in report}
    assert not missing, f"best-on-validation test scores not in the report: {missing}"
    shown = sorted(v for v in others if _shown(v) in report)
    assert not shown, f"a trial that was not its cell's best on validation is reported: {shown}"
    if sweep in ("deep", "linear"):     # tables that also show the other prompt sweeps' best per dataset
        for other, groups in (("visual", ["dataset"]), ("deep", ["dataset"])):
            per_dataset, _ = _expected(_runs_frame(client, other, parents[other]), groups)
            shown_here = {d: v for d, v in per_dataset.items() if d in set(frame["dataset"])}
            assert shown_here and all(_shown(v) in report for v in shown_here.values()), other


def test_robustness_and_cross_take_the_best_on_validation_source_among_several(planted_store, data_root):
    from orchestrator.sweep.source_runs import attach_sources
    uri, client, parents, _ = planted_store
    for sweep in ("robustness", "cross"):
        plan = make_plan(sweep, "smoke", [f"data_dir={data_root}"])
        plan, learned = attach_sources(plan, uri)
        for cell in plan.cells:
            source = plan.experiment.source(plan.typed[cell_key(cell)])
            frame = _runs_frame(client, source.sweep, parents[source.sweep])
            for key, value in source.where.items():
                frame = frame[frame[key] == str(value)]
            ok = frame[frame["diverged"] != 1]
            assert len(ok) >= 4
            chosen = plan.filled[cell_key(cell)]["source_run"]
            assert chosen == ok.loc[ok["val"].idxmax(), "run_id"], (sweep, cell)
            assert learned[chosen].metrics["best_val_acc"] == ok["val"].max()


# --- the sweep's failure path -----------------------------------------------------------------


def test_an_error_inside_fit_fails_the_sweep_and_leaves_no_run_running(ray_session, data_root, tmp_path, monkeypatch):
    """A bug in the driver (planted in the tracking callback) raises out of tuner.fit(): the error
    reaches the user, the parent ends FAILED, and every child that was running ends KILLED as
    interrupted, so that `--resume` continues them. Then the same after a hard kill: runs that
    the killed session left RUNNING and this session never reached are ended too."""
    from mlflow.tracking import MlflowClient

    from orchestrator.commands.cli import main
    from orchestrator.sweep.tracking import MLflowTrials
    real, when = MLflowTrials.on_trial_result, {}

    def breaks(self, *args, **kwargs):
        real(self, *args, **kwargs)
        if when["open"](len(set(self.runs.values()) - set(self.ended))):
            raise RuntimeError("planted failure in the driver")
    monkeypatch.setattr(MLflowTrials, "on_trial_result", breaks)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    # one cell's two learning rates, two at once on the session's one CPU (tests/conftest.py), each
    # trial far longer than the second actor's start (0.7 to 5.5 s apart, idle): with 3-epoch trials
    # a loaded machine (a fresh-clone run) ran all 8 of four cells on the first actor, one at a time
    # (Tune's actor reuse), and the failure planted for two open runs never fired. The epochs cost
    # nothing: the failure ends both trials at the second one's first result
    cell = ["--set", "dataset=cifar10", "--set", "prompt=padding", "--set", "prompt_size=4"]
    args = ["sweep", "visual", *cell, "--samples", "2", "--epochs", "100", "--search", "random", "--tracking-uri", uri,
            "--storage-path", str(tmp_path / "ray"), "--data-dir", str(data_root), "--gpus-per-trial", "0",
            "--cpus-per-trial", "0.5"]
    when["open"] = lambda n: n >= 2         # once two trials are under way
    with pytest.raises(Exception, match="planted failure in the driver"):
        main(args)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("visual").experiment_id
    (parent,) = client.search_runs([exp], "tags.role = 'sweep'")
    children = lambda: client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert parent.info.status == "FAILED" and parent.data.tags["search"] == "random"
    assert not [c for c in children() if c.info.status == "RUNNING"]
    open_ones = [c for c in children() if c.data.tags.get("outcome") == "interrupted"]
    assert len(open_ones) >= 2 and all(c.info.status == "KILLED" for c in open_ones)

    # what a SIGKILL of the driver leaves (tests/test_durability.py): the parent and its open runs RUNNING
    for run in [parent, *open_ones]:
        client.update_run(run.info.run_id, "RUNNING")
    when["open"] = lambda n: True           # the resumed session fails on its first result, one trial at a time
    with pytest.raises(Exception, match="planted failure in the driver"):
        main([*args, "--resume", "--max-concurrent", "1"])
    assert client.get_run(parent.info.run_id).info.status == "FAILED"
    assert not [c.info.run_id for c in children() if c.info.status == "RUNNING"]
    # nothing deleted, and still at most one run per planned trial (a resume continues, never duplicates)
    from mlflow.entities import ViewType
    assert client.search_runs([exp], run_view_type=ViewType.DELETED_ONLY) == []
    assert len(children()) <= make_plan("visual", "smoke", [c for c in cell if c != "--set"], samples=2).n_trials == 2
