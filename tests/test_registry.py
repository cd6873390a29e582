"""Every registered trainable runs one tiny step on CPU and reports finite metrics with the keys
its report needs; a new trainable is covered without new test code (timm's test_models style)."""
import math

import pytest

from trainables import list_trainables

REPORT_KEYS = {"train_loss", "train_acc", "val_acc", "best_val_acc", "test_acc", "learning_rate", "images_per_s"}
# The smallest valid config of each trainable's own keys, beyond the shared tiny settings.
EXTRA = {"visual_prompt": {"prompt": "padding", "prompt_size": 4},
         "deep_prompt": {"layer": 1, "n_prompts": 2, "position": "after_cls"}}


@pytest.mark.parametrize("spec", list_trainables(), ids=lambda s: s.name)
def test_trainable_runs_one_tiny_step(spec, tiny_prompt_config):
    reports, checkpoints = [], []
    spec.fn({**tiny_prompt_config, **EXTRA.get(spec.name, {})},
            report=lambda metrics, ckpt: (reports.append(metrics), checkpoints.append(ckpt)))
    assert len(reports) == 1 and checkpoints[0] is not None
    assert REPORT_KEYS <= reports[0].keys()
    assert all(math.isfinite(reports[0][k]) for k in REPORT_KEYS)
