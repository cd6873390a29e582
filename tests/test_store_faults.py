"""MLflow errors never end a sweep: writes are retried, what still fails waits in a journal on
disk and is written when the store answers again; over-long values are cut with a marker and
kept whole as an artifact. Real MLflow: a SQLite store, and a real `mlflow server` that the test
stops in the middle of a sweep and starts again."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mlflow.entities import Param, RunTag
from mlflow.tracking import MlflowClient
from servers import free_port, start_mlflow, stop

from clip_prompt_sweeps.store.journal import Journal

ROOT = Path(__file__).resolve().parents[1]


def test_an_over_long_param_is_cut_with_a_marker_and_kept_whole(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path}/m.db")
    run = client.create_run(client.create_experiment("x", artifact_location=(tmp_path / "a").as_uri()))
    journal = Journal(client, run.info.run_id, folder=tmp_path / "journal")
    long = "a photo of a {} " + "very " * 2000
    journal.log_batch(run.info.run_id, params=[Param("template", long)], tags=[RunTag("note", "n" * 9000)])
    data = client.get_run(run.info.run_id).data
    assert data.params["template"].startswith("a photo of a {} very") and "[cut;" in data.params["template"]
    assert len(data.params["template"]) <= 6000 and len(data.tags["note"]) <= 8000
    whole = Path(client.download_artifacts(run.info.run_id, "values/template.txt", str(tmp_path)))
    assert whole.read_text() == long
    assert journal.pending() == 0


def test_writes_wait_on_disk_while_the_store_is_down_then_go_through_in_order(tmp_path):
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = start_mlflow(tmp_path, port)
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("x"))
    journal = Journal(client, run.info.run_id, retries=1, backoff_s=0.1, folder=tmp_path / "journal")
    journal.recheck_s = 0.0
    stop(server)
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    try:
        journal.set_tag(run.info.run_id, "step", "1")
        journal.set_tag(run.info.run_id, "step", "2")          # queued behind the first
        assert journal.pending() == 2
        server = start_mlflow(tmp_path, port)
        journal.set_tag(run.info.run_id, "after", "yes")       # the store answers: all go, in order
        assert journal.pending() == 0
        tags = client.get_run(run.info.run_id).data.tags
        assert tags["step"] == "2" and tags["after"] == "yes"
    finally:
        del os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]
        stop(server)


def test_a_sweep_goes_on_while_the_tracking_server_is_down(tmp_path, data_root):
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = start_mlflow(tmp_path, port)
    args = ["sweep", "visual", "--tracking-uri", uri, "--storage-path", str(tmp_path / "ray"),
            "--data-dir", str(data_root), "--gpus-per-trial", "0", "--epochs", "4", "--set", "batch_size=16",
            "--max-concurrent", "2"]
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env.update(ORCHESTRATOR_NO_DOWNLOAD="1", RAY_AUTH_MODE="disabled",
               XDG_CACHE_HOME=str(tmp_path / "cache"))              # the journal's folder
    log = tmp_path / "driver.log"
    driver = subprocess.Popen([sys.executable, "-m", "orchestrator", *args], cwd=ROOT, env=env,
                              stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        client = MlflowClient(uri)
        deadline = time.time() + 240
        while time.time() < deadline and driver.poll() is None:
            exp = client.get_experiment_by_name("visual")
            runs = [] if exp is None else client.search_runs([exp.experiment_id], "tags.role = 'trial'")
            if any(r.data.metrics.get("epoch", 0) >= 1 for r in runs):
                break
            time.sleep(0.5)
        stop(server)                       # the store goes away while trials run
        time.sleep(12)
        assert driver.poll() is None, log.read_text()[-3000:]      # the sweep went on
        server = start_mlflow(tmp_path, port)
        assert driver.wait(timeout=300) == 0, log.read_text()[-3000:]
        exp = client.get_experiment_by_name("visual")
        (parent,) = client.search_runs([exp.experiment_id], "tags.role = 'sweep'")
        children = client.search_runs([exp.experiment_id], "tags.role = 'trial'")
        assert parent.info.status == "FINISHED" and int(parent.data.tags["delayed_writes"]) > 0
        assert len(children) == 8 and all(c.info.status in ("FINISHED", "KILLED") for c in children)
        for c in children:
            steps = [m.step for m in client.get_metric_history(c.info.run_id, "val_acc")]
            assert steps == sorted(set(steps)) and steps[0] == 1
            if c.info.status == "FINISHED":
                assert steps == [1, 2, 3, 4]
                assert client.list_artifacts(c.info.run_id, "learned")
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        stop(server)


def test_a_sweep_with_an_over_long_setting_runs_and_keeps_it_whole(tmp_path, data_root, ray_session):
    from orchestrator.commands.cli import main
    uri = f"sqlite:///{tmp_path}/m.db"
    template = "a photo of a {}" + ", clearly" * 800          # 7,000+ characters: over MLflow's 6,000
    assert main(["sweep", "zeroshot", "--set", "dataset=cifar10", "--set", f"template={template}",
                 "--tracking-uri", uri, "--storage-path", str(tmp_path / "ray"), "--data-dir", str(data_root),
                 "--gpus-per-trial", "0"]) == 0
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("zeroshot").experiment_id], "tags.role = 'trial'")
    assert run.info.status == "FINISHED" and "[cut;" in run.data.params["template"]
    whole = Path(client.download_artifacts(run.info.run_id, "values/template.txt", str(tmp_path)))
    assert whole.read_text() == template
