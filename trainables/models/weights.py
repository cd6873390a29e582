"""What loading pretrained weights shares: a fixed initialisation for random models, and one line
where weights are neither cached nor downloadable."""
from __future__ import annotations

import contextlib

import torch

FETCH_HINT = "run `python -m orchestrator fetch --weights` on a machine with network and copy the cache"


@contextlib.contextmanager
def fixed_init(seed: int = 0):
    """A randomly initialised frozen model is the same in every trial (so the learning rates of
    a cell are compared on one model), without touching the caller's random stream."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def require_hub_file(path, what: str) -> None:
    """A torch-hub checkpoint is cached, or may be downloaded now: else one line saying why not."""
    from clip_prompt_sweeps.errors import UserError
    from trainables.paths import NO_DOWNLOAD_ENV, downloads_allowed, host_answers
    if path.is_file():
        return
    where = f"{what} weights are not in {path.parent}"
    if not downloads_allowed():
        raise UserError(f"{where} and downloads are disabled (${NO_DOWNLOAD_ENV}); {FETCH_HINT}")
    if not host_answers("download.pytorch.org"):
        raise UserError(f"{where} and download.pytorch.org does not answer; {FETCH_HINT}")
