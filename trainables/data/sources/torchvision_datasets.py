"""The torchvision source: torchvision's classification datasets by lowercase name, with their
official splits, downloaded through torchvision's own checksummed code under the node's file lock
and prepared once per node (trainables/data/prepared.py)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from clip_prompt_sweeps.errors import UserError
from trainables.data.dataset import ImageDataset
from trainables.data.prepared import clean_class_name, prepared_splits
from trainables.data.sources import Source
from trainables.paths import DATA_DIR_ENV, NO_DOWNLOAD_ENV, downloads_allowed, host_answers

EUROSAT_TEST_FRACTION = 0.2     # EuroSAT ships no split: its test set is carved with a fixed seed


@dataclass(frozen=True)
class TorchvisionSpec:
    cls: str                            # the class in torchvision.datasets
    splits: dict                        # our split -> the constructor's keyword arguments
    host: str                           # where its download comes from (probed before a download)


TORCHVISION = {
    "stl10": TorchvisionSpec("STL10", {"train": {"split": "train"}, "test": {"split": "test"}}, "ai.stanford.edu"),
    "svhn": TorchvisionSpec("SVHN", {"train": {"split": "train"}, "test": {"split": "test"}}, "ufldl.stanford.edu"),
    "food101": TorchvisionSpec("Food101", {"train": {"split": "train"}, "test": {"split": "test"}}, "data.vision.ee.ethz.ch"),
    "flowers102": TorchvisionSpec("Flowers102", {"train": {"split": "train"}, "val": {"split": "val"},
                                                 "test": {"split": "test"}}, "www.robots.ox.ac.uk"),
    "oxfordiiitpet": TorchvisionSpec("OxfordIIITPet", {"train": {"split": "trainval"}, "test": {"split": "test"}},
                                     "thor.robots.ox.ac.uk"),
    "dtd": TorchvisionSpec("DTD", {"train": {"split": "train"}, "val": {"split": "val"}, "test": {"split": "test"}},
                           "www.robots.ox.ac.uk"),
    "eurosat": TorchvisionSpec("EuroSAT", {"all": {}}, "huggingface.co"),
    "gtsrb": TorchvisionSpec("GTSRB", {"train": {"split": "train"}, "test": {"split": "test"}}, "sid.erda.dk"),
}


# (train, validation or None where it is carved from train, test) of each official split
SIZES = {"stl10": (5000, None, 8000), "svhn": (73257, None, 26032), "food101": (75750, None, 25250),
         "flowers102": (1020, 1020, 6149), "oxfordiiitpet": (3680, None, 3669), "dtd": (1880, 1880, 1880),
         "eurosat": (21600, None, 5400), "gtsrb": (26640, None, 12630)}


def _missing(name: str, root: Path, why: str) -> str:
    return (f"dataset {name} is not in {root / name} and {why}; on a machine with network run "
            f"`python -m orchestrator fetch --datasets {name} --data-dir {root}` and copy {root / name} "
            f"(data dir: --data-dir or ${DATA_DIR_ENV})")


def torchvision_dataset(name: str, root: Path, split_kwargs: dict):
    """torchvision's dataset object, downloaded (checksummed, by torchvision) under the node's lock
    if absent and allowed."""
    import torchvision.datasets as tvd
    spec = TORCHVISION[name]
    cls = getattr(tvd, spec.cls)
    folder = root / name
    try:
        return cls(str(folder), **split_kwargs, download=False)
    except (RuntimeError, FileNotFoundError, OSError):
        pass
    if not downloads_allowed():
        raise UserError(_missing(name, root, f"downloads are disabled (${NO_DOWNLOAD_ENV})"))
    if not host_answers(spec.host):
        raise UserError(_missing(name, root, f"{spec.host} does not answer"))
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f".{name}.lock")):
        try:
            return cls(str(folder), **split_kwargs, download=True)
        except (RuntimeError, OSError) as err:
            raise UserError(_missing(name, root, f"the download failed ({err})")) from None


def _class_names(ds, n_labels: int) -> list[str]:
    names = getattr(ds, "classes", None)
    return [str(c) for c in names] if names else [str(i) for i in range(n_labels)]


def _torchvision_items(ds) -> list:
    """(a loader of image i, label) for each sample, without decoding anything yet."""
    return [(_Sample(ds, i), int(label)) for i, label in enumerate(_labels_of(ds))]


class _Sample:
    def __init__(self, ds, i: int):
        self.ds, self.i = ds, i

    def __call__(self):
        return self.ds[self.i][0]

    def __str__(self) -> str:
        return f"sample {self.i} of {type(self.ds).__name__}"


def _labels_of(ds) -> list[int]:
    for attr in ("_labels", "labels", "targets", "_samples"):
        value = getattr(ds, attr, None)
        if value is not None:
            return [v[1] if isinstance(v, tuple) else int(v) for v in value]
    return [int(ds[i][1]) for i in range(len(ds))]



class TorchvisionDatasets(Source):
    listed = tuple(TORCHVISION)

    def counts(self, name: str, kind: str) -> tuple[int, int | None, int]:
        return SIZES[name]

    def where(self, name: str, root: Path, kind: str) -> Path:
        return root / name

    def present(self, name: str, root: Path, kind: str) -> bool:
        return (root / name).is_dir()

    def fetch(self, name: str, root: Path, kind: str) -> None:
        for kwargs in TORCHVISION[name].splits.values():
            torchvision_dataset(name, root, kwargs)

    def load(self, name: str, root: Path, kind: str, size: int, interpolation: str) -> ImageDataset:
        datasets = {s: torchvision_dataset(name, root, kw) for s, kw in TORCHVISION[name].splits.items()}
        class_lists = {s: _class_names(ds, 1 + max(_labels_of(ds), default=0)) for s, ds in datasets.items()}
        first = next(iter(class_lists.values()))
        for split, names in class_lists.items():
            if names != first:
                raise UserError(f"dataset {name}: its {split} split has other classes than its first; "
                                f"delete {root / name} and fetch it again")
        classes = tuple(clean_class_name(c) for c in first)
        made_from = {s: f"torchvision {TORCHVISION[name].cls} {len(ds)}" for s, ds in datasets.items()}
        loaders = {s: (lambda ds=ds: _torchvision_items(ds)) for s, ds in datasets.items()}
        splits = prepared_splits(root, name, name, size, interpolation, made_from, loaders, len(classes))
        if "all" in splits:         # EuroSAT: no official split
            from trainables.data.pipeline import train_val_split
            splits["train"], splits["test"] = train_val_split(splits.pop("all"), EUROSAT_TEST_FRACTION, seed=0)
        return ImageDataset(name, classes, splits["train"], splits["test"], "real", val=splits.get("val"))

    def provenance(self, data: ImageDataset) -> tuple[str, str]:
        return "code", json.dumps({"torchvision.datasets": TORCHVISION[data.name].cls})


SOURCE = TorchvisionDatasets()
