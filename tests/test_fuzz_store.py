"""Property tests of everything a shared store, a journal file or a sweep file can say (hypothesis,
bounded examples, derandomized in CI): the checked reader (clip_prompt_sweeps/store/records.py), the lease, the
journal, `status`, `report` and `--resume` planning each give a correct result or one UserError
line, never another exception."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from mlflow.tracking import MlflowClient

from clip_prompt_sweeps.errors import UserError

PROPERTY = settings(max_examples=60, deadline=None, derandomize=not os.environ.get("FUZZ_EXPLORE"),
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
# each example writes a real MLflow store: fewer, and no shrinking (a failure prints its example)
STORE = settings(PROPERTY, max_examples=15, phases=[Phase.explicit, Phase.reuse, Phase.generate])

TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)
NUMBER_TEXT = st.one_of(st.integers(-10**30, 10**30).map(str), st.floats(allow_nan=True).map(repr),
                        st.sampled_from(["Infinity", "-Infinity", "NaN", "1e400", "", " 3", "0x10"]))
JSON_VALUE = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-10**25, 10**25), st.floats(), TEXT),
                          lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                  st.dictionaries(TEXT, inner, max_size=4)), max_leaves=12)
JSON_TEXT = st.one_of(JSON_VALUE.map(lambda v: json.dumps(v)), TEXT)
# what a forged tag or param may hold: any text, numbers in any spelling, JSON of any shape
VALUE = st.one_of(TEXT, NUMBER_TEXT, JSON_TEXT)
KEYS = ["role", "sweep", "profile", "cell", "outcome", "stop_reason", "replicate", "ray_trial_id", "ray_trial_ids",
        "superseded_by", "driver_lease", "sweep_args", "source_runs", "sweep_file", "data_kind", "search",
        "git_commit", "mlflow.parentRunId"]
PARAMS = ["lr", "cells", "samples_per_cell", "replicates", "dataset", "epochs"]


def _one_line(err: UserError) -> None:
    assert "\n" not in str(err) and str(err)


def _run(run_id, tags: dict, params: dict, metrics: dict | None = None, status="FINISHED"):
    info = SimpleNamespace(run_id=run_id, experiment_id="1", status=status, start_time=1, end_time=2)
    return SimpleNamespace(info=info, data=SimpleNamespace(tags=tags, params=params, metrics=metrics or {}))


@PROPERTY
@given(run_id=st.one_of(st.just("0" * 32), TEXT), tags=st.dictionaries(st.sampled_from(KEYS), VALUE),
       params=st.dictionaries(st.sampled_from(PARAMS), VALUE),
       metrics=st.dictionaries(st.sampled_from(["best_val_acc", "test_acc", "diverged"]), st.floats()))
def test_any_run_is_a_checked_record_or_one_line(run_id, tags, params, metrics):
    from clip_prompt_sweeps.store.records import read_parent, read_sources, read_sweep_args, read_trial
    for read in (read_parent, read_trial):
        try:
            record = read(_run(run_id, tags, params, metrics))
        except UserError as err:
            _one_line(err)
            continue
        assert record.run_id == run_id
    try:
        args = read_sweep_args("r", tags.get("sweep_args"))
        assert args is None or (0 <= args.seed and 0 <= args.replicates <= 1000
                                and all(isinstance(s, str) for s in (*args.sets, *args.grids)))
        sources = read_sources("r", tags.get("source_runs"))
        assert sources is None or all(isinstance(v, str) for v in sources.values())
    except UserError as err:
        _one_line(err)


@PROPERTY
@given(lease=st.one_of(VALUE, st.fixed_dictionaries(
    {"host": VALUE, "pid": st.one_of(st.integers(-2**70, 2**70), st.floats(), TEXT),
     "time": st.one_of(st.floats(), st.integers(-2**70, 2**70), TEXT), "token": VALUE}).map(json.dumps)),
    now=st.floats(0, 4e9))
def test_any_lease_is_held_or_not_and_never_raises(lease, now):
    from clip_prompt_sweeps.store.lease import holder
    from clip_prompt_sweeps.store.records import LEASE_TAG, read_lease
    record = read_lease({LEASE_TAG: lease})
    live = holder(record, now)
    assert live is None or (1 <= live["pid"] <= 4_194_304 and live["host"].isprintable() and live["age"] >= 0)


@PROPERTY
@given(lines=st.lists(st.one_of(JSON_TEXT, st.fixed_dictionaries(
    {"op": st.one_of(st.sampled_from(["create_run", "log_batch", "set_terminated", "update_run", "delete_tag",
                                      "log_artifact", "log_dataset", "rm"]), JSON_VALUE),
     "run_id": st.one_of(st.just("0" * 32), st.just("../x"), TEXT)},
    optional={"local_path": st.one_of(st.just("/etc/hostname"), TEXT), "name": TEXT, "artifact_path": TEXT,
              "status": st.one_of(TEXT, JSON_VALUE), "key": JSON_VALUE, "params": JSON_VALUE, "tags": JSON_VALUE, "metrics": JSON_VALUE,
              "experiment_id": TEXT, "run_name": TEXT, "record": JSON_VALUE}).map(json.dumps)), max_size=4))
def test_any_journal_is_replayed_or_refused_in_one_line(lines, tmp_path_factory):
    from clip_prompt_sweeps.store.journal import Journal

    class Refusing:             # a store that answers nothing: what matters is what the journal reads
        def __getattr__(self, name):
            raise AssertionError(f"the journal called {name} for an entry it should have refused")
    folder = tmp_path_factory.mktemp("journal")
    (folder / "pending.jsonl").write_text("".join(line.replace("\n", " ") + "\n" for line in lines))
    journal = Journal(Refusing(), "0" * 32, retries=1, backoff_s=0, folder=folder)
    journal._try = lambda op, run_id, kw: True      # the store's side is tested elsewhere (test_store_faults)
    try:
        left = journal.flush()
    except UserError as err:
        _one_line(err)
        return
    assert left == 0


# --- status, report and resume planning over a real store holding forged values ----------------

@pytest.fixture(scope="module")
def base_store(tmp_path_factory):
    from stores import empty_store as _store
    folder = tmp_path_factory.mktemp("fuzz-store")
    return Path(_store(folder)[len("sqlite:///"):])


@STORE
@given(parent_tags=st.dictionaries(st.sampled_from(KEYS), VALUE, max_size=6),
       parent_params=st.dictionaries(st.sampled_from(PARAMS), NUMBER_TEXT, max_size=3),
       child_tags=st.dictionaries(st.sampled_from(KEYS), VALUE, max_size=6),
       child_params=st.dictionaries(st.sampled_from(PARAMS), VALUE, max_size=4),
       status=st.sampled_from(["RUNNING", "FINISHED", "KILLED", "FAILED"]))
def test_status_report_and_resume_planning_read_any_store_or_say_one_line(
        base_store, parent_tags, parent_params, child_tags, child_params, status):
    from orchestrator.sweep.plan import make_plan
    from orchestrator.sweep.resume import build_record, read_trials
    from orchestrator.commands.status import status_lines
    from orchestrator.sweep.options import SweepOptions
    from orchestrator.sweep.parent import interrupted_parent, recorded_settings
    from reports.build import build_report
    from search_spaces.registry import list_experiments
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(base_store, Path(tmp) / "mlflow.db")
        uri = f"sqlite:///{tmp}/mlflow.db"
        client = MlflowClient(uri)
        exp = client.create_experiment("visual")
        parent = client.create_run(exp, tags={**{k: v[:5000] for k, v in parent_tags.items()
                                                  if k != "mlflow.parentRunId"},
                                              "role": "sweep", "sweep": "visual", "profile": "smoke"}).info.run_id
        for key, value in parent_params.items():
            client.log_param(parent, key, value[:500])
        client.set_terminated(parent, status)
        child = client.create_run(exp, tags={**{k: v[:5000] for k, v in child_tags.items()},
                                             "role": "trial", "mlflow.parentRunId": parent}).info.run_id
        for key, value in child_params.items():
            client.log_param(child, key, value[:500])
        client.log_metric(child, "best_val_acc", 0.5)
        client.log_metric(child, "test_acc", 0.4)
        client.log_metric(child, "val_acc", 0.5, step=1)
        outcomes = []
        for step in (
                lambda: status_lines(client),
                lambda: build_report("visual", list_experiments(), uri, Path(tmp) / "out"),
                lambda: _plan_resume(uri, client, exp, parent)):
            try:
                outcomes.append(step())
            except UserError as err:
                _one_line(err)
        assert all(c.isprintable() for line in (outcomes[0] if outcomes and isinstance(outcomes[0], list) else [])
                   for c in line)


def _plan_resume(uri: str, client: MlflowClient, exp: str, parent: str):
    from orchestrator.sweep.plan import PlanRequest
    from orchestrator.sweep.resume import build_record, read_trials
    from orchestrator.sweep.options import SweepOptions
    from orchestrator.sweep.parent import interrupted_parent, recorded_settings
    typed = PlanRequest("visual", "smoke")
    found = interrupted_parent(typed, uri)
    request, _ = recorded_settings(typed, SweepOptions(), found)
    plan = request.build()
    trials = read_trials(client, exp, parent, plan.experiment.metric)
    record = build_record(plan, trials, None, "visual-smoke")
    assert record.n_done <= plan.n_trials
    return record


@PROPERTY
@given(body=st.dictionaries(st.sampled_from(["name", "experiment", "summary", "metric", "profiles", "other"]),
                            JSON_VALUE, max_size=5),
       profile=st.dictionaries(st.sampled_from(["base", "grid", "lr", "samples", "grace_period", "reduction_factor"]),
                               JSON_VALUE, max_size=4))
def test_any_sweep_file_is_a_sweep_or_one_line(tmp_path_factory, body, profile):
    from search_spaces.sweep_file import load_sweep_file
    data = {"experiment": "visual", **body}
    data.setdefault("profiles", {"smoke": profile})
    path = tmp_path_factory.mktemp("sweepfile") / "fuzzed.toml"
    path.write_text("\n".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in data.items() if v is not None) + "\n")
    try:
        load_sweep_file(str(path))
    except UserError as err:
        _one_line(err)


def _toml(value) -> str:
    """A value as TOML writes it inline (None, which TOML has not, as an empty string)."""
    if value is None:
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if not isinstance(value, int) or -2**63 <= value < 2**63 else f'"{value}"'
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml(v)}" for k, v in value.items()) + "}"
