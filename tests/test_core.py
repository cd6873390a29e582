"""The core pieces checked against values each test computes its own way: PIL itself, open_clip's
own forward with a hand-inserted prompt, the pickles an attacker would write, ASHA's rungs counted
by hand, the best trial picked from raw rows. No Ray cluster and no study store: these run in
seconds, so the mutation run (scripts/mutation.py) drives them. A one-line bug in the code under
test (idxmin for idxmax, a floor for a round, a prompt after block L instead of before it, a
module-prefix allowlist) makes one of them fail."""
from __future__ import annotations

import copyreg
import pickle
import shutil
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from orchestrator.plan import make_plan
from orchestrator.searchers import CellSearcher, round_robin
from search_spaces import cell_key
from trainables import UserError
from trainables.cifar import read_batch
from trainables.models import load_clip
from trainables.prompts import POSITIONS, DeepPrompt
from trainables.resize import pil_resize

# --- resize: PIL's arithmetic, exactly where the study uses it -------------------------------


def _pil(images: torch.Tensor, size: int, mode) -> np.ndarray:
    return np.stack([np.asarray(Image.fromarray(im.numpy().transpose(1, 2, 0)).resize((size, size), mode))
                     for im in images]).transpose(0, 3, 1, 2).astype(np.float32)


@pytest.mark.parametrize("size", [224, 64])
def test_bilinear_resize_is_pils_exactly_and_bicubic_at_most_one_level_on_few_pixels(size):
    """CIFAR's 32 px up to the models' sizes. Bilinear: no pixel differs. Bicubic: PIL's
    fixed-point sums and our float32 matmuls round a few half-way values apart, by one level
    (measured: 0.009 % of pixels at 224 px, 0.04 % at 64 px over three seeds)."""
    images = torch.from_numpy(np.random.default_rng(size).integers(0, 256, (16, 3, 32, 32), dtype=np.uint8))
    bilinear = pil_resize(images, size, "bilinear").numpy()
    assert np.array_equal(bilinear, _pil(images, size, Image.BILINEAR))
    off = np.abs(pil_resize(images, size, "bicubic").numpy() - _pil(images, size, Image.BICUBIC))
    assert off.max() <= 1.0 and (off > 0).mean() < 6e-4


# --- the deep prompt against open_clip's own forward, with tokens put in before block L --------


def _reference(visual, images: torch.Tensor, prompts: torch.Tensor, layer: int, position: str) -> torch.Tensor:
    """open_clip's forward, untouched, with a hook that inserts the prompts into block `layer`'s
    input: nothing of DeepPrompt's own split (prefix/suffix, insert_prompts) is used."""
    def insert(block, args, kwargs):
        x = args[0]
        p = prompts.unsqueeze(0).expand(x.shape[0], -1, -1)
        x = {"front": lambda: torch.cat([p, x], 1), "back": lambda: torch.cat([x, p], 1),
             "after_cls": lambda: torch.cat([x[:, :1], p, x[:, 1:]], 1)}[position]()
        return (x, *args[1:]), kwargs
    assert visual.transformer.batch_first       # the hook inserts along dim 1
    handle = visual.transformer.resblocks[layer].register_forward_pre_hook(insert, with_kwargs=True)
    try:
        return visual(images)
    finally:
        handle.remove()


@pytest.fixture(scope="module")
def tiny_clip():
    torch.manual_seed(0)
    return load_clip("tiny-clip", "none")


@pytest.mark.parametrize("position", POSITIONS)
def test_deep_prompt_at_every_layer_is_the_reference_forward(tiny_clip, position):
    visual, images = tiny_clip.visual, torch.randn(3, 3, 32, 32)
    for layer in range(len(visual.transformer.resblocks)):
        torch.manual_seed(layer)
        deep = DeepPrompt(visual, layer, 3, position)
        with torch.no_grad():
            expected = _reference(visual, images, deep.prompts, layer, position)
            assert not torch.allclose(expected, visual(images), atol=1e-3)    # the prompt matters
            torch.testing.assert_close(deep(images), expected, rtol=1e-5, atol=1e-5, msg=f"layer {layer}")
            # the cached path: prefix computed once, suffix per step
            torch.testing.assert_close(deep.suffix(deep.prefix(images)), expected, rtol=1e-5, atol=1e-5)


# --- the CIFAR unpickler against the gadgets people use ---------------------------------------


class _Call:
    """Pickles as a call of `fn(*args)`, the way an attacker's file would."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _gadgets(marker) -> dict[str, bytes]:
    import builtins
    import importlib
    import os

    import numpy.testing._private.utils as np_utils
    touch = f"open({str(marker)!r}, 'w').close()"
    batch = lambda payload: pickle.dumps({b"data": payload, b"labels": []}, protocol=2)
    gadgets = {
        "os.system": batch(_Call(os.system, f"touch {marker}")),
        "subprocess.Popen": batch(_Call(subprocess.Popen, ["touch", str(marker)])),
        "subprocess.check_call": batch(_Call(subprocess.check_call, ["touch", str(marker)])),
        "builtins.eval": batch(_Call(builtins.eval, touch)),
        "builtins.exec": batch(_Call(builtins.exec, touch)),
        "builtins.getattr": batch(_Call(builtins.getattr, _Call(importlib.import_module, "os"), "system")),
        "numpy.testing runstring": batch(_Call(np_utils.runstring, touch, {})),
        "numpy.load allow_pickle": batch(_Call(np.load, str(marker), "r", True)),
        "torch.load": batch(_Call(torch.load, str(marker))),
        "numpy.frombuffer": batch(_Call(np.frombuffer, b"\0" * 8)),
        # an allowed outer call whose argument is a forbidden one
        "nested reduce": batch(_Call(np._core.multiarray._reconstruct, _Call(os.system, f"touch {marker}"),
                                     (0,), b"b")),
        # copyreg's helper that pickles old-style objects builds any class it is given
        "copyreg._reconstructor": batch(_Call(copyreg._reconstructor, subprocess.Popen, object, None)),
    }
    # a global reached through copyreg's extension registry (EXT1) instead of by name
    copyreg.add_extension("posix", "system", 0xF0)
    try:
        gadgets["copyreg extension"] = batch(_Call(os.system, f"touch {marker}"))
    finally:
        copyreg.remove_extension("posix", "system", 0xF0)
    assert b"\x82\xf0" in gadgets["copyreg extension"]       # EXT1 0xF0: no module name in the file
    return gadgets


def test_the_cifar_unpickler_refuses_every_known_gadget(tmp_path):
    marker = tmp_path / "ran"
    for name, payload in _gadgets(marker).items():
        path = tmp_path / "data_batch_1"
        path.write_bytes(payload)
        if name == "copyreg extension":
            copyreg.add_extension("posix", "system", 0xF0)      # as it would be in the reading process
        try:
            with pytest.raises(UserError, match="not a valid CIFAR batch") as err:
                read_batch(path)
        finally:
            if name == "copyreg extension":
                copyreg.remove_extension("posix", "system", 0xF0)
        assert "not part of a CIFAR batch" in str(err.value) or "not how a CIFAR batch starts" in str(err.value), name
        assert not marker.exists(), f"{name} ran code"


def test_the_unpickler_still_reads_what_numpy_writes(tmp_path):
    """The refusals above are not a reader that refuses everything: a real batch, as written by
    Python 3 pickling numpy (protocol 2, as the CIFAR archives are), reads back."""
    data = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    (tmp_path / "b").write_bytes(pickle.dumps({b"data": data, b"labels": [3, 4]}, protocol=2))
    batch = read_batch(tmp_path / "b")
    assert np.array_equal(batch[b"data"], data) and batch[b"labels"] == [3, 4]


# --- the per-cell searcher's order while trials run concurrently ------------------------------


def test_the_searcher_proposes_cells_round_robin_while_trials_are_still_running():
    """Ray asks for several trials before any reports (max_concurrent_trials): the proposals
    still go cell after cell, so each cell's later samples come after its earlier ones."""
    plan = make_plan("visual", "smoke", samples=3)
    keys = [cell_key(c) for c in plan.cells]
    searcher = CellSearcher(plan, "tpe", seed=0)
    running = [searcher.suggest(f"t{i}") for i in range(len(keys) + 2)]     # nothing reported yet
    for i, config in enumerate(running[:2]):
        searcher.on_trial_complete(f"t{i}", {"val_acc": 0.5})
    proposed = running + [searcher.suggest(f"t{i}") for i in range(len(running), plan.n_trials)]
    assert searcher.suggest("one more") == "FINISHED"
    order = [c["_cell"] for c in proposed]
    assert order == keys * 3
    # every cell's study was asked once per proposal, and told each completed one
    assert [len(searcher.studies[k].trials) for k in keys] == [3] * len(keys)
    assert all(searcher.studies[k].trials[0].state.name == "COMPLETE" for k in keys[:2])
    assert all(searcher.studies[k].trials[0].state.name == "RUNNING" for k in keys[2:])


def test_round_robin_of_a_resumed_sweep_puts_each_cells_unfinished_trials_first():
    from orchestrator.resume import Continuation, SweepRecord
    plan = make_plan("visual", "smoke", samples=3)
    keys = [cell_key(c) for c in plan.cells]
    going = Continuation("run-a", 10.0, None, 0)
    record = SweepRecord(done={keys[0]: [object(), object()], keys[1]: [object()] * 3},
                         unfinished={keys[0]: [going], keys[2]: [going, going]})
    rounds = [(cell_key(cell), cont) for cell, cont in round_robin(plan, record)]
    # cell 0: 2 done + 1 going; cell 1: full; cell 2: 2 going + 1 new; cell 3: 3 new
    assert rounds == [(keys[0], going), (keys[2], going), (keys[3], None),
                      (keys[2], going), (keys[3], None),
                      (keys[2], None), (keys[3], None)]


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

    from orchestrator.tracking import MLflowTrials, experiment_id
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    exp = experiment_id(client, "visual", uri)
    parent = client.create_run(exp, tags={"role": "sweep"}).info.run_id
    # a run an earlier session left at epoch 2: the continued trial adopts it
    earlier = client.create_run(exp, tags={"mlflow.parentRunId": parent, "cell": "c=4", "ray_trial_id": "old",
                                           "outcome": "interrupted", "stop_reason": "was cut"}).info.run_id
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
    again = runs["again"]
    assert again.info.run_id == earlier and again.data.tags["ray_trial_ids"] == "old again"
    assert [(m.step, m.value) for m in client.get_metric_history(earlier, "val_acc")] == [
        (1, pytest.approx(0.1)), (2, pytest.approx(0.2)), (3, pytest.approx(0.4))]
    assert again.data.tags["resumed_at_epoch"] == "2"
    assert cb.ended == {r.info.run_id: ended[k][1] for k, r in runs.items()}


# --- ASHA within each cell, its time the trial's own epoch --------------------------------------


def _t(trial_id: str, cell: str, run_id: str | None = None):
    from types import SimpleNamespace
    return SimpleNamespace(trial_id=trial_id, config={"_cell": cell, **({"_run_id": run_id} if run_id else {})})


def test_per_cell_asha_stops_by_the_rungs_of_the_trials_own_cell():
    """max_t 4, grace 1, reduction 2: rungs at epochs 1, 2 and 4; a result below the median of
    what its cell's rung has recorded is stopped (worked out by hand below)."""
    from orchestrator.schedulers import PerCellASHA
    asha = PerCellASHA("val_acc", "max", max_t=4, grace_period=1, reduction_factor=2)
    res = lambda epoch, v, it=None: {"epoch": epoch, "val_acc": v, "training_iteration": it or epoch}
    a1, a2, b1 = _t("a1", "A"), _t("a2", "A"), _t("b1", "B")
    for t in (a1, a2, b1):
        asha.on_trial_add(None, t)
    assert asha.on_trial_result(None, a1, res(1, 0.9)) == "CONTINUE"     # first at rung 1 of A
    assert asha.on_trial_result(None, a2, res(1, 0.1)) == "STOP"         # median of {0.9} is 0.9
    assert asha.on_trial_result(None, b1, res(1, 0.1)) == "CONTINUE"     # B's rung is empty: A is not B
    assert asha.stopped == {"a2": "A"}
    assert asha.on_trial_result(None, a1, res(2, 0.9)) == "CONTINUE"
    assert asha.on_trial_result(None, a1, res(4, 0.9)) == "STOP"         # its budget, not an early stop
    assert asha.stopped == {"a2": "A"} and set(asha.cells) == {"A", "B"}
    assert asha.on_trial_result(None, b1, {"training_iteration": 2}) == "CONTINUE"    # no metric: no rung


def test_per_cell_asha_continues_a_trial_by_its_run_and_its_epoch():
    """A run of an earlier session, replayed into its cell's rungs, then continued by a new Ray
    trial that names the run: it is known by the run (rung 1 is not recorded twice), and its time is
    its epoch (2), not Ray's iteration counter, which restarts at 1."""
    from orchestrator.schedulers import PerCellASHA
    asha = PerCellASHA("val_acc", "max", max_t=4, grace_period=1, reduction_factor=2)
    asha.replay("A", "run-x", [(1, 0.95), (2, 0.95)], done=True)
    asha.replay("A", "run-y", [(1, 0.8)], done=False)
    rungs = {m: dict(r) for m, r in asha.cells["A"]._brackets[0]._rungs}
    assert rungs == {4: {}, 2: {"run-x": 0.95}, 1: {"run-x": 0.95, "run-y": 0.8}}
    going = _t("new-ray-id", "A", run_id="run-y")
    asha.on_trial_add(None, going)
    assert asha.on_trial_result(None, going, {"epoch": 2, "val_acc": 0.05, "training_iteration": 1}) == "STOP"
    assert asha.stopped == {"new-ray-id": "A"}
    assert set(asha.cells["A"]._brackets[0]._rungs[1][1]) == {"run-x", "run-y"}   # rung 2, by run id
    # a one-shot trainable reports no epoch: its one result is epoch 1, and it is complete
    once = _t("once", "B")
    asha.on_trial_add(None, once)
    assert asha.on_trial_result(None, once, {"val_acc": 0.5, "training_iteration": 1}) == "CONTINUE"
    asha.on_trial_complete(None, once, {"val_acc": 0.5, "training_iteration": 1})
    assert asha.cells["B"]._brackets[0]._rungs[2][1] == {"once": 0.5}


def test_per_cell_asha_takes_its_grace_period_within_max_t():
    from orchestrator.schedulers import PerCellASHA
    asha = PerCellASHA("val_acc", "max", max_t=2, grace_period=5, reduction_factor=3)
    asha.on_trial_add(None, _t("x", "A"))
    bracket = asha.cells["A"]._brackets[0]
    assert [m for m, _ in bracket._rungs] == [2] and bracket.rf == 3     # grace 5 > max_t 2: clipped
    assert asha.set_search_properties("other", "min") is True and asha._metric == "val_acc"


# --- the report's choice within a cell, and the source run's choice among candidates ----------


def test_best_per_cell_is_each_cells_best_on_validation_finite_trial():
    import pandas as pd

    from reports.runs import best_per_cell, best_test
    rows = [  # cell (a, b): best val 0.8 -> test 0.50; the diverged 0.99 and the NaN are out
        dict(a=1, b="x", best_val_acc=0.8, test_acc=0.50, diverged=0, run_id="r1"),
        dict(a=1, b="x", best_val_acc=0.6, test_acc=0.90, diverged=0, run_id="r2"),
        dict(a=1, b="x", best_val_acc=0.7, test_acc=0.10, diverged=0, run_id="r3"),
        dict(a=1, b="x", best_val_acc=0.99, test_acc=0.95, diverged=1, run_id="r4"),
        dict(a=1, b="x", best_val_acc=float("nan"), test_acc=0.97, diverged=0, run_id="r5"),
        dict(a=1, b="y", best_val_acc=0.3, test_acc=0.20, diverged=0, run_id="r6"),
        dict(a=1, b="y", best_val_acc=0.4, test_acc=0.15, diverged=0, run_id="r7"),
        dict(a=2, b="x", best_val_acc=0.5, test_acc=0.30, diverged=0, run_id="r8"),
    ]
    best = best_per_cell(pd.DataFrame(rows), ["a", "b"])
    assert sorted(best["run_id"]) == ["r1", "r7", "r8"]
    assert best_test(best, a=1) == 0.50                 # (1, x) beats (1, y) on validation
    assert best_test(best, a=1, b="y") == 0.15 and best_test(best, a=2) == 0.30
    assert best_test(best, a=3) is None
    no_flag = pd.DataFrame(rows).drop(columns="diverged")   # a trainable that never diverges
    assert sorted(best_per_cell(no_flag.iloc[[1, 2, 5]], ["a", "b"])["run_id"]) == ["r3", "r6"]


def test_the_source_run_is_the_best_on_validation_candidate_of_the_latest_sweep(tmp_path):
    from mlflow.tracking import MlflowClient

    from orchestrator.sources import best_source_run
    from reports.runs import SUPERSEDED_TAG
    from trainables.sources import Source
    uri = f"sqlite:///{tmp_path}/mlflow.db"
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
    assert run.info.run_id == expected
    with pytest.raises(UserError, match="no finished trial of that cell in sweep run " + other_profile):
        best_source_run(client, make_plan("robustness", "full"),
                        Source("visual", {"dataset": "cifar10", "prompt": "padding"}), uri)
    with pytest.raises(UserError, match="no 'finetune' sweep of profile 'smoke'"):
        best_source_run(client, plan, Source("finetune", {"variant": "fc"}), uri)


# --- the searcher after an interruption --------------------------------------------------------


def test_a_resumed_searcher_knows_the_done_trials_and_asks_the_unfinished_ones_first():
    from orchestrator.resume import Continuation, PastTrial, SweepRecord
    plan = make_plan("visual", "smoke", samples=3)
    keys = [cell_key(c) for c in plan.cells]
    past = lambda run, lr, hist: PastTrial(run, keys[0], lr, True, tuple(hist), ("t",), 0)
    record = SweepRecord(
        done={keys[0]: [past("d1", 10.0, [(1, 0.2), (2, 0.4)]), past("d2", 50.0, [(1, float("nan"))]),
                        past("out", 9999.0, [(1, 0.9)])]},
        unfinished={keys[1]: [Continuation("u1", 20.0, "/ckpt/u1/3", 3), Continuation("u2", 30.0, None, 0)]})
    searcher = CellSearcher(plan, "tpe", seed=0, record=record)
    states = [(t.params["lr"], t.state.name, t.value) for t in searcher.studies[keys[0]].trials]
    assert states == [(10.0, "COMPLETE", 0.4), (50.0, "FAIL", None)]      # 9999 is outside the range
    first = [searcher.suggest(f"t{i}") for i in range(4)]
    assert [c["_cell"] for c in first] == [keys[1], keys[2], keys[3], keys[1]]
    assert (first[0]["lr"], first[0]["_run_id"], first[0]["_resume_from"]) == (20.0, "u1", "/ckpt/u1/3")
    assert (first[3]["lr"], first[3]["_run_id"]) == (30.0, "u2") and "_resume_from" not in first[3]
    assert "_run_id" not in first[1]
    assert len(searcher.queue) == plan.n_trials - 3 - 4         # 3 of cell 0 are over


def test_search_random_gives_every_cell_optunas_random_sampler_seeded_apart():
    plan = make_plan("visual", "smoke", samples=2)
    a, b = CellSearcher(plan, "random", seed=3), CellSearcher(plan, "random", seed=3)
    assert {type(s.sampler).__name__ for s in a.studies.values()} == {"RandomSampler"}
    first = [a.suggest(f"t{i}")["lr"] for i in range(plan.n_trials)]
    assert first == [b.suggest(f"t{i}")["lr"] for i in range(plan.n_trials)]       # reproducible
    assert len(set(first)) == len(first)                                             # cells seeded apart
    tpe = CellSearcher(plan, "tpe", seed=0).studies
    assert {s.sampler._n_startup_trials for s in tpe.values()} == {1}                # half of 2 samples
