"""Tracking URIs: which store, whether it answers, and whether it exists yet.

Two kinds are supported: an SQLite file (`sqlite:///ABSOLUTE/PATH.db`) and an MLflow tracking
server (`http(s)://HOST:PORT`)."""
from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import urllib.request
from pathlib import Path

from filelock import FileLock

from clip_prompt_sweeps.errors import UserError

TRACKING_ENV = "MLFLOW_TRACKING_URI"
_SQLITE = "sqlite:///"


def resolve_tracking_uri(flag: str | None = None) -> str:
    """--tracking-uri, else $MLFLOW_TRACKING_URI, else ./mlflow.db: the file `mlflow ui` opens
    when started in the same directory without flags (absolute: trials run in other folders)."""
    return flag or os.environ.get(TRACKING_ENV) or f"{_SQLITE}{Path.cwd() / 'mlflow.db'}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of an SQLite store; None for a server."""
    return Path(uri[len(_SQLITE):]) if uri.startswith(_SQLITE) else None


def store_exists(uri: str) -> bool:
    """False for an SQLite file not made yet: a client opened on it would create it."""
    path = sqlite_path(uri)
    return path is None or path.is_file()


def check_tracking(uri: str, timeout: float = 10.0) -> None:
    """Fail fast, before any trial, when the store cannot answer."""
    db = sqlite_path(uri)
    if db is not None:
        if not db.parent.is_dir() or not os.access(db.parent, os.W_OK):
            raise UserError(f"MLflow store {uri}: folder {db.parent} does not exist or is not writable; "
                            f"create it or pass --tracking-uri")
        return
    if uri.startswith(("http://", "https://")):
        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout).close()
        except Exception as err:  # noqa: BLE001 - any failure means the same to the user
            raise UserError(f"MLflow tracking server {uri} does not answer ({err}); start it "
                            f"(`mlflow server`) or pass another --tracking-uri / ${TRACKING_ENV}") from None
        return
    raise UserError(f"tracking URI {uri!r} is not supported; use sqlite:///ABSOLUTE/PATH.db or "
                    f"http://HOST:PORT")


def tracking_answers(uri: str) -> bool:
    try:
        check_tracking(uri, timeout=3.0)
        return True
    except UserError:
        return False


def check_existing_store(uri: str, fresh: bool = False) -> None:
    """The store must be an MLflow store, if it exists. Nothing here creates or migrates one:
    pointed at another program's SQLite file, MLflow would add its tables to it. A `fresh` sweep
    (not a resume, not a reader) may take an empty file, one made by `touch` or opened first by
    another tool: 0 bytes hold nothing to protect, and MLflow initializes it as a new file."""
    path = sqlite_path(uri)
    if path is None or not path.is_file():
        return      # a server; or no file yet, and the caller says which sweep to run first
    if fresh and path.stat().st_size == 0:
        return
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
            tables = {r[0] for r in con.execute("select name from sqlite_master where type = 'table'")}
    except sqlite3.DatabaseError as err:
        raise UserError(f"{path} is not an SQLite database ({err}); pass the MLflow store with --tracking-uri") from None
    if not {"experiments", "runs", "alembic_version"} <= tables:
        raise UserError(f"{path} is not an MLflow store (no MLflow tables in it); pass the store your sweeps "
                        f"used with --tracking-uri")


def prepare_store(uri: str) -> None:
    """Create a new SQLite store under a file lock. Two sweeps started together would both
    create (migrate) the database, and one would fail; the first to take the lock creates it,
    the other finds it ready. SQLite serialises their writes from then on."""
    path = sqlite_path(uri)
    if path is not None:
        from mlflow.tracking import MlflowClient

        # importing mlflow sets its loggers' levels: quieten "Creating initial MLflow database
        # tables" (and its kin) after that
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        with FileLock(str(path) + ".lock", timeout=120):
            MlflowClient(uri).search_experiments(max_results=1)


def runs_page(uri: str, experiment_id: str) -> tuple[str | None, str]:
    """(the command that serves the store, or None for a server; the page of the experiment's
    runs). MLflow 3's UI opens on its GenAI pages whatever the experiment's kind tag says; the
    page's `workflowType` parameter, like its "Model training" switch, opens the runs."""
    page = f"#/experiments/{experiment_id}?workflowType=machine_learning"
    if uri.startswith(("http://", "https://")):
        return None, f"{uri.rstrip('/')}/{page}"
    return f"mlflow ui --backend-store-uri {uri}", f"http://127.0.0.1:5000/{page}"


def artifact_location(uri: str, experiment: str) -> str | None:
    """Artifacts beside an SQLite database, as `mlflow ui` expects; a server chooses its own."""
    path = sqlite_path(uri)
    return None if path is None else (path.parent / "mlartifacts" / experiment).as_uri()
