"""Every registered experiment, found by discovery, without test code of its own (timm's
test_models style): each profile plans, each trainable runs one tiny step on CPU and reports
finite metrics with the keys its report needs, and each record's sources and report are sound."""
import math

import pytest
from tiny import run_tiny

from clip_prompt_sweeps.names import cell_key
from orchestrator.sweep.plan import make_plan
from search_spaces.registry import get_experiment, list_experiments
from trainables.training.config import field_types

EXPERIMENTS = list_experiments()
PROFILES = [(e, p) for e in EXPERIMENTS for p in sorted(e.profiles)]


@pytest.mark.parametrize("exp", EXPERIMENTS, ids=lambda e: e.name)
def test_trainable_runs_one_tiny_step(exp, tiny_prompt_config):
    reports, checkpoints = run_tiny(exp, tiny_prompt_config)
    metrics = exp.trainable.metrics
    assert len(reports) == 1
    assert set(metrics) <= reports[0].keys() and exp.metric in reports[0]
    assert all(math.isfinite(reports[0][k]) for k in metrics)
    if "best_val_acc" in metrics:      # what learns, checkpoints
        assert checkpoints[0] is not None
    if "source_test_acc" in metrics:   # the source model came through unchanged
        own = reports[0].get("clean_acc", reports[0].get("own_acc"))
        assert own == pytest.approx(reports[0]["source_test_acc"])


@pytest.mark.parametrize("exp,profile", PROFILES, ids=lambda x: x if isinstance(x, str) else x.name)
def test_every_profile_plans_every_cell(exp, profile):
    plan = make_plan(exp.name, profile)
    assert plan.cells and len(plan.typed) == len(plan.cells)
    keys = field_types(exp.trainable.config_cls)
    assert set(plan.base) <= keys.keys() and all(set(c) <= keys.keys() for c in plan.cells)
    if exp.source is not None:      # each cell's source is a sweep the record says to run first
        for cell in plan.cells:
            source = exp.source(plan.typed[cell_key(cell)])
            assert source.sweep in exp.upstream and get_experiment(source.sweep).report is not None


@pytest.mark.parametrize("exp", EXPERIMENTS, ids=lambda e: e.name)
def test_the_record_is_sound(exp):
    assert set(exp.tiny) <= field_types(exp.trainable.config_cls).keys()
    assert all(get_experiment(name) for name in exp.upstream)
    if exp.report is not None:
        numbers = [e.report.number for e in EXPERIMENTS if e.report is not None]
        assert numbers.count(exp.report.number) == 1 and exp.report.title
