"""`bench --only fused` (issue #38): what a fused trial buys. For deep prompts at the first and the
last layer (prefix cached), a visual padding prompt and the linear probe (features cached), K
learning rates of one cell trained as one fused trial, against the same K as separate trials one
after another on the same device, in the same run: the trials' epochs per second and the ratio.

The separate trials are timed once each (four of them); the K = 1 and 2 baselines are the first
one and two of those, as a K-trial sweep would run them. Caches (the prefix, the features) are
built once and left out of every epoch's time: a fused trial builds one where K trials build K,
which the notes say."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from orchestrator.bench.speed import Context, Row, _head, epoch_seconds, timed
from trainables.data.pipeline import Augment, DeviceData
from trainables.experiments.linear_probe import fused_heads
from trainables.models.clip import PromptedClip, class_text_features, fused_logits, load_clip, model_depth
from trainables.models.prompts import DeepPrompt, PaddingPrompt
from trainables.training.features import FeatureData
from trainables.training.fused import train_epoch_fused
from trainables.training.loop import LoopSettings, make_optimizer

KS = (1, 2, 4)
LRS = (0.5, 4.0, 40.0, 400.0)       # one cell's learning rates (SGD; Adam for the probe, scaled)


def _settings(lr: float, batch: int, optimizer: str) -> LoopSettings:
    return LoopSettings(epochs=1, batch_size=batch, lr=lr, momentum=0.9, weight_decay=0.0, warmup_steps=0,
                        optimizer=optimizer)


def fused_epoch_seconds(models: list[nn.Module], forward: Callable, data, batch: int, optimizer: str,
                        lrs) -> float:
    """One fused training epoch of `models` over `data`, after one untimed warm-up batch."""
    settings = [_settings(lr, batch, optimizer) for lr in lrs]
    opts = [make_optimizer([p for p in m.parameters() if p.requires_grad], s) for m, s in zip(models, settings)]
    for m in models:
        m.train()
    steps = math.ceil(len(data) / batch)
    train_epoch_fused(forward, opts, _head(data, batch), settings, Augment(), 0, steps)
    return timed(lambda: train_epoch_fused(forward, opts, data, settings, Augment(), 0, steps), data.labels.device)


EPOCHS = 20         # the study's trials: what a cache built once instead of K times is worth over them


def over_trials(k: int, t_cache: float, t_separate: float, t_fused: float, epochs: int = EPOCHS) -> float:
    """The speed-up over whole trials of `epochs` epochs, the cache counted: K separate trials build
    it K times (`t_separate` is their K epochs' time together), a fused trial once."""
    return (k * t_cache + epochs * t_separate) / (t_cache + epochs * t_fused)


def _rows(ctx: Context, kind: str, make: Callable[[], nn.Module], learned: Callable[[nn.Module], list],
          fused: Callable[[list[nn.Module]], Callable], data, optimizer: str, lrs, notes: dict,
          t_cache: float = 0.0) -> list[Row]:
    """K = 1, 2, 4 fused against the first K of four separate trials, each its own model."""
    separate = []
    for lr in lrs:
        model = make()
        separate.append(epoch_seconds(model, learned(model), data, ctx.size.batch, optimizer=optimizer, lr=lr))
    rows = []
    for k in KS:
        models = [make() for _ in range(k)]
        t_fused = fused_epoch_seconds(models, fused(models), data, ctx.size.batch, optimizer, lrs[:k])
        t_separate = sum(separate[:k])
        whole = {f"over_{EPOCHS}_epoch_trials_incl_cache": round(over_trials(k, t_cache, t_separate, t_fused), 2)}
        rows.append(Row("fused", f"{kind}, K={k}: trial-epochs/s, fused (baseline: {k} separate trial(s))",
                        k / t_fused, k / t_separate, "epochs/s", None,
                        {**notes, "images_per_epoch": ctx.size.images, **whole} if k == KS[0] else whole,
                        {f"fused/{kind}/{k}": k * ctx.size.images / t_fused}))
        ctx.progress(f"  fused, {kind}, K={k}: {t_fused:.2f} s fused, {t_separate:.2f} s separate")
    return rows


def _deep(ctx: Context, clip, text, layer: int, name: str) -> list[Row]:
    data = DeviceData(ctx.train(), ctx.device, clip.preprocess)
    torch.manual_seed(0)
    first = DeepPrompt(clip.visual, layer, 4, "front").to(ctx.device)
    holder: dict = {}
    t_cache = timed(lambda: holder.update(data=FeatureData.from_split(data, first.prefix, ctx.size.batch)), ctx.device)

    def make() -> nn.Module:
        torch.manual_seed(0)
        prompt = DeepPrompt(clip.visual, layer, 4, "front").to(ctx.device)
        return PromptedClip(clip, text, deep_prompt=prompt, from_prefix=True)
    return _rows(ctx, f"deep prompt, layer {layer} ({name}), cached prefix", make,
                 lambda m: [m.deep_prompt.prompts], lambda models: lambda x: fused_logits(models, x),
                 holder["data"], "sgd", LRS, {"prefix_cache_build_s_once_per_trial": round(t_cache, 2)}, t_cache)


def _visual(ctx: Context, clip, text) -> list[Row]:
    data = DeviceData(ctx.train(), ctx.device, clip.preprocess)
    size = clip.preprocess.size

    def make() -> nn.Module:
        torch.manual_seed(0)
        prompt = PaddingPrompt(size, max(1, round(size * 30 / 224))).to(ctx.device)
        return PromptedClip(clip, text, visual_prompt=prompt)
    return _rows(ctx, "visual prompt (padding)", make, lambda m: list(m.visual_prompt.parameters()),
                 lambda models: lambda x: fused_logits(models, x), data, "sgd", LRS, {})


def _probe(ctx: Context, clip) -> list[Row]:
    data = DeviceData(ctx.train(), ctx.device, clip.preprocess)
    encode = lambda x: nn.functional.normalize(clip.model.encode_image(x).float(), dim=-1)  # noqa: E731
    holder: dict = {}
    t_cache = timed(lambda: holder.update(data=FeatureData.from_split(data, encode, ctx.size.batch)), ctx.device)
    width, classes = holder["data"].features.shape[1], len(ctx.cifar.classes)

    def make() -> nn.Module:
        torch.manual_seed(0)
        return nn.Linear(width, classes, device=ctx.device)
    return _rows(ctx, "linear probe, cached features", make, lambda m: list(m.parameters()),
                 lambda heads: lambda x: fused_heads(heads, x), holder["data"], "adam", [lr / 1e4 for lr in LRS],
                 {"feature_cache_build_s_once_per_trial": round(t_cache, 2)}, t_cache)


def bench_fused(ctx: Context) -> list[Row]:
    clip = load_clip(ctx.size.clip, "none", ctx.device)
    text = class_text_features(clip, ctx.cifar.classes, "This is a photo of a {}")
    depth = model_depth(ctx.size.clip)
    return [*_deep(ctx, clip, text, 0, "first"), *_deep(ctx, clip, text, depth - 1, "last"),
            *_visual(ctx, clip, text), *_probe(ctx, clip)]
