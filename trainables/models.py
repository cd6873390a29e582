"""CLIP through open_clip and ResNet-18 through torchvision, loaded offline from their caches.

``tiny-clip`` (trainables/model_configs/tiny-clip.json, registered through open_clip's own config
mechanism) and ``resnet18`` without weights are randomly initialised models of the same classes,
so tests and the smoke profile run the same code paths as the study.
"""
from __future__ import annotations

import contextlib
import logging
import socket
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from torch import nn

from trainables.errors import UserError
from trainables.paths import NO_DOWNLOAD_ENV, downloads_allowed
from trainables.pipeline import Preprocess
from trainables.templates import fill

open_clip.add_model_config(Path(__file__).parent / "model_configs")
# open_clip logs a warning for every randomly initialised model, which tiny-clip always is.
logging.getLogger().addFilter(lambda record: "No pretrained weights loaded" not in record.getMessage())

CLIP_MODELS = ("ViT-B-32", "tiny-clip")
CLIP_PRETRAINED = ("openai", "none")
RESNET_WEIGHTS = ("IMAGENET1K_V1", "none")
# open_clip resolves the 'openai' tag of ViT-B-32 to this Hugging Face repository.
_OPENAI_REPO = "timm/vit_base_patch32_clip_224.openai"
_OPENAI_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
_FETCH_HINT = "run `python -m orchestrator fetch --weights` on a machine with network and copy the cache"


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

    @property
    def width(self) -> int:
        return self.model.visual.transformer.width


@contextlib.contextmanager
def _fixed_init(seed: int = 0):
    """A randomly initialised frozen model is the same in every trial (so the learning rates of
    a cell are compared on one model), without touching the caller's random stream."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _host_answers(host: str, timeout: float = 3.0) -> bool:
    # huggingface_hub retries for ~45 s before failing offline; a quick probe fails at once.
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


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
        raise UserError(f"{where} and downloads are disabled (${NO_DOWNLOAD_ENV}); {_FETCH_HINT}")
    if not _host_answers("huggingface.co"):
        raise UserError(f"{where} and huggingface.co does not answer; {_FETCH_HINT}")
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
    with _fixed_init():
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


# --- ResNet-18 --------------------------------------------------------------------------------

def resnet_weights_path() -> Path:
    from torchvision.models import ResNet18_Weights
    return Path(torch.hub.get_dir()) / "checkpoints" / ResNet18_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]


def load_resnet18(weights: str = "IMAGENET1K_V1", device: str | torch.device = "cpu") -> nn.Module:
    """torchvision's ResNet-18, with its ImageNet weights or randomly initialised ('none')."""
    from torchvision.models import ResNet18_Weights, resnet18
    if weights not in RESNET_WEIGHTS:
        raise UserError(f"unknown ResNet-18 weights '{weights}'; known: {', '.join(RESNET_WEIGHTS)}")
    if weights == "none":
        with _fixed_init():
            return resnet18(weights=None).to(device)
    path = resnet_weights_path()
    if not path.is_file():
        where = f"ResNet-18 IMAGENET1K_V1 weights are not in {path.parent}"
        if not downloads_allowed():
            raise UserError(f"{where} and downloads are disabled (${NO_DOWNLOAD_ENV}); {_FETCH_HINT}")
        if not _host_answers("download.pytorch.org"):
            raise UserError(f"{where} and download.pytorch.org does not answer; {_FETCH_HINT}")
    return resnet18(weights=ResNet18_Weights.IMAGENET1K_V1).to(device)
