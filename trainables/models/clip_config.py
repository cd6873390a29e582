"""The config fields every CLIP trainable shares: which backbone (any open_clip model and
pretrained tag) and, where classes are read through text, which templates."""
from __future__ import annotations

from dataclasses import dataclass

from trainables.models.backbones import check_backbone, parse_backbone
from trainables.models.templates import template_set


@dataclass
class BackboneConfig:
    model: str = "ViT-B-32"             # any open_clip model (`list --backbones`)
    pretrained: str = "openai"          # its pretrained tag, or none (random init)
    backbone: str = ""                  # MODEL:TAG sets both: `--set backbone=ViT-B-16:laion2b_s34b_b88k`,
                                        # or a grid axis of several

    def check_backbone(self) -> None:
        if self.backbone:
            self.model, self.pretrained = parse_backbone(self.backbone)
        check_backbone(self.model, self.pretrained)


@dataclass
class TextConfig:
    template: str = "This is a photo of a {}"   # the seed's, and template_set=single's
    template_set: str = "single"        # single | clip (CLIP's 18 CIFAR templates) | file:PATH

    def templates(self) -> tuple[str, ...]:
        return template_set(self.template_set, self.template)
