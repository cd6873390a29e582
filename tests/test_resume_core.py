"""Resume planning set up directly, not left to the moment a kill lands: records and checkpoints
built by hand, each expectation worked out by hand (issue #28). No Ray, no store."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from clip_prompt_sweeps.names import cell_key
from clip_prompt_sweeps.store.records import read_trial
from orchestrator.sweep.plan import make_plan
from orchestrator.sweep.resume import Continuation, PastTrial, build_record, is_done
from orchestrator.sweep.schedulers import PerCellASHA
from trainables.training.checkpoints import save_loop


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


def test_a_trial_of_a_sweep_run_in_groups_continues_from_its_checkpoint_in_its_groups_folder(tmp_path):
    """A sweep too big for one Tune experiment writes BASE-cells-KofN (BASE-resume-TIME-cells-KofN
    once resumed): a trial killed there goes on from its own newest checkpoint, not from epoch 1;
    a folder of another sweep whose name merely starts the same is never searched."""
    plan = _plan()
    (cell,) = [cell_key(c) for c in plan.cells]
    history = ((1, 0.3), (2, 0.4), (3, 0.5), (4, 0.6))
    for folder, epochs in (("visual-smoke-x-cells-2of2", (1, 2)), ("visual-smoke-x-resume-1-cells-1of2", (3,)),
                           ("visual-smoke-x-old", (4,))):
        trial_dir = tmp_path / folder / "visual_prompt_abc12_00000_0_lr=1"
        for epoch in epochs:
            _checkpoint(trial_dir / f"checkpoint_{epoch - 1:06d}", epoch)
    trials = [_trial("u1", cell, False, 1, history=history[:2], ids=("abc12_00000",))]
    (going,) = build_record(plan, trials, str(tmp_path), "visual-smoke-x").unfinished[cell]
    assert going.epoch == 2 and going.checkpoint == str(
        tmp_path / "visual-smoke-x-cells-2of2" / "visual_prompt_abc12_00000_0_lr=1" / "checkpoint_000001")
    trials = [_trial("u1", cell, False, 1, history=history, ids=("abc12_00000",))]
    (going,) = build_record(plan, trials, str(tmp_path), "visual-smoke-x").unfinished[cell]
    assert going.epoch == 3 and "-resume-1-cells-1of2" in going.checkpoint     # never the other sweep's 4


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


# --- reading a sweep's record back from a real store ---------------------------------------------------

def _child(client, exp: str, parent: str, cell: str, lr, status: str, history=(), start: int = 0, **tags):
    from mlflow.entities import Metric, Param, RunTag
    run = client.create_run(exp, start_time=start, tags={"mlflow.parentRunId": parent, "cell": cell,
                                                        **{k: str(v) for k, v in tags.items()}})
    rid = run.info.run_id
    client.log_batch(rid, metrics=[Metric("val_acc", v, 0, e) for e, v in history],
                     params=[Param("lr", str(lr))] if lr is not None else [],
                     tags=[RunTag("outcome", tags["outcome"])] if "outcome" in tags else [])
    if status != "RUNNING":
        client.set_terminated(rid, status)
    return rid


def test_read_trials_gives_each_kept_run_its_history_in_epoch_order_oldest_run_first(tmp_path):
    from mlflow.tracking import MlflowClient
    from stores import empty_store as _store

    from orchestrator.sweep.resume import read_trials
    client = MlflowClient(_store(tmp_path))
    exp = client.create_experiment("visual")
    parent = client.create_run(exp).info.run_id
    late = _child(client, exp, parent, "a", 0.5, "FINISHED", [(2, 0.6), (1, 0.4), (3, 0.7)], start=30,
                  outcome="finished", ray_trial_ids="abc12_00001 abc12_00007")
    early = _child(client, exp, parent, "b", 2.0, "RUNNING", [(1, 0.2)], start=10)
    _child(client, exp, parent, "a", 1.0, "KILLED", [(1, 0.1)], start=20, superseded_by="resume")
    other = client.create_run(exp).info.run_id
    _child(client, exp, other, "a", 1.0, "FINISHED", [(1, 0.9)], start=5, outcome="finished")
    got = read_trials(client, exp, parent, "val_acc")
    assert [t.run_id for t in got] == [early, late]         # the superseded one and another sweep's left out
    assert got[1] == PastTrial(late, "a", 0.5, True, ((1, 0.4), (2, 0.6), (3, 0.7)), ("abc12_00001", "abc12_00007"), 30)
    assert got[0].done is False and got[0].history == ((1, 0.2),) and got[0].lr == 2.0
    assert read_trials(client, exp, parent, "test_acc")[1].history == ()


@pytest.mark.parametrize("status,outcome,reason,done", [
    ("FINISHED", "finished", "", True), ("KILLED", "stopped_early", "", True), ("FAILED", "diverged", "", False),
    ("KILLED", "diverged", "", True), ("KILLED", "interrupted", "", False), ("RUNNING", None, "", False),
    ("FINISHED", None, "", True), ("KILLED", None, "non-finite loss at epoch 2", True),
    ("KILLED", None, "killed by the user", False), ("FINISHED", "interrupted", "", False),
    ("SCHEDULED", "finished", "", False)])
def test_a_run_is_done_when_it_ended_as_a_trial_ends(status, outcome, reason, done):
    tags = {"stop_reason": reason} if reason else {}
    if outcome:
        tags["outcome"] = outcome
    assert is_done(read_trial(_run(status, tags))) is done


def test_a_superseded_run_is_never_done():
    assert not is_done(read_trial(_run("FINISHED", {"outcome": "finished", "superseded_by": "resume"})))


def test_runs_of_a_cell_the_plan_no_longer_has_and_unfinished_runs_beyond_it_are_set_aside(tmp_path):
    plan = _plan(samples=1)
    (cell,) = [cell_key(c) for c in plan.cells]
    record = build_record(plan, [_trial("u1", cell, False, 1), _trial("u2", cell, False, 2)], str(tmp_path), "x")
    assert [c.run_id for c in record.unfinished[cell]] == ["u1"] and record.done[cell] == []
    assert [t.run_id for t in record.superseded] == ["u2"] and record.n_done == 0
    # its checkpoint: none found under this storage path; from epoch 1, with no replayed history
    assert record.unfinished[cell][0] == Continuation("u1", 2.0, None, 0, ())


# --- replicates: the chosen learning rates, the replicate plan, the seeds -------------------------------

def test_each_cell_replicates_its_best_tuning_trial_on_validation(tmp_path):
    from mlflow.tracking import MlflowClient
    from stores import empty_store as _store

    from orchestrator.sweep.replicates import chosen_lrs
    client = MlflowClient(_store(tmp_path))
    exp = client.create_experiment("visual")
    parent = client.create_run(exp).info.run_id

    def trial(cell, lr, score, diverged=None, **tags):
        rid = _child(client, exp, parent, cell, lr, "FINISHED", outcome="finished", **tags)
        if score is not None:
            client.log_metric(rid, "best_val_acc", score)
        if diverged is not None:
            client.log_metric(rid, "diverged", diverged)
    trial("a", 0.1, 0.5)
    trial("a", 0.2, 0.7)
    trial("a", 0.3, 0.7)                          # a tie: the first found keeps it
    trial("a", 9.0, 0.99, diverged=1)            # diverged: never chosen
    trial("a", 8.0, 0.99, superseded_by="r")     # superseded: never chosen
    trial("a,replicate=1", 7.0, 0.99)            # a replicate is not a tuning trial
    trial("b", 0.4, None)                        # no score: nothing to choose
    trial("c", None, 0.9)                        # no learning rate
    trial("d", 0.05, 0.1, diverged=0)
    trial("d", 0.06, 0.0)
    got = chosen_lrs(client, exp, parent, "best_val_acc")
    assert got.keys() == {"a", "d"} and got["d"] == 0.05
    assert got["a"] in (0.2, 0.3)


def test_a_replicate_plan_is_one_trial_per_cell_and_replicate_at_the_chosen_rate_never_stopped_early():
    from dataclasses import replace

    from clip_prompt_sweeps.errors import UserError
    from orchestrator.sweep.replicates import check_replicates, replicate_plan
    plan = make_plan("visual", "smoke", ["dataset=cifar10", "prompt=padding"], samples=3, epochs=4,
                     grids=["prompt_size=2,4,6"])
    keys = [cell_key(c) for c in plan.cells]
    rep = replicate_plan(plan, {keys[0]: 0.5, keys[2]: 2.0}, 2)        # the middle cell: every trial failed
    assert [cell_key(c) for c in rep.cells] == [f"{keys[0]},replicate=1", f"{keys[0]},replicate=2",
                                                f"{keys[2]},replicate=1", f"{keys[2]},replicate=2"]
    assert [c["prompt_size"] for c in rep.cells] == [2, 2, 6, 6]
    assert [rep.filled[cell_key(c)]["lr"] for c in rep.cells] == [0.5, 0.5, 2.0, 2.0]
    assert rep.profile.samples == 1 and rep.profile.lr is None and rep.profile.grace_period == 4
    assert rep.typed == {} and rep.n_trials == 4
    # what the driver filled in for a cell (a source run) goes with each of its replicates
    sourced = replicate_plan(replace(plan, filled={keys[0]: {"source_run": "r" * 32}}), {keys[0]: 0.5}, 2)
    assert [sourced.filled[cell_key(c)] for c in sourced.cells] == [{"source_run": "r" * 32, "lr": 0.5}] * 2
    one = make_plan("visual", "smoke", ["dataset=cifar10", "prompt=padding", "prompt_size=4"], samples=2, epochs=1)
    assert replicate_plan(one, {cell_key(c): 1.0 for c in one.cells}, 1).profile.grace_period == 1
    ragged = make_plan("visual", "smoke", ["dataset=cifar10", "prompt=padding", "prompt_size=4"], samples=2,
                       grids=["epochs=2,6"])
    lrs = {cell_key(c): 1.0 for c in ragged.cells}
    assert replicate_plan(ragged, lrs, 1).profile.grace_period == 6         # the largest of the cells' epochs
    check_replicates(plan, 0)
    check_replicates(plan, 3)
    with pytest.raises(UserError, match="--replicates must be 0 or more, got -1"):
        check_replicates(plan, -1)
    with pytest.raises(UserError, match="--replicates: sweep 'zeroshot' tunes nothing"):
        check_replicates(make_plan("zeroshot", "smoke", []), 2)
    check_replicates(make_plan("zeroshot", "smoke", []), 0)
    with pytest.raises(UserError, match="--replicates: trainable .* has no 'replicate' setting"):
        check_replicates(replace(plan, experiment=replace(plan.experiment, trainable=replace(
            plan.trainable, config_cls=object))), 1)


def test_a_replicate_keeps_its_cells_split_and_draws_new_training_seeds():
    from trainables.data.config import DataConfig
    seeds = [DataConfig(seed=s, replicate=r) for s in (0, 7) for r in (0, 1, 2)]
    assert [c.split_seed for c in seeds] == [0, 0, 0, 7, 7, 7]
    assert [c.train_seed for c in seeds] == [0, 1_000_003, 2_000_006, 7, 1_000_010, 2_000_013]


def test_each_cell_sets_aside_its_own_extra_runs(tmp_path):
    plan = make_plan("visual", "smoke", ["dataset=cifar10", "prompt=padding"], samples=1, grids=["prompt_size=2,4"])
    a, b = [cell_key(c) for c in plan.cells]
    trials = [_trial("a1", a, True, 1), _trial("a2", a, True, 2), _trial("b1", b, True, 3), _trial("b2", b, False, 4)]
    record = build_record(plan, trials, str(tmp_path), "x")
    assert [t.run_id for t in record.done[a]] == ["a1"] and [t.run_id for t in record.done[b]] == ["b1"]
    assert sorted(t.run_id for t in record.superseded) == ["a2", "b2"]


def test_a_continued_trial_replays_only_the_epochs_its_checkpoint_holds(tmp_path):
    # checkpoints of epochs 1 and 2 only (the one of epoch 3 was lost), three epochs logged: it goes
    # on from epoch 2, and epoch 3's result is not replayed into ASHA's rungs (it will come again)
    plan = _plan()
    (cell,) = [cell_key(c) for c in plan.cells]
    trial_dir = tmp_path / "visual-smoke-x" / "visual_prompt_abc12_00000_0_lr=1"
    for epoch in (1, 2):
        _checkpoint(trial_dir / f"checkpoint_{epoch - 1:06d}", epoch)
    history = ((1, 0.3), (2, 0.4), (3, 0.5))
    trials = [_trial("u1", cell, False, 1, history=history, ids=("abc12_00000",))]
    (going,) = build_record(plan, trials, str(tmp_path), "visual-smoke-x").unfinished[cell]
    assert (going.epoch, going.history) == (2, ((1, 0.3), (2, 0.4)))


# --- each cell to its own last epoch; a resumed cell's sampler seed -----------------------------------

def _result(sched, cell: str, trial_id: str, epoch: int, value: float) -> str:
    trial = SimpleNamespace(trial_id=trial_id, config={"_cell": cell})
    if epoch == 1:
        sched.on_trial_add(None, trial)
    return sched.on_trial_result(None, trial, {"epoch": epoch, "val_acc": value})


def test_per_cell_asha_runs_each_cell_to_its_own_last_epoch():
    sched = PerCellASHA("val_acc", "max", max_t={"short": 2, "long": 6}, grace_period=1, reduction_factor=2)
    assert (sched.max_t("short"), sched.max_t("long"), sched.max_t("another")) == (2, 6, 6)
    # the short cell's trial ends at epoch 2: ASHA stops it there, and that is its end, not an early stop
    assert _result(sched, "short", "s1", 1, 0.5) == "CONTINUE"
    assert _result(sched, "short", "s1", 2, 0.6) == "STOP"
    assert sched.stopped == {}
    # the long cell goes on past epoch 2; a worse trial there is stopped early, within its cell
    assert [_result(sched, "long", "l1", e, 0.5 + e / 100) for e in (1, 2, 3)] == ["CONTINUE"] * 3
    assert _result(sched, "long", "l2", 1, 0.1) == "STOP" and sched.stopped == {"l2": "long"}
    assert PerCellASHA("val_acc", "max", max_t=4, grace_period=1, reduction_factor=2).max_t("any") == 4
    assert PerCellASHA("val_acc", "max", max_t={}, grace_period=1, reduction_factor=2).max_t("any") == 1


def test_a_resumed_cell_seeds_its_sampler_apart_from_its_first_session():
    from orchestrator.sweep.searchers import cell_seed
    assert [cell_seed(7, i, 0) for i in range(3)] == [7, 8, 9]          # a fresh sweep: seed + cell index
    later = [cell_seed(7, 2, before) for before in (1, 2, 5)]
    assert later == [cell_seed(7, 2, before) for before in (1, 2, 5)]   # the same on every resume
    assert len({9, *later}) == 4 and cell_seed(8, 2, 1) != later[0] and cell_seed(7, 3, 1) != later[0]
    assert all(0 <= s < 2 ** 32 for s in later)


def test_a_fresh_sweep_seeds_each_cells_sampler_with_the_seed_plus_its_index():
    # reproducible from the command line: --seed S gives cell i the sampler seed S + i
    import optuna
    from optuna.distributions import FloatDistribution

    from orchestrator.sweep.searchers import CellSearcher
    plan = make_plan("visual", "smoke", ["dataset=cifar10", "prompt=padding"], samples=1, grids=["prompt_size=2,4,6"])
    searcher = CellSearcher(plan, "random", seed=7)
    got = {}
    for i in range(3):
        config = searcher.suggest(f"t{i}")
        got[config["_cell"]] = config["lr"]
    lr = plan.profile.lr
    for i, cell in enumerate(plan.cells):
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=7 + i))
        expected = study.ask({"lr": FloatDistribution(lr.low, lr.high, log=True)}).params["lr"]
        assert got[cell_key(cell)] == expected
