"""Visual and deep prompts on a frozen CLIP image encoder, classified zero-shot-style against the
text features of "This is a photo of a {}" (the study's template)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import open_clip
import torch
from torch import nn

from trainables.cifar import DATA_KINDS, load_cifar
from trainables.config import from_dict
from trainables.errors import UserError
from trainables.loop import LoopSettings, Reporter, Splits, fit
from trainables.models import CLIP_MODELS, Clip, class_text_features, clip_logits, load_clip
from trainables.paths import data_dir
from trainables.pipeline import Augment, DeviceData, train_val_split
from trainables.prompts import POSITIONS, VISUAL_PROMPTS, DeepPrompt, make_visual_prompt
from trainables.ray_io import tune_report, tune_resume_dir
from trainables.registry import register_trainable


@dataclass
class PromptConfig:
    dataset: str = "cifar10"            # cifar10 | cifar100
    data: str = "real"                  # real | synthetic (recorded as the run's data_kind)
    data_dir: Optional[str] = None      # None: $ORCHESTRATOR_DATA_DIR or the per-user cache
    model: str = "ViT-B-32"             # ViT-B-32 | tiny-clip
    pretrained: str = "openai"          # openai | none
    template: str = "This is a photo of a {}"
    epochs: int = 20                    # the course ran 20-40
    batch_size: int = 128
    lr: float = 40.0                    # SGD, the course's reference
    momentum: float = 0.9
    weight_decay: float = 0.0
    warmup_steps: int = 1000            # linear warm-up, then cosine per step
    val_fraction: float = 0.1           # 45k/5k on CIFAR
    seed: int = 0                       # split, prompt init and shuffling
    device: str = "auto"                # auto | cpu | cuda

    def check(self) -> None:
        if self.dataset not in ("cifar10", "cifar100"):
            raise UserError(f"dataset '{self.dataset}' cannot train a prompt; use cifar10 or cifar100")
        if self.data not in DATA_KINDS:
            raise UserError(f"data '{self.data}' unknown; known: {', '.join(DATA_KINDS)}")
        if self.model not in CLIP_MODELS:
            raise UserError(f"model '{self.model}' unknown; known: {', '.join(CLIP_MODELS)}")
        if "{}" not in self.template:
            raise UserError(f"template {self.template!r} has no '{{}}' for the class name")
        for key in ("epochs", "batch_size"):
            if getattr(self, key) < 1:
                raise UserError(f"'{key}' must be at least 1, got {getattr(self, key)}")
        if not 0 < self.val_fraction < 1:
            raise UserError(f"'val_fraction' must be between 0 and 1, got {self.val_fraction}")

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
    """Frozen CLIP + a learned prompt -> logits over the classes' text features."""

    def __init__(self, clip: Clip, text_features: torch.Tensor,
                 visual_prompt: nn.Module | None = None, deep_prompt: DeepPrompt | None = None):
        super().__init__()
        self.clip = [clip]              # not a submodule: only prompts appear in state_dict
        self.text_features = text_features
        self.visual_prompt, self.deep_prompt = visual_prompt, deep_prompt

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        clip = self.clip[0]
        if self.visual_prompt is not None:
            x = self.visual_prompt(x)
        features = self.deep_prompt(x) if self.deep_prompt is not None else clip.visual(x)
        return clip_logits(clip, features, self.text_features)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' was asked for but torch sees no CUDA GPU; use --set device=auto")
    return torch.device(name)


def prepare(cfg: PromptConfig):
    """Data on the device, the frozen CLIP and the class text features."""
    device = pick_device(cfg.device)
    data = load_cifar(cfg.dataset, data_dir(cfg.data_dir), cfg.data)
    clip = load_clip(cfg.model, cfg.pretrained, device)
    train, val = train_val_split(data.train, cfg.val_fraction, cfg.seed)
    splits = Splits(*(DeviceData(s, device, clip.preprocess, cfg.seed + i)
                      for i, s in enumerate((train, val, data.test))))
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
    return fit(model, learned, splits, cfg.settings(), Augment(), report, resume_dir)


def _tune_entry(config_cls):
    def trainable(config: dict, report: Reporter | None = None) -> None:
        cfg = from_dict(config_cls, config)
        if report is not None:
            run_prompt(cfg, report)
            return
        with tune_resume_dir() as resume_dir:
            run_prompt(cfg, tune_report, resume_dir)
    return trainable


visual_prompt = register_trainable(
    "visual_prompt", VisualPromptConfig,
    "CLIP + a learned visual prompt (padding, fixed or random patch) added to the image",
)(_tune_entry(VisualPromptConfig))
deep_prompt = register_trainable(
    "deep_prompt", DeepPromptConfig,
    "CLIP + learned tokens injected before a transformer block (front, back, after_cls)",
)(_tune_entry(DeepPromptConfig))
