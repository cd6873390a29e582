"""Every registered trainable runs one tiny step on CPU and reports finite metrics with the keys
its report needs; a new trainable is covered without new test code (timm's test_models style).
A trainable that evaluates another sweep's model gets one its source trainable really learned."""
import math

import pytest
from safetensors.torch import load_file

from search_spaces import get_sweep
from trainables import get_trainable, list_trainables
from trainables.config import field_types, from_dict
from trainables.sources import Learned

# The smallest valid config of each trainable's own keys, beyond the shared tiny settings (a
# prompt trainable's); keys a trainable's config does not have are dropped.
EXTRA = {"visual_prompt": {"prompt": "padding", "prompt_size": 4},
         "deep_prompt": {"layer": 1, "n_prompts": 2, "position": "after_cls"},
         "finetune": {"weights": "none", "image_size": 32, "augment": "hflip", "model": None},
         "compare": {"model": "mobilenet_v3_small", "image_size": 32, "warmup": 1, "repeats": 2},
         "robustness": {"model": "resnet_fc", "batch_size": 64, "curve": "0,0.2"},
         "cross": {"prompt_from": "cifar100", "batch_size": 64}}


def tiny_config(spec, shared: dict) -> dict:
    config = {**shared, **EXTRA.get(spec.name, {})}
    keys = field_types(spec.config_cls)
    return {k: v for k, v in config.items() if v is not None and k in keys}


def learned_source(spec, config: dict, shared: dict) -> tuple[str, dict]:
    """Run the source's own trainable on its cell, keep what a sweep would log: (run id, sources)."""
    source = spec.source(from_dict(spec.config_cls, {**config, "source_run": "x"}))
    upstream = get_trainable(get_sweep(source.sweep).trainable)
    up_config = {**tiny_config(upstream, shared), **source.where}
    kept = {}

    def report(metrics, checkpoint):
        kept.update(metrics=metrics, tensors=load_file(f"{checkpoint}/best.safetensors"))
    upstream.fn(up_config, report=report)
    params = {k: str(v) for k, v in up_config.items()}
    return "upstream-run", {"upstream-run": Learned("upstream-run", params, kept["metrics"], kept["tensors"])}


@pytest.mark.parametrize("spec", list_trainables(), ids=lambda s: s.name)
def test_trainable_runs_one_tiny_step(spec, tiny_prompt_config):
    config, extra = tiny_config(spec, tiny_prompt_config), {}
    if spec.source is not None:
        config["source_run"], extra["sources"] = learned_source(spec, config, tiny_prompt_config)
    reports, checkpoints = [], []
    spec.fn(config, report=lambda metrics, ckpt: (reports.append(metrics), checkpoints.append(ckpt)), **extra)
    assert len(reports) == 1
    assert set(spec.metrics) <= reports[0].keys()
    assert all(math.isfinite(reports[0][k]) for k in spec.metrics)
    if "best_val_acc" in spec.metrics:      # what learns, checkpoints
        assert checkpoints[0] is not None
    if "source_test_acc" in spec.metrics:   # the source model came through unchanged
        own = reports[0].get("clean_acc", reports[0].get("own_acc"))
        assert own == pytest.approx(reports[0]["source_test_acc"])
