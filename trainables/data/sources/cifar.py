"""The CIFAR source: CIFAR-10/100/110 straight from the python-format archives into one uint8
tensor per split.

No PIL and no per-image Dataset: a split is ``images`` (N, 3, 32, 32) uint8 and ``labels`` (N,)
int64, ready to move to a device in one copy. The batches are pickles, so they are read with an
unpickler that admits only what a CIFAR batch holds (a crafted file cannot run code).
"""
from __future__ import annotations

import io
import json
import math
import pickle
import re
import reprlib
import shutil
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock

from clip_prompt_sweeps.errors import UserError
from clip_prompt_sweeps.names import DATA_KINDS, DATASETS
from trainables.data.dataset import ImageDataset, Split
from trainables.data.sources import Source
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
    n_classes: int
    rows: dict          # file -> the most rows it holds in the real archive


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
        "batches.meta", b"label_names", b"labels", 10,
        {**{f"data_batch_{i}": 10_000 for i in range(1, 6)}, "test_batch": 10_000}),
    "cifar100": ArchiveSpec(
        "cifar100", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85", "cifar-100-python",
        ("train",), ("test",), "meta", b"fine_label_names", b"fine_labels", 100, {"train": 50_000, "test": 10_000}),
}
LOADABLE = (*DATASETS, "cifar110")      # CIFAR-110 is both test sets under one label space


def image_counts(name: str, kind: str) -> tuple[int, int]:
    """(train, test) images of a dataset, without reading it."""
    if kind == "synthetic":
        from trainables.data.synthetic_archives import image_counts as synthetic_counts
        return synthetic_counts(name)
    spec = ARCHIVES[name]
    return sum(spec.rows[f] for f in spec.train_files), sum(spec.rows[f] for f in spec.test_files)


# --- safe reading -----------------------------------------------------------------------------

ROW_BYTES = 3 * 32 * 32
_SLACK = 4 << 20            # file names, labels and pickle framing beside the pixels
_META_BYTES = 1 << 20
_PLAIN_NUMBERS = re.compile(r"[iu][1248]|f[48]|b1")     # the dtypes a batch's arrays may hold
_DTYPE_STATE_TAIL = (None, None, None, -1, -1, 0)      # what numpy pickles for such a dtype


def _shown(value) -> str:
    """A value from the file, as an error line shows it: escaped and short (reprlib's limits), as a
    crafted file can make it megabytes long."""
    return reprlib.repr(value)


def _text(value) -> str | None:
    """A pickled string, as Python 3 (str) or Python 2 (bytes, the real archives) wrote it."""
    return value.decode("latin1") if isinstance(value, bytes) else value if isinstance(value, str) else None


class _DType:
    """What a pickle's `numpy.dtype(name, align, copy)` and its state make: a plain numeric dtype.

    numpy's own dtype.__setstate__ takes any flags, and flags that say an item holds Python
    objects make numpy treat a uint8 array's pixel bytes as object pointers (a crafted file
    crashes the reader, or worse: found by tests/test_fuzz.py). So the dtype is built here from
    its name and byte order alone, and only from the state numpy itself writes."""

    def __init__(self, name=None, align=False, copy=True, *rest):
        name = _text(name)
        if name is None or rest or not _PLAIN_NUMBERS.fullmatch(name):
            raise pickle.UnpicklingError(f"dtype {_shown(name)} is not one a CIFAR batch holds")
        self.name, self.dtype = name, None

    def __setstate__(self, state):
        order = _text(state[1]) if isinstance(state, tuple) and len(state) == 8 else None
        if order not in ("|", "<", ">") or state[0] != 3 or state[2:] != _DTYPE_STATE_TAIL:
            raise pickle.UnpicklingError("a dtype state that is not a plain number's")
        self.dtype = np.dtype(self.name).newbyteorder(order)


class _NDArray:
    """`numpy.ndarray` as a pickle names it: only the type _reconstruct is asked to start, never
    called (numpy.ndarray(shape) would allocate whatever the file asks for)."""

    def __new__(cls, *args):
        raise pickle.UnpicklingError("a call of numpy.ndarray is not how a CIFAR batch makes an array")


class _PendingArray:
    """What a pickle's `_reconstruct(ndarray, (0,), 'b')` and its state make: the array is built
    by `_resolved` once the state is checked, from bytes the file holds, never through numpy's
    own __setstate__ (which would take the dtype and the shape on trust)."""

    def __init__(self, subtype=None, shape=None, dtype=None, *rest):
        # only the empty start a real pickle uses: any other shape would be allocated as asked
        # (a 217-byte file can ask for 931 GiB)
        if subtype is not _NDArray or not isinstance(shape, tuple) or shape != (0,) or rest:
            raise pickle.UnpicklingError(f"an array of shape {_shown(shape)} is not how a CIFAR batch starts one")
        self.array = None

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1):
            raise pickle.UnpicklingError("an array state that is not numpy's")
        _, shape, dtype, fortran, raw = state
        if not (isinstance(shape, tuple) and len(shape) <= 4
                and all(type(n) is int and n >= 0 for n in shape)):
            raise pickle.UnpicklingError(f"an array of shape {_shown(shape)}")
        if not isinstance(dtype, _DType) or dtype.dtype is None or type(fortran) is not bool:
            raise pickle.UnpicklingError("an array whose dtype is not a plain number's")
        if not isinstance(raw, bytes) or len(raw) != math.prod(shape) * dtype.dtype.itemsize:
            raise pickle.UnpicklingError(f"an array of shape {shape} whose data is not its size")
        self.array = np.frombuffer(raw, dtype.dtype).reshape(shape, order="F" if fortran else "C").copy()


def _latin1(text, encoding):
    """_codecs.encode, as Python 3 pickles bytes at protocol 2: latin1 only (another codec,
    'hex' say, repeated, would double a small string each time)."""
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError(f"_codecs.encode with {_shown(encoding)} is not part of a CIFAR batch")
    return text.encode("latin1")


_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _PendingArray,
    ("numpy._core.multiarray", "_reconstruct"): _PendingArray,
    ("numpy", "ndarray"): _NDArray, ("numpy", "dtype"): _DType,
    ("_codecs", "encode"): _latin1,
}


class _CifarUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not part of a CIFAR batch")
        return _ALLOWED_GLOBALS[module, name]


def _resolved(value, depth: int = 0):
    """The unpickled value with each checked array in place of its pending one, in the dict and
    the lists in it, where a CIFAR batch holds its arrays (anything deeper is left as it is: the
    checks of the batch's structure refuse it, and a pending array is an inert object)."""
    if isinstance(value, _PendingArray):
        if value.array is None:
            raise pickle.UnpicklingError("an array without its data")
        return value.array
    if isinstance(value, _DType) or value is _NDArray:
        raise pickle.UnpicklingError("a dtype or an array type outside an array")
    if depth < 2 and isinstance(value, dict):
        return {k: _resolved(v, depth + 1) for k, v in value.items()}
    if depth < 2 and isinstance(value, list):
        return [_resolved(v, depth + 1) for v in value]
    return value


def read_batch(path: Path, max_bytes: int = 50_000 * ROW_BYTES + _SLACK) -> dict:
    """One CIFAR pickle, admitting only numpy arrays, dtypes, lists, dicts, bytes and numbers, and
    no file larger than the real archive's (checked before it is read)."""
    fix = "delete it and run `python -m orchestrator fetch` to download it again"
    size = path.stat().st_size
    if size > max_bytes:
        raise UserError(f"{path} is not a valid CIFAR batch ({size:,} bytes, more than the real file's "
                        f"{max_bytes:,}); {fix}")
    try:
        with open(path, "rb") as f:
            batch = _resolved(_CifarUnpickler(io.BytesIO(f.read()), encoding="bytes").load())
    except (Exception, MemoryError) as err:  # noqa: BLE001 - decoding untrusted bytes: numpy's own parsers
        # answer corrupt states with SystemError, SyntaxError, ... (found by tests/test_fuzz.py)
        raise UserError(f"{path} is not a valid CIFAR batch ({err}); {fix}") from None
    if not isinstance(batch, dict):
        raise UserError(f"{path} is not a valid CIFAR batch (a {type(batch).__name__}, not a dict); {fix}")
    return batch


def _bad(path: Path, why: str) -> UserError:
    return UserError(f"{path} is not a valid CIFAR batch ({why}); delete it and run "
                     f"`python -m orchestrator fetch` to download it again")


def _checked_split(path: Path, batch: dict, spec: ArchiveSpec, max_rows: int) -> tuple[np.ndarray, list[int]]:
    """The batch's images (N, 3, 32, 32) and labels, once its structure and sizes are checked."""
    data, labels = batch.get(b"data"), batch.get(spec.labels_key)
    if not isinstance(data, np.ndarray) or data.dtype.str != "|u1" or data.ndim != 2 or data.shape[1] != ROW_BYTES:
        shape = getattr(data, "shape", None)
        raise _bad(path, f"b'data' must be a uint8 array of {ROW_BYTES} bytes per row, got "
                         f"{type(data).__name__}{'' if shape is None else f' {shape}'}")
    rows = data.shape[0]
    if rows > max_rows:
        raise _bad(path, f"{rows} rows, more than the real file's {max_rows}")
    if not isinstance(labels, (list, np.ndarray)) or len(labels) != rows:
        raise _bad(path, f"{spec.labels_key!r} must list one label per row ({rows}), got "
                         f"{len(labels) if hasattr(labels, '__len__') else type(labels).__name__}")
    if not all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) and 0 <= x < spec.n_classes
               for x in labels):
        raise _bad(path, f"labels must be integers 0..{spec.n_classes - 1}")
    return data.reshape(-1, 3, 32, 32), [int(x) for x in labels]


def _split_from_batches(folder: Path, files: tuple[str, ...], spec: ArchiveSpec) -> Split:
    data, labels = [], []
    for name in files:
        path = folder / name
        rows = spec.rows[name]
        images, part = _checked_split(path, read_batch(path, rows * ROW_BYTES + _SLACK), spec, rows)
        data.append(images)
        labels.extend(part)
    return Split(torch.from_numpy(np.concatenate(data)), torch.tensor(labels, dtype=torch.int64))


def _class_names(folder: Path, spec: ArchiveSpec) -> tuple[str, ...]:
    path = folder / spec.meta_file
    names = read_batch(path, _META_BYTES).get(spec.names_key)
    if not isinstance(names, list) or len(names) != spec.n_classes or not all(
            isinstance(n, (bytes, str)) and len(n) <= 100 for n in names):
        raise _bad(path, f"{spec.names_key!r} must list the {spec.n_classes} class names")
    return tuple((n.decode(errors="replace") if isinstance(n, bytes) else n).replace("_", " ") for n in names)


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
    return (_class_names(folder, spec), _split_from_batches(folder, spec.train_files, spec),
            _split_from_batches(folder, spec.test_files, spec))


def check_archive(name: str, root: Path, kind: str = "real") -> None:
    """Read the archive once, in the driver: a bad file is one line before Ray starts, not one
    traceback per trial. Nothing is kept (trials read it themselves)."""
    _read_archive.__wrapped__(archive_root(root, kind) / ARCHIVES[name].folder, name)


def load_cifar(name: str, root: Path, kind: str = "real") -> ImageDataset:
    """CIFAR-10, CIFAR-100 or CIFAR-110, fetching (real) or writing (synthetic) it when absent."""
    if name not in LOADABLE:
        raise UserError(f"unknown dataset '{name}'; known: {', '.join(LOADABLE)}")
    if kind not in DATA_KINDS:
        raise UserError(f"unknown data kind '{kind}'; known: {', '.join(DATA_KINDS)}")
    if name == "cifar110":
        return _cifar110(root, kind)
    ensure_archive(name, root, kind)
    classes, train, test = _read_archive(archive_root(root, kind) / ARCHIVES[name].folder, name)
    return ImageDataset(name, classes, train, test, kind)


def _cifar110(root: Path, kind: str) -> ImageDataset:
    """The two test sets joined: CIFAR-10 classes first, CIFAR-100 labels offset by 10."""
    c10, c100 = load_cifar("cifar10", root, kind), load_cifar("cifar100", root, kind)
    test = Split(torch.cat([c10.test.images, c100.test.images]),
                 torch.cat([c10.test.labels, c100.test.labels + len(c10.classes)]))
    return ImageDataset("cifar110", c10.classes + c100.classes, None, test, kind)


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
            from trainables.data.synthetic_archives import write_synthetic_archive
            write_synthetic_archive(name, ARCHIVES[name], archive_root(root, kind))
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


# --- the source -------------------------------------------------------------------------------

def _parts(name: str) -> tuple[str, ...]:
    """The archives a dataset is read from: CIFAR-110 is both test sets."""
    return tuple(ARCHIVES) if name == "cifar110" else (name,)


class CifarArchives(Source):
    kinds = ("real",)
    listed = DATASETS
    test_only = ("cifar110",)

    def owns(self, name: str) -> bool:
        return name in LOADABLE

    def counts(self, name: str, kind: str) -> tuple[int, None, int]:
        train, test = image_counts(name, kind)
        return train, None, test

    def where(self, name: str, root: Path, kind: str) -> Path:
        return archive_root(root, kind)

    def present(self, name: str, root: Path, kind: str) -> bool:
        return all(is_present(root, part, kind) for part in _parts(name))

    def fetch(self, name: str, root: Path, kind: str) -> None:
        for part in _parts(name):
            ensure_archive(part, root, kind)

    def verify(self, name: str, root: Path, kind: str) -> None:
        for part in _parts(name):
            ensure_archive(part, root, kind)
            check_archive(part, root, kind)

    def load(self, name: str, root: Path, kind: str, size: int, interpolation: str) -> ImageDataset:
        return load_cifar(name, root, kind)        # 32 px: resized on the device, batch by batch

    def provenance(self, data: ImageDataset) -> tuple[str, str]:
        return "http", json.dumps({"url": " ".join(ARCHIVES[n].url for n in _parts(data.name))})


SOURCE = CifarArchives()
