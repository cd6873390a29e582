"""A lab's shared tracking server: one `mlflow server` on a real PostgreSQL (Debian's package, on a
unix socket in a folder of its own), and four smoke sweeps writing through it at once (issue #30).
Every run of every sweep must be there, in PostgreSQL, with no lock error or lost write, and each
sweep's report must build from the server alone."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from servers import free_port, postgres_bin, start_mlflow, start_postgres, stop, stop_postgres

from orchestrator.commands.cli import main

ROOT = Path(__file__).resolve().parents[1]
ONE = ["--samples", "1", "--epochs", "1"]
# four sweeps that need no other sweep's runs, as four users would start them
SWEEPS = {"visual": [*ONE], "deep": [*ONE, "--set", "dataset=cifar10"], "linear": [*ONE], "zeroshot": []}
LOCK_ERRORS = ("database is locked", "OperationalError", "deadlock detected", "could not serialize")

pytestmark = pytest.mark.skipif(postgres_bin() is None, reason="no PostgreSQL server: apt-get install postgresql")


def _planned(name: str, args: list[str]) -> int:
    from orchestrator.sweep.plan import make_plan
    sets = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
    samples = 1 if "--samples" in args else None
    plan = make_plan(name, "smoke", sets, samples=samples, epochs=1 if "--epochs" in args else None)
    return plan.n_trials


def test_four_sweeps_at_once_through_one_server_on_postgresql(tmp_path, data_root):
    pytest.importorskip("psycopg", reason="the server's PostgreSQL driver: pip install -e '.[dev]'")
    import sqlalchemy
    pg, database, folder = start_postgres()
    server = None
    try:
        port = free_port()
        server = start_mlflow(tmp_path, port, backend=database, workers=2)
        uri = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
        env.update(ORCHESTRATOR_NO_DOWNLOAD="1", RAY_AUTH_MODE="disabled", PYTHONUNBUFFERED="1")
        logs, procs = {}, {}
        for name, args in SWEEPS.items():
            logs[name] = tmp_path / f"{name}.log"
            procs[name] = subprocess.Popen(
                [sys.executable, "-m", "orchestrator", "sweep", name, *args, "--tracking-uri", uri,
                 "--storage-path", str(tmp_path / f"ray-{name}"), "--data-dir", str(data_root),
                 "--gpus-per-trial", "0", "--max-concurrent", "1"],
                cwd=ROOT, env=env, stdout=logs[name].open("w"), stderr=subprocess.STDOUT, start_new_session=True)
        for name, proc in procs.items():
            assert proc.wait(timeout=900) == 0, logs[name].read_text()[-3000:]
        text = "".join(log.read_text() for log in logs.values()) + (tmp_path / "server.log").read_text()
        assert not [e for e in LOCK_ERRORS if e in text], text[-3000:]
        # MLflow's two links per ended run against a server: 20,000 lines for 10,000 trials
        assert not any("View run" in log.read_text() for log in logs.values())

        client = MlflowClient(uri)
        total = 0
        for name, args in SWEEPS.items():
            exp = client.get_experiment_by_name(name)
            (parent,) = client.search_runs([exp.experiment_id], "tags.role = 'sweep'")
            assert parent.info.status == "FINISHED"
            children = client.search_runs([exp.experiment_id],
                                          f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
            assert len(children) == _planned(name, args), name
            assert {c.info.status for c in children} == {"FINISHED"}
            assert all(c.data.metrics for c in children), name          # every trial's results written
            total += 1 + len(children)
            out = tmp_path / "reports"
            assert main(["report", name, "--tracking-uri", uri, "--out", str(out)]) == 0
            assert "| " in (out / name / "report.md").read_text()          # its tables
        # the runs are PostgreSQL's rows, not a file beside the server
        engine = sqlalchemy.create_engine(database)
        with engine.connect() as con:
            assert con.execute(sqlalchemy.text("select count(*) from runs")).scalar() == total
        engine.dispose()
        assert not list(tmp_path.glob("*.db"))
    finally:
        if server is not None:
            stop(server)
        stop_postgres(pg, folder)
    assert not folder.exists()
