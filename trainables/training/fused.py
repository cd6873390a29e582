"""Fused trials (issue #38): the members of one cell (its learning rates) trained together, one
batch at a time, in one pass over the frozen backbone.

A cell's members share its seed, so a trial of each would draw the same shuffling and augmentation
and start from the same prompt: fused, they take each batch once, the frozen layers run once over
the K x B stacked rows, and each member keeps its own prompt, optimizer and learning-rate
schedule. The loss is the sum of the members' losses; a member's parameters appear in its own term
alone, so the gradient each receives is its own trial's. What differs from K separate trials is
only the order of floating-point sums inside the stacked matrix products.

`forward(x)` gives the members' logits for one batch, (K, B, C): for prompts,
trainables/models/clip.py's `fused_logits` over the members' classifiers.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from trainables.data.pipeline import Augment, DeviceData
from trainables.training.loop import LoopSettings, autocast, lr_at

FusedForward = Callable[[torch.Tensor], torch.Tensor]


def _check_one_cell(settings: Sequence[LoopSettings]) -> None:
    # what a member's batches depend on must be the cell's, not the member's
    if len({(s.batch_size, s.epochs) for s in settings}) != 1:
        raise ValueError("fused members must share their batch size and epochs (one cell)")


def train_epoch_fused(forward: FusedForward, optimizers: Sequence[torch.optim.Optimizer], data: DeviceData,
                      settings: Sequence[LoopSettings], aug: Augment, step: int,
                      total_steps: int) -> tuple[list[float], list[float], int]:
    """One pass over `data` for every member; returns (each member's mean loss, each member's
    accuracy, next step), as `train_epoch` would for each alone. Syncs once, at the end."""
    _check_one_cell(settings)
    k, device = len(optimizers), data.labels.device
    loss_sum, correct = torch.zeros(k, device=device), torch.zeros(k, device=device)
    for x, y in data.batches(settings[0].batch_size, shuffle=True, aug=aug):
        for optimizer, s in zip(optimizers, settings):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, total_steps, s.warmup_steps, s.lr)
        with autocast(x.device):
            logits = forward(x)
            losses = torch.stack([F.cross_entropy(member.float(), y) for member in logits])
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        for optimizer in optimizers:
            optimizer.step()
        loss_sum += losses.detach() * len(y)
        correct += (logits.argmax(-1) == y).sum(-1)
        step += 1
    n = len(data)          # divided as `train_epoch` divides: Python floats, not float32
    return [v / n for v in loss_sum.tolist()], [v / n for v in correct.tolist()], step


@torch.no_grad()
def evaluate_fused(forward: FusedForward, data: DeviceData, batch_size: int, aug: Augment = Augment()) -> list[float]:
    """Each member's top-1 over `data`, in order, in one pass: `evaluate` for each alone."""
    correct = None
    for x, y in data.batches(batch_size, aug=aug):
        with autocast(x.device):
            hits = (forward(x).argmax(-1) == y).sum(-1)
        correct = hits if correct is None else correct + hits
    return [] if correct is None else [v / max(1, len(data)) for v in correct.tolist()]
