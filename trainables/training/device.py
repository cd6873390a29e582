"""The device a trial runs on."""
from __future__ import annotations

import torch

from clip_prompt_sweeps.errors import UserError


def pick_device(name: str) -> torch.device:
    """auto: CUDA where torch sees a GPU, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' was asked for but torch sees no CUDA GPU; use --set device=auto")
    return torch.device(name)
