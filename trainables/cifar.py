"""CIFAR-10/100/110 straight from the python-format archives into one uint8 tensor per split.

No PIL and no per-image Dataset: a split is ``images`` (N, 3, 32, 32) uint8 and ``labels`` (N,)
int64, ready to move to a device in one copy. The batches are pickles, so they are read with an
unpickler that admits only what a CIFAR batch holds (a crafted file cannot run code).
"""
from __future__ import annotations

import io
import pickle
import shutil
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock

from trainables.errors import UserError
from trainables.paths import DATA_DIR_ENV, NO_DOWNLOAD_ENV, downloads_allowed


@dataclass(frozen=True)
class ArchiveSpec:
    name: str
    url: str
    md5: str
    folder: str                 # what the archive extracts to
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    names_key: bytes
    labels_key: bytes

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    def files(self) -> tuple[str, ...]:
        return self.train_files + self.test_files + (self.meta_file,)


ARCHIVES = {
    "cifar10": ArchiveSpec(
        "cifar10", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a", "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
        "batches.meta", b"label_names", b"labels"),
    "cifar100": ArchiveSpec(
        "cifar100", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85", "cifar-100-python",
        ("train",), ("test",), "meta", b"fine_label_names", b"fine_labels"),
}
DATASETS = ("cifar10", "cifar100", "cifar110")
DATA_KINDS = ("real", "synthetic")


@dataclass(frozen=True)
class Split:
    images: torch.Tensor        # (N, 3, 32, 32) uint8
    labels: torch.Tensor        # (N,) int64


@dataclass(frozen=True)
class Cifar:
    name: str
    classes: tuple[str, ...]    # archive order, '_' read as a space
    train: Split | None         # CIFAR-110 has no training split
    test: Split
    kind: str                   # 'real' or 'synthetic'


# --- safe reading -----------------------------------------------------------------------------

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    # protocol-2 pickles written by Python 3 encode bytes through _codecs.encode
    ("_codecs", "encode"),
}


class _CifarUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not part of a CIFAR batch")
        return super().find_class(module, name)


def read_batch(path: Path) -> dict:
    """One CIFAR pickle, admitting only numpy arrays, dtypes, lists, dicts, bytes and numbers."""
    try:
        with open(path, "rb") as f:
            return _CifarUnpickler(io.BytesIO(f.read()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
        raise UserError(f"{path} is not a valid CIFAR batch ({err}); delete it and run "
                        f"`python -m orchestrator fetch` to download it again") from None


def _split_from_batches(folder: Path, files: tuple[str, ...], labels_key: bytes) -> Split:
    data, labels = [], []
    for name in files:
        batch = read_batch(folder / name)
        data.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(batch[labels_key])
    return Split(torch.from_numpy(np.concatenate(data)), torch.tensor(labels, dtype=torch.int64))


def _class_names(folder: Path, spec: ArchiveSpec) -> tuple[str, ...]:
    names = read_batch(folder / spec.meta_file)[spec.names_key]
    return tuple((n.decode() if isinstance(n, bytes) else n).replace("_", " ") for n in names)


def archive_root(root: Path, kind: str) -> Path:
    """Real archives extract into the data dir; synthetic ones into its 'synthetic' folder."""
    return root / "synthetic" if kind == "synthetic" else root


def is_present(root: Path, name: str, kind: str = "real") -> bool:
    spec = ARCHIVES[name]
    folder = archive_root(root, kind) / spec.folder
    return all((folder / f).is_file() for f in spec.files())


@lru_cache(maxsize=4)   # a reused Ray actor reads each archive once
def _read_archive(folder: Path, name: str) -> tuple[tuple[str, ...], Split, Split]:
    spec = ARCHIVES[name]
    return (_class_names(folder, spec), _split_from_batches(folder, spec.train_files, spec.labels_key),
            _split_from_batches(folder, spec.test_files, spec.labels_key))


def load_cifar(name: str, root: Path, kind: str = "real") -> Cifar:
    """CIFAR-10, CIFAR-100 or CIFAR-110, fetching (real) or writing (synthetic) it when absent."""
    if name not in DATASETS:
        raise UserError(f"unknown dataset '{name}'; known: {', '.join(DATASETS)}")
    if kind not in DATA_KINDS:
        raise UserError(f"unknown data kind '{kind}'; known: {', '.join(DATA_KINDS)}")
    if name == "cifar110":
        return _cifar110(root, kind)
    ensure_archive(name, root, kind)
    classes, train, test = _read_archive(archive_root(root, kind) / ARCHIVES[name].folder, name)
    return Cifar(name, classes, train, test, kind)


def _cifar110(root: Path, kind: str) -> Cifar:
    """The two test sets joined: CIFAR-10 classes first, CIFAR-100 labels offset by 10."""
    c10, c100 = load_cifar("cifar10", root, kind), load_cifar("cifar100", root, kind)
    test = Split(torch.cat([c10.test.images, c100.test.images]),
                 torch.cat([c10.test.labels, c100.test.labels + len(c10.classes)]))
    return Cifar("cifar110", c10.classes + c100.classes, None, test, kind)


# --- fetching ---------------------------------------------------------------------------------

def ensure_archive(name: str, root: Path, kind: str = "real") -> None:
    """Make the extracted archive present, once per node (a file lock serialises trials)."""
    if is_present(root, name, kind):
        return
    spec = ARCHIVES[name]
    if kind == "real" and not (root / spec.filename).is_file() and not downloads_allowed():
        # before creating anything: a wrong --data-dir leaves no empty folder behind
        raise UserError(_missing_message(spec, root, f"downloads are disabled (${NO_DOWNLOAD_ENV})"))
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f".{name}-{kind}.lock")):
        if is_present(root, name, kind):
            return      # another trial on this node fetched it while we waited
        if kind == "synthetic":
            from trainables.synthetic import write_synthetic_archive
            write_synthetic_archive(name, archive_root(root, kind))
        else:
            _fetch_real(ARCHIVES[name], root)


def _fetch_real(spec: ArchiveSpec, root: Path) -> None:
    archive = root / spec.filename
    if not archive.is_file():
        _download(spec, root)
    _extract_verified(spec, archive, root)


def _missing_message(spec: ArchiveSpec, root: Path, why: str) -> str:
    return (f"{spec.name} is not in {root} and {why}; on a machine with network run "
            f"`python -m orchestrator fetch --data-dir {root}`, or download {spec.url} "
            f"(md5 {spec.md5}) and place {spec.filename} in {root} (data dir: --data-dir or "
            f"${DATA_DIR_ENV})")


def _download(spec: ArchiveSpec, root: Path) -> None:
    from torchvision.datasets.utils import download_url
    if not downloads_allowed():
        raise UserError(_missing_message(spec, root, f"downloads are disabled (${NO_DOWNLOAD_ENV})"))
    with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as tmp:
        try:
            download_url(spec.url, tmp, spec.filename, spec.md5)
        except RuntimeError as err:     # torchvision's checksum failure
            raise UserError(f"download of {spec.url} failed its md5 check ({err}); try again") from None
        except OSError as err:
            raise UserError(_missing_message(spec, root, f"the download failed ({err})")) from None
        shutil.move(str(Path(tmp) / spec.filename), root / spec.filename)


def _extract_verified(spec: ArchiveSpec, archive: Path, root: Path) -> None:
    from torchvision.datasets.utils import check_integrity, extract_archive
    if not check_integrity(str(archive), spec.md5):
        raise UserError(f"{archive} is corrupted (md5 differs from {spec.md5}); delete it and run "
                        f"`python -m orchestrator fetch`, or replace it with a good copy")
    # Extract beside the target and rename, so an interrupted extraction leaves nothing half-done.
    with tempfile.TemporaryDirectory(dir=root, prefix=".extract-") as tmp:
        extract_archive(str(archive), tmp)
        target = root / spec.folder
        shutil.rmtree(target, ignore_errors=True)
        shutil.move(str(Path(tmp) / spec.folder), target)
