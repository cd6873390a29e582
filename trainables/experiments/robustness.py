"""Robustness to noise (seed section 2.4): CIFAR-100 test, clean and with Gaussian noise added
after normalisation, for the CLIP padding prompt of the `visual` sweep and the fc-only ResNet-18
of the `finetune` sweep (trained without augmentation, as the seed chose, so that it has not
seen altered images). Nothing is learned here: the models are the sources' best-on-validation
parameters, and the clean score reproduces each source's own test score."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from clip_prompt_sweeps.errors import UserError
from clip_prompt_sweeps.names import DATA_KINDS, DATASET_KEY
from trainables.data.catalog import load_dataset
from trainables.data.pipeline import Augment, DeviceData, Preprocess
from trainables.data.record import dataset_record
from trainables.experiments.finetune import FinetuneConfig
from trainables.experiments.source_models import (
    Source,
    SourceRun,
    config_of,
    load_parameters,
    padding_prompt_clip,
    pick,
)
from trainables.models.clip import PromptedClip, class_text_features
from trainables.models.resnet import ResNetClassifier, build_resnet
from trainables.paths import data_dir
from trainables.training.config import check_at_least_one, check_choices
from trainables.training.device import pick_device
from trainables.training.entry import trainable
from trainables.training.loop import Reporter, evaluate

SOURCES = {
    "clip_padding": Source("visual", {"dataset": "cifar100", "prompt": "padding"}),
    "resnet_fc": Source("finetune", {"dataset": "cifar100", "variant": "fc", "augment": "none"}),
}


@dataclass
class RobustnessConfig:
    model: str = "clip_padding"         # clip_padding | resnet_fc: which source model
    source_run: str = ""                # its MLflow run id; the driver fills it (or --set it)
    noise_std: float = 0.1              # the seed's Table 5: N(0, 0.1) after normalisation
    curve: str = "0,0.05,0.1,0.2,0.4"   # noise levels of the accuracy-vs-noise curve
    noise_seed: int = 0                 # one seed: both models see the same noise at a level
    data: str = "real"                  # real | synthetic
    data_dir: Optional[str] = None
    batch_size: int = 256
    device: str = "auto"

    def check(self) -> None:
        check_choices(self, model=tuple(SOURCES), data=DATA_KINDS)
        check_at_least_one(self, "batch_size")
        if any(level < 0 for level in self.levels()):
            raise UserError(f"noise levels must be >= 0, got noise_std={self.noise_std}, curve={self.curve!r}")

    def levels(self) -> list[float]:
        try:
            curve = [float(v) for v in self.curve.split(",") if v.strip()]
        except ValueError:
            raise UserError(f"curve {self.curve!r} is not a comma-separated list of numbers, "
                            f"e.g. 0,0.05,0.1") from None
        return sorted({0.0, self.noise_std, *curve})


def source_of(cfg: RobustnessConfig) -> Source:
    return SOURCES[cfg.model]


def source_model(cfg: RobustnessConfig, source: SourceRun, device: torch.device) -> tuple[nn.Module, Preprocess, str]:
    """(classifier, its preprocessing, the dataset) rebuilt from the source run."""
    if cfg.model == "clip_padding":
        pcfg, clip, prompt = padding_prompt_clip(source, cfg.data, cfg.data_dir, device)
        classes = load_dataset(pcfg.dataset, data_dir(cfg.data_dir), cfg.data).classes
        text = class_text_features(clip, classes, pcfg.templates())
        return PromptedClip(clip, text, visual_prompt=prompt), clip.preprocess, pcfg.dataset
    fcfg = config_of(FinetuneConfig, source, data=cfg.data, data_dir=cfg.data_dir, device=str(device))
    layers, net = build_resnet(fcfg.weights, fcfg.variant, source.tensors["fc.weight"].shape[0], device, fcfg.train_seed,
                               fcfg.backbone_bn == "train", fcfg.channels_last)
    load_parameters(layers, source)
    model = ResNetClassifier(net, fcfg.backbone_bn == "train", fcfg.channels_last).eval()
    return model, Preprocess(fcfg.image_size, "bilinear", fcfg.stats), fcfg.dataset


def accuracy_by_noise(model: nn.Module, test: DeviceData, levels: list[float], seed: int,
                      batch_size: int) -> dict[float, float]:
    out = {}
    for level in levels:
        test.generator.manual_seed(seed)        # the same draws at a level, whichever model
        out[level] = evaluate(model, test, batch_size, Augment(noise_std=level))
    return out


def run_robustness(cfg: RobustnessConfig, report: Reporter, resume_dir=None, sources=None) -> dict:
    source = pick(sources, cfg.source_run)
    device = pick_device(cfg.device)
    model, pre, dataset = source_model(cfg, source, device)
    data = load_dataset(dataset, data_dir(cfg.data_dir), cfg.data)
    accs = accuracy_by_noise(model, DeviceData(data.test, device, pre, cfg.noise_seed), cfg.levels(),
                             cfg.noise_seed, cfg.batch_size)
    metrics = {"clean_acc": accs[0.0], "noisy_acc": accs[cfg.noise_std],
               "source_test_acc": float(source.metrics.get("test_acc", math.nan)),
               **{f"acc_noise_{level:g}": acc for level, acc in accs.items()}}
    report({**metrics, DATASET_KEY: dataset_record(data, "evaluation", test=len(data.test.labels))}, None)
    return metrics


ROBUSTNESS = trainable(
    "robustness", RobustnessConfig, run_robustness,
    "CIFAR-100 test clean and with Gaussian noise: the best padding prompt and fc-only ResNet-18",
    ("clean_acc", "noisy_acc", "source_test_acc"))
