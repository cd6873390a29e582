"""PIL's resize as two small matrix products on the device.

The published numbers were made with PIL (CLIP's bicubic resize to 224, torchvision's bilinear
resize for ResNet on PIL images). PIL resamples separably, horizontal pass first, with
fixed-point coefficients (22 bits) and rounding to uint8 between the passes; this module builds
the same coefficient matrices (Resample.c's precompute_coeffs) so a batch on the GPU goes through
the same arithmetic: uint8 in, uint8-valued float out.
"""
from __future__ import annotations

from functools import lru_cache

import torch

_PRECISION_BITS = 32 - 8 - 2    # Resample.c, 8 bits per channel


def _bicubic(x: float, a: float = -0.5) -> float:
    x = abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


def _bilinear(x: float) -> float:
    x = abs(x)
    return 1.0 - x if x < 1.0 else 0.0


FILTERS = {"bicubic": (_bicubic, 2.0), "bilinear": (_bilinear, 1.0)}


def _fixed_point(w: float) -> int:
    # Resample.c normalize_coeffs_8bpc: round half away from zero
    scaled = w * (1 << _PRECISION_BITS)
    return int(scaled - 0.5) if w < 0 else int(scaled + 0.5)


@lru_cache(maxsize=16)
def resize_matrix(in_size: int, out_size: int, interpolation: str) -> torch.Tensor:
    """(out_size, in_size) float64 matrix of PIL's fixed-point coefficients / 2**22."""
    filt, support = FILTERS[interpolation]
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support *= filterscale
    m = torch.zeros(out_size, in_size, dtype=torch.float64)
    for i in range(out_size):
        center = (i + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        w = [filt((x - center + 0.5) / filterscale) for x in range(lo, hi)]
        total = sum(w)
        for x, wx in zip(range(lo, hi), w):
            m[i, x] = _fixed_point(wx / total if total else 0.0) / (1 << _PRECISION_BITS)
    return m


def _round_clip(x: torch.Tensor) -> torch.Tensor:
    # Resample.c adds 1 << (PRECISION_BITS - 1) then shifts: round half up, then clip to uint8.
    # In place: at 224 px the pipeline is bound by passes over memory, not by the matmuls.
    return x.add_(0.5).floor_().clamp_(0, 255)


def pil_resize(images: torch.Tensor, size: int, interpolation: str = "bicubic") -> torch.Tensor:
    """(B, C, H, W) uint8 (or uint8-valued float) -> (B, C, size, size) float32 in 0..255."""
    x = images.to(torch.float32, copy=True)     # the caller's tensor is never changed in place
    h, w = x.shape[-2:]
    if w != size:
        x = _round_clip(x @ _on_device(w, size, interpolation, x.device).T)
    if h != size:
        x = _round_clip(_on_device(h, size, interpolation, x.device) @ x)
    return x


@lru_cache(maxsize=16)
def _on_device(in_size: int, out_size: int, interpolation: str, device: torch.device) -> torch.Tensor:
    # copied once per device: a host-to-device copy per batch would stall the GPU's queue
    return resize_matrix(in_size, out_size, interpolation).to(device, torch.float32)

