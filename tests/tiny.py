"""The smallest valid run of every registered trainable, for the registry test and the GPU check.
A trainable that evaluates another sweep's model gets one its source trainable really learned."""
from __future__ import annotations

from safetensors.torch import load_file

from search_spaces import get_sweep
from trainables import get_trainable
from trainables.config import field_types, from_dict
from trainables.sources import Learned

# Each trainable's own keys beyond the shared tiny settings (a prompt trainable's); keys a
# trainable's config does not have are dropped.
EXTRA = {"visual_prompt": {"prompt": "padding", "prompt_size": 4},
         "deep_prompt": {"layer": 1, "n_prompts": 2, "position": "after_cls"},
         "finetune": {"weights": "none", "image_size": 32, "augment": "hflip"},
         "compare": {"model": "mobilenet_v3_small", "image_size": 32, "warmup": 1, "repeats": 2},
         "robustness": {"model": "resnet_fc", "batch_size": 64, "curve": "0,0.2"},
         "cross": {"prompt_from": "cifar100", "batch_size": 64}}


def tiny_config(spec, shared: dict) -> dict:
    config = {**shared, **EXTRA.get(spec.name, {})}
    keys = field_types(spec.config_cls)
    return {k: v for k, v in config.items() if k in keys}


def learned_source(spec, config: dict, shared: dict) -> tuple[str, dict]:
    """Run the source's own trainable on its cell and keep what a sweep logs: (run id, sources)."""
    source = spec.source(from_dict(spec.config_cls, {**config, "source_run": "x"}))
    upstream = get_trainable(get_sweep(source.sweep).trainable)
    up_config = {**tiny_config(upstream, shared), **source.where}
    kept = {}

    def report(metrics, checkpoint):
        kept.update(metrics=metrics, tensors=load_file(f"{checkpoint}/best.safetensors"))
    upstream.fn(up_config, report=report)
    params = {k: str(v) for k, v in up_config.items()}
    return "upstream-run", {"upstream-run": Learned("upstream-run", params, kept["metrics"], kept["tensors"])}


def run_tiny(spec, shared: dict) -> tuple[list[dict], list]:
    """(every report, every checkpoint folder) of one tiny run of `spec`."""
    config, extra = tiny_config(spec, shared), {}
    if spec.source is not None:
        config["source_run"], extra["sources"] = learned_source(spec, config, shared)
    reports, checkpoints = [], []
    spec.fn(config, report=lambda metrics, ckpt: (reports.append(metrics), checkpoints.append(ckpt)), **extra)
    return reports, checkpoints
