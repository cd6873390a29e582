"""Prepared images are open_clip's own transform, pixel for pixel (issue #28): a shorter-side resize
with the backbone's interpolation, then a centre crop, on real-looking images: non-square, both
orientations, odd and even sizes, with structure right at the borders (where a resize on the
wrong side or a crop shifted by one pixel shows)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from open_clip.transform import image_transform
from PIL import Image

from trainables.image_datasets import load_image_dataset

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
    prepared = load_image_dataset(f"folder:{tmp_path / 'imgs'}", tmp_path / "data", size, interpolation)
    reference = image_transform(size, is_train=False, interpolation=interpolation).transforms[:2]   # resize, crop
    for i, image in enumerate(images):
        expected = image
        for step in reference:
            expected = step(expected)
        expected = np.asarray(expected).transpose(2, 0, 1)
        got = prepared.train.images[i].numpy()
        assert got.shape == expected.shape == (3, size, size)
        assert np.array_equal(got, expected), (SIZES[i], int(np.abs(got.astype(int) - expected).max()))
