"""CIFAR-110 (seed section 2.5): one 110-way classifier over CIFAR-10 test + CIFAR-100 test
(CIFAR-10 classes first, CIFAR-100 labels offset by 10), CLIP with the padding prompt learnt on
CIFAR-10 and, in another trial, the one learnt on CIFAR-100. Each is scored per set, combined,
and on its own 10- or 100-way task, so what the prompt costs outside its task shows."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from clip_prompt_sweeps.names import DATA_KINDS, DATASET_KEY, DATASETS
from trainables.data.catalog import load_dataset
from trainables.data.pipeline import DeviceData
from trainables.data.record import dataset_record
from trainables.experiments.source_models import Source, padding_prompt_clip, pick
from trainables.models.clip import PromptedClip, class_text_features
from trainables.paths import data_dir
from trainables.training.config import check_at_least_one, check_choices
from trainables.training.device import pick_device
from trainables.training.entry import trainable
from trainables.training.loop import Reporter, evaluate, predictions


@dataclass
class CrossConfig:
    prompt_from: str = "cifar10"        # cifar10 | cifar100: the padding prompt learnt on it
    source_run: str = ""                # its MLflow run id; the driver fills it (or --set it)
    data: str = "real"                  # real | synthetic
    data_dir: Optional[str] = None
    batch_size: int = 256
    device: str = "auto"

    def check(self) -> None:
        check_choices(self, prompt_from=DATASETS, data=DATA_KINDS)
        check_at_least_one(self, "batch_size")


def source_of(cfg: CrossConfig) -> Source:
    return Source("visual", {"dataset": cfg.prompt_from, "prompt": "padding"})


def split_scores(pred: torch.Tensor, labels: torch.Tensor, n10: int) -> dict[str, float]:
    """Accuracy on each part of CIFAR-110 and combined, and how often a part's images are
    given a class of the other part."""
    right, first = (pred == labels).float(), labels < n10
    return {"combined_acc": right.mean().item(), "cifar10_acc": right[first].mean().item(),
            "cifar100_acc": right[~first].mean().item(),
            "cifar10_as_cifar100": (pred[first] >= n10).float().mean().item(),
            "cifar100_as_cifar10": (pred[~first] < n10).float().mean().item()}


def run_cross(cfg: CrossConfig, report: Reporter, resume_dir=None, sources=None) -> dict:
    source = pick(sources, cfg.source_run)
    device = pick_device(cfg.device)
    pcfg, clip, prompt = padding_prompt_clip(source, cfg.data, cfg.data_dir, device)
    root = data_dir(cfg.data_dir)
    c110, own = load_dataset("cifar110", root, cfg.data), load_dataset(pcfg.dataset, root, cfg.data)
    wide = PromptedClip(clip, class_text_features(clip, c110.classes, pcfg.templates()), visual_prompt=prompt)
    test = DeviceData(c110.test, device, clip.preprocess)
    n10 = len(load_dataset("cifar10", root, cfg.data).classes)
    metrics = split_scores(predictions(wide, test, cfg.batch_size), test.labels, n10)
    narrow = PromptedClip(clip, class_text_features(clip, own.classes, pcfg.templates()), visual_prompt=prompt)
    metrics["own_acc"] = evaluate(narrow, DeviceData(own.test, device, clip.preprocess), cfg.batch_size)
    metrics["source_test_acc"] = float(source.metrics.get("test_acc", math.nan))
    report({**metrics, DATASET_KEY: dataset_record(c110, "evaluation", test=len(c110.test.labels))}, None)
    return metrics


CROSS = trainable(
    "cross", CrossConfig, run_cross,
    "CIFAR-110: CLIP with the padding prompt learnt on CIFAR-10 or CIFAR-100, 110-way",
    ("combined_acc", "cifar10_acc", "cifar100_acc", "own_acc", "source_test_acc"))
