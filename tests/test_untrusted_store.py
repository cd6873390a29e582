"""Untrusted input, second round: what a colleague with write access to a shared MLflow store (or to
a shared cluster, a journal folder, a data cache, a sweep file) could make the program do. One test
per confirmed defect (issue #25, numbered as there); each plants what such a person would and
checks the mechanism: the one checked reader (clip_prompt_sweeps/store/records.py), the journal read as a stranger's,
the lease re-read before it is renewed, files checked before they are read."""
from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import stat
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from clip_prompt_sweeps.errors import UserError
from orchestrator.commands.cli import main
from output import command_err

ROOT = Path(__file__).resolve().parents[1]


def _one_line(capsys, *parts: str) -> str:
    err = command_err(capsys)
    lines = err.splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


def _store(tmp_path: Path) -> tuple[str, MlflowClient]:
    from stores import empty_store
    uri = empty_store(tmp_path)
    return uri, MlflowClient(uri)


def _interrupted_parent(client: MlflowClient, sweep: str = "visual", **tags) -> str:
    """A parent run that looks like an interrupted sweep of the smoke profile."""
    exp = client.get_experiment_by_name(sweep)
    exp = exp.experiment_id if exp else client.create_experiment(sweep)
    run = client.create_run(exp, tags={"role": "sweep", "sweep": sweep, "profile": "smoke", **tags})
    client.set_terminated(run.info.run_id, "KILLED")
    return run.info.run_id


def _sql(uri: str, *statements) -> None:
    with sqlite3.connect(uri[len("sqlite:///"):]) as con:
        con.execute("pragma foreign_keys = off")
        for statement, *args in statements:
            con.execute(statement, args)


# 1. a forged run id never becomes a path ----------------------------------------------------------

def test_1_a_forged_parent_run_id_is_refused_before_any_journal_is_read(tmp_path, monkeypatch, capsys):
    uri, client = _store(tmp_path)
    parent = _interrupted_parent(client)
    _sql(uri, *[(f"update {table} set run_uuid = '../x' where run_uuid = ?", parent)
                for table in ("tags", "params", "latest_metrics", "metrics", "runs")])
    journals = tmp_path / "journals"
    monkeypatch.setenv("ORCHESTRATOR_JOURNAL_DIR", str(journals))
    secret, marker = tmp_path / "id_ed25519", tmp_path / "bashrc-written"
    secret.write_text("PRIVATE KEY")
    planted = tmp_path / "x"          # where journal_dir('../x') pointed: a folder the attacker filled
    planted.mkdir()
    (planted / "pending.jsonl").write_text(
        json.dumps({"op": "log_artifact", "run_id": "../x", "local_path": str(secret), "artifact_path": "leak",
                    "name": "../" * 12 + str(marker).lstrip("/")}) + "\n")
    code = main(["sweep", "visual", "--resume", "--tracking-uri", uri, "--storage-path", str(tmp_path / "ray")])
    assert code == 2 and not marker.exists()
    _one_line(capsys, "'../x' is not an MLflow run id")
    assert (planted / "pending.jsonl").read_text().count("\n") == 1          # nothing replayed


def test_1_a_journal_uploads_only_its_own_files_under_plain_names(tmp_path, monkeypatch):
    from clip_prompt_sweeps.store.journal import Journal, journal_dir
    uri, client = _store(tmp_path)
    parent = _interrupted_parent(client)
    monkeypatch.setenv("ORCHESTRATOR_JOURNAL_DIR", str(tmp_path / "journals"))
    folder = journal_dir(parent)
    assert folder.parent == tmp_path / "journals" and parent not in folder.name       # a digest, not the text
    folder.mkdir(parents=True)
    secret = tmp_path / "secret"
    secret.write_text("PRIVATE")
    for entry in ({"op": "log_artifact", "run_id": parent, "local_path": str(secret), "artifact_path": "x"},
                  {"op": "log_artifact", "run_id": parent, "local_path": str(folder / "pending.jsonl"),
                   "artifact_path": "x", "name": "../../evil"},
                  {"op": "os.system", "run_id": parent}):
        (folder / "pending.jsonl").write_text(json.dumps(entry) + "\n")
        with pytest.raises(UserError, match="is not what this project writes"):
            Journal(client, parent).flush()
    assert not client.list_artifacts(parent)


# 2. sweep_args cannot choose the data dir, however it is spelled -----------------------------------

@pytest.mark.parametrize("spelled", ["data_dir=/elsewhere", " data_dir=/elsewhere", "data_dir =/elsewhere"])
def test_2_a_recorded_data_dir_is_never_taken_from_the_store(tmp_path, spelled):
    from clip_prompt_sweeps.store.records import read_parent
    from orchestrator.sweep.plan import PlanRequest
    from orchestrator.sweep.options import SweepOptions
    from orchestrator.sweep.parent import recorded_settings
    uri, client = _store(tmp_path)
    parent = _interrupted_parent(client, sweep_args=json.dumps({"sets": [spelled], "samples": 1}))
    typed = PlanRequest("visual", "smoke", (f"data_dir={tmp_path / 'mine'}",))
    resumed, _ = recorded_settings(typed, SweepOptions(), read_parent(client.get_run(parent)))
    assert resumed.build().base["data_dir"] == str(tmp_path / "mine")


# 3. forged lease values ----------------------------------------------------------------------------

@pytest.mark.parametrize("lease", [
    '{"host": "h", "pid": Infinity, "time": 0}', '{"host": "h", "pid": 100000000000000000000, "time": 0}',
    '{"host": "h", "pid": 1e308, "time": 1}', '{"host": "h", "pid": 5, "time": NaN}',
    '{"host": "node-9", "pid": 5, "time": 4000000000}', '{"host": "h", "pid": 5, "time": "soon"}'])
def test_3_a_forged_lease_neither_crashes_nor_locks_a_sweep_for_ever(tmp_path, lease):
    from orchestrator.sweep.plan import make_plan
    from orchestrator.commands.status import status_lines
    from orchestrator.sweep.parent import interrupted_parent
    uri, client = _store(tmp_path)
    parent = _interrupted_parent(client, driver_lease=lease.replace('"h"', json.dumps(socket.gethostname())))
    lines = status_lines(client, "visual")
    assert any("interrupted" in line for line in lines) and any("resume:" in line for line in lines)
    assert interrupted_parent(make_plan("visual", "smoke"), uri).run_id == parent


def test_3_a_lease_host_with_terminal_escapes_is_shown_cleaned(tmp_path, capsys):
    import socket
    uri, client = _store(tmp_path)
    host = "evil\x1b]0;pwned\x07\x1b[2J\u202e"
    _interrupted_parent(client, driver_lease=json.dumps({"host": host, "pid": 1, "time": time.time(),
                                                         "token": "ab"}))
    assert host != socket.gethostname()
    assert main(["sweep", "visual", "--resume", "--tracking-uri", uri]) == 2
    line = _one_line(capsys, "is being run by pid 1 on evil?]0;pwned??[2J?")
    assert all(c.isprintable() for c in line)


# 4. two drivers never hold one lease ---------------------------------------------------------------

def test_4_a_driver_whose_lease_was_taken_over_stops_and_writes_nothing(tmp_path, monkeypatch):
    from clip_prompt_sweeps.store.journal import Journal
    from clip_prompt_sweeps.store.lease import Lease
    monkeypatch.setenv("ORCHESTRATOR_LEASE_TIMEOUT_S", "2")
    monkeypatch.setenv("ORCHESTRATOR_JOURNAL_DIR", str(tmp_path / "journals"))
    uri, client = _store(tmp_path)
    parent = _interrupted_parent(client)
    first = Lease(uri, parent, "visual", interrupt=False)
    first.acquire(settle_s=0.05)
    # its writes failed longer than the timeout; a resume elsewhere took the sweep over meanwhile
    other = json.dumps({"host": "elsewhere", "pid": 4242, "time": time.time(), "token": "b" * 32})
    client.set_tag(parent, "driver_lease", other)
    deadline = time.time() + 10
    while not first.lost.is_set() and time.time() < deadline:     # the heartbeat reads before it renews
        time.sleep(0.1)
    assert first.lost.is_set() and "pid 4242 on elsewhere" in str(first.lost_error())
    journal = Journal(client, parent)
    journal.set_tag(parent, "written_by_the_loser", "yes")        # fenced: nothing reaches the store
    first.release()
    tags = client.get_run(parent).data.tags
    assert tags["driver_lease"] == other and "written_by_the_loser" not in tags and journal.dropped == 1


# 5. malformed sweep_args / source_runs: one line ----------------------------------------------------

@pytest.mark.parametrize("tag, value", [
    ("sweep_args", "not json"), ("sweep_args", "[1, 2]"), ("sweep_args", '{"seed": "x"}'),
    ("sweep_args", '{"sets": 5}'), ("sweep_args", '{"samples": 10000000000}'), ("sweep_args", '{"replicates": -1}'),
    ("source_runs", "not json"), ("source_runs", '["a"]'), ("source_runs", '{"cell": "../../x"}')])
def test_5_a_malformed_recorded_tag_is_one_line(tmp_path, capsys, tag, value):
    uri, client = _store(tmp_path)
    _interrupted_parent(client, sweep="robustness" if tag == "source_runs" else "visual", **{tag: value})
    sweep = "robustness" if tag == "source_runs" else "visual"
    assert main(["sweep", sweep, "--resume", "--tracking-uri", uri, "--storage-path", str(tmp_path / "ray")]) == 2
    _one_line(capsys, tag)


# 6. sweep never migrates another program's SQLite file ---------------------------------------------

@pytest.mark.parametrize("resume", [True, False])
def test_6_a_sweep_pointed_at_a_foreign_sqlite_file_leaves_it_alone(tmp_path, capsys, resume):
    db = tmp_path / "notes.db"
    with sqlite3.connect(db) as con:
        con.execute("create table notes (text)")
    before = db.read_bytes()
    args = ["sweep", "visual", "--tracking-uri", f"sqlite:///{db}", "--storage-path", str(tmp_path / "ray")]
    assert main(args + (["--resume"] if resume else [])) == 2
    _one_line(capsys, "is not an MLflow store")
    assert db.read_bytes() == before



def test_6_a_fresh_sweep_initializes_an_empty_store_file_that_readers_and_a_resume_leave_alone(
        ray_session, data_root, tmp_path, capsys):
    """A 0-byte file (made by `touch`, or opened first by another tool) holds nothing to protect: a
    new sweep initializes it as MLflow would a new file. `status`, `report` and `--resume` read a
    store, so they still write no table into it."""
    db = tmp_path / "mlflow.db"
    db.touch()
    uri = f"sqlite:///{db}"
    sweep = ["sweep", "zeroshot", "--set", "dataset=cifar10", "--tracking-uri", uri, "--data-dir", str(data_root),
             "--gpus-per-trial", "0", "--storage-path", str(tmp_path / "ray")]
    for args in (["status", "--tracking-uri", uri], ["report", "zeroshot", "--tracking-uri", uri, "--out",
                                                       str(tmp_path / "out")], [*sweep, "--resume"]):
        assert main(args) == 2, args
        _one_line(capsys, f"{db} is not an MLflow store (no MLflow tables in it)")
        assert db.stat().st_size == 0 and not (tmp_path / "out").exists()
    assert main(sweep) == 0
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("zeroshot")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("role") == "sweep"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(runs) > 1 and all(r.info.status == "FINISHED" for r in runs)

# 7 and 16. the cluster's doors: what doctor catches -------------------------------------------------

SBATCH = ROOT / "clusters" / "slurm" / "sweep.sbatch"


@pytest.mark.parametrize("door, added", [
    ("a listener on every interface behind a quoted '#'", "echo '#'; mlflow server --host 0.0.0.0 &"),
    ("a listener behind a '#' inside double quotes", 'echo "a # b" && ray start --head --dashboard-host 0.0.0.0'),
    ("authentication turned off", "export RAY_AUTH_MODE=disabled"),
    ("authentication off by default", 'export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}"'),
    ("a ray stop", "ray stop --force"),
    ("a ray stop after another command", "sleep 1; ray stop")])
def test_7_16_doctor_reads_the_file_as_the_shell_does_and_finds_each_open_door(tmp_path, capsys, door, added):
    shipped = SBATCH.read_text()
    assert main(["doctor", "--cluster-config", str(SBATCH)]) == 0
    capsys.readouterr()
    opened = tmp_path / "sweep.sbatch"
    opened.write_text(shipped.replace("cd \"$REPO\" || exit 1\n", f"cd \"$REPO\" || exit 1\n{added}\n"))
    assert main(["doctor", "--cluster-config", str(opened)]) == 1, door
    assert "to fix: sweep.sbatch line" in capsys.readouterr().out


def test_7_token_authentication_is_on_in_every_cluster_kind(tmp_path, capsys):
    shipped = SBATCH.read_text()
    assert "export RAY_AUTH_MODE=token" in shipped and "RAY_AUTH_MODE:-disabled" not in shipped
    for name in ("clusters/node/start.sh", "clusters/node/setup.sh"):
        assert "ray stop" not in "\n".join(line for line in (ROOT / name).read_text().splitlines()
                                          if not line.lstrip().startswith("#")), name
    off = tmp_path / "sweep.sbatch"
    off.write_text(shipped.replace("export RAY_AUTH_MODE=token\n", ""))
    assert main(["doctor", "--cluster-config", str(off)]) == 1
    assert "token authentication is not turned on" in capsys.readouterr().out


def test_16_setup_writes_the_storage_path_quoted_for_the_shell(tmp_path):
    venv, home = tmp_path / "venv", tmp_path / "home"
    (venv / "bin").mkdir(parents=True)
    home.mkdir()
    (venv / "bin" / "python").write_text("#!/bin/sh\nexit 0\n")      # pip and fetch: not what is tested
    (venv / "bin" / "python").chmod(0o755)
    marker = tmp_path / "ran"
    storage = f"file:///nfs/x$(touch {marker})`touch {marker}`"
    subprocess.run(["bash", str(ROOT / "clusters/node/setup.sh"), "--storage", storage, "--venv", str(venv)],
                   env={**os.environ, "HOME": str(home)}, check=True, capture_output=True)
    shown = subprocess.run(["bash", "-c", f". {home}/.clip-prompt-sweeps.env; printf %s \"$ORCHESTRATOR_STORAGE_PATH\""],
                           capture_output=True, text=True, check=True).stdout
    assert shown == storage and not marker.exists()


# 8. a grid over epochs: every cell runs its own epochs ----------------------------------------------

def test_8_a_grid_over_epochs_runs_each_cell_to_its_own_last_epoch(tmp_path, data_root, ray_session):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert main(["sweep", "visual", "--set", "dataset=cifar10", "--set", "prompt=padding", "--grid", "epochs=1,3",
                 "--samples", "1", "--tracking-uri", uri, "--storage-path", str(tmp_path / "ray"),
                 "--data-dir", str(data_root), "--gpus-per-trial", "0"]) == 0
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("visual").experiment_id], "tags.role = 'trial'")
    epochs = {r.data.params["epochs"]: max(m.step for m in client.get_metric_history(r.info.run_id, "epoch"))
              for r in runs}
    assert epochs == {"1": 1, "3": 3}


# 9. relative folder:/file: paths are made absolute where they are typed -----------------------------

def test_9_relative_paths_are_made_absolute_before_the_trials_run_elsewhere(tmp_path, monkeypatch):
    from orchestrator.sweep.plan import make_plan
    from search_spaces.sweep_file import load_sweep_file
    monkeypatch.chdir(tmp_path)
    Path("t.txt").write_text("a photo of a {}\n")
    plan = make_plan("zeroshot", "smoke", ["template_set=file:t.txt", "data=real"], grids=["dataset=cifar10,folder:imgs"])
    assert plan.base["template_set"] == f"file:{tmp_path / 't.txt'}"
    assert {c["dataset"] for c in plan.cells} == {"cifar10", f"folder:{tmp_path / 'imgs'}"}
    sub = tmp_path / "sweeps"
    sub.mkdir()
    (sub / "mine.toml").write_text('experiment = "zeroshot"\n[profiles.smoke]\nbase = {template_set = "file:t.txt"}\n')
    profile = load_sweep_file(str(sub / "mine.toml")).profiles["smoke"]
    assert profile.base["template_set"] == f"file:{sub / 't.txt'}"         # beside the sweep file


# 10 and 12. a sweep file: edited between runs, and the commands status prints ------------------------

def _file_sweep(tmp_path: Path, samples: int = 2) -> Path:
    path = tmp_path / "my_sweep.toml"
    path.write_text(f'experiment = "visual"\n[profiles.smoke]\nbase = {{epochs = 1, data = "synthetic"}}\n'
                    f'grid = {{dataset = ["cifar10"]}}\nlr = {{low = 0.1, high = 10.0}}\nsamples = {samples}\n')
    return path


def _started_from_file(tmp_path: Path, path: Path) -> tuple[str, MlflowClient, str]:
    from orchestrator.sweep.plan import make_plan
    from orchestrator.sweep.options import SweepOptions
    from orchestrator.sweep.parent import open_parent
    uri, client = _store(tmp_path)
    _, parent, _ = open_parent(client, make_plan(str(path), "smoke"), uri, SweepOptions())
    client.set_terminated(parent, "KILLED")         # then its driver was interrupted
    return uri, client, parent


def test_10_a_sweep_file_edited_since_the_sweep_started_is_refused_on_resume(tmp_path, capsys):
    path = _file_sweep(tmp_path)
    uri, client, parent = _started_from_file(tmp_path, path)
    _file_sweep(tmp_path, samples=5)
    assert main(["sweep", str(path), "--resume", "--tracking-uri", uri, "--storage-path", str(tmp_path / "ray")]) == 2
    _one_line(capsys, "has changed since sweep run", parent)
    assert not client.search_runs([client.get_run(parent).info.experiment_id], "tags.superseded_by != ''")


def test_12_status_names_the_sweep_file_in_the_commands_it_prints(tmp_path):
    from orchestrator.commands.status import status_lines
    path = _file_sweep(tmp_path)
    uri, client, parent = _started_from_file(tmp_path, path)
    lines = status_lines(client)
    assert f"  resume: python -m orchestrator sweep {path} --resume" in lines
    client.set_terminated(parent, "FINISHED")
    assert any(line.endswith(f"report: python -m orchestrator report {path}") for line in status_lines(client))


# 11. a sweep file's metric and learning-rate bounds are checked before anything starts ----------------

@pytest.mark.parametrize("line, key", [("metric = 5", "metric"), ('metric = "val acc\\n"', "metric")])
def test_11_a_bad_metric_is_one_line_at_dry_run(tmp_path, capsys, line, key):
    path = tmp_path / "bad.toml"
    path.write_text(f'experiment = "visual"\n{line}\n[profiles.smoke]\nsamples = 1\n')
    assert main(["sweep", str(path), "--dry-run"]) == 2
    _one_line(capsys, f"key '{key}'")


@pytest.mark.parametrize("bounds", ["low = 0.1, high = inf", "low = nan, high = 1.0", "low = 0.1, high = 1e400"])
def test_11_infinite_learning_rate_bounds_are_one_line_at_dry_run(tmp_path, capsys, bounds):
    path = tmp_path / "bad.toml"
    path.write_text(f'experiment = "visual"\n[profiles.smoke]\nlr = {{{bounds}}}\nsamples = 2\n')
    assert main(["sweep", str(path), "--dry-run"]) == 2
    _one_line(capsys, "needs 0 < low < high")


# 13. reports: long figure names, prompt files of any shape -------------------------------------------

def test_13_figure_names_stay_short_and_distinct_whatever_the_folder():
    from reports.figures import figure_name
    long_a, long_b = "folder:/" + "a" * 400 + "/x", "folder:/" + "a" * 400 + "/y"
    a, b = figure_name("deep_heatmap", long_a, "front"), figure_name("deep_heatmap", long_b, "front")
    assert len(a) <= 255 and len(b) <= 255 and a != b and a.endswith(".png") and "/" not in a
    assert figure_name("deep_heatmap", "cifar10", "front") == "deep_heatmap_cifar10_front.png"   # short: as before


@pytest.mark.parametrize("shapes", [{"top": (), "bottom": (), "left": (), "right": ()},
                                    {"top": (1, 3, 2, 8), "bottom": (1, 3, 2, 8), "left": (1, 3, 5, 2), "right": (1, 3, 5, 2)},
                                    {"top": (3,)}])
def test_13_a_prompt_file_of_another_shape_is_no_figure_not_a_crash(shapes):
    from reports.visual import padding_image
    with pytest.raises(ValueError):
        padding_image({k: np.zeros(v, dtype=np.float32) for k, v in shapes.items()})
    good = {"top": (1, 3, 2, 8), "bottom": (1, 3, 2, 8), "left": (1, 3, 4, 2), "right": (1, 3, 4, 2)}
    assert padding_image({k: np.ones(v, dtype=np.float32) for k, v in good.items()}).shape == (3, 8, 8)


def test_13_report_visual_survives_a_forged_prompt_artifact(study_store, tmp_path, capsys):
    from safetensors.numpy import save_file
    uri, folder = study_store
    shutil.copy(folder / "mlflow.db", tmp_path / "mlflow.db")
    forged_uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(forged_uri)
    exp = client.get_experiment_by_name("visual").experiment_id
    # a run of its own (artifacts of a copied store would land in the session's folder)
    run = client.create_run(exp, tags={"role": "trial", "cell": "dataset=cifar10,prompt=padding",
                                       "mlflow.parentRunId": client.search_runs(
                                           [exp], "tags.role = 'sweep'")[0].info.run_id})
    for key, value in {"dataset": "cifar10", "prompt": "padding", "lr": "40", "prompt_size": "30"}.items():
        client.log_param(run.info.run_id, key, value)
    for key in ("best_val_acc", "test_acc", "val_acc"):
        client.log_metric(run.info.run_id, key, 0.999)
    client.set_terminated(run.info.run_id, "FINISHED")
    save_file({k: np.zeros((), dtype=np.float32) for k in ("top", "bottom", "left", "right")}, tmp_path / "best.safetensors")
    client.log_artifact(run.info.run_id, str(tmp_path / "best.safetensors"), "learned")
    assert main(["report", "visual", "--tracking-uri", forged_uri, "--out", str(tmp_path / "out")]) == 0


# 14. the prepared-image cache is read as a stranger's ------------------------------------------------

def _folder(root: Path) -> Path:
    from PIL import Image
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label, name in enumerate(("red", "green")):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(3):
                pixels = rng.integers(0, 255, (20, 28, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


def _prepared_files(data: Path) -> list[Path]:
    return sorted(p for p in (data / "prepared").rglob("train-*.npy") if not p.name.endswith(".labels.npy"))


def test_14_forged_prepared_files_are_refused_or_prepared_again(tmp_path):
    from trainables.data.catalog import load_dataset
    folder, data = _folder(tmp_path / "imgs"), tmp_path / "data"
    name = f"folder:{folder}"
    first = load_dataset(name, data, "real", 16, "bicubic")
    (target,) = _prepared_files(data)
    labels = target.with_name(target.name + ".labels.npy")
    # labels out of range
    np.save(labels, np.full(6, 7, dtype=np.int64))
    with pytest.raises(UserError, match="labels outside 0..1"):
        load_dataset(name, data, "real", 16, "bicubic")
    # a header claiming 2**40 labels: refused before anything is allocated
    with open(labels, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<i8", "fortran_order": False, "shape": (2**40,)})
        f.write(b"\0" * 48)
    with pytest.raises(UserError, match="cannot be read|shape"):
        load_dataset(name, data, "real", 16, "bicubic")
    # a stamp that is JSON but not a record: prepared again
    stamp = target.with_name(target.name + ".json")
    stamp.write_text("[1, 2]")
    again = load_dataset(name, data, "real", 16, "bicubic")
    assert (again.train.labels == first.train.labels).all()


def test_14_an_image_replaced_with_its_size_and_mtime_kept_is_prepared_again(tmp_path):
    from PIL import Image

    from trainables.data.catalog import load_dataset
    folder, data = _folder(tmp_path / "imgs"), tmp_path / "data"
    name = f"folder:{folder}"
    before = load_dataset(name, data, "real", 16, "bicubic")
    image = folder / "train" / "red" / "0.png"
    st = image.stat()
    replacement = tmp_path / "r.png"
    Image.fromarray(np.full((20, 28, 3), 255, dtype=np.uint8)).save(replacement)
    payload = replacement.read_bytes()
    payload = payload + b"\0" * (st.st_size - len(payload)) if len(payload) < st.st_size else payload[:st.st_size]
    image.write_bytes(payload)                      # same size (PNG ignores what follows IEND)
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert image.stat().st_size == st.st_size and image.stat().st_mtime_ns == st.st_mtime_ns
    time.sleep(0.01)
    after = load_dataset(name, data, "real", 16, "bicubic")
    assert not np.array_equal(before.train.images.numpy(), after.train.images.numpy())


# 15. a template file that is a device or a FIFO -------------------------------------------------------

@pytest.mark.parametrize("kind", ["device", "fifo"])
def test_15_a_template_file_that_never_ends_is_one_line_at_once(tmp_path, kind):
    from trainables.models.templates import template_set
    path = "/dev/zero" if kind == "device" else str(tmp_path / "fifo")
    if kind == "fifo":
        os.mkfifo(path)
        assert stat.S_ISFIFO(os.stat(path).st_mode)
    outcome: list = []

    def read():
        try:
            template_set(f"file:{path}", "x {}")
        except UserError as err:
            outcome.append(str(err))
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=10)
    if reader.is_alive() and kind == "fifo":
        with open(path, "w"):        # let the old code's blocked open go, then fail the test
            pass
    assert outcome and "is not a regular file" in outcome[0]


# 17. a continued trial's learning rate is not drawn again -------------------------------------------

@pytest.mark.parametrize("search", ["tpe", "random"])
def test_17_a_resumed_cell_draws_no_learning_rate_it_already_has(search):
    from clip_prompt_sweeps.names import cell_key
    from orchestrator.sweep.plan import make_plan
    from orchestrator.sweep.resume import Continuation, PastTrial, SweepRecord
    from orchestrator.sweep.searchers import CellSearcher
    plan = make_plan("visual", "smoke", samples=4)
    first = CellSearcher(plan, search, seed=0)
    # what the first session proposed: each cell's first two learning rates
    proposed: dict[str, list[float]] = {}
    for i in range(2 * len(plan.cells)):
        config = first.suggest(f"t{i}")
        proposed.setdefault(config["_cell"], []).append(config["lr"])
    # then the driver died: the first trial of each cell had finished, the second was running
    record = SweepRecord()
    for cell in plan.cells:
        key = cell_key(cell)
        done, going = proposed[key]
        record.done[key] = [PastTrial(f"{key}-d", key, done, True, ((1, 0.5),), ("a_1",), 0)]
        record.unfinished[key] = [Continuation(f"{key}-u", going, None, 0)]
    resumed = CellSearcher(plan, search, seed=0, record=record)
    drawn: dict[str, list[float]] = {key: list(lrs) for key, lrs in proposed.items()}
    continued = []
    while (config := resumed.suggest(f"r{len(continued)}")) != CellSearcher.FINISHED:
        if "_run_id" in config:
            continued.append(config["lr"])
        else:
            drawn[config["_cell"]].append(config["lr"])
        if len(continued) > 100:
            break
    assert sorted(continued) == sorted(lr for lrs in proposed.values() for lr in lrs[1:])
    for key, lrs in drawn.items():
        assert len(lrs) == 4 and len(set(lrs)) == 4, (key, lrs)


@pytest.mark.parametrize("search", ["tpe", "random"])
def test_17_a_cell_resumed_twice_draws_no_learning_rate_it_already_has(search):
    """The second resume of a cell whose first resume's new trial was cut short: its sampler must
    count that unfinished trial too, or it starts the first resume's stream again and its first
    new proposal is the learning rate that trial is continued with."""
    from clip_prompt_sweeps.names import cell_key
    from orchestrator.sweep.plan import make_plan
    from orchestrator.sweep.resume import Continuation, PastTrial, SweepRecord
    from orchestrator.sweep.searchers import CellSearcher
    plan = make_plan("visual", "smoke", ["dataset=cifar10", "prompt=padding", "prompt_size=4"], samples=4)
    (key,) = [cell_key(c) for c in plan.cells]
    first_lr = CellSearcher(plan, search, seed=0).suggest("t0")["lr"]
    done = [PastTrial("d", key, first_lr, True, ((1, 0.5),), ("a_1",), 0)]
    # the first resume: one trial done, none going; its first new trial is cut short by a kill
    second_lr = CellSearcher(plan, search, seed=0, record=SweepRecord({key: done}, {key: []})).suggest("r0")["lr"]
    again = CellSearcher(plan, search, seed=0,
                         record=SweepRecord({key: done}, {key: [Continuation("u", second_lr, None, 0)]}))
    configs = [again.suggest(f"s{i}") for i in range(3)]
    assert configs[0]["_run_id"] == "u" and configs[0]["lr"] == second_lr      # continued, then two new
    lrs = [first_lr, *(c["lr"] for c in configs)]
    assert len(set(lrs)) == 4, lrs


def test_a_trial_that_moved_counts_every_node_it_ran_on():
    """A sweep whose trials moved after a lost node was served by every node any of them ran on."""
    from types import SimpleNamespace

    from clip_prompt_sweeps.store.records import read_trial, served_by

    def run(k: int, nodes: str):
        info = SimpleNamespace(run_id=f"{k:032x}", experiment_id="1", status="FINISHED", start_time=k, end_time=k)
        return SimpleNamespace(info=info, data=SimpleNamespace(tags={"cell": "c", "nodes": nodes}, params={},
                                                               metrics={}))
    runs = [read_trial(run(1, "192.0.2.10 192.0.2.11")), read_trial(run(2, "192.0.2.12 192.0.2.11")),
            read_trial(run(3, "192.0.2.11"))]
    assert served_by(runs) == 3
    assert served_by(runs[2:]) == 1 and served_by([]) == 0


def test_a_forged_nodes_tag_counts_only_addresses_and_host_names_and_is_bounded():
    from clip_prompt_sweeps.store.records import MAX_NODES, read_nodes
    forged = "10.0.0.1 \x1b[2J;rm -rf ~ gpu-1.lab 10.0.0.1 ../../etc fe80::1 " + " ".join(f"n{k}" for k in range(500))
    nodes = read_nodes({"nodes": forged, "node": "ignored-when-nodes-is-there"})
    assert nodes[:3] == ("10.0.0.1", "gpu-1.lab", "fe80::1") and len(nodes) == MAX_NODES
    assert read_nodes({"node": "10.0.0.7"}) == ("10.0.0.7",)            # a run logged before the tag
    assert read_nodes({"nodes": "x" * 300}) == () and read_nodes({}) == ()
