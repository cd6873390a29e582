"""Every registered trainable runs one tiny step on CPU and reports finite metrics with the keys
its report needs; a new trainable is covered without new test code (timm's test_models style)."""
import math

import pytest

from trainables import list_trainables

# The smallest valid config of each trainable's own keys, beyond the shared tiny settings.
# The shared settings are a prompt trainable's; others drop the keys they do not have.
EXTRA = {"visual_prompt": {"prompt": "padding", "prompt_size": 4},
         "deep_prompt": {"layer": 1, "n_prompts": 2, "position": "after_cls"},
         "finetune": {"weights": "none", "image_size": 32, "augment": "hflip", "model": None,
                      "pretrained": None, "warmup_steps": None},
         "linear_probe": {"warmup_steps": None},
         "zeroshot": {"epochs": None, "warmup_steps": None}}


def tiny_config(spec, shared: dict) -> dict:
    config = {**shared, **EXTRA.get(spec.name, {})}
    return {k: v for k, v in config.items() if v is not None}


@pytest.mark.parametrize("spec", list_trainables(), ids=lambda s: s.name)
def test_trainable_runs_one_tiny_step(spec, tiny_prompt_config):
    reports, checkpoints = [], []
    spec.fn(tiny_config(spec, tiny_prompt_config),
            report=lambda metrics, ckpt: (reports.append(metrics), checkpoints.append(ckpt)))
    assert len(reports) == 1
    assert set(spec.metrics) <= reports[0].keys()
    assert all(math.isfinite(reports[0][k]) for k in spec.metrics)
    if "best_val_acc" in spec.metrics:      # what learns, checkpoints
        assert checkpoints[0] is not None
