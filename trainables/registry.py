"""Registry of trainables, timm-style: ``@register_trainable`` and ``get_trainable(name)``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from trainables.errors import UserError


@dataclass(frozen=True)
class TrainableSpec:
    name: str
    fn: Callable[[dict], None]
    config_cls: type          # typed config: the keys and types a sweep may set
    summary: str
    metrics: tuple[str, ...]  # what every report of it holds (finite), as its report reads them
    source: Callable | None = None  # config -> trainables.sources.Source: a model another sweep
                                    # learned, which the driver finds in MLflow for each trial


_TRAINABLES: dict[str, TrainableSpec] = {}


def register_trainable(name: str, config_cls: type, summary: str, metrics: tuple[str, ...],
                       source: Callable | None = None):
    def wrap(fn):
        _TRAINABLES[name] = TrainableSpec(name, fn, config_cls, summary, metrics, source)
        fn.__name__ = name     # Ray names trials after the function
        return fn
    return wrap


def get_trainable(name: str) -> TrainableSpec:
    _load_all()
    if name not in _TRAINABLES:
        raise UserError(f"unknown trainable '{name}'; known: {', '.join(sorted(_TRAINABLES))}")
    return _TRAINABLES[name]


def list_trainables() -> list[TrainableSpec]:
    _load_all()
    return [_TRAINABLES[k] for k in sorted(_TRAINABLES)]


def _load_all() -> None:
    # Importing the experiment modules is what fills the registry.
    import trainables.compare  # noqa: F401
    import trainables.cross  # noqa: F401
    import trainables.finetune  # noqa: F401
    import trainables.linear_probe  # noqa: F401
    import trainables.prompting  # noqa: F401
    import trainables.robustness  # noqa: F401
    import trainables.zeroshot  # noqa: F401
