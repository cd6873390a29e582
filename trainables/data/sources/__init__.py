"""Where datasets come from: one module per source, each declaring `SOURCE`, a `Source` found by
package discovery as experiments are (trainables/data/catalog.py). Adding a source is one module
here; nothing outside trainables/data knows which sources there are."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from clip_prompt_sweeps.discovery import declared
from trainables.data.dataset import ImageDataset


class Source:
    """A source of datasets, by name. Subclasses fill in what they know; the catalog asks."""
    kinds: tuple[str, ...] = ("real",)  # the data kinds it gives (`--set data=...`)
    listed: tuple[str, ...] = ()        # the dataset names it offers by name (errors and `fetch` list them)
    pattern: str = ""                   # a family of names it offers, described ("folder:PATH (...)")
    path_prefix: str = ""               # a name that begins so names a path on this machine
    test_only: tuple[str, ...] = ()     # names it loads that have no training split

    def owns(self, name: str) -> bool:
        return name in self.listed

    def key(self, name: str) -> str:
        """The dataset's name as a folder name, for its prepared files."""
        return name

    def counts(self, name: str, kind: str) -> tuple[int, int | None, int]:
        """(train, shipped validation or None, test) images, without reading or preparing anything."""
        raise NotImplementedError

    def where(self, name: str, root: Path, kind: str) -> Path:
        """The folder its files are kept in (the root a torchvision dataset class takes)."""
        raise NotImplementedError

    def present(self, name: str, root: Path, kind: str) -> bool:
        raise NotImplementedError

    def fetch(self, name: str, root: Path, kind: str) -> None:
        """Make it present (download or write it, under the node's file lock), or one line why not."""
        raise NotImplementedError

    def verify(self, name: str, root: Path, kind: str) -> None:
        """In the driver, before Ray starts: present (fetched where allowed) and readable, so that
        a bad file is one line and not one failed trial per cell."""
        self.fetch(name, root, kind)

    def load(self, name: str, root: Path, kind: str, size: int, interpolation: str) -> ImageDataset:
        """Its splits (CIFAR at 32 px, resized on the device; the rest prepared at `size`)."""
        raise NotImplementedError

    def provenance(self, data: ImageDataset) -> tuple[str, str]:
        """(source type, source) as MLflow's dataset source fields take them."""
        raise NotImplementedError


@lru_cache(maxsize=1)
def discovered() -> tuple[Source, ...]:
    """Every module of this package that declares SOURCE, in module-name order."""
    return declared(__name__, __path__, "SOURCE", Source)
