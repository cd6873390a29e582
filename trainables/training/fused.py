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

import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Collection, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from clip_prompt_sweeps.names import DATASET_KEY, member_folder
from trainables.data.pipeline import Augment, DeviceData, Splits
from trainables.training.checkpoints import load_loop, save_loop
from trainables.training.loop import (
    LoopSettings,
    autocast,
    diverged_metrics,
    epoch_metrics,
    lr_at,
    make_optimizer,
    new_state,
    snapshot,
)

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


# One report an epoch: (member, its metrics) for each member that trained in it, and a folder
# holding member_folder(k), a trial's own checkpoint, for each of them that did not diverge. In a
# trial: one Ray result and one checkpoint, each member's part its own trial's.
FusedReporter = Callable[[list[tuple[int, dict]], Optional[str]], None]


def reporting_dataset_fused(report: FusedReporter, record: dict) -> FusedReporter:
    """`report`, with the dataset's record (trainables/data/record.py) in each member's first
    report, as loop.py's `reporting_dataset` adds it to a trial's."""
    sent = False

    def with_record(parts: list[tuple[int, dict]], folder: Optional[str]) -> None:
        nonlocal sent
        if not sent:
            parts, sent = [(k, {**m, DATASET_KEY: record}) for k, m in parts], True
        report(parts, folder)
    return with_record


@dataclass
class Member:
    """What a trial of its own would hold: its learned part, settings, optimizer, best weights and
    state (trainables/training/checkpoints.py's, so a member's checkpoint is a trial's)."""
    trained: nn.Module
    settings: LoopSettings
    optimizer: torch.optim.Optimizer = field(init=False)
    best: dict = field(init=False)
    state: dict = field(default_factory=new_state)

    def __post_init__(self) -> None:
        self.optimizer = make_optimizer(self.learned(), self.settings)
        self.best = snapshot(self.trained)

    def learned(self) -> list[nn.Parameter]:
        return [p for p in self.trained.parameters() if p.requires_grad]


def _mode(members: Sequence[Member], live: list[int], train: bool) -> None:
    for k in live:
        members[k].trained.train(train)


def _epoch_reports(members: Sequence[Member], live: list[int], scores: dict, tests: dict, epoch: int,
                   last_step: int, total: int, extra: dict) -> dict[int, dict]:
    """Each live member's report of `epoch`, its state brought up to date (as `fit` does)."""
    reports = {}
    for k in live:
        m, (loss, train_acc, val_acc) = members[k], scores[k]
        if not math.isfinite(loss):
            reports[k] = diverged_metrics(epoch, loss, m.settings)
            continue
        if k in tests:
            m.best = snapshot(m.trained)
            m.state.update(best_val_acc=val_acc, best_epoch=epoch, test_acc=tests[k])
        m.state["epoch"] = epoch
        reports[k] = m.state["metrics"] = {
            **epoch_metrics(epoch, (loss, train_acc, val_acc), m.state, m.settings, last_step, total),
            "trainable_params": float(sum(p.numel() for p in m.learned())), **extra}
    return reports


def _resumed(members: Sequence[Member], resume_dir: Path | None) -> tuple[list[int], int]:
    """(the members that go on, the epoch they are at). From a checkpoint, a member without a
    folder there had left the batch (stopped or diverged) and stays out."""
    if resume_dir is None:
        return list(range(len(members))), 0
    live, epochs = [], set()
    for k, m in enumerate(members):
        folder = resume_dir / member_folder(k)
        if folder.is_dir():
            m.best, m.state = load_loop(folder, m.trained, m.optimizer)
            live.append(k)
            epochs.add(m.state["epoch"])
    if len(epochs) > 1:
        raise ValueError(f"a fused checkpoint whose members are at different epochs: {sorted(epochs)}")
    return live, epochs.pop() if epochs else 0


def _save(folder: Path, members: Sequence[Member], ks: Sequence[int]) -> None:
    for k in ks:
        (folder / member_folder(k)).mkdir()
        m = members[k]
        save_loop(folder / member_folder(k), m.trained, m.best, m.optimizer, m.state)


def fit_fused(forward_of: Callable[[list[int]], FusedForward], members: Sequence[Member], splits: Splits,
              aug: Augment, report: FusedReporter, stopped: Callable[[], Collection[int]] = frozenset,
              constant_metrics: dict | None = None, resume_dir: Path | None = None) -> None:
    """`fit` for the members of one cell at once: each member's reports are what `fit` reports
    for it alone. `forward_of(ks)` is the fused forward of members `ks`; after each report, the
    members `stopped()` names (ASHA's, one by one) leave the batch, and so does one that diverged.
    From `resume_dir` (a fused checkpoint), the members in it go on from its epoch."""
    s = members[0].settings
    _check_one_cell([m.settings for m in members])
    steps = math.ceil(len(splits.train) / s.batch_size)
    live, done = _resumed(members, resume_dir)
    if live and done >= s.epochs:
        # interrupted after its last epoch was saved, before it was known to have ended: that
        # epoch once more (the driver logs no epoch twice), as `fit` does
        with tempfile.TemporaryDirectory(prefix="ckpt-") as folder:
            _save(Path(folder), members, live)
            report([(k, members[k].state["metrics"]) for k in live], folder)
        return
    for epoch in range(done + 1, s.epochs + 1):
        if not live:
            return
        forward, start = forward_of(live), time.perf_counter()
        _mode(members, live, train=True)
        losses, accs, _ = train_epoch_fused(forward, [members[k].optimizer for k in live], splits.train,
                                            [members[k].settings for k in live], aug, (epoch - 1) * steps, steps * s.epochs)
        seconds = time.perf_counter() - start
        _mode(members, live, train=False)
        vals = evaluate_fused(forward, splits.val, s.batch_size)
        scores = {k: score for k, score in zip(live, zip(losses, accs, vals))}
        better = [k for k in live if math.isfinite(scores[k][0]) and scores[k][2] > members[k].state["best_val_acc"]]
        tests = dict(zip(better, evaluate_fused(forward_of(better), splits.test, s.batch_size))) if better else {}
        extra = {"images_per_s": len(splits.train) / seconds, **(constant_metrics or {})}
        reports = _epoch_reports(members, live, scores, tests, epoch, epoch * steps - 1, steps * s.epochs, extra)
        with tempfile.TemporaryDirectory(prefix="ckpt-") as folder:
            _save(Path(folder), members, [k for k in live if not reports[k]["diverged"]])
            report([(k, reports[k]) for k in live], folder)
        gone = set(stopped())
        live = [k for k in live if not reports[k]["diverged"] and k not in gone]
