"""The core pieces checked against values each test computes its own way: PIL itself, open_clip's
own forward with a hand-inserted prompt, the pickles an attacker would write, ASHA's rungs counted
by hand, the best trial picked from raw rows. No Ray cluster and no study store: these run in
seconds, so the mutation run (scripts/mutation.py) drives them. A one-line bug in the code under
test (idxmin for idxmax, a floor for a round, a prompt after block L instead of before it, a
module-prefix allowlist) makes one of them fail."""
from __future__ import annotations

import contextlib
import copyreg
import pickle
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from common.errors import UserError
from common.names import cell_key
from orchestrator.plan import make_plan
from orchestrator.searchers import CellSearcher, round_robin
from trainables.cifar import read_batch
from trainables.clip import load_clip
from trainables.prompts import POSITIONS, DeepPrompt, insert_prompts
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


@contextlib.contextmanager
def _system_as_extension():
    """os.system registered as copyreg extension code 0xF0, for as long as the block runs."""
    copyreg.add_extension("posix", "system", 0xF0)
    try:
        yield
    finally:
        copyreg.remove_extension("posix", "system", 0xF0)


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
    with _system_as_extension():
        gadgets["copyreg extension"] = batch(_Call(os.system, f"touch {marker}"))
    assert b"\x82\xf0" in gadgets["copyreg extension"]       # EXT1 0xF0: no module name in the file
    return gadgets


def test_the_cifar_unpickler_refuses_every_known_gadget(tmp_path):
    marker = tmp_path / "ran"
    for name, payload in _gadgets(marker).items():
        path = tmp_path / "data_batch_1"
        path.write_bytes(payload)
        # the extension registered in the reading process too, as an attacker would need it
        with _system_as_extension() if name == "copyreg extension" else contextlib.nullcontext():
            with pytest.raises(UserError, match="not a valid CIFAR batch") as err:
                read_batch(path)
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
    for i in range(2):
        searcher.on_trial_complete(f"t{i}", {"val_acc": 0.5})
    proposed = running + [searcher.suggest(f"t{i}") for i in range(len(running), plan.n_trials)]
    assert searcher.suggest("one more") == "FINISHED"
    order = [c["_cell"] for c in proposed]
    assert order == keys * 3
    # every cell's study was asked once per proposal, and told each completed one
    assert [len(searcher.studies[k].trials) for k in keys] == [3] * len(keys)
    assert all(searcher.studies[k].trials[0].state.name == "COMPLETE" for k in keys[:2])
    assert all(searcher.studies[k].trials[0].state.name == "RUNNING" for k in keys[2:])


def test_a_big_plan_splits_into_groups_of_whole_cells_and_a_record_into_theirs():
    """A sweep bigger than --trials-per-experiment runs as consecutive Tune experiments: each over
    whole cells (a cell's study and rungs never span two), every cell in exactly one, in order."""
    from orchestrator.resume import SweepRecord
    plan = make_plan("visual", "smoke", samples=3)          # 4 cells x 3 trials
    keys = [cell_key(c) for c in plan.cells]
    sizes = {limit: [[cell_key(c) for c in g.cells] for g in plan.groups(limit)] for limit in (1, 3, 7, 12, 10**6)}
    assert sizes[12] == sizes[10**6] == [keys]                              # fits: one experiment
    assert sizes[7] == [keys[:2], keys[2:]]                                 # 2 cells = 6 trials <= 7
    assert sizes[3] == sizes[1] == [[k] for k in keys]     # a cell bigger than the limit stays whole
    for groups in (plan.groups(7), plan.groups(3)):
        assert sum(g.n_trials for g in groups) == plan.n_trials
        assert all(g.profile == plan.profile and g.base == plan.base for g in groups)
    record = SweepRecord(done={keys[0]: [object()], keys[2]: [object()] * 2}, unfinished={keys[3]: [object()]})
    mine = record.only(set(keys[2:]))
    assert mine.done == {keys[2]: record.done[keys[2]]} and mine.unfinished == record.unfinished
    assert mine.n_done == 2


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


def _store(folder) -> str:
    """A new, empty MLflow SQLite store in `folder`: a copy of one made once per MLflow version
    (creating the tables takes a second, and the mutation run calls these tests thousands of times)."""
    import tempfile

    import mlflow
    from filelock import FileLock
    from mlflow.tracking import MlflowClient
    template = Path(tempfile.gettempdir()) / f"clip-prompt-sweeps-empty-mlflow-{mlflow.__version__}.db"
    with FileLock(f"{template}.lock"):
        if not template.is_file():
            MlflowClient(f"sqlite:///{template}.tmp").search_experiments(max_results=1)
            Path(f"{template}.tmp").rename(template)
    shutil.copy(template, folder / "mlflow.db")
    return f"sqlite:///{folder}/mlflow.db"


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

    from orchestrator.tracking import MLflowTrials
    from store.runs import experiment_id
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

    from orchestrator.source_runs import best_source_run
    from store.runs import SUPERSEDED_TAG
    from trainables.source_models import Source
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


def test_the_tracking_callback_logs_each_trials_dataset_on_its_run_and_each_dataset_once_on_the_parent(tmp_path):
    from mlflow.tracking import MlflowClient

    from orchestrator.tracking import MLflowTrials
    from store.runs import experiment_id
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

    from orchestrator.tracking import MLflowTrials
    from store.runs import experiment_id
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


def test_per_cell_asha_edges_one_shot_trials_errors_and_runs_without_a_cell():
    from orchestrator.schedulers import PerCellASHA
    asha = PerCellASHA("val_acc", "max", max_t=4, grace_period=1, reduction_factor=2)
    rungs = lambda cell: {m: dict(r) for m, r in asha.cells[cell]._brackets[0]._rungs}
    # a one-shot trainable completes with its only result and no epoch: recorded at rung 1
    once = _t("once", "B")
    asha.on_trial_add(None, once)
    asha.on_trial_complete(None, once, {"val_acc": 0.7})
    assert rungs("B")[1] == {"once": 0.7}
    asha.on_trial_add(None, _t("twice", "B"))
    asha.on_trial_complete(None, _t("twice", "B"), {"val_acc": 0.2, "training_iteration": 2})
    assert rungs("B")[2] == {"twice": 0.2}
    # a replayed run that ended before any epoch leaves its cell's rungs as they were
    asha.replay("C", "run-empty", [], done=True)
    asha.replay("C", "run-one", [(1, 0.4)], done=True)
    assert rungs("C") == {4: {}, 2: {}, 1: {"run-one": 0.4}} and asha.cells["C"]._trial_info == {}
    # an error is passed to the cell's ASHA (which keeps the trial: Ray may retry it); a removed
    # trial leaves it, known by its run
    erring, removed = _t("erring", "C"), _t("removed", "C", run_id="run-r")
    for trial in (erring, removed):
        asha.on_trial_add(None, trial)
    asha.on_trial_error(None, erring)
    asha.on_trial_remove(None, removed)
    assert set(asha.cells["C"]._trial_info) == {"erring"}
    # a trial without a cell key is in the cell "" (a plain Tune run), stopped there
    lone, weak = _t("lone", ""), _t("weak", "")
    del lone.config["_cell"], weak.config["_cell"]
    for trial, value in ((lone, 0.9), (weak, 0.1)):
        asha.on_trial_add(None, trial)
        asha.on_trial_result(None, trial, {"epoch": 1, "val_acc": value})
    assert asha.stopped == {"weak": ""} and "" in asha.cells
    assert asha.debug_string() == "PerCellASHA: 3 cells, 1 trials stopped early within their cell"   # B, C, ""


def test_cell_searcher_details_the_study_direction_range_replay_and_failures(tmp_path):
    import json

    import optuna

    from orchestrator.resume import Continuation, PastTrial, SweepRecord
    plan = make_plan("visual", "smoke", samples=6)
    keys = [cell_key(c) for c in plan.cells]
    s = CellSearcher(plan, "tpe", seed=5)
    study = s.studies[keys[0]]
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE and s.mode == "max"
    assert s.distribution.log and (s.distribution.low, s.distribution.high) == (plan.profile.lr.low, plan.profile.lr.high)
    assert study.sampler._n_startup_trials == 3                         # half of 6 samples
    again = CellSearcher(plan, "tpe", seed=5)
    assert [s.suggest(f"t{i}")["lr"] for i in range(4)] == [again.suggest(f"t{i}")["lr"] for i in range(4)]
    # failures and non-scores are told as FAIL; a score as COMPLETE
    s.on_trial_complete("t0", {"val_acc": 0.5}, error=True)
    s.on_trial_complete("t1", {"val_acc": float("nan")})
    s.on_trial_complete("t2", {})
    s.on_trial_complete("t3", {"val_acc": 0.25})
    s.on_trial_complete("unknown", {"val_acc": 1.0})                    # not one of this searcher's
    states = [(t.state.name, t.value) for k in keys for t in s.studies[k].trials]
    assert states == [("FAIL", None), ("FAIL", None), ("FAIL", None), ("COMPLETE", 0.25)]
    s.save(str(tmp_path / "state.json"))
    assert json.loads((tmp_path / "state.json").read_text()) == {
        "left_to_propose": plan.n_trials - 4, "trials_per_cell": {k: 1 for k in keys}}
    with pytest.raises(NotImplementedError, match="resumed from MLflow"):
        s.restore(str(tmp_path / "state.json"))
    # the replay keeps the range's ends, skips what lies outside (and goes on), fails an empty history
    low, high = plan.profile.lr.low, plan.profile.lr.high
    past = lambda lr, hist: PastTrial(f"r{lr}", keys[0], lr, True, tuple(hist), ("t",), 0)
    record = SweepRecord(done={keys[0]: [past(high * 2, [(1, 0.9)]), past(None, [(1, 0.9)]), past(low, [(1, 0.1)]),
                                         past(high, [(1, 0.2)]), past(10.0, [])]},
                         unfinished={keys[1]: [Continuation("u1", 20.0, None, 0), Continuation("u2", 20.0, None, 0)]})
    r = CellSearcher(plan, "tpe", seed=0, record=record)
    assert [(t.params["lr"], t.state.name) for t in r.studies[keys[0]].trials] == [
        (low, "COMPLETE"), (high, "COMPLETE"), (10.0, "FAIL")]
    first = [r.suggest(f"t{i}") for i in range(len(keys) + 1)]
    assert [(c["lr"], c["_run_id"]) for c in (first[1], first[-1])] == [(20.0, "u1"), (20.0, "u2")]   # both asked


def test_cell_searcher_without_a_learning_rate_proposes_each_cell_as_its_trial():
    from orchestrator.resume import Continuation, SweepRecord
    plan = make_plan("robustness", "smoke")
    filled = {cell_key(c): {"source_run": f"src-{i}"} for i, c in enumerate(plan.cells)}
    plan = type(plan)(**{**plan.__dict__, "filled": filled})
    keys = [cell_key(c) for c in plan.cells]
    record = SweepRecord(unfinished={keys[1]: [Continuation("u1", None, "/ck", 1)]})
    s = CellSearcher(plan, "tpe", record=record)
    assert s.distribution is None
    configs = [s.suggest(f"t{i}") for i in range(len(keys))]
    assert s.suggest("more") == "FINISHED"
    for key, config in zip(keys, configs):
        cell = plan.cells[keys.index(key)]
        assert config == {**plan.config(cell, None), **({"_run_id": "u1", "_resume_from": "/ck"} if key == keys[1] else {})}
        assert config["source_run"] == filled[key]["source_run"] and "lr" not in config


def test_the_source_run_may_be_stopped_early_and_need_not_log_divergence(tmp_path):
    """A KILLED trial (stopped early by ASHA) is a candidate, and so is one that never logged a
    `diverged` metric (a trainable that cannot diverge); the error names the store."""
    from mlflow.tracking import MlflowClient

    from orchestrator.source_runs import best_source_run
    from trainables.source_models import Source
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


def test_the_unpickler_admits_only_the_empty_start_of_a_plain_array(tmp_path):
    """numpy's _reconstruct is allowed, for the empty array a real pickle starts with: any other
    shape (which would allocate what the file asks for) or type is refused; so is a file
    over the size limit, by one byte, and a batch that is not a dict."""
    reconstruct = np._core.multiarray._reconstruct
    for name, payload in (("huge", _Call(reconstruct, np.ndarray, (10**6,), b"b")),
                          ("list shape", _Call(reconstruct, np.ndarray, [0], b"b")),
                          ("not an array", _Call(reconstruct, np.dtype, (0,), b"b"))):
        (tmp_path / name).write_bytes(pickle.dumps({b"data": payload}, protocol=2))
        with pytest.raises(UserError, match=r"is not how a CIFAR batch starts one\); delete it and run "
                                            r"`python -m orchestrator fetch` to download it again"):
            read_batch(tmp_path / name)
    (tmp_path / "list").write_bytes(pickle.dumps([1, 2], protocol=2))
    with pytest.raises(UserError, match=r"list is not a valid CIFAR batch \(a list, not a dict\); delete it"):
        read_batch(tmp_path / "list")
    ok = pickle.dumps({b"labels": [1]}, protocol=2)
    (tmp_path / "ok").write_bytes(ok)
    assert read_batch(tmp_path / "ok", max_bytes=len(ok)) == {b"labels": [1]}
    with pytest.raises(UserError, match=f"{len(ok):,} bytes, more than the real file's {len(ok) - 1:,}"):
        read_batch(tmp_path / "ok", max_bytes=len(ok) - 1)


def test_insert_prompts_keeps_the_tokens_dtype_and_names_the_positions():
    tokens = torch.zeros(2, 3, 4, dtype=torch.bfloat16)
    for position in POSITIONS:
        assert insert_prompts(tokens, torch.ones(2, 4), position).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="unknown position 'middle'; known: front, back, after_cls"):
        insert_prompts(tokens, torch.ones(2, 4), "middle")


def test_deep_prompt_without_a_projection_returns_the_pooled_token(tiny_clip):
    import copy
    visual = copy.deepcopy(tiny_clip.visual)
    visual.proj = None
    deep = DeepPrompt(visual, 1, 2, "back")
    with torch.no_grad():
        assert deep(torch.randn(2, 3, 32, 32)).shape == (2, visual.transformer.width)
    with pytest.raises(ValueError, match="unknown position 'middle'; known: front, back, after_cls"):
        DeepPrompt(visual, 1, 2, "middle")
    with pytest.raises(ValueError, match="injection layer 4 is outside 0..3"):
        DeepPrompt(visual, 4, 2, "back")


def test_best_per_cell_keeps_the_trials_columns():
    import pandas as pd

    from reports.trials import best_per_cell
    frame = pd.DataFrame([dict(cell="a=1", a=1, best_val_acc=0.5, test_acc=0.4),
                          dict(cell="a=1", a=1, best_val_acc=0.6, test_acc=0.3)])
    best = best_per_cell(frame)
    assert list(best.columns) == list(frame.columns) and list(best.index) == [0]


def test_resize_defaults_to_bicubic_takes_any_aspect_and_never_changes_its_input():
    images = torch.from_numpy(np.random.default_rng(7).integers(0, 256, (2, 3, 24, 40), dtype=np.uint8))
    assert np.array_equal(pil_resize(images, 64, "bilinear").numpy(), _pil(images, 64, Image.BILINEAR))
    as_float = images.float()
    before = as_float.clone()
    out = pil_resize(as_float, 64)
    assert torch.equal(as_float, before)                         # the caller's tensor, untouched
    assert torch.equal(out, pil_resize(images, 64, "bicubic"))   # bicubic by default
    square = images[..., :24, :24].float()
    same = pil_resize(square, 24)                                # nothing to resize: still a copy
    assert torch.equal(same, square)
    same.add_(1)
    assert torch.equal(square, images[..., :24, :24].float())


def test_the_unpickler_reads_python2_strings_as_bytes_as_the_cifar_archives_hold_them(tmp_path):
    # {'data': 1} as Python 2 wrote it (SHORT_BINSTRING), as in the real archives' batches
    (tmp_path / "py2").write_bytes(b"\x80\x02}q\x00U\x04dataq\x01K\x01s.")
    assert read_batch(tmp_path / "py2") == {b"data": 1}


def test_cell_searcher_defaults_and_the_cells_fixed_settings_with_a_learning_rate():
    plan = make_plan("visual", "smoke", samples=5)
    keys = [cell_key(c) for c in plan.cells]
    plain, explicit = CellSearcher(plan), CellSearcher(plan, "tpe", 0)
    assert [plain.suggest(f"t{i}")["lr"] for i in range(3)] == [explicit.suggest(f"t{i}")["lr"] for i in range(3)]
    assert {type(s.sampler).__name__ for s in plain.studies.values()} == {"TPESampler"}
    assert plain.studies[keys[0]].sampler._n_startup_trials == 2         # half of 5, rounded down
    plan = type(plan)(**{**plan.__dict__, "filled": {keys[0]: {"warmup_steps": 3}}})
    config = CellSearcher(plan).suggest("t0")
    assert config == plan.config(plan.cells[0], config["lr"]) and config["warmup_steps"] == 3
    with pytest.raises(NotImplementedError, match=r"^a sweep is resumed from MLflow \(orchestrator/resume.py\), "
                                                  r"not from Ray's state$"):
        CellSearcher(plan).restore("anything")


def test_deep_prompt_holds_n_prompts_tokens_of_the_encoders_width(tiny_clip):
    assert DeepPrompt(tiny_clip.visual, 0, 3, "front").prompts.shape == (3, tiny_clip.visual.transformer.width)


def test_best_source_run_without_a_store_names_the_sweep_to_run(tmp_path):
    from orchestrator.source_runs import best_source_run
    from trainables.source_models import Source
    with pytest.raises(UserError, match="no 'visual' sweep of profile 'smoke' in sqlite:///nowhere"):
        best_source_run(None, make_plan("robustness", "smoke"), Source("visual", {}), "sqlite:///nowhere")


def test_the_store_finds_the_latest_parent_of_any_or_one_profile_and_filters_children_by_status(tmp_path):
    import time

    from mlflow.tracking import MlflowClient

    from store.records import read_parent
    from store.runs import children, current_trials, latest_parent
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
