"""The store's queries and writes on runs planted by hand in a real SQLite store (no Ray): every
page of a sweep's children, the runs a killed session left open, the parent a `--run-id` names,
the runs a resume sets aside, and the checkpoints it finds on a filesystem that is not local. The
mutation run drives these (scripts/mutation.py --modules)."""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from stores import empty_store

import clip_prompt_sweeps.store.runs as runs
from clip_prompt_sweeps.errors import UserError
from clip_prompt_sweeps.names import cell_key
from clip_prompt_sweeps.store.records import SUPERSEDED_TAG
from clip_prompt_sweeps.store.uri import sqlite_path
from orchestrator.sweep.plan import PlanRequest, cell_epochs, make_plan
from orchestrator.sweep.resume import CheckpointStore, PastTrial, SweepRecord, mark_superseded, session_name


@pytest.fixture
def store(tmp_path):
    """(client, the 'deep' experiment, a parent of it, an older one)."""
    client = MlflowClient(empty_store(tmp_path))
    exp = client.create_experiment("deep")
    tags = {"role": "sweep", "sweep": "deep", "profile": "smoke"}
    older = client.create_run(exp, start_time=1_000, tags=tags).info.run_id
    deep = client.create_run(exp, start_time=2_000, tags=tags).info.run_id
    return client, exp, deep, older


def _child(client, exp, parent, status="RUNNING", **tags) -> str:
    run = client.create_run(exp, tags={"mlflow.parentRunId": parent, "role": "trial", "cell": "c", **tags})
    if status != "RUNNING":
        client.set_terminated(run.info.run_id, status)
    return run.info.run_id


def test_a_parents_children_are_read_over_every_page_and_no_other_parents(store, monkeypatch):
    client, exp, deep, other = store
    mine = {_child(client, exp, deep, status) for status in ("RUNNING", "FINISHED", "KILLED", "FINISHED", "FAILED")}
    _child(client, exp, other)
    monkeypatch.setattr(runs, "PAGE", 2)            # five children: three pages
    assert {r.info.run_id for r in runs.children(client, exp, deep)} == mine
    assert len(runs.children(client, exp, deep)) == 5
    assert len(runs.children(client, exp, deep, "FINISHED")) == 2


def test_a_killed_sessions_open_trials_end_killed_as_interrupted_and_nothing_else_changes(store):
    client, exp, deep, other = store
    running = [_child(client, exp, deep) for _ in range(3)]
    done = _child(client, exp, deep, "FINISHED", outcome="finished")
    elsewhere = _child(client, exp, other)
    runs.end_open_children(client, exp, deep, "the sweep was interrupted before the trial ended")
    for run_id in running:
        run = client.get_run(run_id)
        assert run.info.status == "KILLED" and run.info.end_time
        assert run.data.tags["outcome"] == "interrupted"
        assert run.data.tags["stop_reason"] == "the sweep was interrupted before the trial ended"
    assert client.get_run(done).info.status == "FINISHED" and client.get_run(done).data.tags["outcome"] == "finished"
    assert "stop_reason" not in client.get_run(done).data.tags
    assert client.get_run(elsewhere).info.status == "RUNNING"
    assert client.get_run(deep).info.status == "RUNNING"          # the parent is closed by its driver


def test_a_run_id_must_name_a_parent_of_that_sweep(store):
    client, exp, deep, older = store
    trial = _child(client, exp, deep)
    stranger = client.create_run(exp).info.run_id
    visual = client.create_experiment("visual")
    other = client.create_run(visual, tags={"role": "sweep", "sweep": "visual", "profile": "smoke"}).info.run_id
    assert runs.find_parent(client, "deep", older).run_id == older
    assert runs.find_parent(client, "deep", deep).run_id == deep
    assert runs.find_parent(client, "deep").run_id == deep          # the latest of the experiment named so
    cases = {"0" * 32: rf"^--run-id '0{{32}}': no such run in {re.escape(client.tracking_uri)}; the parent run ids "
                       r"are in `mlflow ui` or printed at the end of `sweep`$",
             trial: rf"^--run-id {trial}: that run is not a sweep's parent run \(it is a trial of one\); pass the "
                    r"parent's id$",
             stranger: rf"^--run-id {stranger}: that run is not a sweep's parent run \(it is not from this "
                       r"project\); pass the parent's id$",
             other: rf"^--run-id {other}: that run is a 'visual' sweep, not 'deep'; use `report visual` for it$"}
    for given, message in cases.items():
        with pytest.raises(UserError, match=message):
            runs.find_parent(client, "deep", given)
    with pytest.raises(UserError, match=r"^--run-id '\.\./x' is not an MLflow run id"):
        runs.find_parent(client, "deep", "../x")
    with pytest.raises(UserError, match=r"^no 'linear' sweep in MLflow at .*; run `python -m orchestrator sweep "
                                        r"linear` first \(same --tracking-uri\)$"):
        runs.find_parent(client, "linear")


def test_runs_a_resume_sets_aside_are_tagged_and_those_still_open_end_killed(store):
    client, exp, deep, _ = store
    open_run, ended, kept = _child(client, exp, deep), _child(client, exp, deep, "FINISHED"), _child(client, exp, deep)
    past = lambda run_id: PastTrial(run_id, "c", 1.0, False, (), (), 0)
    mark_superseded(client, SweepRecord(superseded=[past(open_run), past(ended)]), "resume at noon: beyond its plan")
    for run_id, status in ((open_run, "KILLED"), (ended, "FINISHED")):
        run = client.get_run(run_id)
        assert run.info.status == status and run.data.tags[SUPERSEDED_TAG] == "resume at noon: beyond its plan"
    assert client.get_run(kept).info.status == "RUNNING" and SUPERSEDED_TAG not in client.get_run(kept).data.tags


def test_each_resumed_session_writes_a_ray_experiment_folder_of_its_own():
    assert session_name("deep-smoke-abc", resumed=False) == "deep-smoke-abc"
    name = session_name("deep-smoke-abc", resumed=True)
    assert re.fullmatch(r"deep-smoke-abc-resume-\d{8}-\d{6}", name)
    assert abs(time.mktime(time.strptime(name[-15:], "%Y%m%d-%H%M%S")) - time.time()) < 120


def _save_checkpoint(folder: Path, epoch: int) -> None:
    import torch
    from torch import nn

    from trainables.training.checkpoints import save_loop
    folder.mkdir(parents=True)
    net = nn.Linear(2, 2)
    save_loop(folder, net, {"w": torch.zeros(1)}, torch.optim.SGD(net.parameters(), lr=0.1), {"epoch": epoch})


def test_checkpoints_on_a_filesystem_that_is_not_local_are_found_and_read_with_their_uri(tmp_path):
    """Storage on s3:// or gs:// (here pyarrow's in-memory filesystem, through the same calls): a
    checkpoint is read by copying it here, and is given back as a URI that Ray can open."""
    import pyarrow.fs as pafs
    store = CheckpointStore("mock:///results", "deep-smoke-abc")
    assert not isinstance(store.fs, pafs.LocalFileSystem) and store.prefix == "mock://"
    for epoch in (1, 2, 3):
        local, there = tmp_path / f"e{epoch}", f"results/deep-smoke-abc/prompt_abc12_00000_0_lr=1/checkpoint_{epoch - 1:06d}"
        _save_checkpoint(local, epoch)
        store.fs.create_dir(there, recursive=True)
        pafs.copy_files(str(local), there, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=store.fs)
    store.fs.create_dir("results/deep-smoke-abc/prompt_abc12_00000_0_lr=1/checkpoint_000009")     # unreadable
    assert store.newest(("abc12_00000",), at_most=2) == (
        "mock://results/deep-smoke-abc/prompt_abc12_00000_0_lr=1/checkpoint_000001", 2)
    assert store.newest(("abc12_00000",), at_most=9)[1] == 3
    assert store.newest(("zzz99_00000",), at_most=9) is None
    assert CheckpointStore("mock:///nothing-here", "deep-smoke-abc").newest(("abc12_00000",), at_most=9) is None


def test_checkpoints_under_a_file_uri_come_back_as_file_uris(tmp_path):
    _save_checkpoint(tmp_path / "deep-smoke-abc" / "prompt_abc12_00000_0_lr=1" / "checkpoint_000000", 1)
    store = CheckpointStore(f"file://{tmp_path}", "deep-smoke-abc")
    assert store.newest(("abc12_00000",), at_most=1) == (
        f"file://{tmp_path}/deep-smoke-abc/prompt_abc12_00000_0_lr=1/checkpoint_000000", 1)
    plain = CheckpointStore(str(tmp_path), "deep-smoke-abc").newest(("abc12_00000",), at_most=1)
    assert plain == (f"{tmp_path}/deep-smoke-abc/prompt_abc12_00000_0_lr=1/checkpoint_000000", 1)


def test_without_a_storage_path_checkpoints_are_found_where_ray_keeps_them(tmp_path, monkeypatch):
    """No --storage: Ray writes under ~/ray_results, and --resume looks there."""
    monkeypatch.setenv("HOME", str(tmp_path))
    _save_checkpoint(tmp_path / "ray_results" / "deep-smoke-abc" / "prompt_abc12_00000_0_lr=1" / "checkpoint_000000", 1)
    assert CheckpointStore(None, "deep-smoke-abc").newest(("abc12_00000",), at_most=1) == (
        f"{tmp_path}/ray_results/deep-smoke-abc/prompt_abc12_00000_0_lr=1/checkpoint_000000", 1)


def test_a_storage_uri_whose_query_holds_another_uri_keeps_its_own_scheme():
    """An S3-compatible store is often named with its endpoint in the query (MinIO, Ceph)."""
    store = CheckpointStore("s3://bucket/ray?endpoint_override=http://127.0.0.1:9000&region=us-east-1", "deep")
    assert store.prefix == "s3://" and store.root == "bucket/ray"


def test_a_plan_gives_back_the_request_it_was_built_from(tmp_path):
    plan = make_plan("visual", "smoke", ["dataset=cifar10"], samples=3, epochs=2, grids=["prompt_size=2,4"])
    request = plan.request()
    assert request == PlanRequest(plan.experiment, "smoke", ("dataset=cifar10",), 3, 2, ("prompt_size=2,4",))
    again = request.build()
    assert [cell_key(c) for c in again.cells] == [cell_key(c) for c in plan.cells] and again.base == plan.base
    assert (again.profile.samples, again.n_trials) == (3, plan.n_trials)
    bare = make_plan("visual", "smoke").request()
    assert (bare.sets, bare.samples, bare.epochs, bare.grids) == ((), None, None, ())
    sweep_file = tmp_path / "mine.toml"
    sweep_file.write_text((Path(__file__).resolve().parents[1] / "examples" / "deep_grid.toml").read_text())
    from_file = make_plan(str(sweep_file), "smoke").request()
    assert from_file.sweep == str(sweep_file.resolve()) and from_file.sweep_file == str(sweep_file.resolve())


def test_a_cell_without_epochs_runs_one_and_each_cell_its_own():
    assert set(cell_epochs(make_plan("zeroshot", "smoke")).values()) == {1}
    plan = make_plan("visual", "smoke", ["dataset=cifar10", "prompt=padding"], grids=["epochs=1,3"])
    assert sorted(cell_epochs(plan).values()) == sorted([1, 3] * (len(plan.cells) // 2))


def test_a_plan_of_one_sample_per_cell_groups_as_many_cells_as_the_limit_allows():
    plan = make_plan("visual", "smoke", samples=1)          # 4 cells x 1 trial
    assert [len(g.cells) for g in plan.groups(3)] == [3, 1]
    assert [len(g.cells) for g in plan.groups(2)] == [2, 2]


def test_a_sql_stores_trials_are_the_parents_children_alone_in_one_order(store):
    """Read from the tables: a run that holds the parent's id under another tag (a robustness
    trial's source run) is no child, and children that started in the same millisecond come in
    the order of their ids, session after session."""
    client, exp, deep, other = store
    same_ms = sorted(client.create_run(exp, start_time=5_000, tags={"mlflow.parentRunId": deep, "role": "trial",
                                                                     "cell": "c"}).info.run_id for _ in range(4))
    client.create_run(exp, start_time=6_000, tags={"source_run": deep, "role": "trial", "cell": "c"})
    assert [t.run_id for t in runs.trials(client, exp, deep)] == same_ms


def test_a_sql_stores_metric_histories_are_read_in_bulk_whole_and_once(store, monkeypatch):
    """A query per chunk of runs, never a query per run; every value of a long history, none twice."""
    from mlflow.entities import Metric
    client, exp, deep, other = store
    ids = [_child(client, exp, deep) for _ in range(3)]
    client.log_batch(ids[0], metrics=[Metric("val_acc", s / 1000, 0, s) for s in range(130)])
    client.log_batch(ids[1], metrics=[Metric("val_acc", 0.5, 0, 1), Metric("val_acc", 0.6, 0, 2),
                                      Metric("other", 9.0, 0, 1)])
    monkeypatch.setattr(runs, "SQL_CHUNK", 2)
    monkeypatch.setattr(client, "get_metric_history", lambda *a, **k: pytest.fail("a query per run"))
    found = {k: sorted(v) for k, v in runs.metric_histories(client, ids, "val_acc").items()}
    assert found == {ids[0]: [(s, s / 1000) for s in range(130)], ids[1]: [(1, 0.5), (2, 0.6)], ids[2]: []}


def test_a_sweeps_experiment_keeps_its_artifacts_beside_the_sqlite_file_and_survives_a_creation_race(tmp_path,
                                                                                                    monkeypatch):
    """As `mlflow ui` expects; and two new sweeps of one name racing share the experiment the
    other created between this one's look and its create."""
    uri = empty_store(tmp_path)
    client = MlflowClient(uri)
    made = runs.experiment_id(client, "deep", uri)
    assert client.get_experiment(made).artifact_location == (sqlite_path(uri).parent / "mlartifacts" / "deep").as_uri()
    other = client.create_experiment("visual")          # made by the other driver meanwhile
    looks = iter([None])
    real = client.get_experiment_by_name
    monkeypatch.setattr(client, "get_experiment_by_name", lambda name: next(looks, None) or real(name))
    assert runs.experiment_id(client, "visual", uri) == other


def test_a_tracking_server_is_read_in_bulk_and_run_by_run_past_its_limit(tmp_path, monkeypatch):
    """Against a real `mlflow server`: metric histories through its bulk endpoint, a chunk at a
    time, and run by run where the server cut a chunk at its limit; children and trials through
    MLflow's search over pages (a server has no SQL tables to read). A step 0 and a value 0 are
    what proto's JSON leaves out, and must read back as 0."""
    from servers import free_port, start_mlflow, stop
    port = free_port()
    proc = start_mlflow(tmp_path, port)
    try:
        client = MlflowClient(f"http://127.0.0.1:{port}")
        exp = client.create_experiment("deep")
        parent = client.create_run(exp, tags={"role": "sweep"}).info.run_id
        ids, want = [], {}
        for i in range(5):
            rid = client.create_run(exp, tags={runs.PARENT_TAG: parent, "cell": f"c={i}"}).info.run_id
            values = [(0, 0.0)] if i == 0 else [(s, s / 10 + i) for s in range(1, i + 1)]
            for step, value in values:
                client.log_metric(rid, "val_acc", value, step=step)
            client.log_metric(rid, "other", 9.0, step=1)
            ids.append(rid)
            want[rid] = values
        stranger = client.create_run(exp, tags={"role": "trial"}).info.run_id    # not a child of this parent

        def read() -> dict:
            return {k: sorted(v) for k, v in runs.metric_histories(client, ids, "val_acc").items()}
        monkeypatch.setattr(runs, "SERVER_CHUNK", 2)
        per_run = client.get_metric_history
        monkeypatch.setattr(client, "get_metric_history", lambda *a, **k: pytest.fail("a request per run"))
        assert read() == want
        assert runs.metric_histories(client, [stranger], "val_acc") == {stranger: []}    # a chunk with no values
        monkeypatch.setattr(client, "get_metric_history", per_run)
        monkeypatch.setattr(runs, "SERVER_MAX", 3)          # chunks of 2 runs hold up to 7 values: cut, read one by one
        assert read() == want
        assert runs.metric_histories(client, [], "val_acc") == {}
        monkeypatch.setattr(runs, "PAGE", 2)
        assert sorted(r.info.run_id for r in runs.children(client, exp, parent)) == sorted(ids)
        assert sorted(t.run_id for t in runs.trials(client, exp, parent)) == sorted(ids)
        assert [t.cell for t in runs.trials(client, exp, parent, "RUNNING")][::-1] == [f"c={i}" for i in range(5)]
    finally:
        stop(proc)


def test_a_sweeps_parents_are_listed_newest_first_over_pages_by_profile_and_up_to_a_count(store, monkeypatch):
    client = store[0]
    exp = client.create_experiment("linear")
    made = [client.create_run(exp, start_time=1000 + i, tags={"role": "sweep", "sweep": "linear",
                                                              "profile": "full" if i % 2 else "smoke"}).info.run_id
            for i in range(5)]
    client.create_run(exp, start_time=9999, tags={"role": "trial", "profile": "full"})       # a trial: no parent
    monkeypatch.setattr(runs, "PAGE", 2)
    ids = lambda found: [r.info.run_id for r in found]
    assert ids(runs.parents(client, exp)) == made[::-1]
    assert ids(runs.parents(client, exp, "full")) == [made[3], made[1]]
    assert ids(runs.parents(client, exp, "smoke")) == [made[4], made[2], made[0]]
    assert ids(runs.parents(client, exp, max_results=3)) == made[:1:-1]
    assert ids(runs.parents(client, exp, max_results=1)) == [made[4]]
    assert ids(runs.parents(client, exp, "smoke", max_results=2)) == [made[4], made[2]]
    assert runs.latest_parent(client, "linear").info.run_id == made[4]
    assert runs.latest_parent(client, "linear", "full").info.run_id == made[3]
    assert runs.latest_parent(client, "visual") is None and runs.latest_parent(None, "linear") is None
    client.create_experiment("visual")
    assert runs.latest_parent(client, "visual") is None


def test_a_sql_stores_children_are_read_from_its_tables_as_mlflows_search_finds_them(store):
    """The SQL reader and MLflow's search agree: the same runs, newest first (ties by run id), their
    tags, params and latest metrics (NaN as NaN), of one status if asked; a deleted run, a run of
    another experiment and another parent's children are left out."""
    import math
    client = store[0]
    exp, other = client.create_experiment("linear"), client.create_experiment("visual")
    parent = client.create_run(exp, tags={"role": "sweep"}).info.run_id
    made = []
    for i, start in enumerate((1000, 3000, 2000, 2000)):
        rid = client.create_run(exp, start_time=start, tags={runs.PARENT_TAG: parent, "cell": f"c={i}",
                                                             "ray_trial_id": f"t{i}"}).info.run_id
        client.log_param(rid, "lr", str(0.1 * (i + 1)))
        client.log_metric(rid, "val_acc", 0.1, step=1)
        client.log_metric(rid, "val_acc", float("nan") if i == 2 else 0.5 * i, step=2)
        made.append(rid)
    client.set_terminated(made[0], "FINISHED")
    bare = client.create_run(exp, start_time=500, tags={runs.PARENT_TAG: parent}).info.run_id      # no params, metrics
    gone = client.create_run(exp, tags={runs.PARENT_TAG: parent}).info.run_id
    client.delete_run(gone)
    client.create_run(other, tags={runs.PARENT_TAG: parent})
    client.create_run(exp, tags={runs.PARENT_TAG: made[0]})
    searched = runs.children(client, exp, parent)
    read = runs.trials(client, exp, parent)
    tie = sorted(made[2:])
    assert [t.run_id for t in read] == [made[1], *tie, made[0], bare]
    assert {r.info.run_id for r in searched} == {t.run_id for t in read}
    by_id = {t.run_id: t for t in read}
    assert by_id[made[3]].metrics == {"val_acc": 1.5} and math.isnan(by_id[made[2]].metrics["val_acc"])
    assert by_id[made[1]].params == {"lr": "0.2"} and by_id[made[1]].cell == "c=1" and by_id[made[1]].trial_ids == ("t1",)
    assert by_id[made[0]].status == "FINISHED" and by_id[made[0]].start_time == 1000
    assert (by_id[bare].params, by_id[bare].metrics, by_id[bare].cell) == ({}, {}, "")
    assert [t.run_id for t in runs.trials(client, exp, parent, "FINISHED")] == [made[0]]
    assert len(runs.trials(client, exp, parent, "RUNNING")) == 4
    assert [t.run_id for t in runs.trials(client, other, parent)] != [] and runs.trials(client, str(int(other) + 9), parent) == []
