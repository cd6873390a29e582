"""The one training loop every learned-prompt (and head) trainable shares, nanoGPT-style: pure
helpers (`lr_at`, `evaluate`, `train_epoch`) and a short `fit` that reports each epoch.

The frozen model is never given to the optimiser and has requires_grad off, so it receives no
gradients and no optimiser state. The test score is the one of the best-on-validation epoch
(the course code scored the last epoch).
"""
from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from clip_prompt_sweeps.names import DATASET_KEY
from trainables.data.pipeline import Augment, DeviceData, Splits
from trainables.training.checkpoints import load_loop, save_loop

# What `fit` reports every epoch (and a report may read).
TRAINING_METRICS = ("train_loss", "train_acc", "val_acc", "best_val_acc", "best_epoch", "test_acc",
                    "learning_rate", "images_per_s", "trainable_params")
# report(metrics, checkpoint_dir): Ray's tune.report in a trial, a list in unit tests.
Reporter = Callable[[dict, Optional[str]], None]


def reporting_dataset(report: Reporter, record: dict) -> Reporter:
    """`report`, with the dataset's record (trainables/data/record.py) added to the first result
    this process reports."""
    sent = False

    def with_record(metrics: dict, folder) -> None:
        nonlocal sent
        if not sent:
            metrics, sent = {**metrics, DATASET_KEY: record}, True
        report(metrics, folder)
    return with_record


@dataclass(frozen=True)
class LoopSettings:
    epochs: int
    batch_size: int
    lr: float
    momentum: float
    weight_decay: float
    warmup_steps: int
    optimizer: str = "sgd"


def lr_at(step: int, total_steps: int, warmup_steps: int, base_lr: float) -> float:
    """Linear warm-up over the first steps, then cosine decay to zero, per step."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def autocast(device: torch.device):
    # bf16 on CUDA; full precision on CPU, where bf16 matmuls are slow
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


@torch.no_grad()
def evaluate(model: nn.Module, data: DeviceData, batch_size: int, aug: Augment = Augment()) -> float:
    """Top-1 over `data`, in order; `aug` may add test-time noise (robustness)."""
    correct = torch.zeros((), device=data.labels.device)
    for x, y in data.batches(batch_size, aug=aug):
        with autocast(x.device):
            correct += (model(x).argmax(-1) == y).sum()
    return correct.item() / max(1, len(data))


@torch.no_grad()
def predictions(model: nn.Module, data: DeviceData, batch_size: int) -> torch.Tensor:
    """The predicted class of every sample of `data`, in order."""
    out = []
    for x, _ in data.batches(batch_size):
        with autocast(x.device):
            out.append(model(x).argmax(-1))
    return torch.cat(out)


def make_optimizer(params, s: LoopSettings) -> torch.optim.Optimizer:
    params = list(params)
    # one fused kernel per step on CUDA: with cached features a step is only a few kernels
    fused = bool(params) and params[0].is_cuda
    if s.optimizer == "adam":
        return torch.optim.Adam(params, lr=s.lr, weight_decay=s.weight_decay, fused=fused)
    return torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay, fused=fused)


def train_epoch(model, optimizer, data: DeviceData, s: LoopSettings, aug: Augment,
                step: int, total_steps: int) -> tuple[float, float, int]:
    """One pass over `data`; returns (mean loss, accuracy, next step). Syncs once, at the end."""
    loss_sum = torch.zeros((), device=data.labels.device)
    correct = torch.zeros((), device=data.labels.device)
    for x, y in data.batches(s.batch_size, shuffle=True, aug=aug):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, total_steps, s.warmup_steps, s.lr)
        with autocast(x.device):
            logits = model(x)
            loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * len(y)
        correct += (logits.argmax(-1) == y).sum()
        step += 1
    return loss_sum.item() / len(data), correct.item() / len(data), step


def snapshot(trained: nn.Module) -> dict:
    """The learned weights as they are now, on the CPU: the best epoch's, kept aside."""
    return {k: v.detach().float().cpu().clone() for k, v in trained.state_dict().items()}


def new_state() -> dict:
    return {"epoch": 0, "best_val_acc": -1.0, "best_epoch": 0, "test_acc": float("nan")}


def diverged_metrics(epoch: int, loss: float, s: LoopSettings) -> dict:
    # val_acc is NaN, not absent: schedulers expect their metric in every result, and the
    # searcher reads NaN as a failed trial
    return {"epoch": epoch, "train_loss": loss, "val_acc": float("nan"), "diverged": 1.0,
            "stop_reason": f"non-finite training loss at epoch {epoch} (lr {s.lr:g})"}


def epoch_metrics(epoch: int, scores: tuple[float, float, float], state: dict, s: LoopSettings,
                  last_step: int, total_steps: int) -> dict:
    """An epoch's report from (train loss, train accuracy, validation accuracy) and the state
    after it (the best epoch's validation and test scores)."""
    loss, train_acc, val_acc = scores
    return {"epoch": epoch, "train_loss": loss, "train_acc": train_acc, "val_acc": val_acc,
            "best_val_acc": state["best_val_acc"], "best_epoch": state["best_epoch"], "test_acc": state["test_acc"],
            "learning_rate": lr_at(last_step, total_steps, s.warmup_steps, s.lr), "diverged": 0.0}


def _report_last_again(trained: nn.Module, best: dict, optimizer, state: dict, report: Reporter) -> dict:
    """A trial interrupted after its last epoch was saved but before it was known to have ended:
    it reports that epoch once more (a repeat the driver does not log twice), and ends."""
    with tempfile.TemporaryDirectory(prefix="ckpt-") as folder:
        save_loop(Path(folder), trained, best, optimizer, state)
        last = state.get("metrics") or {       # a checkpoint from before "metrics" was kept
            "epoch": state["epoch"], "val_acc": state["best_val_acc"], "best_val_acc": state["best_val_acc"],
            "best_epoch": state["best_epoch"], "test_acc": state["test_acc"]}
        report(last, folder)
    return last


def fit(model: nn.Module, trained: nn.Module, splits: Splits, s: LoopSettings, aug: Augment,
        report: Reporter, resume_dir: Path | None = None, constant_metrics: dict | None = None) -> dict:
    """Train `trained` (the learned part of `model`) and report each epoch, with
    `constant_metrics` (such as a cache's cost) in every report; returns the last metrics."""
    learned = [p for p in trained.parameters() if p.requires_grad]
    optimizer = make_optimizer(learned, s)
    steps_per_epoch = math.ceil(len(splits.train) / s.batch_size)
    total = steps_per_epoch * s.epochs
    best = snapshot(trained)
    state = new_state()
    if resume_dir is not None:
        best, state = load_loop(resume_dir, trained, optimizer)
        if state["epoch"] >= s.epochs:
            return _report_last_again(trained, best, optimizer, state, report)
    metrics: dict = {}
    for epoch in range(state["epoch"] + 1, s.epochs + 1):
        start = time.perf_counter()
        model.train()
        loss, train_acc, _ = train_epoch(model, optimizer, splits.train, s, aug,
                                         (epoch - 1) * steps_per_epoch, total)
        seconds = time.perf_counter() - start
        model.eval()
        if not math.isfinite(loss):
            metrics = diverged_metrics(epoch, loss, s)
            report(metrics, None)
            return metrics
        val_acc = evaluate(model, splits.val, s.batch_size)
        if val_acc > state["best_val_acc"]:
            best = snapshot(trained)
            state.update(best_val_acc=val_acc, best_epoch=epoch,
                         test_acc=evaluate(model, splits.test, s.batch_size))
        state["epoch"] = epoch
        metrics = {**epoch_metrics(epoch, (loss, train_acc, val_acc), state, s, epoch * steps_per_epoch - 1, total),
                   "images_per_s": len(splits.train) / seconds,
                   "trainable_params": float(sum(p.numel() for p in learned)), **(constant_metrics or {})}
        state["metrics"] = metrics
        with tempfile.TemporaryDirectory(prefix="ckpt-") as folder:
            save_loop(Path(folder), trained, best, optimizer, state)
            report(metrics, folder)
    return metrics
