"""Every registered trainable runs one tiny step on CPU and reports finite metrics with the keys
its report needs; a new trainable is covered without new test code (timm's test_models style)."""
import math

import pytest
from tiny import run_tiny

from trainables import list_trainables


@pytest.mark.parametrize("spec", list_trainables(), ids=lambda s: s.name)
def test_trainable_runs_one_tiny_step(spec, tiny_prompt_config):
    reports, checkpoints = run_tiny(spec, tiny_prompt_config)
    assert len(reports) == 1
    assert set(spec.metrics) <= reports[0].keys()
    assert all(math.isfinite(reports[0][k]) for k in spec.metrics)
    if "best_val_acc" in spec.metrics:      # what learns, checkpoints
        assert checkpoints[0] is not None
    if "source_test_acc" in spec.metrics:   # the source model came through unchanged
        own = reports[0].get("clean_acc", reports[0].get("own_acc"))
        assert own == pytest.approx(reports[0]["source_test_acc"])
