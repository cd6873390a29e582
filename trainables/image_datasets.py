"""Datasets beyond CIFAR: the classification datasets of torchvision by lowercase name, with their
official splits, and `folder:PATH`, an ImageFolder tree with `train/` and `test/` (and, if it has
one, `val/`) class folders.

Each split is prepared once per node into a uint8 array at the backbone's input size (resized on
its shorter side with the backbone's interpolation and centre-cropped, as open_clip's own
transform does), kept as a memory-mapped .npy file in the data dir under a key of dataset, split,
size and interpolation. Trials then read that file and use the same device pipeline as CIFAR: no
DataLoader and no PIL in a training loop. Downloads go through torchvision's own checksummed code,
under the node's file lock, as CIFAR's do.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock

from clip_prompt_sweeps.errors import UserError
from trainables.cifar import Cifar, Split
from trainables.paths import DATA_DIR_ENV, NO_DOWNLOAD_ENV, downloads_allowed
from trainables.weights import host_answers

FOLDER_PREFIX = "folder:"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"}
PREPARED = "prepared"
MAX_IMAGES = 2_000_000          # a split larger than this is refused before anything is allocated
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


def split_counts(name: str) -> tuple[int, int | None, int]:
    """(train, shipped validation or None, test) images, without preparing anything."""
    if name.startswith(FOLDER_PREFIX):
        found = folder_splits(name[len(FOLDER_PREFIX):])
        return len(found["train"]), (len(found["val"]) if "val" in found else None), len(found["test"])
    return SIZES[name]


def is_image_dataset(name: str) -> bool:
    return name in TORCHVISION or name.startswith(FOLDER_PREFIX)


def clean_class_name(name: str) -> str:
    """A class name as prompt text: 'apple_pie' -> 'apple pie', 'AnnualCrop' -> 'annual crop';
    an acronym keeps its capitals."""
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", re.sub(r"[_\-]+", " ", str(name)))
    return " ".join(w if w.isupper() and len(w) > 1 else w.lower() for w in spaced.split())


# --- folders ----------------------------------------------------------------------------------

def folder_splits(path: str) -> dict[str, list[tuple[Path, int]]]:
    """split -> [(image file, label)] of an ImageFolder tree, checked: train/ and test/ exist, each
    has the same class folders, and every class folder holds at least one image."""
    root = Path(path).expanduser()
    fix = "lay it out as PATH/train/<class>/<image> and PATH/test/<class>/<image>"
    if not root.is_dir():
        raise UserError(f"dataset folder {root} does not exist; {fix}")
    found = {s: root / s for s in ("train", "val", "test") if (root / s).is_dir()}
    for needed in ("train", "test"):
        if needed not in found:
            raise UserError(f"dataset folder {root} has no {needed}/ folder; {fix}")
    classes = {s: sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
               for s, folder in found.items()}
    if not classes["train"]:
        raise UserError(f"dataset folder {root / 'train'} has no class folders; {fix}")
    for split, names in classes.items():
        if names != classes["train"]:
            only = sorted(set(names) ^ set(classes["train"]))
            raise UserError(f"dataset folder {root}: {split}/ and train/ have different classes "
                            f"(in one only: {', '.join(only[:5])}); give both the same class folders")
    out = {}
    for split, folder in found.items():
        items = []
        for label, name in enumerate(classes["train"]):
            files = sorted(p for p in (folder / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not files:
                raise UserError(f"class folder {folder / name} holds no image ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                                f"add images or remove the folder")
            items += [(p, label) for p in files]
        out[split] = items
    return out


def folder_classes(path: str) -> list[str]:
    root = Path(path).expanduser() / "train"
    return sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def _fingerprint(items: list[tuple[Path, int]]) -> str:
    """What the prepared file was made from: each image's path, label, size, mtime, inode and ctime,
    so a changed folder is prepared again. The ctime (which no user can set back, unlike the
    mtime) and the inode catch an image replaced in place or by a rename with its mtime kept."""
    h = hashlib.blake2b(digest_size=16)
    for path, label in items:
        st = path.stat()
        h.update(f"{path}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\0{st.st_ctime_ns}\n".encode())
    return h.hexdigest()


# --- reading images ---------------------------------------------------------------------------

class _Prepared(torch.utils.data.Dataset):
    """Images resized and centre-cropped to `size`; an unreadable one gives its error as text, so
    the preparation can name it in one line (a DataLoader worker's exception would not)."""

    def __init__(self, items, size: int, interpolation: str):
        from torchvision.transforms import v2
        mode = {"bicubic": v2.InterpolationMode.BICUBIC, "bilinear": v2.InterpolationMode.BILINEAR}[interpolation]
        self.items, self.size = items, size
        self.transform = v2.Compose([v2.Resize(size, interpolation=mode, antialias=True), v2.CenterCrop(size),
                                     v2.PILToTensor()])

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        from PIL import Image
        source, label = self.items[i]
        try:
            image = Image.open(source) if isinstance(source, Path) else source()
            return self.transform(image.convert("RGB")), label, ""
        except Exception as err:  # noqa: BLE001 - any decoder error of an untrusted file is named, not raised
            return torch.zeros(3, self.size, self.size, dtype=torch.uint8), label, f"{source}: {err}"


def _write_split(items, size: int, interpolation: str, target: Path, what: str) -> None:
    """Read every image into one (N, 3, size, size) uint8 .npy, written beside the target and
    renamed, so an interrupted preparation leaves nothing half-written."""
    from tqdm import tqdm
    if len(items) > MAX_IMAGES:
        raise UserError(f"{what} has {len(items):,} images, more than {MAX_IMAGES:,}; split it")
    data = _Prepared(items, size, interpolation)
    workers = 0 if len(items) < 2000 else min(8, max(0, (os.cpu_count() or 1) - 1))
    loader = torch.utils.data.DataLoader(data, batch_size=64, num_workers=workers)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".prepare-") as tmp:
        images = np.lib.format.open_memmap(Path(tmp) / "images.npy", mode="w+", dtype=np.uint8,
                                           shape=(len(items), 3, size, size))
        labels = np.empty(len(items), dtype=np.int64)
        start = 0
        with tqdm(total=len(items), desc=f"preparing {what} at {size} px", unit="img", mininterval=1.0) as bar:
            for batch, label, errors in loader:
                bad = [e for e in errors if e]
                if bad:
                    raise UserError(f"image {bad[0]} cannot be read; remove or replace it")
                images[start:start + len(batch)] = batch.numpy()
                labels[start:start + len(batch)] = label.numpy()
                start += len(batch)
                bar.update(len(batch))
        images.flush()
        del images
        np.save(Path(tmp) / "labels.npy", labels)
        os.replace(Path(tmp) / "labels.npy", target.with_name(target.name + ".labels.npy"))
        os.replace(Path(tmp) / "images.npy", target)        # last: its presence means the split is whole


def _read_split(target: Path, size: int, n_classes: int) -> Split:
    """A prepared split, memory-mapped, read as if someone else wrote it: shapes checked against
    what they must be and against the files' sizes before anything is allocated (both files are
    mapped, so a header that claims more than the file holds is refused by the mapping itself),
    every label a class of the dataset."""
    fix = f"delete {target} and it is prepared again"
    try:
        images = np.load(target, mmap_mode="c", allow_pickle=False)   # copy-on-write: the file never changes
        labels = np.load(target.with_name(target.name + ".labels.npy"), mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise UserError(f"prepared split {target} cannot be read ({err}); {fix}") from None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (3, size, size) \
            or labels.shape != (images.shape[0],) or labels.dtype != np.int64:
        raise UserError(f"prepared split {target} has shape {images.shape} (labels {labels.shape}), not "
                        f"(N, 3, {size}, {size}) with N labels; {fix}")
    labels = np.array(labels)           # small: 8 bytes an image, checked against the mapping above
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise UserError(f"prepared split {target} has labels outside 0..{n_classes - 1}; {fix}")
    return Split(torch.from_numpy(np.asarray(images)), torch.from_numpy(labels))


# --- torchvision datasets ---------------------------------------------------------------------

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


def check_image_dataset(name: str, root: Path) -> None:
    """In the driver, before Ray starts: a folder's tree and every image's header (an unreadable
    image is named in one line, not in a failed trial), or a torchvision dataset present
    (downloaded under the lock where allowed)."""
    if name.startswith(FOLDER_PREFIX):
        from PIL import Image
        for items in folder_splits(name[len(FOLDER_PREFIX):]).values():
            for path, _ in items:
                try:
                    with Image.open(path) as image:
                        image.size
                except Exception as err:  # noqa: BLE001 - any decoder error of an untrusted file
                    raise UserError(f"image {path} cannot be read ({err}); remove or replace it") from None
    else:
        for kwargs in TORCHVISION[name].splits.values():
            torchvision_dataset(name, root, kwargs)


# --- the prepared dataset ---------------------------------------------------------------------

def _key(name: str) -> str:
    if name.startswith(FOLDER_PREFIX):
        path = str(Path(name[len(FOLDER_PREFIX):]).expanduser().resolve())
        slug = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(path).name).strip("-")[:40] or "folder"
        return f"folder-{slug}-{hashlib.sha1(path.encode()).hexdigest()[:10]}"
    return name


def prepared_path(root: Path, name: str, split: str, size: int, interpolation: str) -> Path:
    return root / PREPARED / _key(name) / f"{split}-{size}px-{interpolation}.npy"


def load_image_dataset(name: str, root: Path, size: int, interpolation: str) -> Cifar:
    """The dataset's splits at `size` px, prepared once per node (under a file lock) and then read
    from the memory-mapped files; `val` where the dataset ships one."""
    if name.startswith(FOLDER_PREFIX):
        sources = folder_splits(name[len(FOLDER_PREFIX):])
        classes = [clean_class_name(c) for c in folder_classes(name[len(FOLDER_PREFIX):])]
        made_from = {s: _fingerprint(items) for s, items in sources.items()}
        loaders = {s: (lambda items=items: items) for s, items in sources.items()}
    elif name in TORCHVISION:
        datasets = {s: torchvision_dataset(name, root, kw) for s, kw in TORCHVISION[name].splits.items()}
        class_lists = {s: _class_names(ds, 1 + max(_labels_of(ds), default=0)) for s, ds in datasets.items()}
        first = next(iter(class_lists.values()))
        for split, names in class_lists.items():
            if names != first:
                raise UserError(f"dataset {name}: its {split} split has other classes than its first; "
                                f"delete {root / name} and fetch it again")
        classes = [clean_class_name(c) for c in first]
        made_from = {s: f"torchvision {TORCHVISION[name].cls} {len(ds)}" for s, ds in datasets.items()}
        loaders = {s: (lambda ds=ds: _torchvision_items(ds)) for s, ds in datasets.items()}
    else:
        raise UserError(f"unknown dataset '{name}'")
    splits = {s: _prepared(root, name, s, size, interpolation, made_from[s], loaders[s], len(classes))
              for s in made_from}
    if "all" in splits:         # EuroSAT: no official split
        from trainables.pipeline import train_val_split
        splits["train"], splits["test"] = train_val_split(splits.pop("all"), EUROSAT_TEST_FRACTION, seed=0)
    return Cifar(name, tuple(classes), splits["train"], splits["test"], "real", val=splits.get("val"))


def _prepared(root: Path, name: str, split: str, size: int, interpolation: str, made_from: str, items,
              n_classes: int) -> Split:
    target = prepared_path(root, name, split, size, interpolation)
    stamp = target.with_name(target.name + ".json")

    def current() -> bool:
        try:
            if not target.is_file() or stamp.stat().st_size > 10_000:
                return False
            found = json.loads(stamp.read_text())
        except (OSError, ValueError):
            return False
        return isinstance(found, dict) and found.get("made_from") == made_from     # anything else: prepare again
    if not current():
        target.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(target.with_name(target.name + ".lock"))):
            if not current():       # another trial on this node prepared it while we waited
                _write_split(items(), size, interpolation, target, f"{name} {split}")
                stamp.write_text(json.dumps({"made_from": made_from, "size": size, "interpolation": interpolation}))
    return _read_split(target, size, n_classes)
