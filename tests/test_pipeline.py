import numpy as np
import pytest
import torch
from PIL import Image

from trainables.data.dataset import Split
from trainables.data.pipeline import (
    STATS,
    Augment,
    DeviceData,
    Preprocess,
    preprocess,
    train_val_split,
)


def _images(n=8, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, 3, 32, 32), dtype=np.uint8))


@pytest.mark.parametrize("interpolation,pil", [("bicubic", Image.BICUBIC), ("bilinear", Image.BILINEAR)])
def test_device_resize_matches_pil_within_2_levels(interpolation, pil):
    """CLIP's PIL bicubic resize to 224, and torchvision's PIL (bilinear) resize for ResNet."""
    images = _images(16)
    ours = preprocess(images, Preprocess(224, interpolation, "clip"))
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in STATS["clip"])
    ours = (ours * std + mean) * 255          # undo normalisation: compare pixel levels
    ref = np.stack([np.asarray(Image.fromarray(im.numpy().transpose(1, 2, 0)).resize((224, 224), pil))
                    for im in images]).transpose(0, 3, 1, 2)
    assert np.abs(ours.numpy() - ref).max() <= 2.0 + 1e-3


def test_shapes_dtypes_and_normalisation():
    constant = torch.full((4, 3, 32, 32), 128, dtype=torch.uint8)
    x = preprocess(constant, Preprocess(64, "bicubic", "cifar100"))
    assert x.shape == (4, 3, 64, 64) and x.dtype == torch.float32
    mean, std = STATS["cifar100"]
    expected = (128 / 255 - torch.tensor(mean)) / torch.tensor(std)
    assert torch.allclose(x.mean(dim=(0, 2, 3)), expected, atol=1e-5)


def test_flip_and_noise_only_where_asked():
    images, pre = _images(64), Preprocess(32, "bicubic", "clip")
    plain = preprocess(images, pre)
    assert torch.equal(preprocess(images, pre, Augment()), plain)
    flipped = preprocess(images, pre, Augment(hflip=True), torch.Generator().manual_seed(0))
    same = [(flipped[i] == plain[i]).all().item() for i in range(64)]
    mirrored = [(flipped[i] == plain[i].flip(-1)).all().item() for i in range(64)]
    assert all(s or m for s, m in zip(same, mirrored)) and 10 < sum(mirrored) < 54
    noisy = preprocess(images, pre, Augment(noise_std=0.1), torch.Generator().manual_seed(0))
    assert abs((noisy - plain).std().item() - 0.1) < 0.005 and abs((noisy - plain).mean().item()) < 0.005


def test_seeded_shuffling_and_split_are_deterministic():
    split = Split(_images(100), torch.arange(100))
    a, b = DeviceData(split, torch.device("cpu"), Preprocess(32), seed=3), DeviceData(split, torch.device("cpu"), Preprocess(32), seed=3)
    order_a = torch.cat([y for _, y in a.batches(16, shuffle=True)])
    order_b = torch.cat([y for _, y in b.batches(16, shuffle=True)])
    assert torch.equal(order_a, order_b) and not torch.equal(order_a, torch.arange(100))
    assert sorted(order_a.tolist()) == list(range(100))
    (t1, v1), (_, v2) = train_val_split(split, 0.1, 7), train_val_split(split, 0.1, 7)
    assert torch.equal(v1.labels, v2.labels) and len(v1.labels) == 10 and len(t1.labels) == 90
    assert not set(v1.labels.tolist()) & set(t1.labels.tolist())
    assert not torch.equal(train_val_split(split, 0.1, 8)[1].labels, v1.labels)
