"""A trainable: its name, its typed config, what it reports, and the Ray Tune function around
its `run(cfg, report, resume_dir)`. Declared by each experiment's module; an Experiment record
(search_spaces/) names it. Nothing is registered here."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from clip_prompt_sweeps.names import MEMBER_STOPS_KEY, MEMBERS_KEY, RESUME_KEY, member_configs
from trainables.training.config import from_dict
from trainables.training.loop import Reporter
from trainables.training.ray_io import tune_fused_report, tune_member_stops, tune_report, tune_resume_dir


@dataclass(frozen=True)
class Trainable:
    name: str
    config_cls: type          # typed config: the keys and types a sweep may set
    fn: Callable              # the Ray Tune function trainable (see tune_entry)
    summary: str
    metrics: tuple[str, ...]  # what every report of it holds (finite), as its report reads them
    fusable: bool = False     # whether `fn` also trains a fused trial (issue #38: a config with members)


def trainable(name: str, config_cls: type, run: Callable[..., dict], summary: str,
              metrics: tuple[str, ...], run_fused: Callable[..., None] | None = None) -> Trainable:
    fn = tune_entry(config_cls, run, run_fused)
    fn.__name__ = name     # Ray names trials after the function
    return Trainable(name, config_cls, fn, summary, metrics, run_fused is not None)


def tune_entry(config_cls: type, run: Callable[..., dict], run_fused: Callable[..., None] | None = None):
    """A Ray Tune function trainable around `run(cfg, report, resume_dir)`; given a `report`
    (unit tests), it runs without Ray. `sources` (run id -> trainables.experiments.source_models.SourceRun)
    is what the driver hands a trainable that evaluates another sweep's model
    (tune.with_parameters). A config with members (a fused trial) runs
    `run_fused(cfgs, report, stopped, resume_dir)` instead (trainables/training/fused.py's reports)."""
    def fn(config: dict, report: Reporter | None = None, sources: dict | None = None, stopped=None) -> None:
        if run_fused is not None and MEMBERS_KEY in config:
            cfgs = [from_dict(config_cls, member) for member in member_configs(config)]
            if report is not None:
                run_fused(cfgs, report, stopped or frozenset, None)
                return
            with tune_resume_dir(config.get(RESUME_KEY)) as resume_dir:
                run_fused(cfgs, tune_fused_report, tune_member_stops(config.get(MEMBER_STOPS_KEY)), resume_dir)
            return
        cfg = from_dict(config_cls, config)
        given = {} if sources is None else {"sources": sources}
        if report is not None:
            run(cfg, report, None, **given)
            return
        with tune_resume_dir(config.get(RESUME_KEY)) as resume_dir:
            run(cfg, tune_report, resume_dir, **given)
    return fn
