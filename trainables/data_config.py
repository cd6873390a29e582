"""The data settings every trainable that learns on CIFAR shares, and its seeded train/val split
and test split, on the device."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from common.errors import UserError
from common.names import DATA_KINDS, DATASETS
from trainables.cifar import Cifar, load_cifar
from trainables.dataset_record import dataset_record
from trainables.loop import Splits
from trainables.paths import data_dir
from trainables.pipeline import DeviceData, Preprocess, train_val_split


@dataclass
class DataConfig:
    dataset: str = "cifar10"            # cifar10 | cifar100
    data: str = "real"                  # real | synthetic (recorded as the run's data_kind)
    data_dir: Optional[str] = None      # None: $ORCHESTRATOR_DATA_DIR or the per-user cache
    epochs: int = 20
    batch_size: int = 128
    val_fraction: float = 0.1           # 45k/5k on CIFAR
    seed: int = 0                       # split, initialisation and shuffling
    device: str = "auto"                # auto | cpu | cuda

    def check(self) -> None:
        if self.dataset not in DATASETS:
            raise UserError(f"dataset '{self.dataset}' cannot be trained on; use {' or '.join(DATASETS)}")
        if self.data not in DATA_KINDS:
            raise UserError(f"data '{self.data}' unknown; known: {', '.join(DATA_KINDS)}")
        for key in ("epochs", "batch_size"):
            if getattr(self, key) < 1:
                raise UserError(f"'{key}' must be at least 1, got {getattr(self, key)}")
        if not 0 < self.val_fraction < 1:
            raise UserError(f"'val_fraction' must be between 0 and 1, got {self.val_fraction}")


def load_splits(cfg: DataConfig, pre: Preprocess, device: torch.device) -> tuple[Cifar, Splits]:
    """The dataset, and its seeded train/val split and test split on the device."""
    data = load_cifar(cfg.dataset, data_dir(cfg.data_dir), cfg.data)
    train, val = train_val_split(data.train, cfg.val_fraction, cfg.seed)
    splits = Splits(*(DeviceData(s, device, pre, cfg.seed + i) for i, s in enumerate((train, val, data.test))))
    return data, splits


def splits_record(data: Cifar, splits: Splits) -> dict:
    """The dataset record of a trial that trains on these splits."""
    return dataset_record(data, "training", train=len(splits.train), val=len(splits.val), test=len(splits.test))
