"""A linear probe: a linear head on frozen CLIP image features (beyond the seed; the course asks
to compare prompting with it). The features are computed once per image, so each epoch costs a
matrix product; with the CLIP paper's choice, they are L2-normalised first."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from trainables.data.config import DataConfig, load_splits, splits_record
from trainables.data.pipeline import Augment
from trainables.models.clip import load_clip
from trainables.models.clip_config import BackboneConfig
from trainables.training.device import pick_device
from trainables.training.entry import trainable
from trainables.training.features import cache_splits
from trainables.training.fused import FusedReporter, Member, fit_fused, reporting_dataset_fused
from trainables.training.loop import TRAINING_METRICS, LoopSettings, Reporter, fit, reporting_dataset


@dataclass
class LinearProbeConfig(DataConfig, BackboneConfig):
    lr: float = 1e-3                    # Adam
    weight_decay: float = 0.0

    def check(self) -> None:
        super().check()
        self.check_backbone()

    def settings(self) -> LoopSettings:
        return LoopSettings(self.epochs, self.batch_size, self.lr, 0.9, self.weight_decay,
                            warmup_steps=0, optimizer="adam")


def run_linear_probe(cfg: LinearProbeConfig, report: Reporter, resume_dir=None) -> dict:
    device = pick_device(cfg.device)
    clip = load_clip(cfg.model, cfg.pretrained, device)
    data, splits = load_splits(cfg, clip.preprocess, device)
    report = reporting_dataset(report, splits_record(data, splits))
    encode = lambda x: F.normalize(clip.model.encode_image(x).float(), dim=-1)  # noqa: E731
    splits, cost = cache_splits(splits, encode, cfg.batch_size)
    torch.manual_seed(cfg.train_seed)
    head = nn.Linear(splits.train.features.shape[1], len(data.classes), device=device)
    return fit(head, head, splits, cfg.settings(), Augment(), report, resume_dir, cost)


def fused_heads(heads: list[nn.Linear], x: torch.Tensor) -> torch.Tensor:
    """The logits of K heads over one batch of features, (K, B, C) (a fused trial's members,
    issue #38). Each head is its own product, as in its trial: one batched product sums in another
    order, and over epochs of Adam that flipped a validation image's prediction here. What the
    members share is the rest: the feature cache, each batch drawn once, one evaluation pass."""
    return torch.stack([head(x) for head in heads])


def run_linear_probe_fused(cfgs: list[LinearProbeConfig], report: FusedReporter, stopped, resume_dir=None) -> None:
    cfg = cfgs[0]               # a cell's members share all but the learning rate
    device = pick_device(cfg.device)
    clip = load_clip(cfg.model, cfg.pretrained, device)
    data, splits = load_splits(cfg, clip.preprocess, device)
    report = reporting_dataset_fused(report, splits_record(data, splits))
    encode = lambda x: F.normalize(clip.model.encode_image(x).float(), dim=-1)  # noqa: E731
    splits, cost = cache_splits(splits, encode, cfg.batch_size)      # once for all the members
    heads = []
    for c in cfgs:
        torch.manual_seed(c.train_seed)     # each member's init is its trial's
        heads.append(nn.Linear(splits.train.features.shape[1], len(data.classes), device=device))
    members = [Member(head, c.settings()) for head, c in zip(heads, cfgs)]
    fit_fused(lambda ks: (lambda x: fused_heads([heads[k] for k in ks], x)), members, splits, Augment(), report,
              stopped, cost, resume_dir)


LINEAR_PROBE = trainable(
    "linear_probe", LinearProbeConfig, run_linear_probe,
    "a linear head on frozen, L2-normalised CLIP image features; Adam",
    TRAINING_METRICS + ("cache_seconds", "cache_mb"), run_fused=run_linear_probe_fused)
