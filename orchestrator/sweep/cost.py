"""`sweep NAME --dry-run`: what a sweep will cost, before anything runs. It needs no data, weights,
Ray or MLflow, and writes nothing.

Epochs are counted from ASHA's rungs: every trial of a cell runs to the first rung (the grace
period); at each rung the top 1/reduction_factor of the cell's trials (at least one) go on to the
next, and the last ones to the maximum. Ray's asynchronous ASHA decides each trial against the
results its rung holds so far, so an early trial can go further than this count; "at most" is
every trial to the end. Device time is images / measured training throughput (`bench`), per
device kind, from a `bench --json` file or the table shipped in orchestrator/sweep/throughput.json.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from clip_prompt_sweeps.errors import UserError
from clip_prompt_sweeps.names import cell_key
from orchestrator.sweep.plan import SweepPlan, cell_epochs
from trainables.data.catalog import split_sizes as dataset_sizes

SHIPPED = Path(__file__).parent / "throughput.json"


def asha_rungs(max_t: int, grace: int, rf: int) -> list[int]:
    """The epochs at which ASHA compares a cell's trials (as Ray's AsyncHyperBandScheduler)."""
    rungs, t = [], max(1, min(grace, max_t))
    while t < max_t:
        rungs.append(t)
        t *= rf
    return rungs


def asha_epochs(trials: int, max_t: int, grace: int, rf: int) -> int:
    """Trial-epochs of one cell when each rung promotes its top 1/rf (at least one trial)."""
    total, start, alive = 0, 0, trials
    for rung in asha_rungs(max_t, grace, rf):
        total += alive * (rung - start)
        start, alive = rung, max(1, math.ceil(alive / rf))
    return total + alive * (max_t - start)


@dataclass(frozen=True)
class Figures:
    device: str                 # cpu | cuda
    name: str
    date: str
    model: str                  # the CLIP model the figures were measured on
    source: str
    throughput: dict            # figure key -> training images/s


def shipped_figures() -> list[Figures]:
    return [Figures(**f) for f in json.loads(SHIPPED.read_text())["figures"]]


def bench_figures(path: str) -> list[Figures]:
    """The figures of a `bench --json` file (the device it ran on)."""
    try:
        result = json.loads(Path(path).read_text())
        machine = result["machine"]
        return [Figures(machine["device"], machine.get("gpu") or f"{machine['cpus']}-core CPU",
                        result.get("date", "undated"), result["model"], f"python -m orchestrator bench --json {path}",
                        {k: float(v) for k, v in result["throughput"].items()})]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"--figures {path}: not a `bench --json` file with throughput figures "
                        f"({type(err).__name__}: {err}); write one with `python -m orchestrator bench --json {path}`") from None


def figure_key(plan: SweepPlan, cell: dict) -> str | None:
    """Which measured throughput stands for a cell's training, or None where none was measured."""
    cfg, name = plan.typed[cell_key(cell)], plan.trainable.name
    if name == "deep_prompt":
        from trainables.models.clip import model_depth
        depth, layer = model_depth(cfg.model), cfg.layer_index
        where = "first" if layer == 0 else "last" if layer == depth - 1 else "middle"
        return f"deep_prompt/{where}" + ("" if cfg.prefix_cache else "/uncached")
    if name == "finetune":
        return "finetune/cached" if cfg.cached else "finetune/uncached"
    return name if name == "visual_prompt" else None


def split_sizes(cfg) -> tuple[int, int, int]:
    """(train, validation, test) images of a trial's dataset."""
    train, val, test = dataset_sizes(cfg.dataset, cfg.data)
    if val is not None:             # the dataset's own validation split
        return train, val, test
    val = round(train * cfg.val_fraction)
    return train - val, val, test


def cost_lines(plan: SweepPlan, figures: list[Figures], deadline_h: float | None) -> list[str]:
    p, per_cell = plan.profile, plan.profile.samples
    # each cell's own epochs: a grid over epochs runs each cell to its own last epoch (PerCellASHA);
    # none for a sweep that trains nothing (its config has no epochs)
    epochs_of = cell_epochs(plan) if "epochs" in plan.config(plan.cells[0], None) else {}
    epochs = max(epochs_of.values(), default=0)
    tuned = (f"{per_cell} learning rate" + ("s" if per_cell > 1 else "")) if p.lr else "1 trial"
    lines = [f"plan for sweep {plan.experiment.name} ({plan.profile_name}): {len(plan.cells)} cells x {tuned} = "
             f"{plan.n_trials} trials" + (f", up to {epochs} epochs each" if epochs else ", one pass each")]
    if not epochs:
        return lines + ["nothing is trained: no epochs to count and no throughput figure to estimate it from",
                        "nothing was run or written; run it without --dry-run"]
    expected = {key: asha_epochs(per_cell, e, p.grace_period, p.reduction_factor) for key, e in epochs_of.items()}
    rungs = ", ".join(map(str, asha_rungs(epochs, p.grace_period, p.reduction_factor))) or "none"
    if len(set(epochs_of.values())) > 1:
        rungs += " (within each cell's own epochs)"
    lines.append(f"ASHA per cell (grace {p.grace_period}, reduction factor {p.reduction_factor}, rungs at epochs "
                 f"{rungs}): at most {per_cell * sum(epochs_of.values()):,} trial-epochs if nothing is stopped; "
                 f"{sum(expected.values()):,} if each rung promotes its top 1/{p.reduction_factor}")
    per_epoch = {key: sum(split_sizes(plan.typed[key])[:2]) for key in epochs_of}     # train + validation
    images_most = sum(per_cell * epochs_of[key] * n for key, n in per_epoch.items())
    images_expected = sum(expected[key] * n for key, n in per_epoch.items())
    lines.append(f"images through the model (train + validation each epoch): at most {images_most / 1e6:,.1f} M, "
                 f"expected {images_expected / 1e6:,.1f} M")
    lines.append("device time, from measured training throughput (expected epochs; a frozen-part cache is counted "
                 "where its build was measured):")
    for f in figures:
        lines += ["  " + _estimate(plan, f, per_cell, epochs_of, expected, deadline_h), f"    figures: {f.source}"]
    return lines + ["nothing was run or written; run it without --dry-run"]


def _estimate(plan: SweepPlan, f: Figures, per_cell: int, epochs_of: dict[str, int], expected: dict[str, int],
              deadline_h: float | None) -> str:
    where = f"{f.name}, measured {f.date}"
    # a config without a CLIP model (finetune's ResNet-18) is measured by its own keys on any figures
    models = {getattr(plan.typed[cell_key(c)], "model", f.model) for c in plan.cells}
    if models - {f.model}:
        return f"{where}: measured on {f.model}, not {', '.join(sorted(models - {f.model}))}: no estimate"
    keys = {cell_key(c): figure_key(plan, c) for c in plan.cells}
    missing = sorted({k or plan.trainable.name for k in keys.values() if not (k and f.throughput.get(k))})
    if missing:
        return f"{where}: no figure for {', '.join(missing)}: no estimate"
    epoch_s, once_s = {}, {}        # per cell: one epoch of one trial; its frozen part, once per trial
    for cell, key in keys.items():
        train, val, test = split_sizes(plan.typed[cell])
        build = f.throughput.get(f"{key}/cache_build")
        epoch_s[cell] = (train + val) / f.throughput[key]
        once_s[cell] = (train + val + test) / build if build else 0.0
    most = sum(per_cell * (epochs_of[c] * epoch_s[c] + once_s[c]) for c in keys)
    expected_s = sum(expected[c] * epoch_s[c] + per_cell * once_s[c] for c in keys)
    hours, most_h = expected_s / 3600, most / 3600
    line = f"{where}: about {_hours(hours)} device-hours (at most {_hours(most_h)})"
    if deadline_h:
        n = max(1, math.ceil(hours / deadline_h))
        unit = ("GPU" if f.device == "cuda" else "such machine") + ("s" if n > 1 else "")
        line += f"; {n} {unit} finish{'es' if n == 1 else ''} it within {deadline_h:g} h"
    return line


def _hours(h: float) -> str:
    return f"{h:,.0f}" if h >= 100 else f"{h:.1f}" if h >= 10 else f"{h:.2f}"
