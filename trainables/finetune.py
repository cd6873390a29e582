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

from trainables.base import DataConfig, load_splits, pick_device, tune_entry
from trainables.config import check_choices
from trainables.errors import UserError
from trainables.features import cache_splits
from trainables.loop import TRAINING_METRICS, LoopSettings, Reporter, fit
from trainables.models import RESNET_WEIGHTS, load_resnet18
from trainables.pipeline import STATS, Augment, Preprocess
from trainables.registry import register_trainable

VARIANTS = ("fc", "fc_first_conv", "fc_last_conv")
AUGMENTS = {"none": Augment(), "hflip": Augment(hflip=True), "crop": Augment(crop_padding=4)}


@dataclass
class FinetuneConfig(DataConfig):
    dataset: str = "cifar100"
    epochs: int = 30
    weights: str = "IMAGENET1K_V1"      # IMAGENET1K_V1 | none (random, for tests)
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
        check_choices(self, weights=RESNET_WEIGHTS, variant=VARIANTS, augment=tuple(AUGMENTS), stats=tuple(STATS),
                      backbone_bn=("eval", "train"))
        if not 32 <= self.image_size <= 512:
            raise UserError(f"image_size must be within 32..512, got {self.image_size}")

    @property
    def cached(self) -> bool:
        return (self.feature_cache and self.variant == "fc" and self.backbone_bn == "eval"
                and AUGMENTS[self.augment].cacheable)

    def settings(self) -> LoopSettings:
        return LoopSettings(self.epochs, self.batch_size, self.lr, 0.9, self.weight_decay,
                            warmup_steps=0, optimizer="adam")


def resnet_features(net: nn.Module, x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """Everything of torchvision's ResNet but its fc: (B, 3, H, W) -> (B, 512)."""
    x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    x = net.layer4(net.layer3(net.layer2(net.layer1(x))))
    return torch.flatten(net.avgpool(x), 1)


class ResNetClassifier(nn.Module):
    """ResNet-18 with some layers learned; frozen BatchNorm stays in eval mode unless asked."""

    def __init__(self, net: nn.Module, bn_train: bool, channels_last: bool):
        super().__init__()
        self.net, self.bn_train, self.channels_last = net, bn_train, channels_last

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and not self.bn_train:
            for m in self.net.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.fc(resnet_features(self.net, x, self.channels_last))


def build_resnet(cfg: FinetuneConfig, n_classes: int, device: torch.device) -> tuple[nn.Module, nn.Module]:
    """(the learned layers as one module, the frozen ResNet-18 with them in place)."""
    net = load_resnet18(cfg.weights, device).requires_grad_(False).eval()
    torch.manual_seed(cfg.seed)
    net.fc = nn.Linear(net.fc.in_features, n_classes, device=device)
    nn.init.normal_(net.fc.weight, 0.0, 0.01)
    nn.init.zeros_(net.fc.bias)
    learned = {"fc": net.fc}
    if cfg.variant == "fc_first_conv":
        learned["conv1"] = net.conv1
    elif cfg.variant == "fc_last_conv":
        learned["last_conv"] = net.layer4[-1].conv2
    module = nn.ModuleDict(learned).requires_grad_(True)
    if cfg.backbone_bn == "train":
        # statistics re-estimated on CIFAR are learned state too: checkpointed with the layers
        module["bn"] = nn.ModuleList(m for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    if cfg.channels_last:
        net.to(memory_format=torch.channels_last)
    return module, net


def run_finetune(cfg: FinetuneConfig, report: Reporter, resume_dir=None) -> dict:
    device = pick_device(cfg.device)
    pre = Preprocess(cfg.image_size, "bilinear", cfg.stats)    # torchvision's ResNet recipe
    data, splits = load_splits(cfg, pre, device)
    learned, net = build_resnet(cfg, len(data.classes), device)
    aug, extra = AUGMENTS[cfg.augment], {"cache_seconds": 0.0, "cache_mb": 0.0}
    model: nn.Module = ResNetClassifier(net, cfg.backbone_bn == "train", cfg.channels_last)
    if cfg.cached:
        # pooled backbone features once per image (and per flipped image when training flips)
        splits, extra = cache_splits(splits, lambda x: resnet_features(net, x, cfg.channels_last),
                                     cfg.batch_size, aug.hflip)
        model = net.fc
    if cfg.compile:
        model = torch.compile(model)
    return fit(model, learned, splits, cfg.settings(), aug, report, resume_dir, extra)


finetune = register_trainable(
    "finetune", FinetuneConfig,
    "ResNet-18 (ImageNet) on CIFAR: a new fc alone, or with the first or last conv; Adam",
    TRAINING_METRICS + ("cache_seconds", "cache_mb"),
)(tune_entry(FinetuneConfig, run_finetune))
