"""Where data and weights live. Per-user cache dirs by default, never the working directory:
a trial's working directory is a temporary per-trial folder."""
from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "clip-prompt-sweeps"
DATA_DIR_ENV = "ORCHESTRATOR_DATA_DIR"
NO_DOWNLOAD_ENV = "ORCHESTRATOR_NO_DOWNLOAD"


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """--data-dir, else $ORCHESTRATOR_DATA_DIR, else the per-user cache dir."""
    chosen = explicit or os.environ.get(DATA_DIR_ENV) or Path(platformdirs.user_cache_dir(APP)) / "data"
    return Path(chosen).expanduser().resolve()


def downloads_allowed() -> bool:
    return os.environ.get(NO_DOWNLOAD_ENV, "").strip().lower() not in {"1", "true", "yes"}
