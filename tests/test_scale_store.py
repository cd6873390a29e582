"""Nothing capped (issue #30, item 1): a store with 20,000 child runs of one sweep, written
straight into MLflow's own SQL tables (10,000 real trials would take hours), read by `status`,
`report`, source selection and `--resume` planning, each of which must see every run. The
seconds each takes are printed (speed targets live in the bench, not in assertions)."""
from __future__ import annotations

import json
import math
import sqlite3
import time
import uuid
from pathlib import Path

import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from clip_prompt_sweeps.names import cell_key
from orchestrator.sweep.plan import make_plan

PER_CELL = 5000                 # 4 cells of the visual smoke grid: 20,000 runs


@pytest.fixture(scope="module")
def big_store(tmp_path_factory):
    from stores import empty_store as _store
    folder = tmp_path_factory.mktemp("big")
    uri = _store(folder)
    client = MlflowClient(uri)
    plan = make_plan("visual", "smoke", samples=PER_CELL)
    exp = client.create_experiment("visual")
    parent = client.create_run(exp, tags={"role": "sweep", "sweep": "visual", "profile": "smoke", "search": "tpe",
                                          "data_kind": "synthetic", "sweep_args": json.dumps({"samples": PER_CELL})})
    parent_id = parent.info.run_id
    for key, value in {"cells": len(plan.cells), "samples_per_cell": PER_CELL, "replicates": 0}.items():
        client.log_param(parent_id, key, value)
    client.set_terminated(parent_id, "KILLED")          # interrupted: status offers a resume
    runs, tags, params, metrics, latest = [], [], [], [], []
    now = int(time.time() * 1000)
    best = None
    for c, cell in enumerate(plan.cells):
        key = cell_key(cell)
        config = plan.config(cell, None)
        for i in range(PER_CELL):
            rid = uuid.uuid4().hex
            score = 0.2 + 0.5 * i / PER_CELL + 0.01 * c        # the last run of each cell is its best
            start = now + c * PER_CELL + i
            runs.append((rid, f"{key} {i}", "LOCAL", "", "", "test", "FINISHED", start, start + 1, "", "active",
                         f"file:///nowhere/{rid}", exp))
            tags += [(k, v, rid) for k, v in {"role": "trial", "mlflow.parentRunId": parent_id, "cell": key,
                                               "outcome": "finished", "ray_trial_id": f"t{c}_{i:05d}",
                                               "sweep": "visual", "profile": "smoke"}.items()]
            params += [(k, str(v), rid) for k, v in {**{k: config[k] for k in ("dataset", "prompt", "prompt_size",
                                                                             "epochs", "model", "pretrained")
                                                        if k in config}, "lr": 0.5 + i}.items()]
            for step in (1, 2):
                metrics.append(("val_acc", score - 0.1 * (2 - step), start, rid, step, 0))
            latest += [(k, v, start, 2, 0, rid) for k, v in {"val_acc": score, "best_val_acc": score,
                                                           "test_acc": score - 0.05, "epoch": 2.0}.items()]
            if config.get("dataset") == "cifar100" and config.get("prompt") == "padding":
                best = rid
    db = Path(uri[len("sqlite:///"):])
    with sqlite3.connect(db) as con:
        con.executemany("insert into runs values (?,?,?,?,?,?,?,?,?,?,?,?,?,null)", runs)
        con.executemany("insert into tags values (?,?,?)", tags)
        con.executemany("insert into params values (?,?,?)", params)
        con.executemany("insert into metrics values (?,?,?,?,?,?)", metrics)
        con.executemany("insert into latest_metrics values (?,?,?,?,?,?)", latest)
    return uri, client, exp, parent_id, plan, best


def _timed(what: str, fn):
    start = time.monotonic()
    out = fn()
    print(f"{what}: {time.monotonic() - start:.1f} s")
    return out


def test_status_sees_every_run_of_a_sweep_over_10000(big_store):
    from orchestrator.commands.status import status_lines
    uri, client, *_ = big_store
    lines = _timed("status over 20,000 runs", lambda: status_lines(client, "visual"))
    total = 4 * PER_CELL
    assert f"  trials: {total} of {total} done, 0 running; cells complete: 4 of 4" in lines


def test_resume_planning_sees_every_run_and_reads_histories_in_bulk(big_store):
    from orchestrator.sweep.resume import build_record, read_trials
    uri, client, exp, parent, plan, _ = big_store
    trials = _timed("resume planning: 20,000 runs and their histories",
                    lambda: read_trials(client, exp, parent, "val_acc"))
    assert len(trials) == 4 * PER_CELL and all(t.done and len(t.history) == 2 for t in trials)
    record = build_record(plan, trials, None, "visual-smoke-x")
    assert record.n_done == plan.n_trials and not record.superseded
    assert not any(record.unfinished.values())


def test_source_selection_sees_every_run(big_store):
    from orchestrator.sweep.source_runs import best_source_run
    from trainables.experiments.source_models import Source
    uri, client, exp, parent, plan, best = big_store
    robustness = make_plan("robustness", "smoke")
    found = _timed("source selection over 20,000 runs", lambda: best_source_run(
        client, robustness, Source("visual", {"dataset": "cifar100", "prompt": "padding"}), uri))
    assert found.run_id == best          # the best is among the last runs written: past the first 10,000


def test_report_sees_every_run(big_store, tmp_path):
    from reports.build import build_report
    from reports.trials import load_sweep
    from search_spaces.registry import list_experiments
    uri, client, *_ = big_store
    sweep = _timed("the report's read of 20,000 runs", lambda: load_sweep(client, "visual", tmp_path))
    assert len(sweep.trials) == 4 * PER_CELL
    path = _timed("the whole report of 20,000 runs", lambda: build_report("visual", list_experiments(), uri, tmp_path))
    print(path.read_text()[:600])


def test_histories_in_bulk_from_a_real_tracking_server_are_each_runs_own(tmp_path):
    """The server's bulk endpoint (100 runs a request), against the per-run query it replaces."""
    from servers import free_port, start_mlflow, stop

    from clip_prompt_sweeps.store.runs import SERVER_CHUNK, metric_histories
    port = free_port()
    proc = start_mlflow(tmp_path, port)
    try:
        client = MlflowClient(f"http://127.0.0.1:{port}")
        exp = client.create_experiment("bulk")
        ids = []
        for i in range(SERVER_CHUNK + 5):           # two requests
            run = client.create_run(exp).info.run_id
            client.log_batch(run, metrics=[Metric("val_acc", i + step / 10, 0, step) for step in range(1, 1 + i % 4)])
            ids.append(run)
        bulk = metric_histories(client, ids, "val_acc")
        assert bulk == {r: [(m.step, m.value) for m in client.get_metric_history(r, "val_acc")] for r in ids}
        assert sum(len(v) for v in bulk.values()) > SERVER_CHUNK
    finally:
        stop(proc)


def test_the_sql_read_of_a_sweeps_trials_is_mlflows_search_run_for_run(tmp_path):
    """trials() reads an SQL store's tables itself; MLflow's search is the reference: the same runs
    (deleted runs, other parents and other experiments left out), the same order (newest first,
    ties by id), the latest value of each metric (NaN kept), every tag and param, per status."""
    from stores import empty_store as _store

    from clip_prompt_sweeps.store.records import read_trial
    from clip_prompt_sweeps.store.runs import children, trials
    client = MlflowClient(_store(tmp_path))
    exp, other = client.create_experiment("visual"), client.create_experiment("other")
    parent, stranger = (client.create_run(exp, tags={"role": "sweep"}).info.run_id for _ in range(2))
    made = []
    for i in range(12):
        tags = {"mlflow.parentRunId": parent if i % 5 else stranger, "role": "trial", "cell": f"c{i % 3}",
                "nodes": "10.0.0.1 node2", **({"superseded": "1"} if i == 7 else {})}
        run = client.create_run(exp, start_time=1000 + i // 3, tags=tags).info.run_id   # ties of start time
        client.log_batch(run, metrics=[Metric("val_acc", i + step / 10, 0, step) for step in range(i % 4)]
                         + ([Metric("loss", float("nan"), 0, 0)] if i == 4 else []))
        if i % 2:
            client.log_param(run, "lr", 10.0 ** -i)
        if i % 3 == 0:
            client.set_terminated(run, "FINISHED" if i % 2 else "KILLED")
        made.append(run)
    client.delete_run(made[3])
    client.create_run(other, tags={"mlflow.parentRunId": parent, "role": "trial"})
    for status in (None, "RUNNING", "FINISHED", "KILLED"):
        reference = [read_trial(r) for r in children(client, exp, parent, status)]
        fast = trials(client, exp, parent, status)
        assert [r.run_id for r in fast] == [r.run_id for r in reference] and reference, status
        for got, want in zip(fast, reference):
            assert got.metrics.keys() == want.metrics.keys()
            assert all(got.metrics[k] == want.metrics[k] or (math.isnan(got.metrics[k]) and math.isnan(want.metrics[k]))
                       for k in got.metrics)
            assert got.__dict__ | {"metrics": None} == want.__dict__ | {"metrics": None}
    assert len(trials(client, exp, parent)) == 12 - 3 - 1      # 3 another parent's, one deleted
