"""The per-cell searcher and the plan's groups: round-robin proposals while trials run, one
Optuna study per cell, a resumed searcher, groups of whole cells. No Ray; the mutation run
drives these."""
from __future__ import annotations

import pytest

from clip_prompt_sweeps.names import cell_key
from orchestrator.sweep.plan import make_plan
from orchestrator.sweep.searchers import CellSearcher, round_robin

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
    from orchestrator.sweep.resume import SweepRecord
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


def test_a_group_of_cells_continues_only_its_own_unfinished_trials():
    """A resumed sweep run as several Tune experiments: each group's searcher is given that group's
    record alone, and continues exactly its own cells' unfinished trials (another group's would be
    run twice, or name a cell this searcher has no study for)."""
    from orchestrator.sweep.resume import Continuation, PastTrial, SweepRecord
    plan = make_plan("visual", "smoke", samples=3)          # 4 cells x 3 trials
    keys = [cell_key(c) for c in plan.cells]
    first, second = plan.groups(6)                           # 2 cells each
    going = {k: Continuation(f"run-{i}", 10.0 + i, None, 0) for i, k in enumerate(keys)}
    done = PastTrial("d", keys[0], 5.0, True, ((1, 0.5),), ("a_1",), 0)
    record = SweepRecord(done={keys[0]: [done]}, unfinished={k: [c] for k, c in going.items()})
    for group in (first, second):
        mine = {cell_key(c) for c in group.cells}
        part = record.only(mine)
        assert set(part.unfinished) == mine and set(part.done) <= mine
        searcher = CellSearcher(group, "random", seed=0, record=part)
        proposed = []
        while (config := searcher.suggest(f"t{len(proposed)}")) != CellSearcher.FINISHED:
            proposed.append(config)
        assert sorted(c["_run_id"] for c in proposed if "_run_id" in c) == sorted(going[k].run_id for k in mine)
        assert {c["_cell"] for c in proposed} == mine
        assert len(proposed) == group.n_trials - sum(len(part.done.get(k, [])) for k in mine)


def test_round_robin_of_a_resumed_sweep_puts_each_cells_unfinished_trials_first():
    from orchestrator.sweep.resume import Continuation, SweepRecord
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


# --- the searcher after an interruption --------------------------------------------------------


def test_a_resumed_searcher_knows_the_done_trials_and_asks_the_unfinished_ones_first():
    from orchestrator.sweep.resume import Continuation, PastTrial, SweepRecord
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


def test_cell_searcher_details_the_study_direction_range_replay_and_failures(tmp_path):
    import json

    import optuna

    from orchestrator.sweep.resume import Continuation, PastTrial, SweepRecord
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
    from orchestrator.sweep.resume import Continuation, SweepRecord
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
    with pytest.raises(NotImplementedError, match=r"^a sweep is resumed from MLflow \(orchestrator/sweep/resume.py\), "
                                                  r"not from Ray's state$"):
        CellSearcher(plan).restore("anything")
