"""Learned parameters as safetensors (loading runs no pickle code); loop state as JSON."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from clip_prompt_sweeps.names import BEST_FILE, LATEST_FILE

OPTIMIZER = "optimizer.pt"
STATE = "state.json"


def save_module(module: nn.Module, path: Path) -> None:
    save_file({k: v.detach().float().cpu().contiguous() for k, v in module.state_dict().items()}, str(path))


def load_module(module: nn.Module, path: Path) -> None:
    device = next(module.parameters()).device
    module.load_state_dict({k: v.to(device) for k, v in load_file(str(path)).items()})


def save_loop(folder: Path, trained: nn.Module, best: dict, optimizer: torch.optim.Optimizer, state: dict) -> None:
    save_module(trained, folder / LATEST_FILE)
    save_file({k: v.contiguous() for k, v in best.items()}, str(folder / BEST_FILE))
    torch.save(optimizer.state_dict(), folder / OPTIMIZER)
    (folder / STATE).write_text(json.dumps(state))


def checkpoint_epoch(folder: Path) -> int | None:
    """The epoch a loop checkpoint holds, or None when any of its files is missing, truncated or
    unreadable (a kill while it was written or synced): such a checkpoint is never resumed from."""
    try:
        state = json.loads((folder / STATE).read_text())
        for name in (LATEST_FILE, BEST_FILE):
            load_file(str(folder / name))
        torch.load(folder / OPTIMIZER, weights_only=True)
        epoch = state["epoch"]
    except Exception:  # noqa: BLE001 - every way a file can be broken means the same here
        return None
    return epoch if isinstance(epoch, int) and epoch >= 1 else None


def load_loop(folder: Path, trained: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Restores `trained` and `optimizer` in place; returns (best parameters, loop state)."""
    load_module(trained, folder / LATEST_FILE)
    optimizer.load_state_dict(torch.load(folder / OPTIMIZER, weights_only=True))
    return load_file(str(folder / BEST_FILE)), json.loads((folder / STATE).read_text())
