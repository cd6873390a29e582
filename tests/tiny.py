"""The smallest valid run of every registered experiment's trainable, for the registry test and
the GPU check: shared tiny settings plus the keys its record declares (`tiny`). An experiment
that evaluates another sweep's model gets one its upstream trainable really learned."""
from __future__ import annotations

from safetensors.torch import load_file

from search_spaces.experiment import Experiment
from search_spaces.registry import get_experiment
from trainables.experiments.source_models import SourceRun
from trainables.training.config import field_types, from_dict


def tiny_config(exp: Experiment, shared: dict) -> dict:
    """The shared tiny settings and the record's own; keys its config does not have are dropped."""
    config = {**shared, **exp.tiny}
    keys = field_types(exp.trainable.config_cls)
    return {k: v for k, v in config.items() if k in keys}


def learned_source(exp: Experiment, config: dict, shared: dict) -> tuple[str, dict]:
    """Run the source's own trainable on its cell and keep what a sweep logs: (run id, sources)."""
    source = exp.source(from_dict(exp.trainable.config_cls, {**config, "source_run": "x"}))
    upstream = get_experiment(source.sweep)
    up_config = {**tiny_config(upstream, shared), **source.where}
    kept = {}

    def report(metrics, checkpoint):
        kept.update(metrics=metrics, tensors=load_file(f"{checkpoint}/best.safetensors"))
    upstream.trainable.fn(up_config, report=report)
    params = {k: str(v) for k, v in up_config.items()}
    return "upstream-run", {"upstream-run": SourceRun("upstream-run", params, kept["metrics"], kept["tensors"])}


def run_tiny(exp: Experiment, shared: dict) -> tuple[list[dict], list]:
    """(every report, every checkpoint folder) of one tiny run of `exp`'s trainable."""
    config, given = tiny_config(exp, shared), {}
    if exp.source is not None:
        config["source_run"], given["sources"] = learned_source(exp, config, shared)
    reports, checkpoints = [], []
    exp.trainable.fn(config, report=lambda metrics, ckpt: (reports.append(metrics), checkpoints.append(ckpt)), **given)
    return reports, checkpoints
