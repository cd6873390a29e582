"""Exact caches of what a frozen network computes, so a trial runs it once instead of every epoch.

`encode_split` runs the frozen part over every image of a split once (and over every flipped
image too when the training flips), and `FeatureData` then serves batches of those outputs with
the same interface, the same shuffling and the same flip draws as `DeviceData`: with one seed,
the cached and the uncached paths see the same samples in the same order, each flipped or not
alike. What cannot be cached exactly (a random crop, noise) is refused here; the trainables run
those uncached.
"""
from __future__ import annotations

import time
from typing import Callable, Iterator

import torch

from trainables.data.pipeline import Augment, DeviceData, Splits, flip_draw, preprocess


@torch.no_grad()
def encode_all(data: DeviceData, encode: Callable[[torch.Tensor], torch.Tensor], batch_size: int,
               flip: bool = False, dtype: torch.dtype | None = None) -> torch.Tensor:
    """`encode` of every preprocessed image of `data`, in order, as one tensor on its device, in
    the dtype `encode` returns under the trial's autocast (bf16 on CUDA) unless `dtype` says."""
    device = data.images.device
    out = None      # filled in place: a list and a cat would hold the cache twice
    for start in range(0, len(data), batch_size):
        x = preprocess(data.images[start:start + batch_size], data.pre, flip_all=flip)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            y = encode(x)
        if out is None:
            out = torch.empty((len(data), *y.shape[1:]), dtype=dtype or y.dtype, device=y.device)
        out[start:start + len(y)] = y
    return out


class FeatureData:
    """A split's cached features (and flipped features), batched like DeviceData."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor, generator: torch.Generator,
                 flipped: torch.Tensor | None = None):
        self.features, self.flipped, self.labels, self.generator = features, flipped, labels, generator

    @classmethod
    def from_split(cls, data: DeviceData, encode: Callable[[torch.Tensor], torch.Tensor],
                   batch_size: int, hflip: bool = False, dtype: torch.dtype | None = None) -> "FeatureData":
        """Takes over `data`'s labels and generator: the cache continues its random stream."""
        features = encode_all(data, encode, batch_size, dtype=dtype)
        flipped = encode_all(data, encode, batch_size, flip=True, dtype=dtype) if hflip else None
        return cls(features, data.labels, data.generator, flipped)

    def __len__(self) -> int:
        return len(self.labels)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.features, self.flipped) if t is not None)

    def batches(self, batch_size: int, shuffle: bool = False, aug: Augment = Augment(),
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if not aug.cacheable:
            raise ValueError(f"{aug} cannot be served from a feature cache; run it uncached")
        if aug.hflip and self.flipped is None:
            raise ValueError("this cache holds no flipped features; build it with hflip=True")
        n, device = len(self), self.features.device
        # the same draws, in the same order, as DeviceData.batches and preprocess
        order = (torch.randperm(n, device=device, generator=self.generator)
                 if shuffle else torch.arange(n, device=device))
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            x = self.features[idx]
            if aug.hflip:
                flip = flip_draw(len(idx), device, self.generator)
                x = torch.where(flip.view(-1, *[1] * (x.dim() - 1)), self.flipped[idx], x)
            yield x, self.labels[idx]


def cache_splits(splits: Splits, encode: Callable[[torch.Tensor], torch.Tensor], batch_size: int,
                 hflip: bool = False) -> tuple[Splits, dict]:
    """Every split through the frozen `encode` once (the training split flipped too, if it flips):
    (the cached splits, the cache's cost as metrics every report carries)."""
    start = time.perf_counter()
    cached = Splits(FeatureData.from_split(splits.train, encode, batch_size, hflip=hflip),
                    FeatureData.from_split(splits.val, encode, batch_size),
                    FeatureData.from_split(splits.test, encode, batch_size))
    size = sum(s.nbytes() for s in (cached.train, cached.val, cached.test))
    return cached, {"cache_seconds": time.perf_counter() - start, "cache_mb": size / 2**20}
