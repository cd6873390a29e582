"""ASHA within each grid cell, its time the trial's own epoch: rungs and cut-offs worked out
by hand. The mutation run drives these."""
from __future__ import annotations

# --- ASHA within each cell, its time the trial's own epoch --------------------------------------


def _t(trial_id: str, cell: str, run_id: str | None = None):
    from types import SimpleNamespace
    return SimpleNamespace(trial_id=trial_id, config={"_cell": cell, **({"_run_id": run_id} if run_id else {})})


def test_per_cell_asha_stops_by_the_rungs_of_the_trials_own_cell():
    """max_t 4, grace 1, reduction 2: rungs at epochs 1, 2 and 4; a result below the median of
    what its cell's rung has recorded is stopped (worked out by hand below)."""
    from orchestrator.sweep.schedulers import PerCellASHA
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
    from orchestrator.sweep.schedulers import PerCellASHA
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
    from orchestrator.sweep.schedulers import PerCellASHA
    asha = PerCellASHA("val_acc", "max", max_t=2, grace_period=5, reduction_factor=3)
    asha.on_trial_add(None, _t("x", "A"))
    bracket = asha.cells["A"]._brackets[0]
    assert [m for m, _ in bracket._rungs] == [2] and bracket.rf == 3     # grace 5 > max_t 2: clipped
    assert asha.set_search_properties("other", "min") is True and asha._metric == "val_acc"


def test_per_cell_asha_edges_one_shot_trials_errors_and_runs_without_a_cell():
    from orchestrator.sweep.schedulers import PerCellASHA
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
