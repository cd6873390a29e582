"""Fused trials seen from the driver (issue #38): each member of a fused trial is a trial to
ASHA, Optuna, MLflow and the progress line, as it would be as a trial of its own. The hooks are
driven as Tune drives them; the last test runs real sweeps, fused and not, and compares them."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from ray.tune.schedulers import TrialScheduler
from ray.tune.utils import flatten_dict
from stores import empty_store

from clip_prompt_sweeps.names import CELL_KEY, MEMBER_RESULTS, MEMBER_STOPS_KEY, MEMBERS_KEY, member_folder
from orchestrator.sweep.members import member_key
from orchestrator.sweep.plan import make_plan
from orchestrator.sweep.schedulers import PerCellASHA
from orchestrator.sweep.searchers import CellSearcher
from output import command_err

# one cell's learning rates, each with its validation accuracy at epochs 1..4 (one diverges)
CURVES = {0.1: [0.2, 0.3, 0.3, 0.35], 1.0: [0.5, 0.6, 0.7, 0.8], 10.0: [0.4, 0.45, 0.5, 0.5],
          30.0: [0.1, 0.15, 0.2, 0.2], 1e30: [math.nan]}


def _fused(trial_id: str, lrs, cell: str = "c") -> SimpleNamespace:
    return SimpleNamespace(trial_id=trial_id, config={CELL_KEY: cell, "lr": lrs[0],
                                                      MEMBERS_KEY: [{"lr": lr} for lr in lrs]})


def _metrics(lr: float, epoch: int) -> dict:
    value = CURVES[lr][epoch - 1]
    return {"epoch": epoch, "val_acc": value, "diverged": float(math.isnan(value))}


class _Stops:
    def __init__(self):
        self.posted: list[tuple[str, int]] = []

    def stop(self, trial_id: str, k: int) -> None:
        self.posted.append((trial_id, k))


def _asha() -> PerCellASHA:
    return PerCellASHA("val_acc", "max", max_t=4, grace_period=1, reduction_factor=2)


def test_asha_stops_a_fused_trials_members_as_it_stops_the_same_trials_alone():
    lrs = list(CURVES)
    # alone: five trials, reporting epoch by epoch in the order the members come in a result
    alone, ended_alone = _asha(), {}
    trials = [SimpleNamespace(trial_id=f"t{k}", config={CELL_KEY: "c", "lr": lr}) for k, lr in enumerate(lrs)]
    for t in trials:
        alone.on_trial_add(None, t)
    for epoch in range(1, 5):
        for k, t in enumerate(trials):
            if k in ended_alone or epoch > len(CURVES[lrs[k]]):
                continue
            action = alone.on_trial_result(None, t, {**_metrics(lrs[k], epoch), "training_iteration": epoch})
            if action == TrialScheduler.STOP or _metrics(lrs[k], epoch)["diverged"]:
                ended_alone[k] = epoch
                alone.on_trial_complete(None, t, _metrics(lrs[k], epoch))
    # fused: one trial of five members, one result an epoch, flattened as Tune hands it over
    fused, stops = _asha(), _Stops()
    fused.member_stops = stops
    trial, live, ended, actions = _fused("f", lrs), set(range(len(lrs))), {}, []
    fused.on_trial_add(None, trial)
    for epoch in range(1, 5):
        result = {"epoch": epoch, MEMBER_RESULTS: {str(k): _metrics(lrs[k], epoch) for k in sorted(live)}}
        actions.append(fused.on_trial_result(None, trial, flatten_dict(result)))
        for k in list(live):
            if member_key("f", k) in fused.stopped or _metrics(lrs[k], epoch)["diverged"]:
                ended[k] = epoch
                live.discard(k)
        live -= {k for _, k in stops.posted}
        if actions[-1] == TrialScheduler.STOP:
            break
    fused.on_trial_complete(None, trial, {})
    assert ended == {k: e for k, e in ended_alone.items() if e < 4 or _metrics(lrs[k], e)["diverged"]}
    assert {k for k, e in ended.items() if not _metrics(lrs[k], e)["diverged"]} == {k for _, k in stops.posted}
    assert 4 in ended and 1 not in ended        # the diverged one is out, the best runs to the end
    assert {member_key("f", k) for _, k in stops.posted} == set(fused.stopped)     # posted, for the trial to read
    assert actions[:-1] == [TrialScheduler.CONTINUE] * (len(actions) - 1)
    assert fused.live_members == {}                     # nothing of it kept once it has ended
    # the cell's rungs hold the same values either way
    rungs = [(milestone, {key.replace("f/", "t"): v for key, v in recorded.items()})
             for milestone, recorded in fused.cells["c"]._brackets[0]._rungs]
    assert repr(rungs) == repr(alone.cells["c"]._brackets[0]._rungs)      # repr: nan is not nan
    assert stops.posted                                 # the curves make ASHA stop some


def test_a_fused_trial_goes_on_while_a_member_does_and_stops_when_none_is_left():
    scheduler = _asha()
    trial = _fused("f", [1.0, 1e30])
    scheduler.on_trial_add(None, trial)
    both = {MEMBER_RESULTS: {"0": _metrics(1.0, 1), "1": _metrics(1e30, 1)}}
    assert scheduler.on_trial_result(None, trial, flatten_dict(both)) == TrialScheduler.CONTINUE
    assert member_key("f", 1) not in scheduler.stopped          # diverged, not stopped by ASHA
    for epoch in (2, 3, 4):
        action = scheduler.on_trial_result(None, trial, flatten_dict({MEMBER_RESULTS: {"0": _metrics(1.0, epoch)}}))
    assert action == TrialScheduler.STOP and scheduler.stopped == {}   # its last member ran all its epochs


def test_the_searcher_proposes_a_fused_trials_members_as_it_would_each_trial_and_tells_each_its_own():
    plan = make_plan("visual", "smoke", samples=5)
    alone, fused = CellSearcher(plan, "random", seed=3), CellSearcher(plan, "random", seed=3, fuse=2,
                                                                       member_stops="stops-x")
    lrs_alone: dict = {}
    while (config := alone.suggest(f"a{sum(map(len, lrs_alone.values()))}")) != "FINISHED":
        lrs_alone.setdefault(config[CELL_KEY], []).append(config["lr"])
    configs = []
    while (config := fused.suggest(f"f{len(configs)}")) != "FINISHED":
        configs.append(config)
    lrs_fused: dict = {}
    for config in configs:
        members = config.get(MEMBERS_KEY, [{"lr": config["lr"]}])
        assert len(members) <= 2 and config["lr"] == members[0]["lr"]
        assert (config.get(MEMBER_STOPS_KEY) == "stops-x") == (len(members) > 1)
        lrs_fused.setdefault(config[CELL_KEY], []).extend(m["lr"] for m in members)
    assert lrs_fused == lrs_alone                       # the same learning rates, in the same order
    assert len(configs) == len(plan.cells) * 3          # 5 samples a cell: 2 + 2 + 1
    # each member told its own latest value: one stopped after epoch 1 its epoch-1 value
    first = configs[0]
    fused.on_trial_result("f0", flatten_dict({MEMBER_RESULTS: {"0": {"val_acc": 0.25}, "1": {"val_acc": 0.5}}}))
    fused.on_trial_result("f0", flatten_dict({MEMBER_RESULTS: {"0": {"val_acc": 0.75}}}))
    fused.on_trial_complete("f0", {"val_acc": 0.75, MEMBER_RESULTS: {"0": {"val_acc": 0.75}}})
    told = {t.params["lr"]: t.value for t in fused.studies[first[CELL_KEY]].trials if t.value is not None}
    assert told == {first[MEMBERS_KEY][0]["lr"]: 0.75, first[MEMBERS_KEY][1]["lr"]: 0.5}
    # a diverged member (NaN) is a failed trial, as alone
    second = configs[len(plan.cells)] if MEMBERS_KEY in configs[len(plan.cells)] else configs[1]
    trial_id = f"f{configs.index(second)}"
    fused.on_trial_complete(trial_id, flatten_dict({MEMBER_RESULTS: {"0": {"val_acc": math.nan},
                                                                     "1": {"val_acc": 0.5}}}))
    states = [t.state.name for t in fused.studies[second[CELL_KEY]].trials if t.params["lr"] in
              {m["lr"] for m in second[MEMBERS_KEY]}]
    assert sorted(states) == ["COMPLETE", "FAIL"]


def test_each_member_of_a_fused_trial_is_its_own_run_ended_by_what_happened_to_it(tmp_path):
    from mlflow.tracking import MlflowClient
    from ray.tune import Checkpoint
    from safetensors.torch import save_file

    from clip_prompt_sweeps.store.runs import experiment_id
    from orchestrator.sweep.tracking import MLflowTrials
    uri = empty_store(tmp_path)
    client = MlflowClient(uri)
    exp = experiment_id(client, "deep", uri)
    parent = client.create_run(exp, tags={"role": "sweep"}).info.run_id
    stopped: dict = {}
    cb = MLflowTrials(uri, exp, parent, {"sweep": "deep", "role": "trial"}, stopped)
    trial = SimpleNamespace(trial_id="f", error_file=None, get_error=lambda: None,
                            config={CELL_KEY: "layer=0", "lr": 0.5, "n_prompts": 2, MEMBER_STOPS_KEY: "s",
                                    MEMBERS_KEY: [{"lr": 0.5}, {"lr": 4.0}, {"lr": 1e30}]})
    cut = SimpleNamespace(trial_id="g", error_file=None, get_error=lambda: None,
                          config={CELL_KEY: "layer=1", "lr": 2.0, MEMBERS_KEY: [{"lr": 2.0}, {"lr": 3.0}]})

    def checkpoint(epoch: int, members) -> Checkpoint:
        folder = tmp_path / f"ckpt-{epoch}"
        for k in members:
            (folder / member_folder(k)).mkdir(parents=True)
            save_file({"prompts": torch.full((2,), float(10 * k + epoch))}, str(folder / member_folder(k) / "best.safetensors"))
        return Checkpoint.from_directory(str(folder))

    def result(epoch: int, members: dict) -> dict:
        parts = {str(k): {"epoch": epoch, "val_acc": v, "diverged": float(math.isnan(v)),
                          **({"stop_reason": "non-finite training loss"} if math.isnan(v) else {})}
                 for k, v in members.items()}
        return {"epoch": epoch, "val_acc": 0.9, "node_ip": "10.0.0.1", "system/peak_rss_mb": 100.0,
                "iterations_since_restore": epoch, MEMBER_RESULTS: parts}
    cb.on_trial_start(0, [], trial)
    cb.on_trial_start(0, [], cut)
    cb.on_trial_result(0, [], trial, result(1, {0: 0.1, 1: 0.4, 2: math.nan}))
    cb.on_checkpoint(0, [], trial, checkpoint(1, [0, 1]))
    stopped[member_key("f", 0)] = "layer=0"             # PerCellASHA stops member 0 at epoch 2
    cb.on_trial_result(0, [], trial, result(2, {0: 0.2, 1: 0.5}))
    cb.on_checkpoint(0, [], trial, checkpoint(2, [0, 1]))
    cb.on_trial_result(0, [], trial, result(3, {1: 0.6}))
    cb.on_checkpoint(0, [], trial, checkpoint(3, [1]))
    cb.on_trial_complete(0, [], trial)
    cb.on_trial_result(0, [], cut, result(1, {0: 0.3, 1: 0.2}))
    cb.on_experiment_end([])

    runs = {r.data.tags["fused_member"] + r.data.tags["fused_trial"]: r for r in
            client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parent}'")}
    assert len(runs) == 5 and {r.data.tags["ray_trial_id"] for r in runs.values()} == {"f", "g"}
    ended = {key: (r.info.status, r.data.tags.get("outcome"), r.data.params["lr"]) for key, r in runs.items()}
    assert ended == {"0f": ("KILLED", "stopped_early", "0.5"), "1f": ("FINISHED", "finished", "4.0"),
                     "2f": ("KILLED", "diverged", "1e+30"), "0g": ("KILLED", "interrupted", "2.0"),
                     "1g": ("KILLED", "interrupted", "3.0")}
    assert runs["0f"].data.tags["stop_reason"] == "stopped early by ASHA within cell layer=0"
    assert runs["2f"].data.tags["stop_reason"] == "non-finite training loss"
    # each run's history is its own member's, the node and system figures the trial's
    history = {key: [(m.step, m.value) for m in client.get_metric_history(r.info.run_id, "val_acc")]
               for key, r in runs.items()}
    assert history["0f"] == [(1, 0.1), (2, 0.2)] and history["1f"] == [(1, 0.4), (2, 0.5), (3, 0.6)]
    assert runs["1f"].data.tags["node"] == "10.0.0.1" and runs["1f"].data.metrics["system/peak_rss_mb"] == 100.0
    assert "members" not in runs["1f"].data.params and MEMBER_STOPS_KEY not in runs["1f"].data.params
    # each ended with its own learned parameters, from the checkpoint of the epoch it ended at
    for key, value in (("0f", 2.0), ("1f", 13.0)):
        local = client.download_artifacts(runs[key].info.run_id, "learned/best.safetensors", str(tmp_path / key))
        from safetensors.torch import load_file
        assert load_file(local)["prompts"][0].item() == value
    assert not client.list_artifacts(runs["2f"].info.run_id)      # diverged: nothing worth keeping


def test_the_progress_line_counts_a_fused_trials_members():
    import io

    from orchestrator.sweep.progress import SweepProgress
    out, stopped = io.StringIO(), {}
    progress = SweepProgress(4, 4, ["c"], "val_acc", stopped, out=out, live=False, every_s=0)
    trial = _fused("f", [0.1, 1.0, 10.0, 30.0])
    progress.on_trial_start(0, [], trial)
    assert "0/4 done, 4 running, 0 pending" in progress.line()
    progress.on_trial_result(0, [], trial, {MEMBER_RESULTS: {"1": {"val_acc": 0.8, "test_acc": 0.7},
                                                             "2": {"val_acc": 0.5}}})
    stopped[member_key("f", 0)] = "c"
    progress.on_trial_complete(0, [], trial)
    assert "4/4 done, 0 running, 0 pending, 1 stopped by ASHA" in progress.line()
    assert "cell c: complete, best val_acc 80.00 % (test 70.00 %) at lr 1" in out.getvalue()


@pytest.mark.parametrize("sweep", ["visual"])
def test_a_fused_sweep_logs_and_reports_what_separate_trials_do(sweep, ray_session, data_root, tmp_path, capsys):
    """The same sweep with --fuse 1 and --fuse 4 (random search: the same learning rates either
    way; one epoch: no ASHA decision that depends on timing): the same runs, each member's
    accuracies what its trial alone reached, the same report, and `status` counts the members."""
    from mlflow.tracking import MlflowClient

    from orchestrator.commands.cli import main
    seen = {}
    for fuse in (1, 4):
        uri = f"sqlite:///{tmp_path}/fuse{fuse}.db"
        assert main(["sweep", sweep, "--fuse", str(fuse), "--search", "random", "--samples", "3", "--epochs", "1",
                     "--tracking-uri", uri, "--storage-path", str(tmp_path / f"ray{fuse}"),
                     "--data-dir", str(data_root), "--gpus-per-trial", "0"]) == 0
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name(sweep)
        runs = client.search_runs([exp.experiment_id], "tags.role = 'trial'", max_results=1000)
        seen[fuse] = {(r.data.tags["cell"], r.data.params["lr"]): (r.info.status, r.data.metrics) for r in runs}
        if fuse == 4:
            assert len({r.data.tags["fused_trial"] for r in runs}) == len({r.data.tags["cell"] for r in runs})
        assert main(["report", sweep, "--tracking-uri", uri, "--out", str(tmp_path / f"out{fuse}")]) == 0
        capsys.readouterr()
        assert main(["status", sweep, "--tracking-uri", uri]) == 0
        assert ": finished, run " in (said := capsys.readouterr().out) and ": 12 of 12 trials on 1 node" in said, said
    assert seen[4].keys() == seen[1].keys() and len(seen[1]) == 4 * 3
    for key, (status, metrics) in seen[1].items():
        fused_status, fused = seen[4][key]
        assert fused_status == status
        for name in ("val_acc", "test_acc", "train_acc", "best_val_acc"):
            assert fused[name] == pytest.approx(metrics[name], abs=1e-6), (key, name)
        assert fused["train_loss"] == pytest.approx(metrics["train_loss"], rel=1e-4), key
    reports = [(tmp_path / f"out{fuse}" / sweep / "report.md").read_text().splitlines() for fuse in (1, 4)]
    table = [[line for line in r if line.startswith("| cifar")] for r in reports]
    assert table[0] and table[0] == table[1]


def test_a_member_continued_after_a_kill_finds_its_own_folder_of_the_fused_trials_checkpoints(tmp_path):
    from mlflow.tracking import MlflowClient

    from clip_prompt_sweeps.store.records import read_trial
    from orchestrator.sweep.resume import CheckpointStore
    from trainables.training.checkpoints import save_loop
    from trainables.training.loop import new_state
    trained = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(trained.parameters(), lr=0.1)
    trial_dir = tmp_path / "deep-smoke-abcd1234" / "deep_prompt_f00d0001_1_cell=x_2026-12-07_07-51-27"
    for epoch, members in ((1, (0, 1, 2)), (2, (0, 2))):        # member 1 left after epoch 1
        for k in members:
            folder = trial_dir / f"checkpoint_{epoch - 1:06d}" / member_folder(k)
            folder.mkdir(parents=True)
            save_loop(folder, trained, {k: v.clone() for k, v in trained.state_dict().items()}, optimizer,
                      {**new_state(), "epoch": epoch})
    store = CheckpointStore(str(tmp_path), "deep-smoke-abcd1234")
    newest = store.newest(("f00d0001",), at_most=5, member=2)
    assert newest == (str(trial_dir / "checkpoint_000001" / member_folder(2)), 2)
    assert store.newest(("f00d0001",), at_most=1, member=2)[1] == 1       # no newer than MLflow logged
    assert store.newest(("f00d0001",), at_most=5, member=1)[1] == 1
    assert store.newest(("f00d0001",), at_most=5, member=7) is None
    assert store.newest(("f00d0001",), at_most=5) is None      # the fused folder is no trial's checkpoint
    # the member's index comes from its run through the checked reader: a whole number, or nothing
    uri = empty_store(tmp_path)
    client = MlflowClient(uri)
    for value, read in (("2", 2), ("../x", None), ("-1", None), ("99999", None)):
        run = client.create_run("0", tags={"fused_member": value, "cell": "x"})
        assert read_trial(client.get_run(run.info.run_id)).member == read


SWEEP_FILE = """
name = "fused-grid"
experiment = "deep"
[profiles.smoke]
base = { model = "tiny-clip", pretrained = "none", data = "synthetic", epochs = 2 }
grid = { layer = ["first", "last"] }
lr = { low = 4.0, high = 400.0 }
samples = 4
fuse = FUSE
"""


def test_a_sweep_files_profile_sets_fuse_and_the_command_line_overrides_it(tmp_path):
    from clip_prompt_sweeps.errors import UserError
    from orchestrator.sweep.options import SweepOptions
    from orchestrator.sweep.tuner import fuse_of
    path = tmp_path / "fused.toml"
    path.write_text(SWEEP_FILE.replace("FUSE", "3"))
    plan = make_plan(str(path), "smoke")
    assert plan.profile.fuse == 3 and fuse_of(plan, SweepOptions()) == 3
    assert fuse_of(plan, SweepOptions(fuse=1)) == 1 and fuse_of(plan, SweepOptions(fuse=4)) == 4
    assert fuse_of(make_plan("zeroshot", "smoke"), SweepOptions(fuse=4)) == 1      # nothing tuned: one trial a cell
    assert fuse_of(make_plan("visual", "smoke"), SweepOptions()) == 1              # the default: today's
    for bad in ("0", '"4"', "true"):
        path.write_text(SWEEP_FILE.replace("FUSE", bad))
        with pytest.raises(UserError, match=r"fused.toml line 9, key 'profiles.smoke.fuse': must be a whole number"):
            make_plan(str(path), "smoke")


def test_the_dry_run_counts_the_same_trials_fused_and_says_how_many_ray_trials_run_them(capsys):
    from orchestrator.commands.cli import main
    assert main(["sweep", "deep", "--profile", "full", "--dry-run"]) == 0
    alone = capsys.readouterr().out.splitlines()
    assert main(["sweep", "deep", "--profile", "full", "--dry-run", "--fuse", "4"]) == 0
    fused = capsys.readouterr().out.splitlines()
    assert fused[0] == alone[0] and "= 144 trials" in alone[0]             # members counted as trials
    assert fused[1].startswith("fused (--fuse 4): these 144 trials run as 36 Ray trials of up to 4 learning rates")
    assert fused[2:] == alone[1:]                                          # the rest as before
    assert main(["sweep", "deep", "--profile", "full", "--dry-run", "--fuse", "3"]) == 0
    assert "run as 72 Ray trials" in capsys.readouterr().out               # 4 a cell: 3 + 1


def test_a_fused_sweep_refuses_what_it_cannot_do_before_anything_is_written(tmp_path, capsys):
    from orchestrator.commands.cli import main
    db = tmp_path / "mlflow.db"
    for argv, said in ((["--fuse", "2", "--set", "compile=true"], "compile=true does not apply to fused trials"),
                       (["--fuse", "0"], "--fuse must be at least 1")):
        assert main(["sweep", "visual", *argv, "--tracking-uri", f"sqlite:///{db}"]) == 2
        err = command_err(capsys)
        assert said in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not db.exists()


def test_a_fused_trial_takes_up_to_k_new_samples_of_its_cell_and_a_continued_trial_stays_alone():
    from clip_prompt_sweeps.names import RUN_KEY, cell_key
    from orchestrator.sweep.resume import Continuation, SweepRecord
    plan = make_plan("visual", "smoke", samples=7)
    first = cell_key(plan.cells[0])
    record = SweepRecord({}, {first: [Continuation("run-a", 20.0, None, 0)]})
    searcher = CellSearcher(plan, "random", seed=1, record=record, fuse=3)
    configs = []
    while (config := searcher.suggest(f"t{len(configs)}")) != "FINISHED":
        configs.append(config)
    # the continued trial: alone, in its own run, with its own learning rate
    assert configs[0][CELL_KEY] == first and configs[0][RUN_KEY] == "run-a" and MEMBERS_KEY not in configs[0]
    sizes: dict = {}
    for config in configs[1:]:
        sizes.setdefault(config[CELL_KEY], []).append(len(config.get(MEMBERS_KEY, [None])))
    assert sizes[first] == [3, 3]                                       # its 6 new samples, 3 at a time
    assert all(sizes[cell_key(c)] == [3, 3, 1] for c in plan.cells[1:])  # 7 new: 3, 3 and the last alone


def test_a_fused_members_continuation_is_its_own_folder_of_the_fused_trials_checkpoint(tmp_path):
    from orchestrator.sweep.resume import CheckpointStore, PastTrial, _continuation
    from trainables.training.checkpoints import save_loop
    from trainables.training.loop import new_state
    trained = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(trained.parameters(), lr=0.1)
    folder = tmp_path / "base" / "deep_prompt_f00d0002_1_x" / "checkpoint_000000" / member_folder(1)
    folder.mkdir(parents=True)
    save_loop(folder, trained, dict(trained.state_dict()), optimizer, {**new_state(), "epoch": 1})
    history = ((1, 0.5), (2, 0.6))
    member = PastTrial("run-b", "x", 4.0, False, history, ("f00d0002",), 0, 1)
    going = _continuation(member, CheckpointStore(str(tmp_path), "base"))
    assert (going.checkpoint, going.epoch, going.history) == (str(folder), 1, ((1, 0.5),))


def test_a_resume_reads_each_fused_members_index_from_its_run():
    """What `--resume` plans from (read_trials): a member's index, so that its continuation finds
    its own folder; a run of a trial of its own has none."""
    import tempfile
    from pathlib import Path

    from mlflow.tracking import MlflowClient

    from clip_prompt_sweeps.store.runs import experiment_id
    from orchestrator.sweep.resume import read_trials
    with tempfile.TemporaryDirectory() as folder:
        uri = empty_store(Path(folder))
        client = MlflowClient(uri)
        exp = experiment_id(client, "deep", uri)
        parent = client.create_run(exp, tags={"role": "sweep"}).info.run_id
        for member in ("1", None):
            tags = {"mlflow.parentRunId": parent, "cell": "layer=0", "ray_trial_ids": "f00d0003",
                    **({"fused_member": member} if member else {})}
            run = client.create_run(exp, tags=tags).info.run_id
            client.log_param(run, "lr", "4.0")
            client.log_metric(run, "val_acc", 0.5, step=1)
        read = read_trials(client, exp, parent, "val_acc")
        assert sorted((t.member is None, t.member) for t in read) == [(False, 1), (True, None)]
        assert all(t.history == ((1, 0.5),) for t in read)
