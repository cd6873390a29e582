"""torchvision's ResNet-18, loaded offline from its cache, with some of its layers learned on a
new task: a new fc alone, or with the first or the last conv. No Ray here, and nothing registered.
``none`` weights give a randomly initialised model of the same class, for tests and the smoke profile.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from clip_prompt_sweeps.errors import UserError
from trainables.models.weights import fixed_init, require_hub_file

RESNET_WEIGHTS = ("IMAGENET1K_V1", "none")
VARIANTS = ("fc", "fc_first_conv", "fc_last_conv")     # what is learned besides the frozen rest


def resnet_weights_path() -> Path:
    from torchvision.models import ResNet18_Weights
    return Path(torch.hub.get_dir()) / "checkpoints" / ResNet18_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]


def load_resnet18(weights: str = "IMAGENET1K_V1", device: str | torch.device = "cpu") -> nn.Module:
    """torchvision's ResNet-18, with its ImageNet weights or randomly initialised ('none')."""
    from torchvision.models import ResNet18_Weights, resnet18
    if weights not in RESNET_WEIGHTS:
        raise UserError(f"unknown ResNet-18 weights '{weights}'; known: {', '.join(RESNET_WEIGHTS)}")
    if weights == "none":
        with fixed_init():
            return resnet18(weights=None).to(device)
    require_hub_file(resnet_weights_path(), "ResNet-18 IMAGENET1K_V1")
    return resnet18(weights=ResNet18_Weights.IMAGENET1K_V1).to(device)


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


def build_resnet(weights: str, variant: str, n_classes: int, device: torch.device, seed: int = 0,
                 bn_train: bool = False, channels_last: bool = True) -> tuple[nn.Module, nn.Module]:
    """(the learned layers as one module, the frozen ResNet-18 with them in place). The new fc
    starts at bias 0, weight N(0, 0.01)."""
    net = load_resnet18(weights, device).requires_grad_(False).eval()
    torch.manual_seed(seed)
    net.fc = nn.Linear(net.fc.in_features, n_classes, device=device)
    nn.init.normal_(net.fc.weight, 0.0, 0.01)
    nn.init.zeros_(net.fc.bias)
    learned = {"fc": net.fc}
    if variant == "fc_first_conv":
        learned["conv1"] = net.conv1
    elif variant == "fc_last_conv":
        learned["last_conv"] = net.layer4[-1].conv2
    module = nn.ModuleDict(learned).requires_grad_(True)
    if bn_train:
        # statistics re-estimated on CIFAR are learned state too: checkpointed with the layers
        module["bn"] = nn.ModuleList(m for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    if channels_last:
        net.to(memory_format=torch.channels_last)
    return module, net
