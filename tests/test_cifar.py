import pickle
import tarfile

import numpy as np
import pytest
import torch

from clip_prompt_sweeps.errors import UserError
from trainables.data.sources.cifar import ARCHIVES, is_present, load_cifar, read_batch
from trainables.data.synthetic_archives import CIFAR10_CLASSES, write_synthetic_archive


def _write(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def test_reader_returns_known_content(tmp_path):
    spec = ARCHIVES["cifar10"]
    folder = tmp_path / "synthetic" / spec.folder
    folder.mkdir(parents=True)
    rows = np.arange(6 * 3072, dtype=np.int64).reshape(6, 3072) % 256
    for i, name in enumerate(spec.train_files + spec.test_files):
        _write(folder / name, {b"data": rows.astype(np.uint8), b"labels": [i] * 6})
    _write(folder / spec.meta_file, {b"label_names": [b"big_cat"] + [b"x"] * 9})
    data = load_cifar("cifar10", tmp_path, "synthetic")
    assert data.train.images.dtype == torch.uint8 and data.train.images.shape == (30, 3, 32, 32)
    assert torch.equal(data.test.images[0].flatten(), torch.from_numpy(rows[0].astype(np.uint8)))
    assert data.train.labels.tolist() == [0] * 6 + [1] * 6 + [2] * 6 + [3] * 6 + [4] * 6
    assert data.test.labels.tolist() == [5] * 6
    assert data.classes[0] == "big cat"      # '_' read as a space for prompts


def test_cifar110_joins_test_sets_with_offset_labels(data_root):
    c10, c100 = load_cifar("cifar10", data_root, "synthetic"), load_cifar("cifar100", data_root, "synthetic")
    c110 = load_cifar("cifar110", data_root, "synthetic")
    n10 = len(c10.test.labels)
    assert c110.classes == c10.classes + c100.classes and len(c110.classes) == 110
    assert torch.equal(c110.test.images[:n10], c10.test.images)
    assert torch.equal(c110.test.labels[:n10], c10.test.labels)
    assert torch.equal(c110.test.labels[n10:], c100.test.labels + 10)
    assert c110.train is None


def test_synthetic_archive_is_deterministic_and_in_archive_format(tmp_path):
    a = write_synthetic_archive("cifar10", ARCHIVES["cifar10"], tmp_path / "a")
    b = write_synthetic_archive("cifar10", ARCHIVES["cifar10"], tmp_path / "b")
    for name in ARCHIVES["cifar10"].files():
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert [n.decode() for n in read_batch(a / "batches.meta")[b"label_names"]] == list(CIFAR10_CLASSES)


def test_crafted_pickle_cannot_run_code(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    spec = ARCHIVES["cifar10"]
    folder = tmp_path / "synthetic" / spec.folder
    write_synthetic_archive("cifar10", ARCHIVES["cifar10"], tmp_path / "synthetic")
    _write(folder / "data_batch_1", {b"data": Evil(), b"labels": []})
    with pytest.raises(UserError, match="data_batch_1"):
        load_cifar("cifar10", tmp_path, "synthetic")
    assert not marker.exists()


def test_missing_data_offline_names_what_where_and_how(tmp_path):
    with pytest.raises(UserError) as err:
        load_cifar("cifar100", tmp_path / "empty", "real")
    msg = str(err.value)
    assert "cifar100" in msg and str(tmp_path / "empty") in msg and "orchestrator fetch" in msg
    assert "cifar-100-python.tar.gz" in msg and "\n" not in msg
    assert not (tmp_path / "empty").exists()        # nothing created for a wrong data dir


def test_corrupted_archive_is_rejected_without_extracting(tmp_path):
    spec = ARCHIVES["cifar10"]
    inner = tmp_path / "src" / spec.folder
    inner.mkdir(parents=True)
    (inner / "data_batch_1").write_bytes(b"not cifar")
    with tarfile.open(tmp_path / spec.filename, "w:gz") as tar:
        tar.add(inner, arcname=spec.folder)
    with pytest.raises(UserError, match="corrupted"):
        load_cifar("cifar10", tmp_path, "real")
    assert not (tmp_path / spec.folder).exists() and not is_present(tmp_path, "cifar10")
    assert not any(p.name.startswith((".extract", ".download")) for p in tmp_path.iterdir())


def test_unknown_dataset():
    with pytest.raises(UserError, match="known: cifar10, cifar100, cifar110"):
        load_cifar("mnist", None)


def test_torchvision_reads_the_synthetic_archive_as_this_project_does(tmp_path):
    from torchvision.datasets import CIFAR100

    class Unchecked(CIFAR100):      # synthetic files have their own checksums
        train_list = [[name, None] for name, _ in CIFAR100.train_list]
        test_list = [[name, None] for name, _ in CIFAR100.test_list]
        meta = {**CIFAR100.meta, "md5": None}

    ours = load_cifar("cifar100", tmp_path, "synthetic")
    theirs = Unchecked(str(tmp_path / "synthetic"), train=False, download=False)
    assert np.array_equal(theirs.data.transpose(0, 3, 1, 2), ours.test.images.numpy())
    assert theirs.targets == ours.test.labels.tolist()
    assert [c.replace("_", " ") for c in theirs.classes] == list(ours.classes)
