"""The one checked reader of a store (clip_prompt_sweeps/store/records.py), value by value at its
bounds: what it takes, what it cleans, and the one line it refuses with. A shared store's tags are
anyone's text, so every bound here is one a forged value would test. The mutation run drives these."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from clip_prompt_sweeps.errors import UserError
from clip_prompt_sweeps.store import records as r


def _run(run_id="p1", tags=None, params=None, metrics=None, status="RUNNING", start=5, end=None, exp="7"):
    """What the reader reads of an MLflow Run: run.info and run.data, as MLflow's entities have them."""
    return SimpleNamespace(info=SimpleNamespace(run_id=run_id, experiment_id=exp, status=status, start_time=start,
                                                end_time=end),
                           data=SimpleNamespace(tags=tags or {}, params=params or {}, metrics=metrics or {}))


@pytest.mark.parametrize("value, limit, shown", [
    ("a\x1bb\nc", 200, "a?b?c"), ("\x00\x1f\x7f\x9f", 200, "????"), ("\u200e\u200f\u202a\u202e\u2066\u2069", 200, "??????"),
    ("\xa0é\u2070", 200, "\xa0é\u2070"), ("x" * 200, 200, "x" * 200), ("x" * 201, 200, "x" * 200 + "…"),
    ("abcd", 3, "abc…"), (42, 200, "42")])
def test_text_for_a_terminal_has_no_control_or_bidi_character_and_is_cut_at_its_limit(value, limit, shown):
    assert r.printable(value, limit) == shown


def test_text_for_a_terminal_is_cut_at_200_by_default():
    assert r.printable("y" * 300) == "y" * 200 + "…"


def test_a_refusal_names_the_run_the_field_and_the_value_and_the_fix_if_any():
    assert str(r._refuse("run1", "tag x", "v", "do this")) == "run run1: tag x 'v' is not what this project writes; do this"
    assert str(r._refuse("run1", "tag x", "v")) == "run run1: tag x 'v' is not what this project writes"
    long = str(r._refuse("R" * 100, "tag x", "v" * 300))
    assert long.startswith("run " + "R" * 60 + "…: tag x '" + "v" * 119 + "…") and "\n" not in long


@pytest.mark.parametrize("value, ok", [("a", True), ("a" + "b" * 255, True), ("a" + "b" * 256, False),
                                       ("A-b_9", True), ("9", True), ("_ab", False), ("-ab", False), ("", False),
                                       ("a b", False), ("a/b", False), ("ab\n", False), (7, False), (None, False)])
def test_a_run_id_is_mlflows_own_form_or_refused_in_one_line(value, ok):
    if ok:
        assert r.run_id(value) == value
        return
    with pytest.raises(UserError) as err:
        r.run_id(value, "source run")
    assert str(err.value) == (f"source run {r.printable(repr(value), 120)} is not an MLflow run id (letters, digits, "
                              f"'_' and '-', at most 256); the store holds a run that MLflow did not make")


def test_a_run_id_refusal_says_run_id_by_default():
    with pytest.raises(UserError, match=r"^run id '' is not an MLflow run id"):
        r.run_id("")


@pytest.mark.parametrize("value, low, high, out", [
    ("1.5", -1e9, 1e9, 1.5), (2, 0.0, 2.0, 2.0), (0.0, 0.0, 1.0, 0.0), (-0.1, 0.0, 1.0, None), (1.1, 0.0, 1.0, None),
    ("inf", -1e9, 1e9, None), ("-inf", -1e9, 1e9, None), ("nan", -1e9, 1e9, None), (None, -1e9, 1e9, None),
    ("x", -1e9, 1e9, None), (10 ** 400, -1e9, 1e400, None), ([1], -1e9, 1e9, None)])
def test_a_number_from_a_store_is_finite_and_within_its_bounds(value, low, high, out):
    assert r.finite(value, low, high) == out


def test_a_number_from_a_store_is_unbounded_unless_bounds_are_given():
    assert r.finite("-1e300") == -1e300 and r.finite(1e300) == 1e300


@pytest.mark.parametrize("value, low, high, out", [
    (7, 7, 7, 7), (6, 7, 8, None), (9, 7, 8, None), ("12", 0, 99, 12), (" 12 ", 0, 99, 12), ("-3", -5, 5, -3),
    ("1.0", 0, 9, None), ("1e3", 0, 10 ** 4, None), ("", 0, 9, None), ("1" * 20, 0, 10 ** 20, int("1" * 20)),
    ("1" * 21, 0, 10 ** 30, None), (True, 0, 9, None), (False, 0, 9, None), (3.0, 0, 9, None), (None, 0, 9, None),
    ("٣", 0, 9, None)])
def test_a_whole_number_from_a_store_is_an_int_or_digits_within_its_bounds(value, low, high, out):
    assert r.whole(value, low, high) == out


def test_text_from_a_store_is_cut_at_its_limit():
    assert r._text("abc", 2) == "ab" and r._text("z" * 1001) == "z" * 1000 and r._text(5, 9) == "5"


# --- the lease ---------------------------------------------------------------------------------

def _lease(**kw) -> dict:
    return {r.LEASE_TAG: json.dumps({"host": "node-1", "pid": 42, "time": 100.5, "token": "t-1", **kw})}


def test_a_lease_is_read_whole():
    assert r.read_lease(_lease()) == r.LeaseRecord("node-1", 42, 100.5, "t-1", False)
    assert r.read_lease(_lease(released=True)).released is True
    assert r.read_lease(_lease(released="yes")).released is False      # only true is true
    no_token = json.loads(_lease()[r.LEASE_TAG])
    del no_token["token"]
    assert r.read_lease({r.LEASE_TAG: json.dumps(no_token)}).token == ""
    assert r.read_lease(_lease(host="h\x1bx" + "y" * 300)).host == "h?x" + "y" * 252 + "…"


@pytest.mark.parametrize("change", [
    {"pid": 0}, {"pid": r.MAX_PID + 1}, {"pid": "4 2"}, {"pid": True}, {"time": -1}, {"time": "nan"}, {"time": None},
    {"host": ""}, {"host": 5}, {"host": None}, {"token": "a b"}, {"token": "x" * 65}, {"token": 5}])
def test_a_lease_with_any_field_out_of_its_form_holds_nothing(change):
    assert r.read_lease(_lease(**change)) is None


def test_a_lease_at_its_bounds_is_read():
    assert r.read_lease(_lease(pid=r.MAX_PID)).pid == r.MAX_PID and r.read_lease(_lease(pid=1)).pid == 1
    assert r.read_lease(_lease(time=0)).time == 0.0 and r.read_lease(_lease(token="x" * 64)).token == "x" * 64


def test_a_lease_that_is_not_a_leases_json_holds_nothing():
    assert r.read_lease({}) is None and r.read_lease({r.LEASE_TAG: 5}) is None
    assert r.read_lease({r.LEASE_TAG: "{not json"}) is None and r.read_lease({r.LEASE_TAG: "[1]"}) is None
    fits = _lease(host="h" * (2000 - len(_lease(host="")[r.LEASE_TAG])))
    assert len(fits[r.LEASE_TAG]) == 2000 and r.read_lease(fits) is not None
    over = _lease(host="h" * (2001 - len(_lease(host="")[r.LEASE_TAG])))
    assert len(over[r.LEASE_TAG]) == 2001 and r.read_lease(over) is None


# --- what a sweep was started with ----------------------------------------------------------

FIX = "start a new sweep without --resume"


def _args(**kw) -> str:
    return json.dumps({"sets": ["a=1"], "grids": ["b=1,2"], "samples": 3, "epochs": 4, "search": "random",
                       "seed": 9, "replicates": 2, "sweep_file_sha256": "ab" * 32, **kw})


def test_the_recorded_sweep_args_are_read_whole_and_default_where_absent():
    assert r.read_sweep_args("p1", _args()) == r.SweepArgs(("a=1",), ("b=1,2",), 3, 4, "random", 9, 2, "ab" * 32)
    assert r.read_sweep_args("p1", "{}") == r.SweepArgs()
    assert r.read_sweep_args("p1", None) is None
    at_bounds = _args(samples=r.MAX_SAMPLES, epochs=r.MAX_EPOCHS, seed=r.MAX_SEED, replicates=r.MAX_REPLICATES,
                      sets=["s"] * r.MAX_LIST, grids=["g" * 5000], sweep_file_sha256=None)
    read = r.read_sweep_args("p1", at_bounds)
    assert (read.samples, read.epochs, read.seed, read.replicates, len(read.sets), read.grids, read.sweep_file_sha256) == (
        r.MAX_SAMPLES, r.MAX_EPOCHS, r.MAX_SEED, r.MAX_REPLICATES, r.MAX_LIST, ("g" * 5000,), None)
    assert r.read_sweep_args("p1", _args(samples=1, epochs=1, seed=0, replicates=0, search="tpe")) == r.SweepArgs(
        ("a=1",), ("b=1,2",), 1, 1, "tpe", 0, 0, "ab" * 32)
    assert r.read_sweep_args("p1", _args(samples=None, epochs=None)).samples is None


@pytest.mark.parametrize("field, value", [
    ("samples", 0), ("samples", r.MAX_SAMPLES + 1), ("samples", "3"), ("samples", 2.5), ("samples", True),
    ("epochs", 0), ("epochs", r.MAX_EPOCHS + 1), ("seed", -1), ("seed", r.MAX_SEED + 1), ("seed", "9"),
    ("seed", None), ("replicates", None), ("replicates", -1), ("replicates", r.MAX_REPLICATES + 1), ("search", "grid"), ("search", None),
    ("sweep_file_sha256", "AB" * 32), ("sweep_file_sha256", "ab" * 31), ("sweep_file_sha256", 5),
    ("sets", "a=1"), ("sets", [1]), ("sets", ["s" * 5001]), ("sets", ["a"] * (r.MAX_LIST + 1)), ("grids", {"a": 1})])
def test_a_recorded_sweep_arg_out_of_its_form_is_refused_in_one_line_naming_it(field, value):
    with pytest.raises(UserError) as err:
        r.read_sweep_args("p1", _args(**{field: value}))
    assert str(err.value) == (f"run p1: tag sweep_args field {field!r} {r.printable(repr(value), 120)} is not what "
                              f"this project writes; {FIX}")


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", "5", json.dumps({"sets": []}).ljust(200_001), 5])
def test_recorded_sweep_args_that_are_not_a_json_object_are_refused(raw):
    with pytest.raises(UserError) as err:
        r.read_sweep_args("p1", raw)
    # one past the size read is refused; the line shows the value (its start, where it is long)
    assert str(err.value).startswith(f"run p1: tag sweep_args {repr(raw)[:12]}") and str(err.value).endswith(FIX)


def test_recorded_sweep_args_up_to_200_kb_are_read():
    raw = json.dumps({"sets": []})
    assert r.read_sweep_args("p1", raw + " " * (200_000 - len(raw))) == r.SweepArgs()


def test_the_recorded_source_runs_are_cell_to_run_id_or_refused():
    assert r.read_sources("p1", None) is None
    assert r.read_sources("p1", json.dumps({"c=1": "abc", "c=2": "d-e"})) == {"c=1": "abc", "c=2": "d-e"}
    fits = json.dumps({"c": "a"})
    for raw in ("{no", "[1]", json.dumps({"c": 5}), fits + " " * (200_001 - len(fits))):    # one past the size read
        with pytest.raises(UserError) as err:
            r.read_sources("p1", raw)
        # the line shows the value it refuses (its start, where it is long)
        assert str(err.value).startswith(f"run p1: tag source_runs {repr(raw)[:12]}") and str(err.value).endswith(FIX)
    with pytest.raises(UserError) as err:
        r.read_sources("p1", json.dumps({"c": "../x"}))
    assert str(err.value).startswith("run p1: tag source_runs: source run '../x' is not an MLflow run id")
    assert r.read_sources("p1", fits + " " * (200_000 - len(fits))) == {"c": "a"}


# --- runs ------------------------------------------------------------------------------------

def test_a_parent_run_is_read_into_its_record_with_every_value_checked():
    tags = {"sweep": "deep" + "x" * 300, "profile": "full", "search": "tpe", "git_commit": "g" * 80, "data_kind": "real",
            r.SWEEP_FILE_TAG: "/s/my\x1b.toml", r.ARGS_TAG: "{raw", r.SOURCES_TAG: "{raw2", "mlflow.user": "u",
            "other": "o", r.LEASE_TAG: _lease()[r.LEASE_TAG]}
    params = {"cells": "12", "samples_per_cell": "4", "replicates": "3"}
    p = r.read_parent(_run("p1", tags, params, status="KILLED", start=11, end=22))
    assert p == r.ParentRecord(
        "p1", "7", "deep" + "x" * 196, "full", "KILLED", 11, 22, 12, 4, 3, "tpe", "g" * 64, "real",
        r.LeaseRecord("node-1", 42, 100.5, "t-1"), "/s/my?.toml",
        {"sweep": "deep" + "x" * 300, "profile": "full", "data_kind": "real", "git_commit": "g" * 80}, "{raw", "{raw2")


def test_a_parent_runs_counts_out_of_their_bounds_are_unknown_and_its_defaults_hold():
    p = r.read_parent(_run("p1", {}, {"cells": "-1", "samples_per_cell": "0", "replicates": "x"}, start=None))
    assert (p.sweep, p.profile, p.cells, p.samples_per_cell, p.replicates, p.start_time, p.end_time) == (
        "", None, None, None, 0, 0, 0)
    assert (p.search, p.git_commit, p.data_kind, p.lease, p.sweep_file, p.tags_for_children, p.args_tag,
            p.sources_tag) == (None, "", None, None, None, {}, None, None)
    top = r.read_parent(_run("p1", {}, {"cells": str(10 ** 9), "samples_per_cell": str(r.MAX_SAMPLES),
                                        "replicates": str(r.MAX_REPLICATES)}))
    assert (top.cells, top.samples_per_cell, top.replicates) == (10 ** 9, r.MAX_SAMPLES, r.MAX_REPLICATES)
    over = r.read_parent(_run("p1", {}, {"cells": str(10 ** 9 + 1), "samples_per_cell": str(r.MAX_SAMPLES + 1),
                                         "replicates": str(r.MAX_REPLICATES + 1)}))
    assert (over.cells, over.samples_per_cell, over.replicates) == (None, None, 0)
    least = r.read_parent(_run("p1", {}, {"cells": "0", "samples_per_cell": "1"}))
    assert (least.cells, least.samples_per_cell) == (0, 1)
    assert r.read_parent(_run("p1", {r.SWEEP_FILE_TAG: "/s/a.yaml"})).sweep_file is None     # only a TOML file
    assert r.read_parent(_run("p1", {r.SWEEP_FILE_TAG: "/" + "d" * 5000 + ".toml"})).sweep_file == "/" + "d" * 4095 + "…"
    long = r.read_parent(_run("p1", {"git_commit": "c" * 6000}))
    assert long.tags_for_children == {"git_commit": "c" * 5000}
    with pytest.raises(UserError, match=r"^parent run id '\.\./x' is not an MLflow run id"):
        r.read_parent(_run("../x"))


def test_a_child_run_is_read_into_its_record_with_every_value_checked():
    tags = {r.CELL_TAG: "c=1", r.OUTCOME_TAG: "finished", "stop_reason": "s" * 1200, r.REPLICATE_TAG: "2",
            "ray_trial_ids": "a_1 b/2 c_3", "ray_trial_id": "z_9", r.NODES_TAG: "10.0.0.1 10.0.0.2",
            r.SUPERSEDED_TAG: "x", "mlflow.parentRunId": "p1", "mine": "m"}
    t = r.read_trial(_run("c1", tags, {"lr": "0.5", "dataset": "cifar10"}, {"val_acc": 0.25}, "FINISHED", start=9))
    assert t == r.TrialRecord("c1", "c=1", 0.5, "FINISHED", "finished", "s" * 1000, 2, ("a_1", "c_3"),
                              ("10.0.0.1", "10.0.0.2"), True, 9, {"lr": "0.5", "dataset": "cifar10"},
                              {"val_acc": 0.25}, {k: v for k, v in tags.items() if k != "mlflow.parentRunId"})
    assert t.is_replicate


def test_a_child_runs_values_out_of_their_form_are_unknown():
    bare = r.read_trial(_run("c1", {"ray_trial_id": "z_9"}, {"lr": "0"}, start=None))
    assert (bare.cell, bare.lr, bare.outcome, bare.stop_reason, bare.replicate, bare.trial_ids, bare.nodes,
            bare.superseded, bare.start_time, bare.is_replicate) == ("", None, None, "", None, ("z_9",), (), False, 0,
                                                                      False)
    for lr in ("-1", "nan", "inf", "x"):
        assert r.read_trial(_run("c1", params={"lr": lr})).lr is None
    for replicate, read in (("0", None), ("1", 1), (str(r.MAX_REPLICATES), r.MAX_REPLICATES),
                            (str(r.MAX_REPLICATES + 1), None), ("x", None)):
        assert r.read_trial(_run("c1", {r.REPLICATE_TAG: replicate})).replicate == read
    assert r.read_trial(_run("c1", {"ray_trial_ids": "a" * 65 + " " + "b" * 64})).trial_ids == ("b" * 64,)
    # read up to 20,000 chars: an id that ends at the 20,000th is read whole, one past it is cut there
    assert r.read_trial(_run("c1", {"ray_trial_ids": "x" * 19_996 + " y_1"})).trial_ids == ("y_1",)
    assert r.read_trial(_run("c1", {"ray_trial_ids": "x" * 19_997 + " y_1"})).trial_ids == ("y_",)
    # a fused trial's member index: 0 is its first member; a run of no fused trial has none
    for member, read in (("0", 0), ("3", 3), (str(r.MAX_MEMBERS), r.MAX_MEMBERS), (str(r.MAX_MEMBERS + 1), None),
                         ("-1", None), ("x", None)):
        assert r.read_trial(_run("c1", {r.MEMBER_TAG: member})).member == read
    assert r.read_trial(_run("c1")).member is None
    assert r.read_trial(_run("c1", {r.CELL_TAG: "k" * 6000})).cell == "k" * 5000
    with pytest.raises(UserError, match=r"^child run id 'a b' is not an MLflow run id"):
        r.read_trial(_run("a b"))


def test_a_trials_metric_is_a_number_or_unknown_and_diverged_is_its_flag():
    t = r.read_trial(_run("c1", metrics={"a": 0.5, "n": float("nan"), "diverged": 1.0}))
    assert (t.metric("a"), t.metric("n"), t.metric("missing"), t.diverged) == (0.5, None, None, True)
    assert not r.read_trial(_run("c1", metrics={"diverged": 0.0})).diverged
    assert not r.read_trial(_run("c1")).diverged


def test_the_nodes_a_trial_ran_on_are_addresses_or_host_names_once_each_oldest_first():
    assert r.read_nodes({r.NODES_TAG: "b a b c"}) == ("b", "a", "c")
    assert r.read_nodes({"node": "10.0.0.9"}) == ("10.0.0.9",)                 # logged before `nodes`
    assert r.read_nodes({r.NODES_TAG: "x", "node": "y"}) == ("x",)
    assert r.read_nodes({r.NODES_TAG: "", "node": "y"}) == ("y",)
    assert r.read_nodes({r.NODES_TAG: "-a a/b h:1 _x g_1.2-3"}) == ("h:1", "g_1.2-3")
    assert r.read_nodes({r.NODES_TAG: "n" * 255 + " " + "m" * 256}) == ("n" * 255,)
    assert r.read_nodes({}) == ()
    many = " ".join(f"n{i}" for i in range(100))
    assert r.read_nodes({r.NODES_TAG: many}) == tuple(f"n{i}" for i in range(r.MAX_NODES))
    assert r.read_nodes({r.NODES_TAG: "a" * 19_999 + " b"}) == ()            # read up to 20,000 characters
    assert r.read_nodes({r.NODES_TAG: "a" * 19_997 + " b"}) == ("b",)


def test_a_sweep_was_served_by_every_node_any_trial_ran_on():
    runs = [r.read_trial(_run("a", {r.NODES_TAG: "n1 n2"})), r.read_trial(_run("b", {r.NODES_TAG: "n2 n3"})),
            r.read_trial(_run("c"))]
    assert r.served_by(runs) == 3 and r.served_by([]) == 0
