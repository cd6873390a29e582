"""Prepared images are open_clip's own transform, pixel for pixel (issue #28): a shorter-side resize
with the backbone's interpolation, then a centre crop, on real-looking images: non-square, both
orientations, odd and even sizes, with structure right at the borders (where a resize on the
wrong side or a crop shifted by one pixel shows)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from open_clip.transform import image_transform
from PIL import Image

from trainables.data.catalog import load_dataset

SIZES = [(41, 29), (29, 41), (64, 37), (33, 33), (100, 21)]     # (width, height)


def _image(width: int, height: int, seed: int) -> Image.Image:
    """Gradients and a checkerboard, with a one-pixel frame of its own colour on each side."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    pixels = np.stack([255 * xx / max(1, width - 1), 255 * yy / max(1, height - 1),
                       255 * ((xx // 3 + yy // 3) % 2)], axis=-1)
    pixels[0, :], pixels[-1, :], pixels[:, 0], pixels[:, -1] = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)
    pixels += rng.normal(0, 8, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _tree(root: Path) -> list[Image.Image]:
    images = []
    for split in ("train", "test"):
        (root / split / "only").mkdir(parents=True)
        for i, (w, h) in enumerate(SIZES):
            image = _image(w, h, i)
            image.save(root / split / "only" / f"{i}.png")
            images.append(image)
    return images[:len(SIZES)]          # train/ in file order (0.png, 1.png, ...)


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
@pytest.mark.parametrize("size", [16, 23])
def test_prepared_pixels_are_open_clips_transform(tmp_path, interpolation, size):
    images = _tree(tmp_path / "imgs")
    prepared = load_dataset(f"folder:{tmp_path / 'imgs'}", tmp_path / "data", "real", size, interpolation)
    reference = image_transform(size, is_train=False, interpolation=interpolation).transforms[:2]   # resize, crop
    for i, image in enumerate(images):
        expected = image
        for step in reference:
            expected = step(expected)
        expected = np.asarray(expected).transpose(2, 0, 1)
        got = prepared.train.images[i].numpy()
        assert got.shape == expected.shape == (3, size, size)
        assert np.array_equal(got, expected), (SIZES[i], int(np.abs(got.astype(int) - expected).max()))


def _expected(image: Image.Image, size: int, interpolation: str) -> np.ndarray:
    for step in image_transform(size, is_train=False, interpolation=interpolation).transforms[:2]:
        image = step(image)
    return np.asarray(image.convert("RGB")).transpose(2, 0, 1)


def test_every_image_of_a_split_larger_than_a_batch_lands_in_its_own_place(tmp_path):
    from trainables.data.prepared import _write_split
    images = [_image(9 + i % 7, 12 + i % 5, i) for i in range(150)]      # three loader batches
    target = tmp_path / "prepared" / "deeper" / "train-16px-bicubic.npy"  # folders made as needed
    _write_split([(lambda im=im: im, i % 10) for i, im in enumerate(images)], 16, "bicubic", target, "many train")
    got = np.load(target)
    assert got.shape == (150, 3, 16, 16)
    assert all(np.array_equal(got[i], _expected(im, 16, "bicubic")) for i, im in enumerate(images))
    assert np.load(target.with_name(target.name + ".labels.npy")).tolist() == [i % 10 for i in range(150)]
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name, target.name + ".labels.npy"]


def test_images_of_every_mode_are_made_rgb_before_they_are_resized(tmp_path):
    # open_clip converts after its resize, which resizes a palette image's indices (nearest
    # neighbour) and an RGBA image's premultiplied colours; converting first is the same for RGB
    # and grey images and the sensible reading of the others
    from trainables.data.prepared import _write_split
    base = _image(30, 20, 1)
    images = [base.convert("L"), base.convert("P"), base.convert("RGBA"), base.convert("CMYK"), base]
    target = tmp_path / "t.npy"
    _write_split([(lambda im=im: im, 0) for im in images], 16, "bilinear", target, "modes")
    got = np.load(target)
    assert all(np.array_equal(got[i], _expected(im.convert("RGB"), 16, "bilinear")) for i, im in enumerate(images))
    assert np.array_equal(got[0], _expected(images[0], 16, "bilinear"))       # grey: either order


def test_the_split_is_written_beside_its_target_and_appears_whole_or_not_at_all(tmp_path):
    from clip_prompt_sweeps.errors import UserError
    from trainables.data.prepared import _write_split
    target = tmp_path / "a" / "b" / "train.npy"
    seen = []

    def probe():             # called while the split is being written: what is on disk then?
        seen.append(sorted(p.name for p in target.parent.iterdir()))
        seen.append(sorted(p.name for p in next(target.parent.glob(".prepare-*")).iterdir()))
        return _image(20, 20, 0)
    _write_split([(probe, 0)], 16, "bicubic", target, "probe")
    assert len(seen[0]) == 1 and seen[0][0].startswith(".prepare-") and seen[1] == ["images.npy"]
    assert not list(target.parent.glob(".prepare-*"))
    # an unreadable image among readable ones in one batch: one line naming it, nothing written
    bad = tmp_path / "imgs" / "broken.png"
    bad.parent.mkdir()
    bad.write_bytes(b"\x89PNG not really")
    items = [(lambda: _image(20, 20, 1), 0), (bad, 1), (lambda: _image(20, 20, 2), 0)]
    other = tmp_path / "c" / "test.npy"
    with pytest.raises(UserError, match=rf"^image {bad}: .* cannot be read; remove or replace it$"):
        _write_split(items, 16, "bicubic", other, "broken")
    assert list(other.parent.iterdir()) == []


def test_a_split_of_more_images_than_the_limit_is_refused_before_anything_is_read(tmp_path, monkeypatch):
    import trainables.data.prepared as datasets
    from clip_prompt_sweeps.errors import UserError
    monkeypatch.setattr(datasets, "MAX_IMAGES", 3)
    calls = []
    item = (lambda: calls.append(1) or _image(10, 10, 0), 0)
    datasets._write_split([item] * 3, 8, "bicubic", tmp_path / "ok.npy", "three")      # at the limit: written
    assert len(calls) == 3
    with pytest.raises(UserError, match=r"^big train has 4 images, more than 3; split it$"):
        datasets._write_split([item] * 4, 8, "bicubic", tmp_path / "no.npy", "big train")
    assert len(calls) == 3 and not (tmp_path / "no.npy").exists()


def test_preparation_shows_a_bar_named_for_the_split_counting_images(tmp_path, capsys):
    from trainables.data.prepared import _write_split
    _write_split([(lambda: _image(10, 10, 0), 0)] * 3, 8, "bicubic", tmp_path / "t.npy", "stl10 train")
    err = capsys.readouterr().err
    assert "preparing stl10 train at 8 px: 100%" in err and "3/3" in err and "img/s" in err


# --- a prepared split read back as a stranger's, and when it is prepared again ------------------------

def _split(folder: Path, n: int = 4, size: int = 8, images=None, labels=None) -> Path:
    target = folder / "train-8px-bicubic.npy"
    folder.mkdir(parents=True, exist_ok=True)
    np.save(target, np.zeros((n, 3, size, size), np.uint8) if images is None else images)
    np.save(target.with_name(target.name + ".labels.npy"), np.arange(n, dtype=np.int64) % 3 if labels is None else labels)
    return target


@pytest.mark.parametrize("what,images,labels", [
    ("images of another type", np.zeros((4, 3, 8, 8), np.float32), None),
    ("images without a batch axis", np.zeros((3, 8, 8), np.uint8), None),
    ("images of another size", np.zeros((4, 3, 9, 8), np.uint8), None),
    ("images of four channels", np.zeros((4, 4, 8, 8), np.uint8), None),
    ("fewer labels than images", None, np.zeros(3, np.int64)),
    ("labels of another type", None, np.zeros(4, np.int32)),
])
def test_a_prepared_split_of_another_shape_is_refused_in_one_line(tmp_path, what, images, labels):
    from clip_prompt_sweeps.errors import UserError
    from trainables.data.prepared import _read_split
    target = _split(tmp_path, images=images, labels=labels)
    t = re.escape(str(target))
    with pytest.raises(UserError, match=rf"^prepared split {t} has shape .* not \(N, 3, 8, 8\) with N labels; "
                                        rf"delete {t} and it is prepared again$"):
        _read_split(target, 8, 3)


def test_labels_must_be_classes_of_the_dataset(tmp_path):
    from clip_prompt_sweeps.errors import UserError
    from trainables.data.prepared import _read_split
    assert _read_split(_split(tmp_path / "a", labels=np.array([0, 1, 2, 2])), 8, 3).labels.tolist() == [0, 1, 2, 2]
    for bad in ([0, 1, 2, 3], [0, -1, 1, 1]):
        target = _split(tmp_path / f"bad{bad[-1]}", labels=np.array(bad))
        with pytest.raises(UserError, match=rf"^prepared split {re.escape(str(target))} has labels outside 0..2; delete"):
            _read_split(target, 8, 3)


def test_a_header_claiming_more_images_than_the_file_holds_is_refused_before_anything_is_allocated(tmp_path):
    from clip_prompt_sweeps.errors import UserError
    from trainables.data.prepared import _read_split
    target = _split(tmp_path)
    with open(target, "wb") as f:        # a terabyte claimed, 64 bytes there: mapped, never read into memory
        np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False,
                                                 "shape": (2 ** 34, 3, 8, 8)})
        f.write(b"\0" * 64)
    with pytest.raises(UserError, match=rf"prepared split {re.escape(str(target))} cannot be read"):
        _read_split(target, 8, 3)


class _Planted:
    """What a pickle in a forged .npy would run when loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_prepared_file_holding_a_pickle_is_never_unpickled(tmp_path):
    from clip_prompt_sweeps.errors import UserError
    from trainables.data.prepared import _read_split
    marker = tmp_path / "pwned"
    planted = np.empty(4, dtype=object)
    planted[:] = [_Planted(marker)] * 4
    for which in ("images", "labels"):
        target = _split(tmp_path / which, images=planted if which == "images" else None,
                        labels=planted if which == "labels" else None)
        with pytest.raises(UserError, match=rf"prepared split {re.escape(str(target))} cannot be read \(.*\); delete"):
            _read_split(target, 8, 3)
        assert not marker.exists()


def test_the_prepared_file_is_named_for_its_dataset_size_and_interpolation(tmp_path):
    import hashlib

    from trainables.data.catalog import prepared_file
    from trainables.data.prepared import PREPARED
    assert prepared_file("stl10", tmp_path, "test", 224, "bicubic") == tmp_path / PREPARED / "stl10" / "test-224px-bicubic.npy"
    for name, slug in [("My Photos (2024)", "My-Photos-2024"), ("-x-", "x"), ("!!!", "folder"),
                       ("CamelCase_1", "CamelCase_1"), ("Xylo-X", "Xylo-X"), ("a" * 50, "a" * 40)]:
        folder = tmp_path / name
        digest = hashlib.sha1(str(folder).encode()).hexdigest()[:10]
        path = prepared_file(f"folder:{folder}", tmp_path, "train", 32, "bilinear")
        assert path == tmp_path / PREPARED / f"folder-{slug}-{digest}" / "train-32px-bilinear.npy", name
    # one folder however it is written: a key of its resolved path
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert len({prepared_file(f"folder:{p}", tmp_path, "train", 8, "bicubic") for p in
                (tmp_path / "real", tmp_path / "x" / ".." / "real", tmp_path / "link")}) == 1


def test_a_folder_is_prepared_once_under_a_lock_and_again_when_its_stamp_says_otherwise(tmp_path, capsys):
    import json
    import os
    folder = tmp_path / "imgs"
    _tree(folder)
    name, data = f"folder:{folder}", tmp_path / "data"
    load_dataset(name, data, "real", 16, "bicubic")
    (target,) = [p for p in (data / "prepared").rglob("train-16px-bicubic.npy")]
    assert f"preparing {name} train at 16 px" in capsys.readouterr().err
    assert target.with_name(target.name + ".lock").exists()
    stamp = target.with_name(target.name + ".json")
    record = json.loads(stamp.read_text())
    assert record.keys() == {"made_from", "size", "interpolation"} and (record["size"], record["interpolation"]) == (16, "bicubic")

    def prepared_again() -> bool:
        os.utime(target, ns=(1, 1))
        load_dataset(name, data, "real", 16, "bicubic")
        capsys.readouterr()
        return target.stat().st_mtime_ns != 1
    assert not prepared_again()                          # current: read as it is
    padded = json.dumps(record)
    stamp.write_text(padded + " " * (10_000 - len(padded)))      # at the stamp's size limit: still read
    assert not prepared_again()
    stamp.write_text(padded + " " * (10_001 - len(padded)))      # beyond it: not read, prepared again
    assert prepared_again()
    stamp.write_text("{not json")
    assert prepared_again()
    stamp.unlink()
    assert prepared_again()
    target.unlink()                                      # the stamp without its split: prepared again
    load_dataset(name, data, "real", 16, "bicubic")
    assert target.is_file()
