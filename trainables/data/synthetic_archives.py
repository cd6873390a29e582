"""Synthetic CIFAR in the exact archive format, so the real reader, pipeline and trainables run.

Deterministic (a fixed seed per dataset), small, and learnable: every class has its own colour and
stripe pattern, and each image adds per-image noise, so a linear head on frozen features or a
trained prompt beats chance by a wide margin. Runs that use it are tagged data_kind=synthetic.
"""
from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
CIFAR100_CLASSES = tuple("""apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy
bridge bus butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch
crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard
lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree
orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit
raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel
streetcar sunflower sweet_pepper table tank telephone television tiger tractor train trout tulip
turtle wardrobe whale willow_tree wolf woman worm""".split())

# (class names, train images per class, test images per class, seed)
_LAYOUT = {"cifar10": (CIFAR10_CLASSES, 60, 20, 10), "cifar100": (CIFAR100_CLASSES, 8, 3, 100)}


def image_counts(name: str) -> tuple[int, int]:
    """(train, test) images of the synthetic `name`."""
    classes, per_class_train, per_class_test, _ = _LAYOUT[name]
    return len(classes) * per_class_train, len(classes) * per_class_test


def _class_templates(n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """(C, 3, 32, 32) float: a base colour plus an oriented stripe pattern per class."""
    yy, xx = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    colours = rng.uniform(50, 205, size=(n_classes, 3, 1, 1))
    angle = rng.uniform(0, np.pi, size=(n_classes, 1, 1))
    freq = rng.uniform(0.15, 0.6, size=(n_classes, 1, 1))
    stripes = np.sin(freq * (np.cos(angle) * xx + np.sin(angle) * yy))[:, None]
    phase = rng.choice([-1.0, 1.0], size=(n_classes, 3, 1, 1))
    return colours + 45.0 * phase * stripes


def synthetic_split(name: str, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    classes, *_ = _LAYOUT[name]
    rng = np.random.default_rng(seed)
    templates = _class_templates(len(classes), np.random.default_rng(_LAYOUT[name][3]))
    labels = np.repeat(np.arange(len(classes)), per_class)
    rng.shuffle(labels)
    images = templates[labels] + rng.normal(0, 25, size=(len(labels), 3, 32, 32))
    return np.clip(images, 0, 255).round().astype(np.uint8).reshape(len(labels), -1), labels


class _Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 `str` (BINSTRING), as the real archives hold them: they load as
    bytes with encoding='bytes' (this project) and as str with encoding='latin1' (torchvision)."""
    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: bytes) -> None:
        n = len(obj)
        header = pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)
        self.write(header + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def _write(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        _Py2Pickler(f, protocol=2).dump(obj)


def write_synthetic_archive(name: str, spec, root: Path, per_class: tuple[int, int] | None = None) -> Path:
    """Write the extracted archive folder of `name` under root, laid out as its `spec` (a
    trainables.data.sources.cifar.ArchiveSpec) says; returns that folder. `per_class` (train, test) images per
    class in place of the small default: scripts/gpu_check.py writes CIFAR's real size."""
    classes, n_train, n_test, seed = _LAYOUT[name]
    n_train, n_test = per_class or (n_train, n_test)
    folder = root / spec.folder
    folder.mkdir(parents=True, exist_ok=True)
    splits = {"train": synthetic_split(name, n_train, seed + 1),
              "test": synthetic_split(name, n_test, seed + 2)}
    for split, files in (("train", spec.train_files), ("test", spec.test_files)):
        data, labels = splits[split]
        for i, (part, part_labels) in enumerate(zip(np.array_split(data, len(files)),
                                                    np.array_split(labels, len(files)))):
            _write(folder / files[i], {b"batch_label": f"synthetic {split} {i}".encode(),
                                       spec.labels_key: [int(x) for x in part_labels],
                                       b"data": part,
                                       b"filenames": [f"{j}.png".encode() for j in range(len(part))]})
    _write(folder / spec.meta_file, {spec.names_key: [c.encode() for c in classes]})
    return folder
