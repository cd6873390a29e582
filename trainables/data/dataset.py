"""The dataset type every source gives and every trainable reads: class names and uint8 splits,
whole in memory (or memory-mapped), ready to move to a device in one copy."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Split:
    images: torch.Tensor        # (N, 3, H, W) uint8: 32 px for CIFAR, the backbone's size for the rest
    labels: torch.Tensor        # (N,) int64


@dataclass(frozen=True)
class ImageDataset:
    name: str                   # as a config names it: cifar10, stl10, folder:PATH, ...
    classes: tuple[str, ...]    # as prompt text ('_' read as a space)
    train: Split | None         # None where a dataset is a test set only (CIFAR-110)
    test: Split
    kind: str                   # 'real' or 'synthetic'
    val: Split | None = None    # where the dataset ships a validation split (not CIFAR)
