"""Light fine-tuning of an ImageNet ResNet-18 on CIFAR (seed section 1.2).

A new fc (bias 0, weight N(0, 0.01)) is trained with Adam, alone or together with the first
conv or the last conv; everything else stays frozen. With the fc alone the frozen backbone's
pooled features are computed once per image (and once per flipped image when training flips):
the cache is exact, so the numbers are those of the uncached path at a fraction of its cost.

`backbone_bn` names a choice that changes the numbers: 'eval' keeps the frozen BatchNorm layers
on their ImageNet statistics (the backbone is truly frozen, and its features cacheable);
'train' lets `model.train()` re-estimate them on CIFAR batches, as a plain training loop over
the whole model does (the course code's behaviour); that path is never cached.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from clip_prompt_sweeps.errors import UserError
from trainables.data.config import DataConfig, load_splits, splits_record
from trainables.data.pipeline import STATS, Augment, Preprocess
from trainables.models.resnet import (
    RESNET_WEIGHTS,
    VARIANTS,
    ResNetClassifier,
    build_resnet,
    resnet_features,
)
from trainables.models.torchvision_models import (
    HeadClassifier,
    check_model,
    load_model,
    replace_head,
    weights_meta,
)
from trainables.training.config import check_choices
from trainables.training.device import pick_device
from trainables.training.entry import trainable
from trainables.training.features import cache_splits
from trainables.training.loop import TRAINING_METRICS, LoopSettings, Reporter, fit, reporting_dataset

AUGMENTS = {"none": Augment(), "hflip": Augment(hflip=True), "crop": Augment(crop_padding=4)}


@dataclass
class FinetuneConfig(DataConfig):
    dataset: str = "cifar100"
    epochs: int = 30
    arch: str = "resnet18"              # any torchvision classification model (get_model); not
                                        # resnet18: its last nn.Linear is replaced, variant fc only
    weights: str = "IMAGENET1K_V1"      # a weights name of the arch | none (random, for tests)
    variant: str = "fc"                 # fc | fc_first_conv | fc_last_conv (what is trained)
    augment: str = "none"               # none | hflip (the seed's) | crop (RandomCrop(32, 4))
    image_size: int = 224               # the course resized CIFAR to ImageNet's 224
    stats: str = "cifar100"             # normalisation: the course used CIFAR-100's mean/std
    lr: float = 1e-3                    # Adam
    weight_decay: float = 0.0
    backbone_bn: str = "eval"           # eval | train: see the module docstring
    feature_cache: bool = True          # fc only, backbone_bn eval, augment none/hflip
    channels_last: bool = True          # NHWC convolutions (faster with cuDNN and on CPU)
    compile: bool = False               # torch.compile the classifier (opt-in)

    def check(self) -> None:
        super().check()
        check_choices(self, variant=VARIANTS, augment=tuple(AUGMENTS), stats=tuple(STATS),
                      backbone_bn=("eval", "train"))
        if self.arch == "resnet18":
            check_choices(self, weights=RESNET_WEIGHTS)
        else:
            check_model(self.arch, self.weights)
            if self.variant != "fc" or self.backbone_bn != "eval":
                raise UserError(f"arch {self.arch}: only the head is learned (variant fc, backbone_bn eval); the "
                                f"first/last-conv variants and BatchNorm re-estimation are ResNet-18's")
        if not 32 <= self.image_size <= 512:
            raise UserError(f"image_size must be within 32..512, got {self.image_size}")

    @property
    def cached(self) -> bool:
        return (self.feature_cache and self.variant == "fc" and self.backbone_bn == "eval"
                and AUGMENTS[self.augment].cacheable)

    def settings(self) -> LoopSettings:
        return LoopSettings(self.epochs, self.batch_size, self.lr, 0.9, self.weight_decay,
                            warmup_steps=0, optimizer="adam")


def run_finetune(cfg: FinetuneConfig, report: Reporter, resume_dir=None) -> dict:
    device = pick_device(cfg.device)
    pre = Preprocess(cfg.image_size, "bilinear", cfg.stats)    # torchvision's ResNet recipe
    data, splits = load_splits(cfg, pre, device)
    report = reporting_dataset(report, splits_record(data, splits))
    if cfg.arch != "resnet18":
        return _finetune_head(cfg, data, splits, device, report, resume_dir)
    trained, net = build_resnet(cfg.weights, cfg.variant, len(data.classes), device, cfg.train_seed,
                                cfg.backbone_bn == "train", cfg.channels_last)
    aug, cost = AUGMENTS[cfg.augment], {"cache_seconds": 0.0, "cache_mb": 0.0}
    model: nn.Module = ResNetClassifier(net, cfg.backbone_bn == "train", cfg.channels_last)
    if cfg.cached:
        # pooled backbone features once per image (and per flipped image when training flips)
        splits, cost = cache_splits(splits, lambda x: resnet_features(net, x, cfg.channels_last),
                                     cfg.batch_size, aug.hflip)
        model = net.fc
    if cfg.compile:
        model = torch.compile(model)
    return fit(model, trained, splits, cfg.settings(), aug, report, resume_dir, cost)


def _finetune_head(cfg: FinetuneConfig, data, splits, device, report: Reporter, resume_dir) -> dict:
    """Any other torchvision model: a new head on its frozen body (cached where exact)."""
    head, body = replace_head(load_model(cfg.arch, cfg.weights, device), len(data.classes), device, cfg.train_seed)
    aug = AUGMENTS[cfg.augment]
    cost = {"cache_seconds": 0.0, "cache_mb": 0.0, **weights_meta(cfg.arch, cfg.weights)}
    model: nn.Module = HeadClassifier(body, head)
    if cfg.cached:
        splits, cache_cost = cache_splits(splits, body, cfg.batch_size, aug.hflip)
        cost.update(cache_cost)
        model = head
    if cfg.compile:
        model = torch.compile(model)
    return fit(model, head, splits, cfg.settings(), aug, report, resume_dir, cost)


FINETUNE = trainable(
    "finetune", FinetuneConfig, run_finetune,
    "ResNet-18 (ImageNet) on CIFAR: a new fc alone, or with the first or last conv; Adam",
    TRAINING_METRICS + ("cache_seconds", "cache_mb"))
