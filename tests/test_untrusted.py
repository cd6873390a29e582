"""What an MLflow store, a data folder, an image folder or a path written by someone else can make
the program do: each test plants what an attacker or a careless colleague would, and checks the
mechanism (escaping, no path taken from text, size checks before allocating, nothing deleted that
the project did not write), not one payload."""
from __future__ import annotations

import json
import os
import pickle
import shutil
import socket
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from clip_prompt_sweeps.errors import UserError
from orchestrator.commands.cli import main
from reports.html import _cells, to_html
from trainables.data.sources.cifar import ARCHIVES, load_cifar
from output import command_err

HOSTNAME = Path("/etc/hostname").read_text().strip() if Path("/etc/hostname").is_file() else socket.gethostname()


def _one_line_error(capsys, *parts: str) -> str:
    err = command_err(capsys)
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for part in parts:
        assert part in err, err
    return err


@pytest.fixture
def forged_store(study_store, tmp_path):
    """A copy of the study store that the test may tamper with (as anyone with write access to a
    shared store could), leaving the session's store alone."""
    uri, folder = study_store
    shutil.copy(folder / "mlflow.db", tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "mlflow.db"


def _sql(db: Path, query: str, *args) -> None:
    with sqlite3.connect(db) as con:
        con.execute(query, args)


# 1. report.html inlines only its own figures; values are escaped -----------------------------

def test_a_forged_param_cannot_inline_a_local_file_or_shift_a_table(forged_store, tmp_path):
    uri, db = forged_store
    # a file of this machine that a forged value names as a figure; its bytes are long and random,
    # so that finding their base64 in the page means it was inlined (a short file's base64, such
    # as a 3-byte /etc/hostname's, turns up by chance inside the figures' own)
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG not this report's figure " + os.urandom(48))
    # the zero-shot runs now say their template was this (the report prints it)
    _sql(db, "insert into params (key, value, run_uuid) select 'template', ?, run_uuid from tags "
             "where key = 'sweep' and value = 'zeroshot'", f"a {{}}\n![leak]({secret})\n<b>x</b>")
    _sql(db, "update tags set value = ? where key = 'top1_source'", "torchvision | forged | columns")
    assert main(["report", "all", "--tracking-uri", uri, "--out", str(tmp_path / "out")]) == 0
    folder = tmp_path / "out" / "all"
    markdown, page = (folder / "report.md").read_text(), (folder / "report.html").read_text()
    assert not any(line.startswith("![leak") for line in markdown.splitlines())
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert page.count("<img ") == len(list(folder.glob("*.png")))         # only its own figures
    import base64
    assert base64.b64encode(secret.read_bytes()).decode()[:64] not in page
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if "| top-1 source |" in line)
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    table = lines[start:end]
    assert any("forged" in row for row in table)
    assert {len(_cells(row)) for row in table} == {len(_cells(table[0]))}      # no shifted column
    assert "<th>top-1 source</th>" in page and "torchvision | forged | columns</td>" in page


def test_html_never_reads_a_path_named_in_the_text(tmp_path):
    (tmp_path / "ok.png").write_bytes(b"\x89PNG fake")
    (tmp_path / "link.png").symlink_to("/etc/hostname")
    page = to_html("![a](/etc/hostname)\n![b](../ok.png)\n![c](link.png)\n![d](missing.png)\n![e](ok.png)",
                   tmp_path, "t")
    assert page.count("<img ") == 1 and "figure not inlined: /etc/hostname" in page
    assert "figure not inlined: missing.png" in page              # no FileNotFoundError


# 2. --resume never unpickles from where a tag points -------------------------------------------

def test_resume_ignores_a_forged_ray_experiment_tag(tmp_path, data_root, ray_session):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil"
    evil.mkdir()

    class Payload:
        def __reduce__(self):
            return (Path.write_text, (marker, "ran"))

    (evil / "tuner.pkl").write_bytes(pickle.dumps(Payload()))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment("visual")
    elsewhere = tmp_path / "elsewhere"
    client.create_run(exp, tags={"role": "sweep", "sweep": "visual", "profile": "smoke",   # interrupted-looking
                                 "ray_experiment": str(evil),
                                 "sweep_args": json.dumps({"sets": [f"data_dir={elsewhere}"], "samples": 1,
                                                           "epochs": 1})})
    assert main(["sweep", "visual", "--resume", "--tracking-uri", uri, "--storage-path", str(tmp_path / "ray"),
                 "--data-dir", str(data_root), "--gpus-per-trial", "0", "--epochs", "1", "--samples", "1",
                 "--set", "dataset=cifar10"]) == 0
    assert not marker.exists()
    assert not elsewhere.exists()       # the data dir is the command's, never one a tag names


# 3. report --out replaces only what a report wrote ---------------------------------------------

def test_report_never_deletes_a_users_folder_nor_writes_through_a_link(study_store, tmp_path, capsys):
    uri, _ = study_store
    thesis = tmp_path / "thesis"
    (thesis / "zeroshot" / "chapters").mkdir(parents=True)
    (thesis / "zeroshot" / "chapters" / "one.tex").write_text("years of work")
    assert main(["report", "zeroshot", "--tracking-uri", uri, "--out", str(thesis)]) == 2
    _one_line_error(capsys, "was not written by `report`")
    assert (thesis / "zeroshot" / "chapters" / "one.tex").read_text() == "years of work"

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "zeroshot").symlink_to(elsewhere)
    assert main(["report", "zeroshot", "--tracking-uri", uri, "--out", str(tmp_path / "out")]) == 2
    _one_line_error(capsys, "symbolic link")
    assert not any(elsewhere.iterdir())

    fresh = tmp_path / "fresh"          # a report's own folder is replaced, whole
    assert main(["report", "zeroshot", "--tracking-uri", uri, "--out", str(fresh)]) == 0
    (fresh / "zeroshot" / "stale.png").write_bytes(b"old")
    assert main(["report", "zeroshot", "--tracking-uri", uri, "--out", str(fresh)]) == 0
    assert not (fresh / "zeroshot" / "stale.png").exists() and (fresh / "zeroshot" / "report.md").is_file()
    assert [p.name for p in fresh.iterdir()] == ["zeroshot"]          # no temporary folder left


# 4. a report while the sweep runs ----------------------------------------------------------------

def test_a_report_during_a_sweep_uses_what_has_ended_and_says_how_far_it_is(forged_store, tmp_path):
    uri, db = forged_store
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("visual")
    (parent,) = client.search_runs([exp.experiment_id], "tags.role = 'sweep'")
    children = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    padding = [c for c in children if c.data.params["prompt"] == "padding"]
    for run in [parent, *padding]:      # still running: no artifacts logged yet
        _sql(db, "update runs set status = 'RUNNING', end_time = NULL where run_uuid = ?", run.info.run_id)
    _sql(db, "delete from tags where key = 'mlflow.log-model.history'")
    for name in ("visual", "all"):
        assert main(["report", name, "--tracking-uri", uri, "--out", str(tmp_path / "out")]) == 0
    report = (tmp_path / "out" / "visual" / "report.md").read_text()
    assert f"This sweep is still running: {len(children) - len(padding)} of {len(children)} trials done" in report
    assert "still running" in report and "padding prompt of" in report
    assert "This sweep is still running" in (tmp_path / "out" / "all" / "report.md").read_text()


# 5. the CIFAR reader checks structure and sizes before allocating --------------------------------

def _archive(tmp_path: Path) -> Path:
    load_cifar("cifar10", tmp_path, "synthetic")
    from trainables.data.sources.cifar import _read_archive
    _read_archive.cache_clear()
    return tmp_path / "synthetic" / ARCHIVES["cifar10"].folder


class _Huge:
    def __reduce__(self):
        from numpy._core.multiarray import _reconstruct
        return (_reconstruct, (np.ndarray, (10 ** 12,), b"b"))


@pytest.mark.parametrize("batch,why", [
    ({b"labels": [0]}, "b'data' must be a uint8 array"),
    ({b"data": _Huge(), b"labels": []}, "is not how a CIFAR batch starts one"),
    ({b"data": [[0] * 3072] * 1000, b"labels": [0] * 1000}, "b'data' must be a uint8 array"),
    ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1]}, "one label per row"),
    ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 99]}, "labels must be integers 0..9"),
    ({b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4}, "3072 bytes per row"),
    ({b"data": np.zeros((10_001, 3072), np.uint8), b"labels": [0] * 10_001}, "more than the real file's 10000"),
])
def test_a_malformed_batch_is_one_line(tmp_path, batch, why):
    folder = _archive(tmp_path)
    (folder / "data_batch_1").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(UserError, match="data_batch_1 is not a valid CIFAR batch") as err:
        load_cifar("cifar10", tmp_path, "synthetic")
    assert why in str(err.value) and "\n" not in str(err.value)


def test_a_meta_file_with_str_keys_or_a_huge_file_is_one_line(tmp_path):
    folder = _archive(tmp_path)
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": ["a"] * 10}, protocol=2))
    with pytest.raises(UserError, match="must list the 10 class names"):
        load_cifar("cifar10", tmp_path, "synthetic")
    folder = _archive(tmp_path / "two")
    with open(folder / "test_batch", "wb") as f:
        f.truncate(40 << 20)        # larger than any real test batch: refused before it is read
    with pytest.raises(UserError, match="more than the real file's"):
        load_cifar("cifar10", tmp_path / "two", "synthetic")


def test_a_bad_archive_stops_the_sweep_in_the_driver(tmp_path, data_root, capsys):
    folder = _archive(tmp_path / "data")
    (folder / "test_batch").write_bytes(pickle.dumps({b"labels": []}, protocol=2))
    assert main(["sweep", "visual", "--data-dir", str(tmp_path / "data"),
                 "--tracking-uri", f"sqlite:///{tmp_path}/m.db"]) == 2
    _one_line_error(capsys, "test_batch is not a valid CIFAR batch")
    assert not (tmp_path / "m.db").exists()             # before Ray and before any write


# 6. classify: bombs, mathtext, templates, many images ------------------------------------------

def _png(path: Path, size=(8, 8)) -> Path:
    from PIL import Image
    Image.new("RGB", size, (200, 30, 30)).save(path)
    return path


def test_classify_refuses_a_decompression_bomb_in_one_line(tmp_path, capsys):
    import struct
    import zlib
    folder = tmp_path / "imgs"
    folder.mkdir()
    raw = _png(folder / "bomb.png").read_bytes()
    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)      # the header claims 20000 x 20000
    chunk = b"IHDR" + ihdr
    raw = raw[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + raw[33:]
    (folder / "bomb.png").write_bytes(raw)
    assert main(["classify", "--preset", "colour", "--images", str(folder), "--model", "tiny-clip",
                 "--pretrained", "none", "--out", str(tmp_path / "out")]) == 2
    _one_line_error(capsys, "bomb.png", "too large")
    assert not (tmp_path / "out").exists()


def test_classify_takes_dollars_in_names_and_writes_every_image_to_the_csv(tmp_path, data_root):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(70):             # more than one encoding batch, more than the figure shows
        _png(folder / f"$x^{i}$.png")
    assert main(["classify", "--template", "costs $5 {} $", "--labels", "$cheap$", "dear", "--images", str(folder),
                 "--model", "tiny-clip", "--pretrained", "none", "--out", str(tmp_path / "out")]) == 0
    (csv,) = (tmp_path / "out" / "classify").glob("custom-*.csv")
    assert len(csv.read_text().splitlines()) == 71 and csv.with_suffix(".png").is_file()


@pytest.mark.parametrize("argv,part", [
    (["classify", "--template", "a {} of {kind}", "--labels", "a", "b"], "exactly one '{}'"),
    (["classify", "--template", "a {0.__class__} {}", "--labels", "a", "b"], "exactly one '{}'"),
    (["sweep", "zeroshot", "--set", "template=a photo of a {} {x}"], "exactly one '{}'"),
])
def test_a_template_with_other_fields_is_one_line(argv, part, capsys, tmp_path):
    assert main([*argv, *(["--tracking-uri", f"sqlite:///{tmp_path}/m.db"] if argv[0] == "sweep" else [])]) == 2
    _one_line_error(capsys, part)


# 7 and 8. report --run-id and the store are checked ------------------------------------------------

def test_report_run_id_must_be_a_parent_of_that_sweep(study_store, tmp_path, capsys):
    uri, _ = study_store
    client = MlflowClient(uri)
    visual = client.search_runs([client.get_experiment_by_name("visual").experiment_id], "tags.role = 'sweep'")[0]
    child = client.search_runs([visual.info.experiment_id], "tags.role = 'trial'")[0]
    out = ["--tracking-uri", uri, "--out", str(tmp_path / "out")]
    assert main(["report", "linear", "--run-id", "nope", *out]) == 2
    _one_line_error(capsys, "--run-id 'nope': no such run")
    assert main(["report", "linear", "--run-id", visual.info.run_id, *out]) == 2
    _one_line_error(capsys, "is a 'visual' sweep, not 'linear'")
    assert main(["report", "visual", "--run-id", child.info.run_id, *out]) == 2
    _one_line_error(capsys, "not a sweep's parent run")
    assert not (tmp_path / "out").exists()


def test_report_never_writes_into_another_programs_database(tmp_path, capsys):
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as con:
        con.execute("create table users (name text)")
    before = db.read_bytes()
    assert main(["report", "visual", "--tracking-uri", f"sqlite:///{db}", "--out", str(tmp_path / "out")]) == 2
    _one_line_error(capsys, "is not an MLflow store")
    assert db.read_bytes() == before


# 9. a data dir that is a file; two new sweeps racing for the experiment -------------------------

def test_a_data_dir_that_is_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "data").write_text("not a folder")
    assert main(["sweep", "visual", "--data-dir", str(tmp_path / "data"),
                 "--tracking-uri", f"sqlite:///{tmp_path}/m.db"]) == 2
    _one_line_error(capsys, "is a file, not a folder")


def test_two_drivers_creating_one_experiment_both_get_it(tmp_path):
    from clip_prompt_sweeps.store.runs import experiment_id
    from clip_prompt_sweeps.store.uri import prepare_store
    uri = f"sqlite:///{tmp_path}/m.db"
    prepare_store(uri)
    ids, errors = [], []

    def create():
        try:
            ids.append(experiment_id(MlflowClient(uri), "race", uri))
        except Exception as err:  # noqa: BLE001 - the test reports any
            errors.append(err)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(ids)) == 1


# cluster.yaml: workers hold no right to launch instances ------------------------------------------

def test_cluster_yaml_gives_the_workers_a_profile_without_launch_rights():
    import json

    import yaml
    root = Path(__file__).resolve().parents[1]
    config = yaml.safe_load((root / "cluster.yaml").read_text())
    profiles = {name: t["node_config"]["IamInstanceProfile"]["Arn"] for name, t in config["available_node_types"].items()}
    head = profiles.pop(config["head_node_type"])
    assert head.endswith("/clip-sweeps-head") and all(p.endswith("/clip-sweeps-worker") for p in profiles.values())
    worker = json.loads((root / "clusters/aws-iam/worker-policy.json").read_text())
    actions = [a for st in worker["Statement"] for a in st["Action"]]
    assert actions and all(a.startswith("s3:") for a in actions)
    head_policy = json.loads((root / "clusters/aws-iam/head-policy.json").read_text())
    passes = [st for st in head_policy["Statement"] if "iam:PassRole" in st["Action"]]
    assert passes and all("clip-sweeps-worker" in r for st in passes for r in st["Resource"])


def test_resume_reads_no_folder_or_template_file_named_only_in_the_store():
    """A forged `sweep_args` tag cannot make a resume read a folder or a file it names: the path
    must be typed again on the command."""
    import json as _json
    from types import SimpleNamespace

    from clip_prompt_sweeps.store.records import ARGS_TAG, read_parent
    from orchestrator.sweep.plan import PlanRequest
    from orchestrator.sweep.options import SweepOptions
    from orchestrator.sweep.parent import recorded_settings

    def forged(args: dict):
        info = SimpleNamespace(run_id="0" * 32, experiment_id="1", status="KILLED", start_time=1, end_time=2)
        return read_parent(SimpleNamespace(info=info, data=SimpleNamespace(
            tags={ARGS_TAG: _json.dumps(args)}, params={}, metrics={})))
    plan = PlanRequest("deep", "smoke")
    with pytest.raises(UserError, match="names a path; a resume reads no path from the store"):
        recorded_settings(plan, SweepOptions(), forged({"sets": ["template_set=file:/etc/passwd"], "grids": [],
                                                "samples": None, "epochs": None}))
    with pytest.raises(UserError, match="names a path"):
        recorded_settings(plan, SweepOptions(), forged({"grids": ["dataset=folder:/srv/x,cifar10"], "sets": []}))
