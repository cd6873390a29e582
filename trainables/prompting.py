"""Visual and deep prompts on a frozen CLIP image encoder, classified zero-shot-style against the
text features of "This is a photo of a {}" (the study's template)."""
from __future__ import annotations

from dataclasses import dataclass

import open_clip
import torch
from torch import nn

from trainables.base import DataConfig, load_splits, pick_device, tune_entry
from trainables.errors import UserError
from trainables.features import cache_splits
from trainables.loop import TRAINING_METRICS, LoopSettings, Reporter, fit
from trainables.models import CLIP_MODELS, Clip, class_text_features, clip_logits, load_clip
from trainables.pipeline import Augment
from trainables.prompts import POSITIONS, VISUAL_PROMPTS, DeepPrompt, make_visual_prompt
from trainables.registry import register_trainable
from trainables.templates import check_template


@dataclass
class PromptConfig(DataConfig):
    model: str = "ViT-B-32"             # ViT-B-32 | tiny-clip
    pretrained: str = "openai"          # openai | none
    template: str = "This is a photo of a {}"
    lr: float = 40.0                    # SGD, the course's reference
    momentum: float = 0.9
    weight_decay: float = 0.0
    warmup_steps: int = 1000            # linear warm-up, then cosine per step
    compile: bool = False               # torch.compile the classifier (opt-in: compiling costs
                                        # a minute per trial, repaid only by long runs)

    def check(self) -> None:
        super().check()
        if self.model not in CLIP_MODELS:
            raise UserError(f"model '{self.model}' unknown; known: {', '.join(CLIP_MODELS)}")
        check_template(self.template, "class name")

    def settings(self) -> LoopSettings:
        return LoopSettings(self.epochs, self.batch_size, self.lr, self.momentum,
                            self.weight_decay, self.warmup_steps)


def model_depth(model: str) -> int:
    """Vision depth from open_clip's config, without building the model."""
    return open_clip.get_model_config(model)["vision_cfg"]["layers"]


def model_image_size(model: str) -> int:
    return open_clip.get_model_config(model)["vision_cfg"]["image_size"]


@dataclass
class VisualPromptConfig(PromptConfig):
    prompt: str = "padding"             # padding | fixed_patch | random_patch
    prompt_size: int = 30               # padding width or patch side, in model-input pixels

    def check(self) -> None:
        super().check()
        if self.prompt not in VISUAL_PROMPTS:
            raise UserError(f"prompt '{self.prompt}' unknown; known: {', '.join(VISUAL_PROMPTS)}")
        size = model_image_size(self.model)
        limit = (size - 1) // 2 if self.prompt == "padding" else size
        if not 1 <= self.prompt_size <= limit:
            raise UserError(f"prompt_size {self.prompt_size} does not fit {self.model}'s {size} px "
                            f"input for a {self.prompt} prompt; use 1..{limit}")


@dataclass
class DeepPromptConfig(PromptConfig):
    layer: int = 0                      # inject before this transformer block
    n_prompts: int = 1
    position: str = "front"             # front (the seed's) | back | after_cls; see prompts.py
    prefix_cache: bool = True           # run the frozen blocks before `layer` once per image,
                                        # not every epoch (bf16 on CUDA, as the blocks carry it)

    def check(self) -> None:
        super().check()
        depth = model_depth(self.model)
        if not 0 <= self.layer < depth:
            raise UserError(f"injection layer {self.layer} is beyond {self.model}'s depth; use 0..{depth - 1}")
        if self.n_prompts < 1:
            raise UserError(f"n_prompts must be at least 1, got {self.n_prompts}")
        if self.position not in POSITIONS:
            raise UserError(f"position '{self.position}' unknown; known: {', '.join(POSITIONS)}")


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


def prepare(cfg: PromptConfig):
    """Data on the device, the frozen CLIP and the class text features."""
    device = pick_device(cfg.device)
    clip = load_clip(cfg.model, cfg.pretrained, device)
    data, splits = load_splits(cfg, clip.preprocess, device)
    return clip, splits, class_text_features(clip, data.classes, cfg.template)


def build_classifier(cfg: PromptConfig, clip: Clip, text: torch.Tensor) -> tuple[nn.Module, PromptedClip]:
    """(the learned prompt, the whole classifier) for a visual or deep prompt config."""
    torch.manual_seed(cfg.seed)     # the same init for every learning rate of a cell
    device = next(clip.model.parameters()).device
    if isinstance(cfg, DeepPromptConfig):
        learned = DeepPrompt(clip.visual, cfg.layer, cfg.n_prompts, cfg.position).to(device)
        return learned, PromptedClip(clip, text, deep_prompt=learned)
    learned = make_visual_prompt(cfg.prompt, clip.preprocess.size, cfg.prompt_size).to(device)
    return learned, PromptedClip(clip, text, visual_prompt=learned)


def run_prompt(cfg: PromptConfig, report: Reporter, resume_dir=None) -> dict:
    clip, splits, text = prepare(cfg)
    learned, model = build_classifier(cfg, clip, text)
    extra: dict = {}
    if isinstance(cfg, DeepPromptConfig) and cfg.prefix_cache:
        # the tokens before the injection layer, once per image
        splits, extra = cache_splits(splits, learned.prefix, cfg.batch_size)
        model.from_prefix = True
    if cfg.compile:
        model = torch.compile(model)
    return fit(model, learned, splits, cfg.settings(), Augment(), report, resume_dir, extra)


visual_prompt = register_trainable(
    "visual_prompt", VisualPromptConfig,
    "CLIP + a learned visual prompt (padding, fixed or random patch) added to the image", TRAINING_METRICS,
)(tune_entry(VisualPromptConfig, run_prompt))
deep_prompt = register_trainable(
    "deep_prompt", DeepPromptConfig,
    "CLIP + learned tokens injected before a transformer block (front, back, after_cls)",
    TRAINING_METRICS + ("cache_seconds", "cache_mb"),
)(tune_entry(DeepPromptConfig, run_prompt))
