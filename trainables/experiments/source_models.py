"""Models another sweep learned, evaluated again by a later experiment (robustness, cross).

A trainable that needs one declares a `Source`: which sweep, and which of its cells. The driver
finds the run in MLflow (the best-on-validation trial of that cell in the latest such sweep),
records its run id in the trial's config (`source_run`, so MLflow shows where every number came
from) and hands the run's params and best parameters to the trial through Ray's object store.
Trials never reach MLflow themselves: on a cluster its server listens on the head's loopback.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import nn

from clip_prompt_sweeps.errors import UserError
from trainables.experiments.prompt_training import VisualPromptConfig
from trainables.models.clip import Clip, load_clip
from trainables.models.prompts import make_visual_prompt
from trainables.training.config import from_dict


@dataclass(frozen=True)
class Source:
    sweep: str          # the sweep that learned it, e.g. "visual"
    where: dict         # the params its trial must have, e.g. {"dataset": "cifar100", "prompt": "padding"}

    def describe(self) -> str:
        return f"'{self.sweep}' sweep cell " + ",".join(f"{k}={v}" for k, v in self.where.items())


@dataclass
class SourceRun:
    """One source run, as the driver read it from MLflow."""
    run_id: str
    params: dict        # the trial's config, as MLflow stores params (strings)
    metrics: dict       # its last metrics (test_acc of its best-on-validation epoch among them)
    tensors: dict       # its best.safetensors artifact: the parameters of its best-on-validation epoch


def pick(sources: dict | None, run_id: str) -> SourceRun:
    if not sources or run_id not in sources:
        raise UserError(f"source run '{run_id}' was not handed to this trial; run it through "
                        f"`python -m orchestrator sweep`, which finds it in MLflow")
    return sources[run_id]


def config_of(cls, source: SourceRun, **overrides):
    """The source trial's typed config, with this trial's data and device settings."""
    known = {f.name for f in fields(cls)}
    values = {k: v for k, v in source.params.items() if k in known}
    return from_dict(cls, {**values, **overrides}, where=f"source run {source.run_id}")


def load_parameters(module: nn.Module, source: SourceRun) -> nn.Module:
    """`module` with the source's best parameters, in eval mode."""
    device = next(module.parameters()).device
    module.load_state_dict({k: v.to(device) for k, v in source.tensors.items()})
    return module.eval()


def padding_prompt_clip(source: SourceRun, data: str, data_dir, device: torch.device):
    """(config, frozen CLIP, the learned visual prompt) of a `visual_prompt` source run."""
    cfg = config_of(VisualPromptConfig, source, data=data, data_dir=data_dir, device=str(device))
    clip: Clip = load_clip(cfg.model, cfg.pretrained, device)
    prompt = make_visual_prompt(cfg.prompt, clip.preprocess.size, cfg.prompt_size).to(device)
    return cfg, clip, load_parameters(prompt, source)
