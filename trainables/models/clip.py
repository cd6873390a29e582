"""CLIP through open_clip, loaded offline from its cache, and the classifiers built on it: the
zero-shot text head and CLIP with a learned prompt. No Ray here, and nothing registered.

``tiny-clip`` (trainables/models/model_configs/tiny-clip.json, registered through open_clip's own config
mechanism) is a randomly initialised model of the same classes, so tests and the smoke profile
run the same code paths as the study.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence
from urllib.parse import urlparse

import open_clip
import torch
import torch.nn.functional as F
from torch import nn

from clip_prompt_sweeps.errors import UserError
from trainables.data.pipeline import STATS, Preprocess
from trainables.data.resize import FILTERS
from trainables.models import backbones
from trainables.models.prompts import DeepPrompt, fused_suffix
from trainables.models.templates import fill
from trainables.models.weights import FETCH_HINT, fixed_init
from trainables.paths import NO_DOWNLOAD_ENV, downloads_allowed, host_answers

# open_clip logs a warning for every randomly initialised model, which tiny-clip always is.
logging.getLogger().addFilter(lambda record: "No pretrained weights loaded" not in record.getMessage())

DEFAULT_BACKBONE = ("ViT-B-32", "openai")       # the study's


@dataclass
class Clip:
    model: nn.Module            # the whole open_clip CLIP model, frozen, in eval mode
    tokenizer: object
    preprocess: Preprocess      # what the weights were trained with

    @property
    def visual(self) -> nn.Module:
        return self.model.visual

    @property
    def depth(self) -> int:
        return len(self.model.visual.transformer.resblocks)


def cached_clip_weights(model: str = "ViT-B-32", pretrained: str = "openai") -> str | None:
    return backbones.cached_weights(model, pretrained)


def fetch_clip_weights(model: str = "ViT-B-32", pretrained: str = "openai") -> str:
    """The path of a backbone's checkpoint, downloading it (with Hugging Face's progress bar) if
    allowed and needed."""
    path = cached_clip_weights(model, pretrained)
    if path:
        return path
    source = backbones.weights_source(model, pretrained)
    where = (f"CLIP {model} '{pretrained}' weights are not in {backbones.cache_dir_of(model, pretrained)} "
             f"({source})")
    hint = FETCH_HINT.replace("--weights", f"--weights {model}:{pretrained}")
    if not downloads_allowed():
        raise UserError(f"{where} and downloads are disabled (${NO_DOWNLOAD_ENV}); {hint}")
    host = "huggingface.co" if backbones.pretrained_cfg(model, pretrained).get("hf_hub") else urlparse(source).hostname
    if not host_answers(host or "huggingface.co"):
        raise UserError(f"{where} and {host} does not answer; {hint}")
    return open_clip.download_pretrained(backbones.pretrained_cfg(model, pretrained))


def backbone_preprocess(model: str, pretrained: str, visual: nn.Module) -> Preprocess:
    """The preprocessing the weights were trained with: size from the model, mean, std and
    interpolation from the pretrained tag's config over the model's defaults."""
    cfg = {**getattr(visual, "preprocess_cfg", {}), **{k: v for k, v in backbones.pretrained_cfg(model, pretrained).items()
                                                       if k in ("mean", "std", "interpolation")}}
    interpolation = cfg.get("interpolation", "bicubic")
    if interpolation not in FILTERS:
        raise UserError(f"backbone {model}:{pretrained} resizes with '{interpolation}', which the device pipeline "
                        f"does not reproduce; it knows {', '.join(FILTERS)}")
    mean = tuple(cfg.get("mean", STATS["clip"][0]))
    std = tuple(cfg.get("std", STATS["clip"][1]))
    stats = "clip" if (mean, std) == STATS["clip"] else (mean, std)
    return Preprocess(backbones.image_size(model), interpolation, stats)


def load_clip(name: str = "ViT-B-32", pretrained: str = "openai", device: str | torch.device = "cpu") -> Clip:
    """Any open_clip model and pretrained tag ('none': random init, the same in every trial)."""
    backbones.check_backbone(name, pretrained)
    checkpoint = fetch_clip_weights(name, pretrained) if pretrained != backbones.NO_WEIGHTS else None
    vision_cfg = dict(backbones.vision_config(name))
    if backbones.is_vit(name):
        # open_clip's 'custom' block computes the same attention through scaled_dot_product_attention
        # (flash/memory-efficient kernels, also when gradients flow to the input, as they do for
        # prompts); nn.MultiheadAttention's fast path is inference-only. Same parameters, same keys.
        vision_cfg["block_type"] = "custom"
    # The openai weights were trained with QuickGELU: open_clip's tag says so, a file path does not.
    quick_gelu = bool(backbones.pretrained_cfg(name, pretrained).get("quick_gelu", False))
    with fixed_init():
        model = open_clip.create_model(name, pretrained=checkpoint, force_quick_gelu=quick_gelu, device=device,
                                       vision_cfg=vision_cfg)
    model.eval().requires_grad_(False)
    return Clip(model, open_clip.get_tokenizer(name), backbone_preprocess(name, pretrained, model.visual))


@torch.no_grad()
def class_text_features(clip: Clip, classes: tuple[str, ...], templates: str | tuple[str, ...]) -> torch.Tensor:
    """(C, D) text features of each class: with several templates, CLIP's ensemble (the mean of
    the L2-normalised features of each filled template, normalised again); with one, its own."""
    device = next(clip.model.parameters()).device
    templates = (templates,) if isinstance(templates, str) else tuple(templates)
    total = None
    for template in templates:
        tokens = clip.tokenizer([fill(template, c) for c in classes]).to(device)
        features = F.normalize(clip.model.encode_text(tokens).float(), dim=-1)
        total = features if total is None else total + features
    return total if len(templates) == 1 else F.normalize(total / len(templates), dim=-1)


def clip_logits(clip: Clip, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """CLIP's zero-shot logits: logit_scale.exp() * cosine(image, text)."""
    image = F.normalize(image_features.float(), dim=-1)
    return clip.model.logit_scale.exp() * image @ text_features.T


def model_depth(model: str) -> int:
    """Vision depth from open_clip's config, without building the model."""
    return backbones.depth(model)


def model_image_size(model: str) -> int:
    return backbones.image_size(model)


class TextHead(nn.Module):
    """Image features -> CLIP's zero-shot logits against fixed text features."""

    def __init__(self, clip: Clip, text_features: torch.Tensor):
        super().__init__()
        self.clip, self.text_features = [clip], text_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return clip_logits(self.clip[0], features, self.text_features)


class PromptedClip(nn.Module):
    """Frozen CLIP + a learned prompt -> logits over the classes' text features.

    With `from_prefix`, the input is the deep prompt's cached prefix tokens, not images."""

    def __init__(self, clip: Clip, text_features: torch.Tensor,
                 visual_prompt: nn.Module | None = None, deep_prompt: DeepPrompt | None = None,
                 from_prefix: bool = False):
        super().__init__()
        self.clip = [clip]              # not a submodule: only prompts appear in state_dict
        self.text_features = text_features
        self.visual_prompt, self.deep_prompt, self.from_prefix = visual_prompt, deep_prompt, from_prefix

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        clip = self.clip[0]
        if self.from_prefix:
            # the cached tokens are in the dtype the uncached path carries them (open_clip casts
            # its residual stream to the patch embedding's: bf16 under autocast), so both paths
            # compute the same thing
            features = self.deep_prompt.suffix(x)
        else:
            if self.visual_prompt is not None:
                x = self.visual_prompt(x)
            features = self.deep_prompt(x) if self.deep_prompt is not None else clip.visual(x)
        return clip_logits(clip, features, self.text_features)


def fused_logits(members: Sequence[PromptedClip], x: torch.Tensor) -> torch.Tensor:
    """The logits of K classifiers of one cell (one frozen CLIP and text features, one prompt
    shape, each its own learned prompt) for one batch, (K, B, C): the frozen encoder runs once
    over the K x B stacked inputs, and each member's rows are what it computes alone. A deep
    prompt's prefix holds no prompt, so without a visual prompt it runs once over the B images."""
    first, k = members[0], len(members)
    clip = first.clip[0]
    if first.from_prefix:
        tokens = [x] * k
    else:
        images = [m.visual_prompt(x) for m in members] if first.visual_prompt is not None else [x] * k
        if first.deep_prompt is None:
            features = clip.visual(torch.cat(images))
            return clip_logits(clip, features, first.text_features).unflatten(0, (k, -1))
        shared = first.visual_prompt is None
        tokens = [first.deep_prompt.prefix(x)] * k if shared else list(
            first.deep_prompt.prefix(torch.cat(images)).chunk(k))
    features = fused_suffix([m.deep_prompt for m in members], tokens)
    return clip_logits(clip, features, first.text_features).unflatten(0, (k, -1))
