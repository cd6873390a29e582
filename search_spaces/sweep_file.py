"""Sweeps defined in a TOML file, without code: `sweep path/to/my_sweep.toml`.

The file names a registered experiment whose trainable it runs, and gives the same fields as a
module of this package: fixed settings, grid axes, the learning-rate range, samples, grace period
and reduction factor, per profile. Its report is the generic one (reports/generic.py). Every key
is checked against the experiment's typed config before anything starts; an error names the
file, the key and its line."""
from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path

from clip_prompt_sweeps.errors import UserError
from reports import generic
from reports.section import ReportSection
from search_spaces.experiment import Experiment, LogUniform, Profile
from trainables.data.catalog import path_prefixes
from trainables.models.templates import FILE_PREFIX
from trainables.training.config import coerce, field_types

SUFFIX = ".toml"
_TOP = {"name", "experiment", "summary", "metric", "profiles"}
_PROFILE = {"base", "grid", "lr", "samples", "grace_period", "reduction_factor", "fuse"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_METRIC = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]{0,99}")      # a name a trial reports
_PATHS = (*path_prefixes(), FILE_PREFIX)     # values that name a path on this machine


def _beside(f: "_File", value):
    """A path value (a dataset folder, a template file) relative to the sweep file's own folder, made absolute (trials
    run in folders of their own)."""
    if isinstance(value, str):
        for prefix in _PATHS:
            if value.startswith(prefix) and value[len(prefix):]:
                path = Path(value[len(prefix):]).expanduser()
                return prefix + str((path if path.is_absolute() else f.path.resolve().parent / path).resolve())
    return value


def is_sweep_file(name: str) -> bool:
    return name.endswith(SUFFIX)


class _File:
    """The file's text, to say on which line a key stands."""

    def __init__(self, path: Path):
        self.path, self.lines = path, path.read_text().splitlines()

    def error(self, key: str, why: str) -> UserError:
        line = self.line_of(key)
        return UserError(f"{self.path}{f' line {line}' if line else ''}, key '{key}': {why}")

    def line_of(self, key: str) -> int | None:
        """The line where `key` (dotted) is set: within its profile's table where it has one,
        as `key =` at the start of a line or inside an inline table."""
        parts, start = key.split("."), 0
        if len(parts) > 1 and parts[0] == "profiles":
            header = re.compile(rf"^\s*\[profiles\.{re.escape(parts[1])}\]")
            start = next((i for i, text in enumerate(self.lines) if header.search(text)), 0)
            if len(parts) == 2:
                return start + 1
        leaf = re.compile(rf'(^|[\s{{,])"?{re.escape(parts[-1])}"?\s*=')
        return next((i + 1 for i in range(start, len(self.lines)) if leaf.search(self.lines[i])), None)


def _table(f: _File, key: str, value, allowed: set | None = None) -> dict:
    if not isinstance(value, dict):
        raise f.error(key, f"must be a table, got {type(value).__name__}")
    for k in value:
        if allowed is not None and k not in allowed:
            raise f.error(f"{key}.{k}", f"unknown key; known: {', '.join(sorted(allowed))}")
    return value


def _int(f: _File, key: str, value, least: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise f.error(key, f"must be a whole number of at least {least}, got {value!r}")
    return value


def _profile(f: _File, key: str, raw, exp: Experiment) -> Profile:
    raw = _table(f, key, raw, _PROFILE)
    config_cls = exp.trainable.config_cls
    keys = field_types(config_cls)

    def checked(where: str, k: str, v):
        if k not in keys:
            raise f.error(where, f"{config_cls.__name__} has no key '{k}'; it has: {', '.join(sorted(keys))}")
        try:
            return coerce(config_cls, k, _beside(f, v), where)
        except UserError as err:
            raise f.error(where, str(err).split(": ", 1)[-1]) from None

    base = {k: checked(f"{key}.base.{k}", k, v) for k, v in _table(f, f"{key}.base", raw.get("base", {})).items()}
    grid = {}
    for axis, values in _table(f, f"{key}.grid", raw.get("grid", {})).items():
        if not isinstance(values, list) or not values:
            raise f.error(f"{key}.grid.{axis}", "must be a non-empty list of values")
        grid[axis] = [checked(f"{key}.grid.{axis}", axis, v) for v in values]
    lr = None
    if "lr" in raw:
        bounds = _table(f, f"{key}.lr", raw["lr"], {"low", "high"})
        low, high = bounds.get("low"), bounds.get("high")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
                   for v in (low, high)) or low >= high:
            raise f.error(f"{key}.lr", f"needs 0 < low < high, got low={low!r}, high={high!r}")
        if "lr" not in keys:
            raise f.error(f"{key}.lr", f"{config_cls.__name__} has no learning rate to tune")
        lr = LogUniform(float(low), float(high))
    samples = _int(f, f"{key}.samples", raw.get("samples", 1), 1)
    if lr is None and samples != 1:
        raise f.error(f"{key}.samples", "without an lr range there is one trial per cell: use 1")
    return Profile(base, grid, lr, samples,
                   _int(f, f"{key}.grace_period", raw.get("grace_period", 1), 1),
                   _int(f, f"{key}.reduction_factor", raw.get("reduction_factor", 2), 2),
                   _int(f, f"{key}.fuse", raw.get("fuse", 1), 1))


def load_sweep_file(path: str) -> Experiment:
    """The Experiment record a TOML sweep file describes, checked; one line for anything wrong."""
    from search_spaces.registry import get_experiment, list_experiments
    file = Path(path)
    if not file.is_file():
        raise UserError(f"sweep file {path} does not exist (or is not a file)")
    try:
        data = tomllib.loads(file.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not valid TOML ({err})") from None
    f = _File(file)
    _table(f, "(top level)", data, _TOP)
    if not isinstance(data.get("experiment"), str):
        raise f.error("experiment", "must name a registered experiment whose trainable the sweep runs, "
                                    "e.g. experiment = \"deep\"")
    try:
        exp = get_experiment(data["experiment"])
    except UserError as err:
        raise f.error("experiment", str(err)) from None
    name = data.get("name", file.stem)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise f.error("name", "must be letters, digits, '-' or '_' (it names the MLflow experiment)")
    if name == "all" or name in {e.name for e in list_experiments()}:
        raise f.error("name", f"'{name}' is a registered sweep's name; choose another")
    profiles = {k: _profile(f, f"profiles.{k}", v, exp) for k, v in _table(f, "profiles", data.get("profiles")).items()}
    if not profiles:
        raise f.error("profiles", "needs at least one profile, e.g. [profiles.smoke]")
    metric = data.get("metric", exp.metric)
    if not isinstance(metric, str) or not _METRIC.fullmatch(metric):
        raise f.error("metric", f"must name a metric its trials report, e.g. metric = \"val_acc\"; got {metric!r}")
    # a sweep that learns nothing (zeroshot, ...) has no best learning rate per cell to show: its
    # experiment's own report, which lists every trial whatever the grid, is the one that fits
    build = generic.report if metric == "val_acc" or exp.report is None else exp.report.build
    return Experiment(name, exp.trainable, str(data.get("summary", f"{exp.name} from {file.name}")), profiles,
                      metric, exp.exclusive, ReportSection("9", f"Sweep {name} (from {file.name})", build),
                      exp.source, exp.upstream, exp.reads)
