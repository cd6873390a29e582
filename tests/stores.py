"""An empty MLflow SQLite store for a test, fast (the mutation run makes thousands)."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path


def empty_store(folder) -> str:
    """A new, empty MLflow SQLite store in `folder`: a copy of one made once per MLflow version
    (creating the tables takes a second, and the mutation run calls these tests thousands of times)."""
    import mlflow
    from filelock import FileLock
    from mlflow.tracking import MlflowClient
    template = Path(tempfile.gettempdir()) / f"clip-prompt-sweeps-empty-mlflow-{mlflow.__version__}.db"
    with FileLock(f"{template}.lock"):
        if not template.is_file():
            MlflowClient(f"sqlite:///{template}.tmp").search_experiments(max_results=1)
            Path(f"{template}.tmp").rename(template)
    shutil.copy(template, Path(folder) / "mlflow.db")
    return f"sqlite:///{folder}/mlflow.db"
