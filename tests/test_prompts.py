import math

import pytest
import torch

from search_spaces.registry import list_trainables
from trainables.experiments.prompt_training import DeepPromptConfig, deep_classifier, prepare
from trainables.models.clip import load_clip
from trainables.models.prompts import DeepPrompt, PaddingPrompt, PatchPrompt, insert_prompts
from trainables.training.config import from_dict
from trainables.training.loop import lr_at


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def test_prompt_parameter_counts():
    assert n_params(PaddingPrompt(224, 30)) == 69_840
    assert n_params(PatchPrompt(224, 1)) == 3
    pad = PaddingPrompt(32, 4)
    image = pad.image()
    assert image.shape == (1, 3, 32, 32) and (image[:, :, 4:28, 4:28] == 0).all()


@pytest.fixture(scope="module")
def tiny():
    return load_clip("tiny-clip", "none")


@pytest.mark.parametrize("layer", [0, 2, 3])
def test_zero_deep_prompts_leave_the_encoder_unchanged(tiny, layer):
    images = torch.randn(3, 3, 32, 32)
    deep = DeepPrompt(tiny.visual, layer, 0, "front")
    assert torch.allclose(deep(images), tiny.visual(images), atol=1e-5)


def test_insert_positions():
    tokens = torch.arange(3.0).view(1, 3, 1).expand(2, 3, 1)        # CLS=0, patches 1, 2
    prompts = torch.tensor([[7.0], [8.0]])
    flat = lambda pos: insert_prompts(tokens, prompts, pos)[0, :, 0].tolist()
    assert flat("front") == [7, 8, 0, 1, 2]
    assert flat("back") == [0, 1, 2, 7, 8]
    assert flat("after_cls") == [0, 7, 8, 1, 2]


@pytest.mark.parametrize("position,readout_is_prompt", [("front", True), ("back", False), ("after_cls", False)])
def test_readout_token_of_each_position(tiny, position, readout_is_prompt):
    """Token 0 after the last block is read out: a prompt token for 'front', CLS otherwise."""
    visual, images = tiny.visual, torch.randn(2, 3, 32, 32)
    deep = DeepPrompt(visual, tiny.depth - 1, 2, position)
    tokens = deep.prefix(images)                       # CLS is token 0 here
    sequence = insert_prompts(tokens, deep.prompts, position)
    token0 = deep.prompts[0] if readout_is_prompt else tokens[0, 0]
    assert torch.allclose(sequence[0, 0], token0)
    x = visual.transformer.resblocks[-1](sequence)
    assert torch.allclose(deep(images), visual.ln_post(x[:, 0]) @ visual.proj, atol=1e-5)


def test_frozen_model_gets_no_gradients_or_optimizer_state(tiny_prompt_config):
    cfg = from_dict(DeepPromptConfig, {**tiny_prompt_config, "layer": 1, "n_prompts": 4})
    clip, splits, text, _ = prepare(cfg)
    prompt, model = deep_classifier(cfg, clip, text)
    x, y = next(splits.train.batches(8))
    torch.nn.functional.cross_entropy(model(x), y).backward()
    assert prompt.prompts.grad is not None and prompt.prompts.grad.abs().sum() > 0
    assert all(p.grad is None for p in clip.model.parameters())
    assert [k for k in prompt.state_dict()] == ["prompts"]    # the encoder is not part of it


def test_lr_schedule_warms_up_then_decays_by_cosine():
    assert lr_at(0, 100, 10, 40) == pytest.approx(4.0)
    assert lr_at(9, 100, 10, 40) == pytest.approx(40.0)
    assert lr_at(55, 100, 10, 40) == pytest.approx(20.0)
    assert lr_at(100, 100, 10, 40) == pytest.approx(0.0, abs=1e-9)


def _run(name, config):
    reports = []
    next(t for t in list_trainables() if t.name == name).fn(config, report=lambda metrics, ckpt: reports.append(metrics))
    return reports


def test_trained_prompt_beats_untrained_on_synthetic_data(tiny_prompt_config):
    base = {**tiny_prompt_config, "epochs": 4, "warmup_steps": 5, "prompt": "padding", "prompt_size": 4}
    untrained = _run("visual_prompt", {**base, "lr": 0.0})[-1]["test_acc"]
    trained = _run("visual_prompt", {**base, "lr": 40.0})[-1]["test_acc"]
    assert trained > max(0.3, untrained + 0.2)     # chance is 0.1 on ten classes


def test_non_finite_loss_stops_the_trial_with_a_reason(tiny_prompt_config):
    reports = _run("visual_prompt", {**tiny_prompt_config, "epochs": 3, "lr": 1e38,
                                     "prompt": "padding", "prompt_size": 4})
    assert len(reports) == 1 and reports[0]["diverged"] == 1.0
    assert "non-finite" in reports[0]["stop_reason"] and not math.isfinite(reports[0]["train_loss"])
