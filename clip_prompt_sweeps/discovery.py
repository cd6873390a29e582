"""Finding the parts a package declares, one module each (timm's registry, open_clip's
config-as-data): how dataset sources (trainables/data/sources) and cluster kinds
(orchestrator/clusters/kinds) are found, as experiments are (search_spaces/registry.py)."""
from __future__ import annotations

import importlib
import pkgutil


def declared(package: str, path, name: str, cls: type) -> tuple:
    """The `name` of every module of `package` (whose `__path__` is `path`) that declares one of
    type `cls`, in module-name order."""
    found = []
    for info in pkgutil.iter_modules(path):
        value = getattr(importlib.import_module(f"{package}.{info.name}"), name, None)
        if isinstance(value, cls):
            found.append(value)
    return tuple(found)
