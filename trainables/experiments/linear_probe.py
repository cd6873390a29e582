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


LINEAR_PROBE = trainable(
    "linear_probe", LinearProbeConfig, run_linear_probe,
    "a linear head on frozen, L2-normalised CLIP image features; Adam",
    TRAINING_METRICS + ("cache_seconds", "cache_mb"))
