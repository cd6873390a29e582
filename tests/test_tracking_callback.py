"""The tracking callback, driven hook by hook as Tune drives it, against a real SQLite MLflow
store: a child run per trial, ended by what happened, every detail a resume and a reader
rely on. The mutation run drives these."""
from __future__ import annotations

import pytest
import torch
from stores import empty_store as _store

# --- the tracking callback, driven hook by hook as Tune drives it ------------------------------


class _Trial:
    """What the callback reads of a Ray trial: its id, config and error file."""

    def __init__(self, trial_id: str, config: dict, error_file=None):
        self.trial_id, self.config, self.error_file = trial_id, config, error_file

    def get_error(self):
        return None


def _result(epoch: int, val: float, **more) -> dict:
    return {"epoch": epoch, "val_acc": val, "training_iteration": epoch, "iterations_since_restore": epoch,
            "time_this_iter_s": 0.1, "pid": 1, "node_ip": "10.0.0.1", "hostname": "gpu-1", **more}


def test_the_tracking_callback_logs_every_trial_and_ends_it_by_what_happened(tmp_path):
    from mlflow.tracking import MlflowClient
    from ray.tune import Checkpoint
    from safetensors.torch import save_file

    from clip_prompt_sweeps.store.runs import experiment_id
    from orchestrator.sweep.tracking import MLflowTrials
    uri = _store(tmp_path)
    client = MlflowClient(uri)
    exp = experiment_id(client, "visual", uri)
    parent = client.create_run(exp, tags={"role": "sweep"}).info.run_id
    # a run an earlier session left at epoch 2: the continued trial adopts it
    earlier = client.create_run(exp, tags={"mlflow.parentRunId": parent, "cell": "c=4", "ray_trial_id": "old",
                                           "outcome": "interrupted", "stop_reason": "was cut",
                                           "node": "10.0.0.9"}).info.run_id      # logged before `nodes`
    for e in (1, 2):
        client.log_metric(earlier, "epoch", e, step=e)
        client.log_metric(earlier, "val_acc", e / 10, step=e)
    client.set_terminated(earlier, "KILLED")
    stopped: dict = {}
    cb = MLflowTrials(uri, exp, parent, {"sweep": "visual", "role": "trial"}, stopped)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    save_file({"prompts": torch.ones(2)}, str(folder / "best.safetensors"))
    error = tmp_path / "error.txt"
    error.write_text("Traceback (most recent call last):\n  ...\nRuntimeError: CUDA out of memory\n")
    cfg = lambda cell, lr, **more: {"_cell": cell, "lr": lr, "dataset": "cifar10", **more}
    trials = {"done": _Trial("done", cfg("c=1", 0.5)), "asha": _Trial("asha", cfg("c=1", 0.1)),
              "nan": _Trial("nan", cfg("c=2", 9.0)), "crash": _Trial("crash", cfg("c=3", 1.0), str(error)),
              "cut": _Trial("cut", cfg("c=3", 2.0)),
              "again": _Trial("again", cfg("c=4", 3.0, _run_id=earlier, _resume_from="/ck/2"))}
    for t in trials.values():
        cb.on_trial_start(0, [], t)
    for e in (1, 2, 3):
        cb.on_trial_result(0, [], trials["done"], _result(e, 0.2 * e, tags={"top1_source": "paper"}))
    cb.on_checkpoint(0, [], trials["done"], Checkpoint.from_directory(str(folder)))
    cb.on_trial_result(0, [], trials["asha"], _result(1, 0.05))
    stopped["asha"] = "c=1"                               # PerCellASHA fills this when it stops one
    cb.on_trial_result(0, [], trials["nan"], _result(1, float("nan"), diverged=1,
                                                     stop_reason="non-finite loss at step 3"))
    cb.on_trial_result(0, [], trials["crash"], _result(1, 0.3))
    cb.on_trial_recover(0, [], trials["crash"])
    # its retry runs on another node (the first was lost, say) and on the first again
    cb.on_trial_result(0, [], trials["crash"], {**_result(1, 0.3), "node_ip": "10.0.0.2"})
    cb.on_trial_result(0, [], trials["crash"], {**_result(2, 0.3), "node_ip": "10.0.0.1"})
    cb.on_trial_result(0, [], trials["cut"], _result(1, 0.3))
    # the continued trial starts again at its checkpoint's epoch 2: epoch 2 is not logged twice
    cb.on_trial_result(0, [], trials["again"], {**_result(2, 0.9), "iterations_since_restore": 1})
    cb.on_trial_result(0, [], trials["again"], {**_result(3, 0.4), "iterations_since_restore": 2})
    for name in ("done", "asha", "nan", "again"):
        cb.on_trial_complete(0, [], trials[name])
    cb.on_trial_error(0, [], trials["crash"])
    cb.on_experiment_end([])

    runs = {r.data.tags.get("ray_trial_id"): r for r in client.search_runs(
        [exp], f"tags.`mlflow.parentRunId` = '{parent}'")}
    assert set(runs) == set(trials)          # one child per trial; the continued one in its old run
    ended = {k: (r.info.status, r.data.tags.get("outcome"), r.data.tags.get("stop_reason")) for k, r in runs.items()}
    assert ended == {
        "done": ("FINISHED", "finished", None),
        "asha": ("KILLED", "stopped_early", "stopped early by ASHA within cell c=1"),
        "nan": ("KILLED", "diverged", "non-finite loss at step 3"),
        "crash": ("FAILED", "failed", "RuntimeError: CUDA out of memory"),
        "cut": ("KILLED", "interrupted", "the sweep was interrupted before the trial ended"),
        "again": ("FINISHED", "finished", None)}
    done = runs["done"]
    assert done.data.params == {"lr": "0.5", "dataset": "cifar10"}                      # no "_" keys
    assert {k: done.data.tags[k] for k in ("cell", "sweep", "role", "node", "hostname", "top1_source")} == {
        "cell": "c=1", "sweep": "visual", "role": "trial", "node": "10.0.0.1", "hostname": "gpu-1",
        "top1_source": "paper"}
    assert done.info.run_name == "c=1 lr=0.5"
    history = [(m.step, m.value) for m in client.get_metric_history(done.info.run_id, "val_acc")]
    assert history == [(1, pytest.approx(0.2)), (2, pytest.approx(0.4)), (3, pytest.approx(0.6))]
    assert not {"pid", "time_this_iter_s", "training_iteration"} & done.data.metrics.keys()   # Ray's, not ours
    assert [a.path for a in client.list_artifacts(done.info.run_id, "learned")] == ["learned/best.safetensors"]
    assert client.list_artifacts(runs["asha"].info.run_id) == []                     # it had no checkpoint
    assert runs["crash"].data.tags["failures"] == "1"
    assert runs["crash"].data.tags["last_failure"] == "RuntimeError: CUDA out of memory"
    nodes = {k: r.data.tags.get("nodes") for k, r in runs.items()}
    assert nodes == {"done": "10.0.0.1", "asha": "10.0.0.1", "nan": "10.0.0.1", "crash": "10.0.0.1 10.0.0.2",
                     "cut": "10.0.0.1", "again": "10.0.0.9 10.0.0.1"}
    again = runs["again"]
    assert again.info.run_id == earlier and again.data.tags["ray_trial_ids"] == "old again"
    # its driver died before the params were logged: the continued trial logs them
    assert again.data.params == {"lr": "3.0", "dataset": "cifar10"}
    assert [(m.step, m.value) for m in client.get_metric_history(earlier, "val_acc")] == [
        (1, pytest.approx(0.1)), (2, pytest.approx(0.2)), (3, pytest.approx(0.4))]
    assert again.data.tags["resumed_at_epoch"] == "2"
    assert cb.ended == {r.info.run_id: ended[k][1] for k, r in runs.items()}
    # an ended trial's last result and checkpoint are not kept (thousands of trials in one driver)
    assert set(cb.last) == {"cut"} and cb.checkpoints == {}


def test_the_tracking_callback_logs_each_trials_dataset_on_its_run_and_each_dataset_once_on_the_parent(tmp_path):
    from mlflow.tracking import MlflowClient

    from clip_prompt_sweeps.store.runs import experiment_id
    from orchestrator.sweep.tracking import MLflowTrials
    uri = _store(tmp_path)
    client = MlflowClient(uri)
    exp = experiment_id(client, "deep", uri)
    parent = client.create_run(exp, tags={"role": "sweep"}).info.run_id
    cb = MLflowTrials(uri, exp, parent, {}, {})
    writes: list[str] = []          # the store's writes, counted on their way through
    log_dataset = cb.store.log_dataset
    cb.store.log_dataset = lambda run, rec: (writes.append(run), log_dataset(run, rec))
    record = lambda name, digest: {"name": name, "digest": digest, "source_type": "code", "source": "{}",
                                   "splits": {"train": 9, "val": 1, "test": 5}, "classes": 10, "context": "training"}
    t = {k: _Trial(k, {"_cell": k, "lr": 1.0}) for k in ("a", "b", "c", "d", "e", "none", "odd")}
    cb.on_trial_result(0, [], t["a"], _result(1, 0.1, dataset=record("cifar10", "d10")))
    cb.on_trial_result(0, [], t["a"], _result(2, 0.2, dataset=record("cifar10", "changed")))    # first one stays
    cb.on_trial_result(0, [], t["b"], _result(1, 0.1, dataset=record("cifar10", "d10")))
    cb.on_trial_result(0, [], t["c"], _result(1, 0.1, dataset=record("cifar100", "d100")))
    cb.on_trial_result(0, [], t["d"], _result(1, 0.1, dataset=record("cifar10", "d100")))      # same digest, other name
    cb.on_trial_result(0, [], t["e"], _result(1, 0.1, dataset=record("cifar100", "d10")))      # same name, other digest
    cb.on_trial_result(0, [], t["none"], _result(1, 0.1))
    cb.on_trial_result(0, [], t["odd"], _result(1, 0.1, dataset="cifar10"))       # not a record: ignored
    inputs = lambda run: sorted((i.dataset.name, i.dataset.digest) for i in client.get_run(run).inputs.dataset_inputs)
    assert {k: inputs(cb.runs[k]) for k in t} == {
        "a": [("cifar10", "d10")], "b": [("cifar10", "d10")], "c": [("cifar100", "d100")],
        "d": [("cifar10", "d100")], "e": [("cifar100", "d10")], "none": [], "odd": []}
    assert inputs(parent) == [("cifar10", "d10"), ("cifar10", "d100"), ("cifar100", "d10"), ("cifar100", "d100")]
    # each dataset is written to the parent once, however many trials report it
    assert writes.count(parent) == 4 and sorted(w for w in writes if w != parent) == sorted(
        cb.runs[k] for k in "abcde")
    assert "dataset" not in client.get_run(cb.runs["a"]).data.metrics


def test_the_tracking_callback_keeps_every_detail_a_resume_and_a_reader_rely_on(tmp_path):
    """The finer points of the callback: names and tags of a new run, an adopted run's trial ids
    and history, the epoch a result is logged at, the resume marker, and the words of each end."""
    from mlflow.tracking import MlflowClient
    from ray.tune import Checkpoint
    from safetensors.torch import save_file

    from clip_prompt_sweeps.store.runs import experiment_id
    from orchestrator.sweep.tracking import MLflowTrials
    uri = _store(tmp_path)
    client = MlflowClient(uri)
    exp = experiment_id(client, "deep", uri)
    parent = client.create_run(exp, tags={"role": "sweep"}).info.run_id
    earlier = lambda **tags: client.create_run(exp, tags={"mlflow.parentRunId": parent, **tags}).info.run_id
    twice = earlier(ray_trial_id="b", ray_trial_ids="a b", outcome="interrupted", stop_reason="cut")
    client.log_metric(twice, "epoch", 1, step=1)
    bare = earlier()                                    # interrupted before its first epoch was logged
    for run in (twice, bare):
        client.set_terminated(run, "KILLED")
    cb = MLflowTrials(uri, exp, parent, {}, {})
    folder = tmp_path / "ckpt"
    folder.mkdir()
    save_file({"prompts": torch.ones(2)}, str(folder / "best.safetensors"))
    t = {"nocell": _Trial("nocell", {"n": 1}), "solo": _Trial("solo", {"_cell": "zero-shot c"}), "twice": _Trial("twice", {"_cell": "c", "lr": 1.0, "_run_id": twice}),
         "bare": _Trial("bare", {"_cell": "c", "lr": 2.0, "_run_id": bare}),
         "quiet": _Trial("quiet", {"_cell": "c", "lr": 3.0}), "restored": _Trial("restored", {"_cell": "c", "lr": 4.0}),
         "nan": _Trial("nan", {"_cell": "c", "lr": 5.0}), "gone": _Trial("gone", {"_cell": "c", "lr": 6.0})}
    for trial in t.values():
        cb.on_trial_start(0, [], trial)
    runs = {k: client.get_run(cb.runs[k]) for k in t}
    assert runs["nocell"].data.tags["cell"] == "" and runs["solo"].info.run_name == "zero-shot c"   # no lr
    assert runs["quiet"].data.tags["ray_trial_ids"] == "quiet"
    assert runs["twice"].data.tags["ray_trial_ids"] == "a b twice" and runs["bare"].data.tags["ray_trial_ids"] == "bare"
    for adopted in ("twice", "bare"):       # running again, without the words of its last end
        assert runs[adopted].info.status == "RUNNING"
        assert not {"outcome", "stop_reason"} & runs[adopted].data.tags.keys()
    # results: Ray's iteration where a trainable reports no epoch; nothing logged for neither
    cb.on_trial_result(0, [], t["nocell"], {"val_acc": 0.5, "training_iteration": 2, "iterations_since_restore": 2})
    cb.on_trial_result(0, [], t["quiet"], {"val_acc": 0.5, "iterations_since_restore": 1})
    cb.on_trial_result(0, [], t["bare"], {"epoch": 1, "val_acc": 0.3, "iterations_since_restore": 1})
    cb.on_trial_result(0, [], t["twice"], {"epoch": 1, "val_acc": 0.9, "iterations_since_restore": 1,
                                           "diverged": 1})       # epoch 1 is logged already: kept as it was
    cb.on_trial_result(0, [], t["restored"], {"epoch": 2, "val_acc": 0.4, "iterations_since_restore": 1})
    cb.on_trial_result(0, [], t["nan"], {"epoch": 1, "val_acc": float("nan"), "diverged": 1,
                                         "iterations_since_restore": 1, "stop_reason": "loss is nan"})
    cb.on_trial_result(0, [], t["gone"], {"epoch": 1, "val_acc": 0.1, "diverged": 1, "iterations_since_restore": 1})
    history = lambda k, key="val_acc": [(m.step, m.value) for m in client.get_metric_history(cb.runs[k], key)]
    assert history("nocell") == [(2, 0.5)] and history("nocell", "epoch") == [(2, 2.0)]
    assert history("quiet") == []              # step 0: nothing to put it at
    assert history("bare") == [(1, 0.3)] and history("twice") == []
    tags = lambda k: client.get_run(cb.runs[k]).data.tags
    assert tags("nan")["stop_reason"] == "loss is nan"          # while it still runs
    assert {k: tags(k).get("resumed_at_epoch") for k in ("nocell", "quiet", "bare", "restored", "nan")} == {
        "nocell": None, "quiet": None, "bare": "1", "restored": "2", "nan": None}
    assert history("restored", "resumed_at_epoch") == [(2, 2.0)]
    assert (tags("nocell")["node"], tags("nocell")["node_id"], tags("nocell")["hostname"]) == ("", "", "")
    cb.on_trial_result(0, [], t["bare"], {"epoch": 2, "val_acc": 0.3, "iterations_since_restore": 2,
                                          "node_id": "n1", "hostname": "h"})
    assert (tags("bare")["node_id"], tags("bare")["hostname"]) == ("n1", "h")
    # endings
    cb.on_checkpoint(0, [], t["gone"], Checkpoint.from_directory(str(folder)))
    cb.on_trial_recover(0, [], t["gone"])
    cb.on_trial_recover(0, [], t["gone"])
    t["gone"].error_file = None                                     # Ray gives the error as text instead
    t["gone"].get_error = lambda: "RuntimeError: " + "x" * 600
    cb.on_trial_error(0, [], t["gone"])
    cb.on_trial_complete(0, [], t["twice"])     # its only result was not logged, and said it diverged
    cb.on_trial_complete(0, [], t["nan"])
    t["quiet"].error_file, t["quiet"].get_error = None, lambda: None
    cb.on_trial_error(0, [], t["quiet"])
    cb.on_trial_complete(0, [], t["restored"])
    cb.on_trial_complete(0, [], t["solo"])           # it reported nothing at all
    ended = lambda k: (client.get_run(cb.runs[k]).info.status, tags(k).get("outcome"), tags(k).get("stop_reason"))
    assert ended("twice") == ("KILLED", "diverged", "diverged")
    assert ended("nan") == ("KILLED", "diverged", "loss is nan")
    assert ended("gone") == ("FAILED", "failed", "RuntimeError: " + "x" * 486)     # 500 characters
    assert tags("gone")["failures"] == "2"
    assert [a.path for a in client.list_artifacts(cb.runs["gone"], "learned")] == ["learned/best.safetensors"]
    assert ended("quiet") == ("FAILED", "failed", "trial raised an error")
    assert ended("restored") == ("FINISHED", "finished", None) and ended("solo") == ("FINISHED", "finished", None)


class _KilledAt(Exception):
    """The driver's SIGKILL, at one write of the store."""


class _DiesAtWrite:
    """The sweep's journal, until its `n`-th write: there the driver dies, and nothing after it is written."""

    def __init__(self, store, n: int):
        self.store, self.left = store, n

    def __getattr__(self, name):
        write = getattr(self.store, name)

        def once(*args, **kw):
            if self.left == 0:
                raise _KilledAt(name)
            self.left -= 1
            return write(*args, **kw)
        return once


@pytest.mark.parametrize("ending", ["finished", "stopped_early", "diverged", "interrupted"])
def test_a_kill_between_the_writes_that_end_a_run_never_leaves_an_outcome_on_a_running_run(tmp_path, ending):
    """CI once caught a resume continuing a run tagged `outcome=finished` whose status was still
    RUNNING (the kill fell between the two writes): the run's outcome and its status must agree at
    every write, so that what a user sees ended is what a resume leaves alone."""
    from mlflow.tracking import MlflowClient

    from clip_prompt_sweeps.store.journal import Journal
    from clip_prompt_sweeps.store.records import DONE, read_trial
    from clip_prompt_sweeps.store.runs import experiment_id
    from orchestrator.sweep.resume import is_done
    from orchestrator.sweep.tracking import MLflowTrials
    uri = _store(tmp_path)
    client = MlflowClient(uri)
    exp = experiment_id(client, "visual", uri)
    parent = client.create_run(exp, tags={"role": "sweep"}).info.run_id
    seen, n = [], 0
    while True:
        store = _DiesAtWrite(Journal(client, parent), 10_000)
        cb = MLflowTrials(uri, exp, parent, {"role": "trial"}, {}, store=store)
        trial = _Trial(f"t{n}", {"_cell": "c=1", "lr": 0.1 * (n + 1)})
        cb.on_trial_start(0, [], trial)
        cb.on_trial_result(0, [], trial, _result(1, 0.5, **({"diverged": 1, "stop_reason": "non-finite loss"}
                                                            if ending == "diverged" else {})))
        if ending == "stopped_early":
            cb.stopped[trial.trial_id] = "c=1"
        store.left = n                                  # the driver dies at the n-th write of the ending
        try:
            cb.on_experiment_end([]) if ending == "interrupted" else cb.on_trial_complete(0, [], trial)
            killed = False
        except _KilledAt:
            killed = True
        run = read_trial(client.get_run(cb.runs[trial.trial_id]))
        seen.append((run.status, run.outcome))
        if run.outcome in DONE:                         # a user sees it ended: so does a resume
            assert run.status in ("FINISHED", "KILLED") and is_done(run), (n, seen)
        if run.status == "RUNNING":                     # a resume continues it: nothing says it ended
            assert run.outcome is None and not is_done(run), (n, seen)
        if ending == "interrupted":                     # an interrupted trial is never taken as done
            assert not is_done(run), (n, seen)
        if not killed:
            break
        n += 1
    assert n >= 2 and seen[0] == ("RUNNING", None)      # the kill fell before, between and after
    assert is_done(run) == (ending != "interrupted") and run.outcome == ending
