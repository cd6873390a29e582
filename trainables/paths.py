"""Where data and weights live, and whether they may be downloaded. Per-user cache dirs by default,
never the working directory: a trial's working directory is a temporary per-trial folder."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import platformdirs

from clip_prompt_sweeps.errors import UserError

APP = "clip-prompt-sweeps"
DATA_DIR_ENV = "ORCHESTRATOR_DATA_DIR"
NO_DOWNLOAD_ENV = "ORCHESTRATOR_NO_DOWNLOAD"


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """--data-dir, else $ORCHESTRATOR_DATA_DIR, else the per-user cache dir."""
    chosen = explicit or os.environ.get(DATA_DIR_ENV) or Path(platformdirs.user_cache_dir(APP)) / "data"
    path = Path(chosen).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise UserError(f"data dir {path} is a file, not a folder; pass another --data-dir (or ${DATA_DIR_ENV})")
    return path


def downloads_allowed() -> bool:
    return os.environ.get(NO_DOWNLOAD_ENV, "").strip().lower() not in {"1", "true", "yes"}


def host_answers(host: str, timeout: float = 3.0) -> bool:
    # huggingface_hub retries for ~45 s before failing offline; a quick probe fails at once.
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False
