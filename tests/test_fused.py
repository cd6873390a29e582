"""Fused trials (issue #38): K learning rates of one cell trained in one pass over the frozen CLIP
compute what K separate trials compute, member by member: the same losses, accuracies and learned
prompts, up to the order of floating-point sums."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from clip_prompt_sweeps.names import member_folder
from trainables.data.config import load_splits
from trainables.data.pipeline import Augment
from trainables.experiments.prompt_training import (
    DeepPromptConfig,
    VisualPromptConfig,
    deep_classifier,
    visual_classifier,
)
from trainables.models.clip import class_text_features, fused_logits, load_clip
from trainables.training.checkpoints import checkpoint_epoch
from trainables.training.features import cache_splits
from trainables.training.fused import evaluate_fused, train_epoch_fused
from trainables.training.loop import evaluate, make_optimizer, train_epoch

LRS = (0.5, 4.0, 40.0)      # one cell's learning rates: a low one, a middle one, the reference

KINDS = {
    "deep, first layer, cached prefix": (DeepPromptConfig, dict(layer="first", n_prompts=2, position="front"), True),
    "deep, last layer, cached prefix": (DeepPromptConfig, dict(layer="last", n_prompts=1, position="after_cls"), True),
    "deep, first layer, uncached": (DeepPromptConfig, dict(layer="first", n_prompts=1, position="back"), False),
    "visual padding prompt": (VisualPromptConfig, dict(prompt="padding", prompt_size=2), False),
}


def _cell(kind: str, tiny_prompt_config: dict, lrs):
    """(a config per learning rate of one cell, the frozen CLIP, its class text features, the device).
    120 training images, the rest validation: training is what costs, not what is checked."""
    config_cls, extra, _ = KINDS[kind]
    cfgs = [config_cls(**{**tiny_prompt_config, "epochs": 2, "val_fraction": 0.8}, **extra, lr=lr) for lr in lrs]
    device = torch.device("cpu")
    clip = load_clip(cfgs[0].model, cfgs[0].pretrained, device)
    data, _ = load_splits(cfgs[0], clip.preprocess, device)
    return cfgs, clip, class_text_features(clip, data.classes, cfgs[0].templates()), device


def _member(kind: str, cfg, clip, text, device):
    """(learned prompt, classifier, splits) as one trial of `cfg` builds them: fresh splits draw the
    cell's shuffling from its start, as a trial of its own would."""
    config_cls, _, cached = KINDS[kind]
    data, splits = load_splits(cfg, clip.preprocess, device)
    if config_cls is VisualPromptConfig:
        prompt, model = visual_classifier(cfg, clip, text)
        return prompt, model, splits
    prompt, model = deep_classifier(cfg, clip, text, from_prefix=cached)
    if cached:
        splits, _ = cache_splits(splits, prompt.prefix, cfg.batch_size)
    return prompt, model, splits


@pytest.mark.parametrize("kind", list(KINDS))
def test_fused_members_compute_what_separate_trials_compute(kind, tiny_prompt_config):
    cfgs, clip, text, device = _cell(kind, tiny_prompt_config, LRS)
    settings = [c.settings() for c in cfgs]
    steps = math.ceil(len(load_splits(cfgs[0], clip.preprocess, device)[1].train) / cfgs[0].batch_size)

    alone = []
    for cfg, s in zip(cfgs, settings):
        prompt, model, splits = _member(kind, cfg, clip, text, device)
        optimizer = make_optimizer([p for p in prompt.parameters() if p.requires_grad], s)
        epochs = [train_epoch(model, optimizer, splits.train, s, Augment(), e * steps, 2 * steps)[:2] for e in range(2)]
        alone.append((epochs, evaluate(model, splits.val, s.batch_size), prompt.state_dict()))

    members = [_member(kind, cfg, clip, text, device) for cfg in cfgs]
    splits = members[0][2]                                      # one copy of the data for all of them
    models = [model for _, model, _ in members]
    optimizers = [make_optimizer([p for p in prompt.parameters() if p.requires_grad], s)
                  for (prompt, _, _), s in zip(members, settings)]
    forward = lambda x: fused_logits(models, x)                 # noqa: E731
    fused = [train_epoch_fused(forward, optimizers, splits.train, settings, Augment(), e * steps, 2 * steps)[:2]
             for e in range(2)]
    val = evaluate_fused(forward, splits.val, settings[0].batch_size)

    for k, (epochs, val_alone, learned) in enumerate(alone):
        for e, (loss, acc) in enumerate(epochs):
            assert fused[e][0][k] == pytest.approx(loss, rel=1e-4), (k, e)
            assert fused[e][1][k] == pytest.approx(acc, abs=1e-9), (k, e)
        assert val[k] == pytest.approx(val_alone, abs=1e-9), k
        for name, value in members[k][0].state_dict().items():
            torch.testing.assert_close(value, learned[name], rtol=1e-4, atol=1e-5)
    # the members learned different prompts: the learning rates were not mixed up
    prompts = [next(iter(prompt.state_dict().values())) for prompt, _, _ in members]
    assert not torch.allclose(prompts[0], prompts[2])


def test_fused_members_of_different_cells_are_refused(tiny_prompt_config):
    from trainables.models.prompts import fused_suffix
    device = torch.device("cpu")
    cfgs = [DeepPromptConfig(**tiny_prompt_config, layer=layer) for layer in ("first", "last")]
    clip = load_clip(cfgs[0].model, cfgs[0].pretrained, device)
    text = torch.zeros(10, clip.model.text_projection.shape[1])
    prompts = [deep_classifier(cfg, clip, text)[0] for cfg in cfgs]
    with pytest.raises(ValueError, match="share their layer, position and number of tokens"):
        fused_suffix(prompts, [torch.zeros(2, 5, clip.visual.transformer.width)] * 2)


def _fit_alone_and_fused(tiny_prompt_config, lrs, stopped=frozenset):
    """(each member's reports from `fit` alone, from `fit_fused` together), a deep prompt's cell."""
    from trainables.training.fused import Member, fit_fused
    from trainables.training.loop import fit
    kind = "deep, first layer, cached prefix"
    cfgs, clip, text, device = _cell(kind, tiny_prompt_config, lrs)
    alone = []
    for cfg in cfgs:
        prompt, model, splits = _member(kind, cfg, clip, text, device)
        reports: list = []
        fit(model, prompt, splits, cfg.settings(), Augment(), lambda m, folder: reports.append((m, folder is None)))
        alone.append(reports)
    built = [_member(kind, cfg, clip, text, device) for cfg in cfgs]
    members = [Member(prompt, cfg.settings()) for (prompt, _, _), cfg in zip(built, cfgs)]
    together: list[list] = [[] for _ in cfgs]

    def report(rows, folder):
        for k, metrics in rows:
            # a member's checkpoint is a trial's own, in its folder
            mine = Path(folder) / member_folder(k)
            together[k].append((metrics, checkpoint_epoch(mine) != metrics["epoch"]))
    fit_fused(lambda ks: (lambda x: fused_logits([built[k][1] for k in ks], x)), members, built[0][2], Augment(),
              report, stopped)
    return alone, together


def _same_reports(alone: list, together: list) -> None:
    assert len(together) == len(alone)
    for (mine, no_folder), (theirs, no_folder_alone) in zip(together, alone):
        assert no_folder == no_folder_alone                  # a checkpoint with each report but a diverged one
        assert set(mine) == set(theirs)
        for key, value in theirs.items():
            if key in ("images_per_s", "cache_seconds"):     # timings
                continue
            if isinstance(value, dict):                      # the dataset's record
                assert mine[key] == value
                continue
            assert mine[key] == pytest.approx(value, rel=1e-4, nan_ok=True), key


def test_a_fused_fit_reports_for_each_member_what_fit_reports_for_it_alone(tiny_prompt_config):
    # 1e30 diverges (its prompt overflows): it leaves the batch alone, the others go on as before
    alone, together = _fit_alone_and_fused(tiny_prompt_config, (0.5, 40.0, 1e30))
    assert [len(r) for r in alone] == [2, 2, 1] and alone[2][0][0]["diverged"] == 1.0
    for k in range(3):
        _same_reports(alone[k], together[k])


def test_a_member_stopped_leaves_the_fused_batch_and_the_others_go_on_as_alone(tiny_prompt_config):
    alone, together = _fit_alone_and_fused(tiny_prompt_config, (0.5, 40.0), stopped=lambda: {0})
    assert len(together[0]) == 1                             # ASHA stopped it after its first epoch
    _same_reports(alone[0][:1], together[0])
    _same_reports(alone[1], together[1])


def test_a_fused_linear_probe_reports_for_each_head_what_its_trial_reports_alone(tiny_prompt_config):
    """Through the trainable's own entry, as a Ray trial calls it: a config with members is a
    fused trial, one without is a trial (K heads over one feature cache, one batched product)."""
    from clip_prompt_sweeps.names import MEMBERS_KEY
    from trainables.experiments.linear_probe import LINEAR_PROBE
    config = {k: v for k, v in tiny_prompt_config.items() if k != "warmup_steps"}
    config.update(epochs=2, val_fraction=0.8)
    lrs = (1e-3, 3e-2, 1.0)
    alone = []
    for lr in lrs:
        reports: list = []
        LINEAR_PROBE.fn({**config, "lr": lr}, report=lambda m, folder: reports.append((m, folder is None)))
        alone.append(reports)
    together: list[list] = [[] for _ in lrs]

    def report(rows, folder):
        for k, metrics in rows:
            together[k].append((metrics, checkpoint_epoch(Path(folder) / member_folder(k)) != metrics["epoch"]))
    LINEAR_PROBE.fn({**config, "lr": lrs[0], MEMBERS_KEY: [{"lr": lr} for lr in lrs]}, report=report)
    for k in range(len(lrs)):
        _same_reports(alone[k], together[k])
