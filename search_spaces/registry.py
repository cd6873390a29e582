"""The registry of experiments, found by package discovery (timm's registry, open_clip's
config-as-data): every module of `search_spaces` that defines `EXPERIMENT`, and of each package
named in $ORCHESTRATOR_EXPERIMENTS (comma-separated, importable; Ray's workers must be able to
import it too, e.g. through PYTHONPATH or an installed package)."""
from __future__ import annotations

import importlib
import os
import pkgutil
from functools import lru_cache

from clip_prompt_sweeps.errors import UserError
from search_spaces.experiment import Experiment, Profile
from trainables.training.entry import Trainable

PACKAGES_ENV = "ORCHESTRATOR_EXPERIMENTS"
RESERVED = ("all",)     # `report all`


def _packages() -> tuple[str, ...]:
    extra = [p.strip() for p in os.environ.get(PACKAGES_ENV, "").split(",") if p.strip()]
    return ("search_spaces", *extra)


@lru_cache(maxsize=8)
def _discover(packages: tuple[str, ...]) -> dict[str, Experiment]:
    found: dict[str, Experiment] = {}
    for package in packages:
        try:
            root = importlib.import_module(package)
        except ImportError as err:
            raise UserError(f"${PACKAGES_ENV} names '{package}', which cannot be imported ({err}); "
                            f"put it on PYTHONPATH or remove it") from None
        for info in pkgutil.iter_modules(getattr(root, "__path__", [])):
            exp = getattr(importlib.import_module(f"{package}.{info.name}"), "EXPERIMENT", None)
            if not isinstance(exp, Experiment):
                continue
            if exp.name in found or exp.name in RESERVED:
                raise UserError(f"experiment name '{exp.name}' in {package}.{info.name} is taken; rename it")
            found[exp.name] = exp
    return found


def list_experiments() -> list[Experiment]:
    found = _discover(_packages())
    return [found[k] for k in sorted(found)]


def get_experiment(name: str) -> Experiment:
    found = _discover(_packages())
    if name not in found:
        raise UserError(f"unknown sweep '{name}'; known: {', '.join(sorted(found))}")
    return found[name]


def get_profile(experiment: Experiment, profile: str) -> Profile:
    if profile not in experiment.profiles:
        raise UserError(f"unknown profile '{profile}' for sweep '{experiment.name}'; "
                        f"known: {', '.join(sorted(experiment.profiles))}")
    return experiment.profiles[profile]


def list_trainables() -> list[Trainable]:
    """Every experiment's trainable, once each, by name."""
    return sorted({e.trainable.name: e.trainable for e in list_experiments()}.values(), key=lambda t: t.name)


def in_dependency_order(experiments: list[Experiment]) -> list[Experiment]:
    """The experiments with each one's upstream sweeps before it (by name otherwise)."""
    by_name, done, out = {e.name: e for e in experiments}, set(), []

    def visit(e: Experiment) -> None:
        if e.name in done:
            return
        done.add(e.name)
        for name in e.upstream:
            if name in by_name:
                visit(by_name[name])
        out.append(e)
    for e in sorted(experiments, key=lambda e: e.name):
        visit(e)
    return out
