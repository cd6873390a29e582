"""MLflow as its users expect it: a sweep's experiment is a model-training one, every trial logs
its data as a dataset input (the runs table's Dataset column) and its system figures, `report`
puts the report beside the runs, and a real headless browser on a real `mlflow server` opens a
sweep on its runs through the link the sweep prints."""
from __future__ import annotations

import json
import re
import resource
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from servers import free_port, start_mlflow, stop

from clip_prompt_sweeps.store.journal import Journal
from clip_prompt_sweeps.store.runs import KIND, KIND_TAG, children, experiment_id, latest_parent
from clip_prompt_sweeps.store.uri import runs_page
from orchestrator.commands.cli import main
from reports.build import MARKER, REPORT_ARTIFACTS, log_report
from trainables.data.config import DataConfig
from trainables.data.record import content_digest
from trainables.data.sources.cifar import image_counts, load_cifar
from trainables.training.system import system_metrics


def test_a_sweeps_experiment_is_model_training_new_or_old_unless_someone_chose(tmp_path):
    uri = f"sqlite:///{tmp_path}/m.db"
    client = MlflowClient(uri)
    new = experiment_id(client, "deep", uri)
    old = client.create_experiment("visual")                  # as an earlier version made it
    guessed = client.create_experiment("zeroshot", tags={KIND_TAG: "genai_development_inferred"})
    chosen = client.create_experiment("linear", tags={KIND_TAG: "genai_development"})
    assert KIND_TAG not in client.get_experiment(old).tags
    for name, eid in (("visual", old), ("zeroshot", guessed), ("linear", chosen)):
        assert experiment_id(client, name, uri) == eid
    kinds = {e: client.get_experiment(e).tags.get(KIND_TAG) for e in (new, old, guessed, chosen)}
    assert kinds == {new: KIND, old: KIND, guessed: KIND, chosen: "genai_development"}


# (sweep, what its trials use the data for): every trainable that reads a dataset
READERS = [("visual", "training"), ("deep", "training"), ("linear", "training"), ("finetune", "training"),
           ("zeroshot", "evaluation"), ("robustness", "evaluation"), ("cross", "evaluation")]


@pytest.mark.parametrize("sweep,context", READERS, ids=[s for s, _ in READERS])
def test_every_trial_logs_its_data_as_a_dataset_input_and_its_system_figures(study_store, data_root, sweep, context):
    uri, _ = study_store
    client = MlflowClient(uri)
    parent = latest_parent(client, sweep)
    runs = [client.get_run(r.info.run_id) for r in children(client, parent.info.experiment_id, parent.info.run_id)]
    assert runs
    seen = set()
    for run in runs:
        (only,) = run.inputs.dataset_inputs
        ds = only.dataset
        base = ds.name.removesuffix("-synthetic")
        assert ds.name == f"{base}-synthetic" and ds.source_type == "code"
        assert ds.digest == content_digest(load_cifar(base, data_root, "synthetic"))
        assert {t.key: t.value for t in only.tags} == {"mlflow.data.context": context}
        splits = json.loads(ds.profile)["splits"]
        if context == "training":
            train, test = image_counts(base, "synthetic")
            val = round(train * float(run.data.params.get("val_fraction", DataConfig.val_fraction)))
            assert splits == {"train": train - val, "val": val, "test": test}
        elif base == "cifar110":        # both test sets
            assert splits == {"test": image_counts("cifar10", "synthetic")[1] + image_counts("cifar100", "synthetic")[1]}
        else:
            assert splits["test"] == image_counts(base, "synthetic")[1]
        seen.add((ds.name, ds.digest))
        # the process had imported torch and read data: tens of MB at least
        assert run.data.metrics["system/peak_rss_mb"] > 50
        assert ("system/peak_gpu_memory_mb" in run.data.metrics) == torch.cuda.is_available()
    on_parent = {(i.dataset.name, i.dataset.digest) for i in client.get_run(parent.info.run_id).inputs.dataset_inputs}
    assert on_parent == seen        # the collapsed runs table names the sweep's data too


def test_system_figures_follow_the_process_peak_memory():
    before = system_metrics()["system/peak_rss_mb"]
    block = np.ones(300 * 2**20, dtype=np.uint8)        # 300 MB, touched
    after = system_metrics()["system/peak_rss_mb"]
    assert block.sum() == block.size
    assert after - before > 250 or before > 300 + 1024      # (an already high peak hides a new one)
    assert after == pytest.approx(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, rel=0.01)


def test_a_dataset_record_is_logged_once_cut_to_fit_or_dropped_when_it_is_not_one(tmp_path, caplog):
    client = MlflowClient(f"sqlite:///{tmp_path}/m.db")
    run = client.create_run(client.create_experiment("x")).info.run_id
    journal = Journal(client, run, folder=tmp_path / "journal")
    record = {"name": "n" * 900, "digest": "d" * 64, "source_type": "code", "source": "{}",
              "splits": {"train": 9, "val": 1, "test": 5}, "classes": 10, "context": "training"}
    journal.log_dataset(run, record)
    journal.log_dataset(run, record)             # a resumed trial reports it again
    journal.log_dataset(run, {**record, "splits": {"train": "many"}})
    (only,) = client.get_run(run).inputs.dataset_inputs
    assert only.dataset.name == "n" * 500 and only.dataset.digest == "d" * 36
    assert json.loads(only.dataset.profile) == {"splits": {"train": 9, "val": 1, "test": 5}, "num_rows": 15,
                                                "classes": 10}
    assert "dataset record not logged" in caplog.text and journal.pending() == 0


def test_report_puts_its_files_on_the_sweeps_parent_run(study_store, tmp_path):
    from mlflow.tracking._tracking_service import utils
    uri, _ = study_store
    # MLflow keeps one artifact store per run id for the whole process, and test_independent's
    # copies of this store hold the same run ids: without this, the files would go to a copy's
    utils._artifact_repos_cache.clear()
    assert main(["report", "visual", "--tracking-uri", uri, "--out", str(tmp_path)]) == 0
    client = MlflowClient(uri)
    # the parent run the report names (other tests add visual sweeps of other kinds to this store)
    parent = re.search(r"MLflow parent run `(\w+)`", (tmp_path / "visual" / "report.md").read_text()).group(1)
    logged = {Path(a.path).name for a in client.list_artifacts(parent, REPORT_ARTIFACTS)}
    written = {p.name for p in (tmp_path / "visual").iterdir()}
    assert logged == written - {MARKER}
    assert {"report.md", "report.html"} <= logged and any(n.endswith(".png") for n in logged)
    copy = Path(client.download_artifacts(parent, f"{REPORT_ARTIFACTS}/report.md", str(tmp_path / "dl")))
    assert copy.read_text() == (tmp_path / "visual" / "report.md").read_text()


def test_a_store_that_refuses_the_report_files_costs_a_warning_not_the_report(tmp_path, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the artifact root should be")
    client = MlflowClient(f"sqlite:///{tmp_path}/m.db")
    run = client.create_run(client.create_experiment("x", artifact_location=blocker.as_uri())).info.run_id
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "report.md").write_text("# a report\n")
    log_report(client, run, tmp_path / "report")
    ours = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(ours) == 1 and ours[0].startswith(f"warning: the report is written but not logged to MLflow run {run} (")
    assert (tmp_path / "report" / "report.md").is_file()


CHROMIUM = shutil.which("chromium")


def _dom(url: str, ready: str) -> str:
    """The page as a real browser renders it, once its scripts have run and `ready` shows (a
    slow machine may need another look: the UI fetches runs after it draws its frame)."""
    for _ in range(3):
        dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=20000",
                              "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
        if ready in dom:
            break
    return dom


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_a_browser_opens_a_sweep_on_its_runs_through_the_printed_link(tmp_path):
    port = free_port()
    server = start_mlflow(tmp_path, port)
    try:
        uri = f"http://127.0.0.1:{port}"
        client = MlflowClient(uri)
        exp = experiment_id(client, "visual", uri)
        parent = client.create_run(exp, run_name="visual sweep").info.run_id
        child = client.create_run(exp, run_name="cell lr=0.1", tags={"mlflow.parentRunId": parent}).info.run_id
        journal = Journal(client, parent, folder=tmp_path / "journal")
        for run in (child, parent):
            journal.log_dataset(run, {"name": "cifar10", "digest": "0123abcd", "source_type": "code", "source": "{}",
                                      "splits": {"train": 9, "val": 1, "test": 5}, "classes": 10,
                                      "context": "training"})
        serve, page = runs_page(uri, exp)
        assert serve is None and page.startswith(uri)
        runs = _dom(page, "visual sweep")
        assert "visual sweep" in runs and "cifar10 (0123abcd)" in runs      # the runs table, Dataset column
        plain = _dom(f"{uri}/#/experiments/{exp}", "Traces")
        assert "visual sweep" not in plain and "Traces" in plain            # what the GenAI switch opens
        detail = _dom(page.replace(f"/experiments/{exp}?", f"/experiments/{exp}/runs/{child}?"), "cifar10 (")
        assert "cifar10 (0123abcd)" in detail and ">training<" in detail         # the context tag
    finally:
        stop(server)
