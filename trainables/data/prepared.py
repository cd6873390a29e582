"""Preparing a dataset once per node, for the sources whose images are files (torchvision's, an
image folder): each split is read into a uint8 array at the backbone's input size (resized on its
shorter side with the backbone's interpolation and centre-cropped, as open_clip's own transform
does), kept as a memory-mapped .npy file in the data dir under a key of dataset, split, size and
interpolation. Trials then read that file and use the same device pipeline as CIFAR: no
DataLoader and no PIL in a training loop.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from filelock import FileLock

from clip_prompt_sweeps.errors import UserError
from trainables.data.dataset import Split

PREPARED = "prepared"
MAX_IMAGES = 2_000_000          # a split larger than this is refused before anything is allocated


def clean_class_name(name: str) -> str:
    """A class name as prompt text: 'apple_pie' -> 'apple pie', 'AnnualCrop' -> 'annual crop';
    an acronym keeps its capitals."""
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", re.sub(r"[_\-]+", " ", str(name)))
    return " ".join(w if w.isupper() and len(w) > 1 else w.lower() for w in spaced.split())



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



# --- the prepared splits ----------------------------------------------------------------------

def prepared_path(root: Path, key: str, split: str, size: int, interpolation: str) -> Path:
    """`key`: the dataset's name as a folder name (its source's `key`)."""
    return root / PREPARED / key / f"{split}-{size}px-{interpolation}.npy"


def prepared_splits(root: Path, key: str, name: str, size: int, interpolation: str, made_from: dict[str, str],
                    items: dict[str, Callable], n_classes: int) -> dict[str, Split]:
    """split -> its prepared Split, prepared again where `made_from[split]` (what the split's images
    are, as a string) differs from what the file was made from."""
    return {s: _prepared(prepared_path(root, key, s, size, interpolation), f"{name} {s}", size, interpolation,
                         made_from[s], items[s], n_classes) for s in made_from}


def _prepared(target: Path, what: str, size: int, interpolation: str, made_from: str, items, n_classes: int) -> Split:
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
                _write_split(items(), size, interpolation, target, what)
                stamp.write_text(json.dumps({"made_from": made_from, "size": size, "interpolation": interpolation}))
    return _read_split(target, size, n_classes)
