"""The data settings every trainable that learns on a dataset shares, and its seeded train/val split
and test split, on the device."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from clip_prompt_sweeps.errors import UserError
from trainables.data.catalog import check_dataset, load_dataset
from trainables.data.dataset import ImageDataset
from trainables.data.pipeline import DeviceData, Preprocess, Splits, train_val_split
from trainables.data.record import dataset_record
from trainables.paths import data_dir


@dataclass
class DataConfig:
    dataset: str = "cifar10"            # cifar10 | cifar100 | a torchvision dataset (stl10, dtd, ...) | folder:PATH
    data: str = "real"                  # real | synthetic (recorded as the run's data_kind)
    data_dir: Optional[str] = None      # None: $ORCHESTRATOR_DATA_DIR or the per-user cache
    epochs: int = 20
    batch_size: int = 128
    val_fraction: float = 0.1           # 45k/5k on CIFAR
    seed: int = 0                       # split, initialisation and shuffling
    replicate: int = 0                  # k >= 1: a rerun of the tuned trial with new seeds for
                                        # initialisation, shuffling and noise; the split stays seed's
    device: str = "auto"                # auto | cpu | cuda

    def check(self) -> None:
        check_dataset(self.dataset, self.data)
        if self.replicate < 0:
            raise UserError(f"'replicate' must be 0 (the tuned trial) or more, got {self.replicate}")
        for key in ("epochs", "batch_size"):
            if getattr(self, key) < 1:
                raise UserError(f"'{key}' must be at least 1, got {getattr(self, key)}")
        if not 0 < self.val_fraction < 1:
            raise UserError(f"'val_fraction' must be between 0 and 1, got {self.val_fraction}")

    @property
    def split_seed(self) -> int:
        """The train/val split: the same for every replicate of a cell."""
        return self.seed

    @property
    def train_seed(self) -> int:
        """Initialisation, shuffling and noise: the seed itself, or a new one per replicate."""
        return self.seed + 1_000_003 * self.replicate


def load_splits(cfg: DataConfig, pre: Preprocess, device: torch.device) -> tuple[ImageDataset, Splits]:
    """The dataset, and its train/val split (the dataset's own validation split where it ships
    one, else carved from train with the seeded rule) and test split on the device."""
    data = load_dataset(cfg.dataset, data_dir(cfg.data_dir), cfg.data, pre.size, pre.interpolation)
    train, val = (data.train, data.val) if data.val is not None else train_val_split(data.train, cfg.val_fraction,
                                                                                     cfg.split_seed)
    splits = Splits(*(DeviceData(s, device, pre, cfg.train_seed + i) for i, s in enumerate((train, val, data.test))))
    return data, splits


def splits_record(data: ImageDataset, splits: Splits) -> dict:
    """The dataset record of a trial that trains on these splits."""
    return dataset_record(data, "training", train=len(splits.train), val=len(splits.val), test=len(splits.test))
