"""The lease and the journal, driven call by call against a real MLflow SQLite store (issue #28):
what each write leaves in MLflow and on disk while the store answers, while it is down, after it
comes back, and once the driver has lost its lease. Fast and without Ray: the mutation run drives
these (scripts/mutation.py). An outage is the real client with its writes refused for a while."""
from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
from pathlib import Path

import pytest
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from stores import empty_store as _store

import clip_prompt_sweeps.store.journal as journal_module
from clip_prompt_sweeps.errors import UserError
from clip_prompt_sweeps.store.journal import Journal, clean_dataset, fence, journal_dir
from clip_prompt_sweeps.store.lease import Lease, LeaseLost, busy, holder, lease_timeout
from clip_prompt_sweeps.store.records import LEASE_TAG, LeaseRecord, read_parent

WRITES = ("create_run", "log_batch", "set_terminated", "update_run", "delete_tag", "log_inputs", "log_artifact")


class Outage:
    """A real MlflowClient whose writes fail while `down` (as a tracking server that is away)."""

    def __init__(self, client: MlflowClient):
        self.client, self.down, self.attempts = client, False, 0

    def __getattr__(self, name):
        real = getattr(self.client, name)
        if name not in WRITES:
            return real

        def write(*args, **kw):
            self.attempts += 1
            if self.down:
                raise ConnectionError("tracking server unreachable")
            return real(*args, **kw)
        return write


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("ORCHESTRATOR_JOURNAL_DIR", str(tmp_path / "journals"))
    monkeypatch.setattr(journal_module.time, "sleep", lambda s: None)      # backoff: counted, not waited
    client = MlflowClient(_store(tmp_path))
    exp = client.create_experiment("visual")
    parent = client.create_run(exp, tags={"role": "sweep"}).info.run_id
    child = client.create_run(exp, tags={"role": "trial"}).info.run_id
    return client, exp, parent, child


def _journal(client, parent, **kw) -> Journal:
    return Journal(client, parent, **kw)


def _lines(journal: Journal) -> list[dict]:
    return [json.loads(line) for line in journal.path.read_text().splitlines() if line.strip()]


# --- the journal: writes while the store answers ---------------------------------------------------

def test_every_write_reaches_mlflow_at_once_while_the_store_answers(store, tmp_path):
    client, exp, parent, child = store
    j = _journal(client, parent)
    made = j.create_run(exp, "trial-1", {"cell": "c"})
    j.log_batch(made, metrics=[Metric("val_acc", 0.5, 7, 1), Metric("val_acc", 0.75, 8, 2)],
                params=[Param("lr", "0.1")], tags=[RunTag("outcome", "finished")])
    j.set_tag(made, "note", 12)
    j.delete_tag(made, "outcome")
    (tmp_path / "prompt.pt").write_bytes(b"\x00prompt")
    j.log_artifact(made, str(tmp_path / "prompt.pt"), "prompt")
    j.log_dataset(made, {"name": "cifar10", "digest": "d", "source_type": "local", "source": "/d",
                         "context": "train", "splits": {"train": 3, "val": 2}, "classes": 10})
    j.update_run(made, "RUNNING")
    j.set_terminated(made, "FINISHED")
    run = client.get_run(made)
    assert run.info.run_name == "trial-1" and run.data.tags["cell"] == "c" and run.data.params == {"lr": "0.1"}
    assert [(m.step, m.value) for m in client.get_metric_history(made, "val_acc")] == [(1, 0.5), (2, 0.75)]
    assert run.data.tags["note"] == "12" and "outcome" not in run.data.tags
    assert run.info.status == "FINISHED"
    assert [a.path for a in client.list_artifacts(made, "prompt")] == ["prompt/prompt.pt"]
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.name == "cifar10" and [(t.key, t.value) for t in dataset.tags] == [("mlflow.data.context", "train")]
    assert json.loads(dataset.dataset.profile) == {"splits": {"train": 3, "val": 2}, "num_rows": 5, "classes": 10}
    assert j.pending() == 0 and j.delayed == 0 and not j.path.exists()


def test_a_value_longer_than_mlflow_takes_is_cut_with_a_marker_and_kept_whole_as_an_artifact(store):
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_TAG_VAL_LENGTH
    client, _, parent, child = store
    j = _journal(client, parent)
    exact, long_param, long_tag = "p" * MAX_PARAM_VAL_LENGTH, "q" * (MAX_PARAM_VAL_LENGTH + 1), "t" * (MAX_TAG_VAL_LENGTH + 9)
    j.log_batch(child, params=[Param("exact", exact), Param("grid/cells", long_param)], tags=[RunTag("why", long_tag)])
    run = client.get_run(child)
    assert run.data.params["exact"] == exact                   # at the limit: whole, no artifact
    cut = run.data.params["grid/cells"]
    assert len(cut) == MAX_PARAM_VAL_LENGTH and cut.endswith("…[cut; the full value is the artifact values/grid/cells.txt]")
    assert cut.startswith("q" * 100)
    assert len(run.data.tags["why"]) == MAX_TAG_VAL_LENGTH and run.data.tags["why"].startswith("t" * 100)
    names = sorted(a.path for a in client.list_artifacts(child, "values"))
    assert names == ["values/grid_cells.txt", "values/why.txt"]         # a key's '/' is no folder
    local = client.download_artifacts(child, "values/grid_cells.txt")
    assert Path(local).read_text() == long_param


def test_a_write_the_store_refuses_for_good_is_dropped_with_a_warning_not_retried(store, caplog):
    client, _, parent, child = store
    outage = Outage(client)
    j = _journal(outage, parent)
    j.log_batch(child, params=[Param("lr", "0.1")])
    before = outage.attempts
    with caplog.at_level(logging.WARNING, logger="clip_prompt_sweeps.store.journal"):
        j.log_batch(child, params=[Param("lr", "0.2")])     # a param changed: INVALID_PARAMETER_VALUE
    assert outage.attempts == before + 1 and j.pending() == 0
    assert "MLflow refused log_batch" in caplog.text and "not retried" in caplog.text
    assert client.get_run(child).data.params["lr"] == "0.1"


def test_a_store_that_fails_twice_then_answers_takes_the_write_after_backing_off(store, monkeypatch):
    client, _, parent, child = store
    waits = []
    monkeypatch.setattr(journal_module.time, "sleep", waits.append)

    class Flaky(Outage):
        def __getattr__(self, name):
            write = super().__getattr__(name)
            if name in WRITES:
                self.down = self.attempts < 2
            return write
    j = _journal(Flaky(client), parent, retries=3, backoff_s=0.25)
    j.set_tag(child, "k", "v")
    assert client.get_run(child).data.tags["k"] == "v" and j.pending() == 0 and j.delayed == 0
    assert waits == [0.25, 0.5]                 # backoff doubles; no wait after the last try


def test_a_store_that_never_answers_is_tried_retries_times_and_the_write_kept(store, monkeypatch):
    client, _, parent, child = store
    waits = []
    monkeypatch.setattr(journal_module.time, "sleep", waits.append)
    outage = Outage(client)
    outage.down = True
    j = _journal(outage, parent, retries=4, backoff_s=1.0)
    j.set_tag(child, "k", "v")
    assert outage.attempts == 4 and waits == [1.0, 2.0, 4.0]
    assert j.pending() == 1 and j.delayed == 1


# --- the journal: while the store is down, and after -----------------------------------------------

def test_writes_made_while_the_store_is_down_reach_it_in_order_when_it_answers_again(store, tmp_path):
    client, exp, parent, child = store
    outage = Outage(client)
    j = _journal(outage, parent, retries=1)
    outage.down = True
    made = j.create_run(exp, "trial-2", {"cell": "c2"})
    assert made.startswith("local-")
    j.log_batch(made, metrics=[Metric("val_acc", 0.1, 1, 1)], params=[Param("lr", "0.3")])
    j.set_tag(made, "outcome", "running")
    j.set_tag(made, "outcome", "finished")              # order matters: the last one must win
    checkpoint = tmp_path / "ckpt.bin"
    checkpoint.write_bytes(b"weights")
    j.log_artifact(made, str(checkpoint), "ckpt")
    checkpoint.unlink()                                  # a trial's temporary file: the journal kept a copy
    j.log_dataset(made, {"name": "cifar10", "splits": {"train": 1}})
    j.set_terminated(made, "FINISHED")
    assert j.pending() == 7 and j.delayed == 7
    assert [e["op"] for e in _lines(j)] == ["create_run", "log_batch", "log_batch", "log_batch", "log_artifact",
                                            "log_dataset", "set_terminated"]
    assert client.search_runs([exp], "attributes.run_name = 'trial-2'") == []
    outage.down = False
    j._next_flush = 0.0
    assert j.flush() == 0 and j.pending() == 0
    (run,) = client.search_runs([exp], "attributes.run_name = 'trial-2'")
    real = run.info.run_id
    assert run.data.tags["outcome"] == "finished" and run.data.params["lr"] == "0.3"
    assert run.info.status == "FINISHED" and run.data.metrics["val_acc"] == 0.1
    assert [a.path for a in client.list_artifacts(real, "ckpt")] == ["ckpt/ckpt.bin"]
    assert j.ids == {made: real}
    assert json.loads(j.ids_path.read_text()) == {made: real}       # a later session finds its id
    assert Journal(client, parent).ids == {made: real}


def test_a_journaled_write_queues_every_later_one_behind_it_and_the_store_is_rechecked_every_few_seconds(store):
    client, _, parent, child = store
    outage = Outage(client)
    j = _journal(outage, parent, retries=1)
    j.recheck_s = 3600.0
    outage.down = True
    j.set_tag(child, "a", "1")                 # tried once, kept
    assert outage.attempts == 1
    j.set_tag(child, "b", "2")                 # the queue is tried first (fails), then this is queued too
    assert outage.attempts == 2 and j.pending() == 2
    outage.down = False
    j.set_tag(child, "c", "3")                 # within the recheck time: queued without trying the store
    assert outage.attempts == 2 and j.pending() == 3 and "a" not in client.get_run(child).data.tags
    j._next_flush = time.monotonic() - 1
    j.set_tag(child, "d", "4")                 # due: the queue goes first, in order, then this write
    assert j.pending() == 0 and outage.attempts == 6
    assert {k: client.get_run(child).data.tags[k] for k in "abcd"} == {"a": "1", "b": "2", "c": "3", "d": "4"}


def test_flush_stops_at_the_first_write_that_fails_and_keeps_the_rest_in_order(store):
    client, _, parent, child = store
    outage = Outage(client)
    j = _journal(outage, parent, retries=1)
    outage.down = True
    for k in "abcd":
        j.set_tag(child, k, k)
    lines = j.path.read_text()
    j.path.write_text(lines.replace("\n", "\n{\"op\": \"log_b\n", 1))     # a line cut by a kill mid-append
    assert j.pending() == 5

    class FailsOnC(Outage):
        def __getattr__(self, name):
            write = super().__getattr__(name)
            return (lambda run_id, tags=(), **kw: self._c(write, run_id, tags, **kw)) if name == "log_batch" else write

        def _c(self, write, run_id, tags, **kw):
            if any(t.key == "c" for t in tags):
                raise ConnectionError("down again")
            return write(run_id, tags=tags, **kw)
    j.client = FailsOnC(client)
    before = time.monotonic()
    assert j.flush() == 2
    assert j.path.read_text().count("\n") == 2                 # the rest rewritten line by line, as it was
    assert [e["tags"] for e in _lines(j)] == [[["c", "c"]], [["d", "d"]]]
    assert {"a", "b"} <= set(client.get_run(child).data.tags) and not {"c", "d"} & set(client.get_run(child).data.tags)
    assert j._next_flush >= before + j.recheck_s            # down again: not tried at every write
    j.client = client
    assert j.flush() == 0 and j._next_flush <= time.monotonic()
    assert not list(j.folder.glob("*.tmp"))


def test_a_run_created_while_the_store_was_down_keeps_its_id_across_sessions(store):
    client, exp, parent, _ = store
    outage = Outage(client)
    j = _journal(outage, parent, retries=1)
    outage.down = True
    local = j.create_run(exp, "trial-3", {})
    j.set_tag(local, "outcome", "finished")
    outage.down = False
    j._next_flush = 0.0
    j.flush()
    real = j.ids[local]
    later = Journal(client, parent)                  # a resumed driver: same journal folder
    assert later.create_run(exp, "x", {}) != local
    later.set_tag(local, "seen", "yes")              # an id of the journal's is written to MLflow's run
    assert client.get_run(real).data.tags["seen"] == "yes"


def test_a_fenced_journal_writes_nothing_more_and_counts_what_it_dropped(store):
    client, _, parent, child = store
    outage = Outage(client)
    j = _journal(outage, parent, retries=1)
    outage.down = True
    j.set_tag(child, "queued", "1")
    outage.down = False
    fence(parent)
    try:
        assert j.fenced()
        j.set_tag(child, "after", "1")
        j.set_terminated(child, "FINISHED")
        assert j.dropped == 2 and j.pending() == 1
        j._next_flush = 0.0
        assert j.flush() == 1                           # the queue stays on disk, unwritten
        assert not {"queued", "after"} & set(client.get_run(child).data.tags)
        assert client.get_run(child).info.status == "RUNNING"
        assert not Journal(client, child).fenced()     # another sweep's journal writes on
    finally:
        journal_module._FENCED.discard(parent)


# --- the journal read back as a stranger's ----------------------------------------------------------

def _entry(parent: str, **kw) -> dict:
    return {"op": "set_terminated", "run_id": parent, "status": "FINISHED", **kw}


BAD_ENTRIES = [
    ("not a dict", "the entry", ["set_terminated"]),
    ("unknown op", "the entry", {"op": "os.system", "run_id": "R"}),
    ("op not text", "the entry", {"op": 3, "run_id": "R"}),
    ("run id a path", "its run id", {"op": "delete_tag", "run_id": "../x", "key": "k"}),
    ("run id missing", "its run id", {"op": "delete_tag", "key": "k"}),
    ("run id a number", "its run id", {"op": "delete_tag", "run_id": 7, "key": "k"}),
    ("run id with a slash", "its run id", {"op": "delete_tag", "run_id": "local-ab/cd", "key": "k"}),
    ("status unknown", "its status", {"op": "set_terminated", "run_id": "R", "status": "DONE"}),
    ("status missing", "its status", {"op": "update_run", "run_id": "R"}),
    ("status not text", "its status", {"op": "update_run", "run_id": "R", "status": ["FINISHED"]}),
    ("key not text", "its key", {"op": "delete_tag", "run_id": "R", "key": 1}),
    ("dataset not a dict", "its dataset", {"op": "log_dataset", "run_id": "R", "record": "x"}),
    ("params not pairs", "its values", {"op": "log_batch", "run_id": "R", "params": [["a"]], "tags": [], "metrics": []}),
    ("params a dict", "its values", {"op": "log_batch", "run_id": "R", "params": {"a": "b"}, "tags": [], "metrics": []}),
    ("tag value a number", "its values", {"op": "log_batch", "run_id": "R", "params": [], "tags": [["a", 1]], "metrics": []}),
    ("metric short", "its values", {"op": "log_batch", "run_id": "R", "params": [], "tags": [], "metrics": [["m", 1.0, 1]]}),
    ("metric a tuple", "its values", {"op": "log_batch", "run_id": "R", "metrics": "m"}),
    ("metric key a number", "its values", {"op": "log_batch", "run_id": "R", "metrics": [[1, 1.0, 1, 1]]}),
    ("metric value text", "its values", {"op": "log_batch", "run_id": "R", "metrics": [["m", "1", 1, 1]]}),
    ("metric step a bool", "its values", {"op": "log_batch", "run_id": "R", "metrics": [["m", 1.0, 1, True]]}),
    ("metric time a float", "its values", {"op": "log_batch", "run_id": "R", "metrics": [["m", 1.0, 1.5, 1]]}),
    ("new run without tags", "its new run", {"op": "create_run", "run_id": "local-" + "0" * 32, "experiment_id": "1",
                              "run_name": "n"}),
    ("new run experiment a number", "its new run", {"op": "create_run", "run_id": "local-" + "0" * 32, "experiment_id": 1,
                                     "run_name": "n", "tags": {}}),
    ("new run name missing", "its new run", {"op": "create_run", "run_id": "local-" + "0" * 32, "experiment_id": "1",
                              "tags": {}}),
    ("new run tag value a list", "its new run", {"op": "create_run", "run_id": "local-" + "0" * 32, "experiment_id": "1",
                                  "run_name": "n", "tags": {"a": ["b"]}}),
]


@pytest.mark.parametrize("case,what,entry", BAD_ENTRIES, ids=[b[0] for b in BAD_ENTRIES])
def test_an_entry_of_another_shape_is_refused_in_one_line_and_nothing_is_written(store, case, what, entry):
    client, _, parent, child = store
    j = _journal(client, parent)
    good = json.dumps(_entry(child, op="delete_tag", key="absent", status=None))
    if isinstance(entry, dict) and entry.get("run_id") == "R":
        entry = {**entry, "run_id": child}
    j.folder.mkdir(parents=True)
    j.path.write_text(json.dumps(entry) + "\n" + good + "\n")
    with pytest.raises(UserError, match=rf"pending\.jsonl line 1: {what} is not what this project writes; move the file"):
        j.flush()
    assert j.pending() == 2 and client.get_run(child).info.status == "RUNNING"


def test_entries_of_every_shape_this_project_writes_are_accepted(store, tmp_path):
    client, exp, parent, child = store
    j = _journal(client, parent)
    j.folder.mkdir(parents=True)
    upload = j.folder / "files" / "ab-prompt.pt"
    upload.parent.mkdir()
    upload.write_bytes(b"p")
    local = "local-" + "1" * 32
    entries = [{"op": "create_run", "run_id": local, "experiment_id": exp, "run_name": "n", "tags": {"cell": "c"}},
               {"op": "log_batch", "run_id": local, "metrics": [["m", 1, 5, 2]], "params": None, "tags": None},
               {"op": "log_batch", "run_id": child, "metrics": [], "params": [("a", "b")], "tags": []},
               {"op": "update_run", "run_id": child, "status": "KILLED"},
               {"op": "delete_tag", "run_id": child, "key": "role"},
               {"op": "log_dataset", "run_id": child, "record": clean_dataset({"name": "d"})},
               {"op": "log_artifact", "run_id": child, "local_path": str(upload), "artifact_path": "a/b"},
               {"op": "log_artifact", "run_id": child, "local_path": str(upload), "artifact_path": None,
                "name": "renamed.pt"}]
    j.path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    assert j.flush() == 0
    assert client.get_run(child).info.status == "KILLED" and "role" not in client.get_run(child).data.tags
    assert client.get_run(child).data.params == {"a": "b"}
    assert client.get_metric_history(j.ids[local], "m")[0].step == 2
    assert sorted(a.path for a in client.list_artifacts(child)) == ["a", "renamed.pt"]


@pytest.mark.parametrize("case", ["outside", "symlink", "linked-folder", "missing", "folder", "name", "dots", "dot",
                                  "absolute", "up", "name not text", "path not text"])
def test_an_upload_must_be_a_plain_file_of_the_journals_own_under_a_plain_name(store, tmp_path, case):
    client, _, parent, child = store
    j = _journal(client, parent)
    own = j.folder / "files" / "x.bin"
    own.parent.mkdir(parents=True)
    own.write_bytes(b"x")
    secret = tmp_path / "secret"
    secret.write_text("PRIVATE")
    entry = {"op": "log_artifact", "run_id": child, "local_path": str(own), "artifact_path": "values"}
    if case == "outside":
        entry["local_path"] = str(secret)
    elif case == "symlink":
        (j.folder / "files" / "link").symlink_to(secret)
        entry["local_path"] = str(j.folder / "files" / "link")
    elif case == "linked-folder":
        # the file itself is no link, and its path is spelled inside the journal's folder, but a
        # folder on the way leads out of it: only the real path tells
        (j.folder / "files" / "elsewhere").symlink_to(tmp_path, target_is_directory=True)
        entry["local_path"] = str(j.folder / "files" / "elsewhere" / "secret")
    elif case == "missing":
        entry["local_path"] = str(j.folder / "files" / "gone")
    elif case == "folder":
        entry["local_path"] = str(j.folder / "files")
    elif case == "name":
        entry["name"] = "../../evil"
    elif case == "dots":
        entry["name"] = ".."
    elif case == "dot":
        entry["name"] = "."
    elif case == "absolute":
        entry["artifact_path"] = "/etc"
    elif case == "up":
        entry["artifact_path"] = "values/../../x"
    elif case == "name not text":
        entry["name"] = 3
    else:
        entry["local_path"] = 3
    j.path.write_text(json.dumps(entry) + "\n")
    with pytest.raises(UserError, match="line 1: its (file to upload|artifact name|artifact folder) is not"):
        j.flush()
    assert not client.list_artifacts(child)


def test_an_artifact_name_is_checked_again_at_upload():
    with pytest.raises(ValueError, match="artifact name"):
        journal_module._renamed(Path("/x"), "a/b").__enter__()
    for name in (".", ".."):
        with pytest.raises(ValueError):
            journal_module._renamed(Path("/x"), name).__enter__()


@pytest.mark.parametrize("ids", ['{"local-x": "abc"}', '{"local-' + "0" * 32 + '": "../x"}', "[1]", "{not json",
                                 '{"local-' + "0" * 32 + '": 5}'])
def test_an_ids_file_of_another_shape_is_one_line(store, ids):
    client, _, parent, _ = store
    folder = journal_dir(parent)
    folder.mkdir(parents=True)
    (folder / "ids.json").write_text(ids)
    with pytest.raises(UserError, match=r"ids\.json is not what this project writes; move it away, then --resume"):
        Journal(client, parent)


def test_the_journal_folder_is_a_digest_of_a_checked_run_id(tmp_path, monkeypatch):
    monkeypatch.setenv("ORCHESTRATOR_JOURNAL_DIR", str(tmp_path))
    run = "0123456789abcdef0123456789abcdef"
    import hashlib
    assert journal_dir(run) == tmp_path / f"sweep-{hashlib.sha256(run.encode()).hexdigest()[:32]}"
    assert journal_dir(run) != journal_dir("f" * 32)
    with pytest.raises(UserError, match="is not an MLflow run id"):
        journal_dir("../x")
    monkeypatch.delenv("ORCHESTRATOR_JOURNAL_DIR")
    assert journal_dir(run).parent.name == "journal" and "clip-prompt-sweeps" in str(journal_dir(run))


def test_a_dataset_record_is_cut_to_mlflows_columns_and_a_bad_one_is_not_logged(store, caplog):
    record = clean_dataset({"name": "n" * 600, "digest": "d" * 50, "source_type": "s" * 40, "source": "x" * 6000,
                            "context": "c" * 120, "splits": {"t" * 30: "4", "val": 6}, "classes": "10"})
    assert [len(record[k]) for k in ("name", "digest", "source_type", "source", "context")] == [500, 36, 36, 5000, 100]
    assert json.loads(record["profile"]) == {"splits": {"t" * 20: 4, "val": 6}, "num_rows": 10, "classes": 10}
    empty = clean_dataset({})
    assert {k: empty[k] for k in ("name", "digest", "source_type", "source", "context")} == dict.fromkeys(
        ("name", "digest", "source_type", "source", "context"), "unknown")
    assert json.loads(empty["profile"]) == {"splits": {}, "num_rows": 0, "classes": 0}
    client, _, parent, child = store
    j = _journal(client, parent)
    with caplog.at_level(logging.WARNING, logger="clip_prompt_sweeps.store.journal"):
        j.log_dataset(child, {"splits": {"train": "many"}})
    assert [r.getMessage() for r in caplog.records] == [
        f"run {child}: dataset record not logged (invalid literal for int() with base 10: 'many')"]
    assert not client.get_run(child).inputs.dataset_inputs


def test_pending_counts_lines_with_text_only(store):
    client, _, parent, _ = store
    j = _journal(client, parent)
    assert j.pending() == 0 and j.flush() == 0
    j.folder.mkdir(parents=True)
    j.path.write_text("\n  \n{}\n\n")
    assert j.pending() == 1


# --- the lease ---------------------------------------------------------------------------------------

HERE = socket.gethostname()


def _lease(host=HERE, pid=None, at=1000.0, token="a" * 32, released=False) -> LeaseRecord:
    return LeaseRecord(host, os.getpid() if pid is None else pid, at, token, released)


def _dead_pid() -> int:
    import subprocess
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_the_holder_is_the_live_driver_whose_heartbeat_is_within_the_timeout(monkeypatch):
    monkeypatch.setenv("ORCHESTRATOR_LEASE_TIMEOUT_S", "60")
    assert lease_timeout() == 60.0
    live = holder(_lease(at=1000.0), now=1030.0)
    assert live == {"host": HERE, "pid": os.getpid(), "time": 1000.0, "token": "a" * 32, "age": 30.0}
    assert holder(_lease(at=1000.0), now=1060.0)["age"] == 60.0           # at the timeout: still held
    assert holder(_lease(at=1000.0), now=1060.5) is None                   # past it: stale
    assert holder(_lease(at=1000.0), now=940.0)["age"] == 0.0              # a clock a little behind
    assert holder(_lease(at=1000.0), now=939.5) is None                    # a heartbeat from far ahead
    assert holder(None, now=1000.0) is None
    assert holder(_lease(released=True), now=1000.0) is None
    assert holder(_lease(pid=_dead_pid()), now=1000.0) is None             # this host, process gone
    assert holder(_lease(host="elsewhere", pid=_dead_pid()), now=1000.0)["host"] == "elsewhere"
    assert holder(_lease(at=time.time())) is not None                      # now: the clock's
    monkeypatch.setenv("ORCHESTRATOR_LEASE_TIMEOUT_S", "5")
    assert holder(_lease(at=1000.0), now=1006.0) is None


def test_asking_whether_a_driver_is_alive_sends_it_no_signal():
    """The holder check probes with signal 0; a driver asked about must get nothing it could act on
    (a SIGHUP would stop a sweep under a terminal). The child says which signal reached it first:
    standard signals are delivered in the order of their numbers, SIGHUP's before SIGUSR1's."""
    import subprocess
    import sys
    from clip_prompt_sweeps.store.lease import _alive
    child = subprocess.Popen([sys.executable, "-c",
                              "import signal, sys, time\n"
                              "def got(n, _): print(signal.Signals(n).name, flush=True); sys.exit(0)\n"
                              "for s in (signal.SIGHUP, signal.SIGUSR1): signal.signal(s, got)\n"
                              "print('ready', flush=True); time.sleep(60)\n"], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "ready\n"
        assert _alive(child.pid)
        os.kill(child.pid, 10)                       # SIGUSR1
        assert child.stdout.readline() == "SIGUSR1\n"
    finally:
        child.kill()
        child.wait()


def test_a_driver_of_another_account_on_this_host_is_alive_though_it_cannot_be_signalled():
    """On a shared machine another user's driver cannot be signalled (PermissionError): it is alive,
    and its sweep is not taken over. As root, the check runs as `nobody` against this process."""
    import subprocess
    import sys
    import clip_prompt_sweeps.store.lease as lease_module
    if os.geteuid() == 0:
        code = (f"import sys; sys.path.insert(0, {str(Path(lease_module.__file__).parents[2])!r})\n"
                f"from clip_prompt_sweeps.store.lease import _alive; print(_alive({os.getpid()}))")
        done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout == "True\n"
    else:
        if os.stat("/proc/1").st_uid == os.getuid():
            pytest.skip("no process of another account to ask about")
        assert lease_module._alive(1)


def test_busy_and_lost_name_the_holder_and_the_way_out(monkeypatch):
    monkeypatch.setenv("ORCHESTRATOR_LEASE_TIMEOUT_S", "90")
    line = str(busy("deep", "r" * 32, {"pid": 42, "host": "node-3", "age": 12.4}))
    assert line == (f"sweep 'deep' (run {'r' * 32}) is being run by pid 42 on node-3 (heartbeat 12 s ago); wait for "
                    f"it to end, or stop it, then --resume (a killed driver's lease expires after 90 s)")
    lease = Lease("sqlite:///x.db", "r" * 32, "deep")
    assert "taken over by another driver" in str(lease.lost_error())
    lease.taken_by = _lease(host="node-7", pid=77)
    err = lease.lost_error()
    assert isinstance(err, LeaseLost) and isinstance(err, UserError)
    assert str(err).startswith(f"sweep 'deep' (run {'r' * 32}) was taken over by pid 77 on node-7 while")
    assert "python -m orchestrator status" in str(err)


def _tag(client, run_id) -> dict:
    return json.loads(client.get_run(run_id).data.tags[LEASE_TAG])


def test_a_lease_is_taken_renewed_and_released_on_the_parent_run(store, tmp_path):
    client, _, parent, _ = store
    uri = client.tracking_uri
    lease = Lease(uri, parent, "visual", interrupt=False)
    lease.acquire(settle_s=0.0)
    try:
        first = _tag(client, parent)
        assert first["token"] == lease.token and first["pid"] == os.getpid() and first["host"] == HERE
        assert "released" not in first and abs(first["time"] - time.time()) < 60
        assert lease._thread is not None and lease._thread.daemon and lease._thread.is_alive()
        assert read_parent(client.get_run(parent)).lease.token == lease.token
        with pytest.raises(UserError, match=rf"^sweep 'visual' \(run {parent}\) is being run by pid {os.getpid()} on"):
            Lease(uri, parent, "visual").acquire(settle_s=0.0)        # a second driver
        assert lease._thread.name == "sweep-lease"                     # as thread dumps show it
        time.sleep(0.01)
        assert lease.renew(client) is True and _tag(client, parent)["time"] > first["time"]
        assert not lease.lost.is_set()
    finally:
        lease.release()
    assert _tag(client, parent)["released"] is True and _tag(client, parent)["token"] == lease.token
    assert not lease._thread.is_alive()
    again = Lease(uri, parent, "visual", interrupt=False)     # released: free for the next driver
    with again:
        assert _tag(client, parent)["token"] == again.token
    assert _tag(client, parent)["released"] is True


def test_a_driver_that_finds_anothers_lease_after_writing_its_own_gives_up(store, monkeypatch):
    client, _, parent, _ = store
    lease = Lease(client.tracking_uri, parent, "visual")
    other = {"host": "node-2", "pid": 9, "time": time.time(), "token": "b" * 32}
    real_sleep = time.sleep

    def the_other_writes_meanwhile(seconds):
        client.set_tag(parent, LEASE_TAG, json.dumps(other))
    monkeypatch.setattr("clip_prompt_sweeps.store.lease.time.sleep", the_other_writes_meanwhile)
    with pytest.raises(UserError, match="is being run by pid 9 on node-2"):
        lease.acquire(settle_s=0.5)
    monkeypatch.setattr("clip_prompt_sweeps.store.lease.time.sleep", real_sleep)
    assert lease._thread is None and _tag(client, parent)["token"] == "b" * 32


def test_a_stale_lease_is_taken_over(store, monkeypatch):
    client, _, parent, _ = store
    monkeypatch.setenv("ORCHESTRATOR_LEASE_TIMEOUT_S", "60")
    client.set_tag(parent, LEASE_TAG, json.dumps({"host": "node-2", "pid": 9, "time": time.time() - 61,
                                                  "token": "b" * 32}))
    lease = Lease(client.tracking_uri, parent, "visual", interrupt=False)
    with lease:
        assert _tag(client, parent)["token"] == lease.token


def test_a_driver_whose_lease_is_taken_stops_renewing_fences_its_journal_and_never_overwrites(store, monkeypatch):
    client, _, parent, child = store
    monkeypatch.setenv("ORCHESTRATOR_LEASE_TIMEOUT_S", "2")       # a heartbeat every 0.5 s
    lease = Lease(client.tracking_uri, parent, "visual", interrupt=False)
    lease.acquire(settle_s=0.0)
    try:
        taken = {"host": "node-2", "pid": 9, "time": time.time(), "token": "c" * 32}
        client.set_tag(parent, LEASE_TAG, json.dumps(taken))
        assert lease.lost.wait(timeout=10), "the heartbeat never noticed the takeover"
        lease._thread.join(timeout=5)
        assert not lease._thread.is_alive()              # it stopped beating
        assert lease.taken_by.token == "c" * 32 and lease.taken_by.host == "node-2"
        assert Journal(client, parent).fenced()
        assert lease.renew(client) is False
        lease.release()
        assert _tag(client, parent) == taken             # neither renewed nor released over the other's
    finally:
        journal_module._FENCED.discard(parent)


def test_release_leaves_a_lease_another_driver_wrote_meanwhile(store):
    client, _, parent, _ = store
    lease = Lease(client.tracking_uri, parent, "visual", interrupt=False)
    lease.release()                                      # never acquired: writes a released lease of its own
    assert _tag(client, parent)["released"] is True and _tag(client, parent)["token"] == lease.token
    other = {"host": "node-2", "pid": 9, "time": time.time(), "token": "d" * 32}
    client.set_tag(parent, LEASE_TAG, json.dumps(other))
    lease.release()
    assert _tag(client, parent) == other


def test_an_upload_kept_while_the_store_is_down_is_a_copy_under_a_plain_name(store, tmp_path):
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH
    client, _, parent, child = store
    outage = Outage(client)
    j = _journal(outage, parent, retries=1)
    outage.down = True
    odd = tmp_path / "My Prompt (1).pt"
    odd.write_bytes(b"odd")
    long_name = tmp_path / ("p" * 250)
    long_name.write_bytes(b"long")
    for path in (odd, odd, long_name):        # twice the same file: two copies, one folder
        j.log_artifact(child, str(path), "prompt")
    j.log_batch(child, params=[Param("grid/cells", "q" * (MAX_PARAM_VAL_LENGTH + 1))])
    copies = sorted(p.name for p in (j.folder / "files").iterdir())
    assert len(copies) == 4 and all(re.fullmatch(r"[0-9a-f]{8}-.+", c) for c in copies)
    assert sorted(c[9:] for c in copies) == sorted(["grid_cells.txt", "My_Prompt__1_.pt", "My_Prompt__1_.pt", "p" * 200])
    odd.unlink()                              # the originals may be gone by the time the store answers
    long_name.unlink()
    outage.down = False
    j._next_flush = 0.0
    assert j.flush() == 0
    assert sorted(a.path for a in client.list_artifacts(child, "prompt")) == ["prompt/My_Prompt__1_.pt", f"prompt/{'p' * 200}"]
    assert [a.path for a in client.list_artifacts(child, "values")] == ["values/grid_cells.txt"]


def test_a_driver_whose_lease_is_taken_is_stopped_as_on_ctrl_c(store, monkeypatch):
    import signal
    import threading
    client, _, parent, _ = store
    monkeypatch.setenv("ORCHESTRATOR_LEASE_TIMEOUT_S", "2")       # a heartbeat every 0.5 s
    interrupted = threading.Event()
    before = signal.signal(signal.SIGINT, lambda *_: interrupted.set())
    lease = Lease(client.tracking_uri, parent, "visual")          # interrupt: the default
    try:
        lease.acquire(settle_s=0.0)
        first = _tag(client, parent)["time"]
        deadline = time.monotonic() + 4          # a beat every 0.5 s (a quarter of the timeout)
        while _tag(client, parent)["time"] == first and time.monotonic() < deadline:
            threading.Event().wait(0.05)         # time.sleep is the fixture's no-op here
        assert _tag(client, parent)["time"] > first, "no heartbeat within 4 s"
        client.set_tag(parent, LEASE_TAG, json.dumps({"host": "node-2", "pid": 9, "time": time.time(),
                                                      "token": "e" * 32}))
        assert interrupted.wait(timeout=10), "the driver was not stopped"
    finally:
        signal.signal(signal.SIGINT, before)
        lease.release()
        journal_module._FENCED.discard(parent)
