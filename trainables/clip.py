"""CLIP through open_clip, loaded offline from its cache, and the classifiers built on it: the
zero-shot text head and CLIP with a learned prompt. No Ray here, and nothing registered.

``tiny-clip`` (trainables/model_configs/tiny-clip.json, registered through open_clip's own config
mechanism) is a randomly initialised model of the same classes, so tests and the smoke profile
run the same code paths as the study.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from torch import nn

from common.errors import UserError
from trainables.paths import NO_DOWNLOAD_ENV, downloads_allowed
from trainables.pipeline import Preprocess
from trainables.prompts import DeepPrompt
from trainables.templates import fill
from trainables.weights import FETCH_HINT, fixed_init, host_answers

open_clip.add_model_config(Path(__file__).parent / "model_configs")
# open_clip logs a warning for every randomly initialised model, which tiny-clip always is.
logging.getLogger().addFilter(lambda record: "No pretrained weights loaded" not in record.getMessage())

CLIP_MODELS = ("ViT-B-32", "tiny-clip")
CLIP_PRETRAINED = ("openai", "none")
# open_clip resolves the 'openai' tag of ViT-B-32 to this Hugging Face repository.
_OPENAI_REPO = "timm/vit_base_patch32_clip_224.openai"
_OPENAI_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


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


def cached_clip_weights() -> str | None:
    from huggingface_hub import try_to_load_from_cache
    for name in _OPENAI_FILES:
        path = try_to_load_from_cache(_OPENAI_REPO, name)
        if isinstance(path, str):
            return path
    return None


def clip_cache_dir() -> str:
    from huggingface_hub import constants
    return constants.HF_HUB_CACHE


def fetch_clip_weights() -> str:
    """The path of the ViT-B/32 'openai' checkpoint, downloading it if allowed and needed."""
    path = cached_clip_weights()
    if path:
        return path
    where = f"CLIP ViT-B-32 'openai' weights are not in {clip_cache_dir()} ({_OPENAI_REPO})"
    if not downloads_allowed():
        raise UserError(f"{where} and downloads are disabled (${NO_DOWNLOAD_ENV}); {FETCH_HINT}")
    if not host_answers("huggingface.co"):
        raise UserError(f"{where} and huggingface.co does not answer; {FETCH_HINT}")
    cfg = open_clip.get_pretrained_cfg("ViT-B-32", "openai")
    return open_clip.download_pretrained(cfg)


def load_clip(name: str = "ViT-B-32", pretrained: str = "openai", device: str | torch.device = "cpu") -> Clip:
    if name not in CLIP_MODELS:
        raise UserError(f"unknown CLIP model '{name}'; known: {', '.join(CLIP_MODELS)}")
    if pretrained not in CLIP_PRETRAINED or (name == "tiny-clip" and pretrained != "none"):
        raise UserError(f"pretrained '{pretrained}' is not available for {name}; "
                        f"use 'openai' for ViT-B-32 or 'none' for a randomly initialised model")
    checkpoint = fetch_clip_weights() if pretrained == "openai" else None
    # open_clip's 'custom' block computes the same attention through scaled_dot_product_attention
    # (flash/memory-efficient kernels, also when gradients flow to the input, as they do for
    # prompts); nn.MultiheadAttention's fast path is inference-only. Same parameters, same keys.
    vision_cfg = {**open_clip.get_model_config(name)["vision_cfg"], "block_type": "custom"}
    with fixed_init():
        # The openai weights were trained with QuickGELU; open_clip's tag sets it, a file path does not.
        model = open_clip.create_model(name, pretrained=checkpoint, force_quick_gelu=True, device=device,
                                       vision_cfg=vision_cfg)
    model.eval().requires_grad_(False)
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    return Clip(model, open_clip.get_tokenizer(name), Preprocess(size, "bicubic", "clip"))


@torch.no_grad()
def class_text_features(clip: Clip, classes: tuple[str, ...], template: str) -> torch.Tensor:
    """(C, D) L2-normalised text features of `template` filled with each class name."""
    device = next(clip.model.parameters()).device
    tokens = clip.tokenizer([fill(template, c) for c in classes]).to(device)
    return F.normalize(clip.model.encode_text(tokens).float(), dim=-1)


def clip_logits(clip: Clip, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """CLIP's zero-shot logits: logit_scale.exp() * cosine(image, text)."""
    image = F.normalize(image_features.float(), dim=-1)
    return clip.model.logit_scale.exp() * image @ text_features.T


def model_depth(model: str) -> int:
    """Vision depth from open_clip's config, without building the model."""
    return open_clip.get_model_config(model)["vision_cfg"]["layers"]


def model_image_size(model: str) -> int:
    return open_clip.get_model_config(model)["vision_cfg"]["image_size"]


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
