"""From a sweep name, a profile and command-line overrides to a checked plan, before Ray starts:
every cell's config goes through the trainable's typed config once, so a bad key, type, layer or
prompt count stops the sweep before any trial, and the driver reads the typed configs after."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path

from clip_prompt_sweeps.errors import UserError
from clip_prompt_sweeps.names import CELL_KEY, DEFAULT_PROFILE, LR_KEY, cell_key
from search_spaces.experiment import Experiment, Profile
from search_spaces.registry import get_experiment, get_profile
from search_spaces.sweep_file import is_sweep_file, load_sweep_file
from trainables.data.catalog import path_prefixes
from trainables.models.templates import FILE_PREFIX
from trainables.training.config import coerce, from_dict
from trainables.training.entry import Trainable


@dataclass(frozen=True)
class SweepPlan:
    experiment: Experiment
    profile_name: str
    profile: Profile
    base: dict                  # the profile's fixed config with --set/--epochs applied
    cells: list[dict]           # one flat dict per grid cell
    typed: dict = field(default_factory=dict)   # cell key -> the cell's typed config (learning rate at its default)
    filled: dict = field(default_factory=dict)  # cell key -> keys the driver fills (source_run)
    args: dict = field(default_factory=dict)    # make_plan's own inputs, recorded with the sweep for its resume
    sweep_file: str | None = None               # the TOML file the sweep came from (absolute), if any

    @property
    def trainable(self) -> Trainable:
        return self.experiment.trainable

    @property
    def n_trials(self) -> int:
        return len(self.cells) * self.profile.samples

    def config(self, cell: dict, lr: float | None) -> dict:
        return trial_config(self.base, cell, lr, self.filled)

    def request(self) -> PlanRequest:
        """What this plan was built from (for a resume of a plan built by hand)."""
        a = self.args
        return PlanRequest(self.sweep_file or self.experiment, self.profile_name, tuple(a.get("sets") or ()),
                           a.get("samples"), a.get("epochs"), tuple(a.get("grids") or ()))

    def groups(self, max_trials: int) -> list[SweepPlan]:
        """The plan as consecutive plans of whole cells with at most `max_trials` trials each (a
        cell with more samples than that is a plan of its own)."""
        per = max(1, max_trials // max(1, self.profile.samples))
        return [replace(self, cells=self.cells[i:i + per]) for i in range(0, len(self.cells), per)] or [self]


@dataclass(frozen=True)
class PlanRequest:
    """A sweep as a command asks for it, built into its plan once (`build`): from what is typed
    or, on a resume, from what the interrupted sweep recorded (orchestrator/sweep/parent.py::recorded_settings)."""
    sweep: str | Experiment             # a registered name, a sweep file, or a record
    profile_name: str
    sets: tuple[str, ...] = ()
    samples: int | None = None
    epochs: int | None = None
    grids: tuple[str, ...] = ()

    @property
    def experiment(self) -> Experiment:
        return resolve_experiment(self.sweep)

    @property
    def sweep_file(self) -> str | None:
        """The sweep file asked for (absolute), if any."""
        return str(Path(self.sweep).resolve()) if isinstance(self.sweep, str) and is_sweep_file(self.sweep) else None

    def build(self) -> SweepPlan:
        return make_plan(self.sweep, self.profile_name, list(self.sets), self.samples, self.epochs, list(self.grids))


def cell_epochs(plan: SweepPlan) -> dict[str, int]:
    """cell key -> the epochs its trials run (its own where the grid varies them)."""
    return {cell_key(c): max(1, int(plan.config(c, None).get("epochs", 1))) for c in plan.cells}


def trial_config(base: dict, cell: dict, lr: float | None, filled: dict | None = None) -> dict:
    """A trial's config: fixed settings, its cell, what the driver filled in for the cell, its
    learning rate (if it has one), and the cell's key."""
    key = cell_key(cell)
    return {**base, **cell, **(filled or {}).get(key, {}), **({} if lr is None else {LR_KEY: lr}), CELL_KEY: key}


PROFILE_ENV = "ORCHESTRATOR_PROFILE"


def choose_profile(flag: str | None, environ: dict) -> tuple[str, str]:
    """(the profile, where it came from): --profile, else $ORCHESTRATOR_PROFILE (cluster.yaml sets
    `full` on the head, so the study runs there by default), else the laptop's smoke profile."""
    if flag:
        return flag, "from --profile"
    if environ.get(PROFILE_ENV, "").strip():
        return environ[PROFILE_ENV].strip(), f"from ${PROFILE_ENV}"
    return DEFAULT_PROFILE, f"the default; --profile full (or ${PROFILE_ENV}=full) runs the study"


def parse_sets(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--set {pair!r} is not key=value; e.g. --set epochs=5")
        out[key.strip()] = value.strip()
    return out


PATH_PREFIXES = (*path_prefixes(), FILE_PREFIX)     # setting values that name a path on this machine


def absolute_paths(entry: str, grid: bool = False) -> str:
    """A --set KEY=VALUE or --grid KEY=V1,V2 entry with each path value (PATH_PREFIXES) made absolute:
    trials run in folders of their own, where a relative path names nothing."""
    key, sep, values = entry.partition("=")
    if not sep:
        return entry

    def absolute(value: str) -> str:
        for prefix in PATH_PREFIXES:
            if value.strip().startswith(prefix):
                path = value.strip()[len(prefix):]
                return prefix + str(Path(path).expanduser().resolve()) if path else value
        return value
    return f"{key}={','.join(absolute(v) for v in values.split(',')) if grid else absolute(values)}"


def sweep_file_digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def resolve_experiment(sweep: str | Experiment) -> Experiment:
    """A registered sweep by name, a sweep file (path/to/my_sweep.toml), or a record as it is."""
    if isinstance(sweep, Experiment):
        return sweep
    return load_sweep_file(sweep) if is_sweep_file(sweep) else get_experiment(sweep)


def parse_grids(pairs: list[str], config_cls) -> dict[str, list]:
    """--grid KEY=V1,V2,...: a grid axis (new, or in place of the profile's), each value typed."""
    out = {}
    for pair in pairs:
        key, sep, values = pair.partition("=")
        items = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key.strip() or not items:
            raise UserError(f"--grid {pair!r} is not KEY=V1,V2,...; e.g. --grid backbone=ViT-B-32:openai,ViT-B-16:openai")
        out[key.strip()] = list(dict.fromkeys(coerce(config_cls, key.strip(), v, "--grid") for v in items))
    return out


def make_plan(sweep: str | Experiment, profile_name: str, sets: list[str] | None = None,
              samples: int | None = None, epochs: int | None = None, grids: list[str] | None = None) -> SweepPlan:
    experiment = resolve_experiment(sweep)
    sweep_name = experiment.name
    sets, grids = [absolute_paths(s) for s in sets or []], [absolute_paths(g, grid=True) for g in grids or []]
    from_file = isinstance(sweep, str) and is_sweep_file(sweep)
    profile = get_profile(experiment, profile_name)
    config_cls = experiment.trainable.config_cls
    overrides = {k: coerce(config_cls, k, v, "--set") for k, v in parse_sets(sets or []).items()}
    axes = parse_grids(grids or [], config_cls)
    if set(axes) & set(overrides):
        raise UserError(f"--set and --grid both name {', '.join(sorted(set(axes) & set(overrides)))}; keep one")
    if LR_KEY in axes:
        raise UserError("--grid lr: the learning rate is tuned within each cell; use --samples to try more")
    if axes:
        profile = replace(profile, grid={**profile.grid, **axes})
    if LR_KEY in overrides and profile.lr is not None:
        raise UserError(f"--set lr: the learning rate is tuned within each cell "
                        f"({profile.lr.low:g} to {profile.lr.high:g}); use --samples to try more")
    if epochs is not None:
        overrides["epochs"] = epochs
    if samples is not None:
        if profile.lr is None and samples != 1:
            raise UserError(f"--samples: sweep '{sweep_name}' tunes no learning rate; it runs one trial per cell")
        if samples < 1:
            raise UserError(f"--samples must be at least 1, got {samples}")
        profile = replace(profile, samples=samples)
    cells = _unique([{k: v for k, v in cell.items() if k not in overrides} for cell in profile.cells()])
    base = {**profile.base, **overrides}
    # every cell must make a valid config, checked now (the learning rate, tuned later, has no check)
    typed = {cell_key(cell): from_dict(config_cls, trial_config(base, cell, None),
                                       where=f"sweep '{sweep_name}' cell {cell_key(cell)}") for cell in cells}
    args = dict(sets=sets, samples=samples, epochs=epochs, grids=grids)
    if from_file:       # a resume checks that the file still says what it said (orchestrator/sweep/parent.py)
        args["sweep_file_sha256"] = sweep_file_digest(sweep)
    return SweepPlan(experiment, profile_name, profile, base, cells, typed, args=args,
                     sweep_file=str(Path(sweep).resolve()) if from_file else None)


def _unique(cells: list[dict]) -> list[dict]:
    # --set of a grid axis (e.g. --set dataset=cifar10) collapses that axis
    seen, out = set(), []
    for cell in cells:
        key = cell_key(cell)
        if key not in seen:
            seen.add(key)
            out.append(cell)
    return out
