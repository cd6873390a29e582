"""What every trainable that learns on CIFAR shares: the data settings of its config, the
device, the seeded 45k/5k split on the device, and the Ray entry point."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from trainables.cifar import DATA_KINDS, Cifar, load_cifar
from trainables.config import from_dict
from trainables.errors import UserError
from trainables.loop import Reporter, Splits
from trainables.paths import data_dir
from trainables.pipeline import DeviceData, Preprocess, train_val_split
from trainables.ray_io import RESUME_KEY, tune_report, tune_resume_dir

DATASETS = ("cifar10", "cifar100")


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


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' was asked for but torch sees no CUDA GPU; use --set device=auto")
    return torch.device(name)


def load_splits(cfg: DataConfig, pre: Preprocess, device: torch.device) -> tuple[Cifar, Splits]:
    """The dataset, and its seeded train/val split and test split on the device."""
    data = load_cifar(cfg.dataset, data_dir(cfg.data_dir), cfg.data)
    train, val = train_val_split(data.train, cfg.val_fraction, cfg.seed)
    splits = Splits(*(DeviceData(s, device, pre, cfg.seed + i) for i, s in enumerate((train, val, data.test))))
    return data, splits


def tune_entry(config_cls: type, run: Callable[..., dict]):
    """A Ray Tune function trainable around `run(cfg, report, resume_dir)`; given a `report`
    (unit tests), it runs without Ray. `sources` (run id -> trainables.sources.Learned) is what
    the driver hands a trainable that evaluates another sweep's model (tune.with_parameters)."""
    def trainable(config: dict, report: Reporter | None = None, sources: dict | None = None) -> None:
        cfg = from_dict(config_cls, config)
        extra = {} if sources is None else {"sources": sources}
        if report is not None:
            run(cfg, report, None, **extra)
            return
        with tune_resume_dir(config.get(RESUME_KEY)) as resume_dir:
            run(cfg, tune_report, resume_dir, **extra)
    return trainable
