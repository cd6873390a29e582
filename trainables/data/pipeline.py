"""A CIFAR split living on the trial's device, batched with tensor ops (airbench-style).

No DataLoader workers and no PIL per image: shuffling is a seeded ``randperm`` on the device, and
each batch is resized (PIL-faithful, see resize.py), scaled to [0, 1], optionally flipped,
normalised, and optionally given Gaussian noise *after* normalisation (the study's robustness
setting). A random crop (with zero padding, on the 32 px image) is the one augmentation beyond
the seed's.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Iterator

import torch

from trainables.data.dataset import Split
from trainables.data.resize import pil_resize

# Normalisation statistics, named so configs and MLflow record which one a run used.
STATS = {
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


@dataclass(frozen=True)
class Preprocess:
    size: int = 224                  # the model's input size
    interpolation: str = "bicubic"   # CLIP: bicubic; torchvision ResNet recipe: bilinear
    stats: str | tuple = "clip"      # a name of STATS, or (mean, std) as a backbone's config gives them


@dataclass(frozen=True)
class Augment:
    hflip: bool = False
    crop_padding: int = 0            # random 32 px crop of the zero-padded image (0: none)
    noise_std: float = 0.0           # Gaussian noise added after normalisation

    @property
    def cacheable(self) -> bool:
        """Whether features of a frozen network can stand in for the images exactly: a flip has
        two outcomes, both cacheable; a crop or noise has too many."""
        return self.crop_padding == 0 and self.noise_std == 0


def flip_draw(n: int, device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    """Which of n samples to flip. One draw per batch, in one place, so a feature cache consumes
    the generator exactly as the image pipeline does."""
    return torch.rand(n, device=device, generator=generator) < 0.5


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator | None) -> torch.Tensor:
    """torchvision's RandomCrop(32, padding) as one batched gather: (B, C, H, W) uint8."""
    b, _, h, w = images.shape
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    top, left = torch.randint(0, 2 * padding + 1, (2, b), device=images.device, generator=generator)
    rows = (top[:, None] + torch.arange(h, device=images.device))[:, None, :, None]
    cols = (left[:, None] + torch.arange(w, device=images.device))[:, None, None, :]
    batch = torch.arange(b, device=images.device)[:, None, None, None]
    channel = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
    return padded[batch, channel, rows, cols]


@functools.lru_cache(maxsize=None)
def _affine(stats: str | tuple, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) with x * scale + shift == (x / 255 - mean) / std: one pass, not three."""
    pair = STATS[stats] if isinstance(stats, str) else stats
    mean, std = (torch.tensor(v, dtype=torch.float64).view(1, 3, 1, 1) for v in pair)
    return (1 / (255 * std)).float().to(device), (-mean / std).float().to(device)


def preprocess(images: torch.Tensor, pre: Preprocess, aug: Augment = Augment(),
               generator: torch.Generator | None = None, flip_all: bool = False) -> torch.Tensor:
    """(B, 3, 32, 32) uint8 on any device -> normalised (B, 3, size, size) float32 there.
    `flip_all` flips every image (a feature cache's second view)."""
    if aug.crop_padding:
        images = random_crop(images, aug.crop_padding, generator)
    x = pil_resize(images, pre.size, pre.interpolation)
    if flip_all:
        x = x.flip(-1)
    elif aug.hflip:
        x = torch.where(flip_draw(len(x), x.device, generator)[:, None, None, None], x.flip(-1), x)
    scale, shift = _affine(pre.stats, x.device)
    x = x.mul_(scale).add_(shift)       # in place: x is always a fresh tensor here
    if aug.noise_std > 0:
        x = x + aug.noise_std * torch.randn(x.shape, device=x.device, generator=generator)
    return x


def train_val_split(split: Split, val_fraction: float, seed: int) -> tuple[Split, Split]:
    """A seeded split (the course code's split was unseeded): same seed, same validation set."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(split.labels), generator=g)
    n_val = round(len(order) * val_fraction)
    val, train = order[:n_val], order[n_val:]
    return Split(split.images[train], split.labels[train]), Split(split.images[val], split.labels[val])


class DeviceData:
    """One split moved to the device once; yields preprocessed batches."""

    def __init__(self, split: Split, device: torch.device, pre: Preprocess, seed: int = 0):
        self.images = split.images.to(device)
        self.labels = split.labels.to(device)
        self.pre = pre
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, batch_size: int, shuffle: bool = False, aug: Augment = Augment(),
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self)
        order = (torch.randperm(n, device=self.images.device, generator=self.generator)
                 if shuffle else torch.arange(n, device=self.images.device))
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            yield preprocess(self.images[idx], self.pre, aug, self.generator), self.labels[idx]


@dataclass
class Splits:
    """A trial's three splits on its device."""
    train: DeviceData
    val: DeviceData
    test: DeviceData
