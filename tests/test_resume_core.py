"""Resume planning set up directly, not left to the moment a kill lands: records and checkpoints
built by hand, each expectation worked out by hand (issue #28). No Ray, no store."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from common.names import cell_key
from orchestrator.plan import make_plan
from orchestrator.resume import PastTrial, build_record, is_done
from orchestrator.schedulers import PerCellASHA
from store.records import read_trial
from trainables.checkpoints import save_loop


def _plan(samples: int = 2):
    return make_plan("visual", "smoke", ["dataset=cifar10", "prompt=padding", "prompt_size=4"], samples=samples,
                     epochs=4)


def _trial(run: str, cell: str, done: bool, start: int, history=((1, 0.5),), ids=()) -> PastTrial:
    return PastTrial(run, cell, 1.0 + start, done, tuple(history), tuple(ids), start)


def test_a_cell_with_more_finished_runs_than_planned_keeps_the_first_and_sets_the_rest_aside(tmp_path):
    plan = _plan(samples=2)
    (cell,) = [cell_key(c) for c in plan.cells]
    trials = [_trial("d1", cell, True, 1), _trial("d2", cell, True, 2), _trial("d3", cell, True, 3),
              _trial("u1", cell, False, 4), _trial("elsewhere", "prompt_size=9", True, 5)]
    record = build_record(plan, trials, str(tmp_path), "visual-smoke-x")
    # two planned, two finished first: those are the cell's; the third finished run and the
    # unfinished one are beyond the plan, and a run of a cell the plan has not is too
    assert [t.run_id for t in record.done[cell]] == ["d1", "d2"]
    assert record.unfinished[cell] == []
    assert sorted(t.run_id for t in record.superseded) == ["d3", "elsewhere", "u1"]
    assert record.n_done == 2


def test_an_unfinished_run_fills_only_what_its_finished_ones_leave(tmp_path):
    plan = _plan(samples=3)
    (cell,) = [cell_key(c) for c in plan.cells]
    trials = [_trial("d1", cell, True, 1), _trial("u1", cell, False, 2), _trial("u2", cell, False, 3),
              _trial("u3", cell, False, 4)]
    record = build_record(plan, trials, str(tmp_path), "visual-smoke-x")
    assert [t.run_id for t in record.done[cell]] == ["d1"]
    assert [c.run_id for c in record.unfinished[cell]] == ["u1", "u2"]
    assert [t.run_id for t in record.superseded] == ["u3"]


def _checkpoint(folder: Path, epoch: int) -> None:
    folder.mkdir(parents=True)
    net = nn.Linear(2, 2)
    save_loop(folder, net, {"w": torch.zeros(1)}, torch.optim.SGD(net.parameters(), lr=0.1), {"epoch": epoch})


def test_a_continued_trial_never_starts_from_a_checkpoint_newer_than_what_mlflow_logged(tmp_path):
    # the trial checkpointed epochs 1, 2 and 3, but the driver died before it logged epoch 3:
    # going on from epoch 3 would leave that epoch unlogged for ever, so it goes on from 2
    plan = _plan()
    (cell,) = [cell_key(c) for c in plan.cells]
    trial_dir = tmp_path / "visual-smoke-x" / "visual_prompt_abc12_00000_0_lr=1"
    for epoch in (1, 2, 3):
        _checkpoint(trial_dir / f"checkpoint_{epoch - 1:06d}", epoch)
    history = ((1, 0.3), (2, 0.4))
    trials = [_trial("u1", cell, False, 1, history=history, ids=("abc12_00000",))]
    (going,) = build_record(plan, trials, str(tmp_path), "visual-smoke-x").unfinished[cell]
    assert going.epoch == 2 and going.checkpoint == str(trial_dir / "checkpoint_000001")
    assert going.history == history
    # nothing logged yet: epoch 1 again, from no checkpoint
    trials = [_trial("u1", cell, False, 1, history=(), ids=("abc12_00000",))]
    (going,) = build_record(plan, trials, str(tmp_path), "visual-smoke-x").unfinished[cell]
    assert going.epoch == 0 and going.checkpoint is None


def _run(status: str, tags: dict):
    info = SimpleNamespace(run_id="a" * 32, experiment_id="1", status=status, start_time=1, end_time=2)
    return SimpleNamespace(info=info, data=SimpleNamespace(tags={"cell": "c", **tags}, params={"lr": "1.0"},
                                                           metrics={}))


def test_a_trial_asha_stopped_when_the_driver_died_is_done_and_keeps_its_rung():
    stopped = read_trial(_run("KILLED", {"outcome": "stopped_early",
                                         "stop_reason": "stopped early by ASHA within cell c"}))
    interrupted = read_trial(_run("KILLED", {"outcome": "interrupted"}))
    older = read_trial(_run("KILLED", {"stop_reason": "stopped early by ASHA within cell c"}))   # before `outcome`
    assert is_done(stopped) and is_done(older) and not is_done(interrupted)
    # in its cell's rungs it stays where it was stopped: the next trial is judged against it
    asha = PerCellASHA("val_acc", "max", max_t=4, grace_period=1, reduction_factor=2)
    asha.replay("c", "stopped", ((1, 0.9),), done=True)
    asha.replay("c", "other", ((1, 0.8),), done=True)
    newcomer = SimpleNamespace(trial_id="t", config={"_cell": "c"})
    asha.on_trial_add(None, newcomer)
    assert asha.on_trial_result(None, newcomer, {"epoch": 1, "val_acc": 0.1}) == "STOP"
