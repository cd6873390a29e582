"""A trial's system figures, reported with each result: what it cost the machine, beside the
images/s its loop measures. Named as MLflow's own system metrics are (`system/...`), so that the
UI shows them on a run's "System metrics" tab."""
from __future__ import annotations

import resource
import sys

import torch


def system_metrics() -> dict[str, float]:
    """Peak resident memory of this trial's process and, on a GPU, the peak its CUDA allocator
    held and the GPU's utilisation at this moment (the whole GPU, shared by every trial on it;
    where torch can read it, which needs pynvml)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"system/peak_rss_mb": peak / (2**20 if sys.platform == "darwin" else 2**10)}    # bytes on macOS
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["system/peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
        try:
            out["system/gpu_utilization_percentage"] = float(torch.cuda.utilization())
        except Exception:  # noqa: BLE001 - no pynvml, or a driver that will not say: no figure
            pass
    return out
