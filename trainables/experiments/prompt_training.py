"""Visual and deep prompts on a frozen CLIP image encoder (seed sections 2.2 and 2.3), classified
zero-shot-style against the text features of "This is a photo of a {}" (the study's template):
the typed configs and the runs. The model is trainables/models/clip.py's PromptedClip."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from clip_prompt_sweeps.errors import UserError
from trainables.data.config import DataConfig, load_splits, splits_record
from trainables.data.pipeline import Augment, Splits
from trainables.models.backbones import check_deep_capable, resolve_layer
from trainables.models.clip import (
    Clip,
    PromptedClip,
    class_text_features,
    fused_logits,
    load_clip,
    model_depth,
    model_image_size,
)
from trainables.models.clip_config import BackboneConfig, TextConfig
from trainables.models.prompts import POSITIONS, VISUAL_PROMPTS, DeepPrompt, make_visual_prompt
from trainables.training.device import pick_device
from trainables.training.entry import trainable
from trainables.training.features import cache_splits
from trainables.training.fused import FusedReporter, Member, fit_fused, reporting_dataset_fused
from trainables.training.loop import TRAINING_METRICS, LoopSettings, Reporter, fit, reporting_dataset


@dataclass
class PromptConfig(DataConfig, BackboneConfig, TextConfig):
    lr: float = 40.0                    # SGD, the course's reference
    momentum: float = 0.9
    weight_decay: float = 0.0
    warmup_steps: int = 1000            # linear warm-up, then cosine per step
    compile: bool = False               # torch.compile the classifier (opt-in: compiling costs
                                        # a minute per trial, repaid only by long runs)

    def check(self) -> None:
        super().check()
        self.check_backbone()
        self.templates()

    def settings(self) -> LoopSettings:
        return LoopSettings(self.epochs, self.batch_size, self.lr, self.momentum,
                            self.weight_decay, self.warmup_steps)


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
    layer: str = "0"                    # inject before this block: first | middle | last | a number
    n_prompts: int = 1
    position: str = "front"             # front (the seed's) | back | after_cls; see prompts.py
    prefix_cache: bool = True           # run the frozen blocks before `layer` once per image,
                                        # not every epoch (bf16 on CUDA, as the blocks carry it)

    def check(self) -> None:
        super().check()
        check_deep_capable(self.model)
        self.layer_index
        if self.n_prompts < 1:
            raise UserError(f"n_prompts must be at least 1, got {self.n_prompts}")
        if self.position not in POSITIONS:
            raise UserError(f"position '{self.position}' unknown; known: {', '.join(POSITIONS)}")

    @property
    def layer_index(self) -> int:
        """The block the prompts enter before, on this backbone (first/middle/last resolved)."""
        return resolve_layer(self.layer, model_depth(self.model), self.model)


def prepare(cfg: PromptConfig) -> tuple[Clip, Splits, torch.Tensor, dict]:
    """Data on the device, the frozen CLIP, the class text features and the dataset record."""
    device = pick_device(cfg.device)
    clip = load_clip(cfg.model, cfg.pretrained, device)
    data, splits = load_splits(cfg, clip.preprocess, device)
    return clip, splits, class_text_features(clip, data.classes, cfg.templates()), splits_record(data, splits)


def _fit(cfg: PromptConfig, model: torch.nn.Module, prompt: torch.nn.Module, splits: Splits, report: Reporter,
         resume_dir, constant_metrics: dict | None = None) -> dict:
    if cfg.compile:
        model = torch.compile(model)
    return fit(model, prompt, splits, cfg.settings(), Augment(), report, resume_dir, constant_metrics)


def visual_classifier(cfg: VisualPromptConfig, clip: Clip, text: torch.Tensor) -> tuple[torch.nn.Module, PromptedClip]:
    """(the learned prompt, the whole classifier)."""
    torch.manual_seed(cfg.train_seed)     # the same init for every learning rate of a cell
    device = next(clip.model.parameters()).device
    prompt = make_visual_prompt(cfg.prompt, clip.preprocess.size, cfg.prompt_size).to(device)
    return prompt, PromptedClip(clip, text, visual_prompt=prompt)


def deep_classifier(cfg: DeepPromptConfig, clip: Clip, text: torch.Tensor,
                    from_prefix: bool = False) -> tuple[DeepPrompt, PromptedClip]:
    """(the learned tokens, the whole classifier); `from_prefix`: it takes the cached tokens
    before the injection layer, not images."""
    torch.manual_seed(cfg.train_seed)     # the same init for every learning rate of a cell
    device = next(clip.model.parameters()).device
    prompt = DeepPrompt(clip.visual, cfg.layer_index, cfg.n_prompts, cfg.position).to(device)
    return prompt, PromptedClip(clip, text, deep_prompt=prompt, from_prefix=from_prefix)


def run_visual(cfg: VisualPromptConfig, report: Reporter, resume_dir=None) -> dict:
    clip, splits, text, record = prepare(cfg)
    prompt, model = visual_classifier(cfg, clip, text)
    return _fit(cfg, model, prompt, splits, reporting_dataset(report, record), resume_dir)


def run_deep(cfg: DeepPromptConfig, report: Reporter, resume_dir=None) -> dict:
    clip, splits, text, record = prepare(cfg)
    report = reporting_dataset(report, record)
    prompt, model = deep_classifier(cfg, clip, text, from_prefix=cfg.prefix_cache)
    cost: dict = {"layer_index": cfg.layer_index}     # the block a named layer is on this backbone
    if cfg.prefix_cache:
        # the tokens before the injection layer, once per image
        splits, cache_cost = cache_splits(splits, prompt.prefix, cfg.batch_size)
        cost.update(cache_cost)
    return _fit(cfg, model, prompt, splits, report, resume_dir, cost)


# --- fused trials (issue #38): one cell's learning rates in one pass over the frozen CLIP ---------

def _fit_members(cfgs: list, built: list[tuple[torch.nn.Module, PromptedClip]], splits: Splits, report: FusedReporter,
                 stopped, resume_dir, constant_metrics: dict | None = None) -> None:
    if cfgs[0].compile:
        raise UserError("compile=true does not apply to a fused trial; run the sweep with --fuse 1 to compile")
    members = [Member(prompt, cfg.settings()) for cfg, (prompt, _) in zip(cfgs, built)]
    models = [model for _, model in built]

    def forward_of(ks: list[int]):
        return lambda x: fused_logits([models[k] for k in ks], x)
    fit_fused(forward_of, members, splits, Augment(), report, stopped, constant_metrics, resume_dir)


def run_visual_fused(cfgs: list[VisualPromptConfig], report: FusedReporter, stopped, resume_dir=None) -> None:
    clip, splits, text, record = prepare(cfgs[0])       # a cell's members share all but the learning rate
    built = [visual_classifier(cfg, clip, text) for cfg in cfgs]
    _fit_members(cfgs, built, splits, reporting_dataset_fused(report, record), stopped, resume_dir)


def run_deep_fused(cfgs: list[DeepPromptConfig], report: FusedReporter, stopped, resume_dir=None) -> None:
    cfg = cfgs[0]
    clip, splits, text, record = prepare(cfg)
    built = [deep_classifier(c, clip, text, from_prefix=cfg.prefix_cache) for c in cfgs]
    cost: dict = {"layer_index": cfg.layer_index}
    if cfg.prefix_cache:
        # the prefix holds no prompt: once per image for all the members
        splits, cache_cost = cache_splits(splits, built[0][0].prefix, cfg.batch_size)
        cost.update(cache_cost)
    _fit_members(cfgs, built, splits, reporting_dataset_fused(report, record), stopped, resume_dir, cost)


VISUAL_PROMPT = trainable(
    "visual_prompt", VisualPromptConfig, run_visual,
    "CLIP + a learned visual prompt (padding, fixed or random patch) added to the image", TRAINING_METRICS,
    run_fused=run_visual_fused)
DEEP_PROMPT = trainable(
    "deep_prompt", DeepPromptConfig, run_deep,
    "CLIP + learned tokens injected before a transformer block (front, back, after_cls)",
    TRAINING_METRICS + ("cache_seconds", "cache_mb"), run_fused=run_deep_fused)
