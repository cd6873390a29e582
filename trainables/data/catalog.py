"""The front of the data room: a dataset by name and kind, from whichever source owns it (the
sources are found in trainables/data/sources/). Everything outside trainables/data asks here, so
no other module knows which sources there are or how their names look."""
from __future__ import annotations

from pathlib import Path

from clip_prompt_sweeps.errors import UserError
from clip_prompt_sweeps.names import DATA_KINDS
from trainables.data.dataset import ImageDataset
from trainables.data.sources import Source, discovered


def _unique(names) -> list[str]:
    return list(dict.fromkeys(names))


def known_names() -> str:
    """Every dataset a config may name, as an error lists them."""
    sources = discovered()
    listed = ", ".join(_unique(n for s in sources for n in s.listed))
    patterns = " or ".join(s.pattern for s in sources if s.pattern)
    return f"{listed} or {patterns}" if patterns else listed


def path_prefixes() -> tuple[str, ...]:
    """Prefixes of a dataset name that names a path on this machine (never taken from a store)."""
    return tuple(s.path_prefix for s in discovered() if s.path_prefix)


def source_of(name: str, kind: str = "real") -> Source:
    """The source that gives `name` as `kind` data, or one line saying what there is."""
    if kind not in DATA_KINDS:
        raise UserError(f"data '{kind}' unknown; known: {', '.join(DATA_KINDS)}")
    for source in discovered():
        if kind in source.kinds and source.owns(name):
            return source
    if any(source.owns(name) for source in discovered()):
        offered = _unique(n for s in discovered() if kind in s.kinds for n in s.listed)
        raise UserError(f"dataset '{name}': {kind} data exists for {' and '.join(offered)} only; use --set data=real")
    raise UserError(f"dataset '{name}' unknown; use {known_names()}")


def check_dataset(name: str, kind: str) -> None:
    """A dataset a trial can train on: known, of this kind, with a training split."""
    if name in source_of(name, kind).test_only:
        raise UserError(f"dataset '{name}' unknown; use {known_names()}")


def split_sizes(name: str, kind: str) -> tuple[int, int | None, int]:
    """(train, shipped validation or None, test) images, without reading anything."""
    return source_of(name, kind).counts(name, kind)


def is_present(name: str, root: Path, kind: str = "real") -> bool:
    return source_of(name, kind).present(name, root, kind)


def stored_at(name: str, root: Path, kind: str = "real") -> Path:
    return source_of(name, kind).where(name, root, kind)


def fetch(name: str, root: Path, kind: str = "real") -> None:
    source_of(name, kind).fetch(name, root, kind)


def verify(name: str, root: Path, kind: str = "real") -> None:
    source_of(name, kind).verify(name, root, kind)


def load_dataset(name: str, root: Path, kind: str = "real", size: int = 224,
                 interpolation: str = "bicubic") -> ImageDataset:
    """The dataset's splits: CIFAR as its archives hold it (32 px, resized on the device), any
    other prepared once per node at `size` with `interpolation` (the backbone's)."""
    return source_of(name, kind).load(name, root, kind, size, interpolation)


def prepared_file(name: str, root: Path, split: str, size: int, interpolation: str) -> Path:
    """Where a split of a dataset whose images are files is kept once prepared at `size`."""
    from trainables.data.prepared import prepared_path
    return prepared_path(root, source_of(name).key(name), split, size, interpolation)


def provenance(data: ImageDataset) -> tuple[str, str]:
    """(source type, source) of a loaded dataset, for its MLflow dataset input."""
    return source_of(data.name, data.kind).provenance(data)
