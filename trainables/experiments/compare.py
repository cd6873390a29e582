"""Comparing ImageNet models (seed section 1.1): inference time per image at batch 8 and memory at
batch 64, each with and without `torch.no_grad()`, trainable parameters, and ImageNet top-1.

Timing needs no trained weights, so the models are randomly initialised and the sweep runs
offline; top-1 comes from the weights' own metadata (torchvision), or from the paper named
beside it where the library has none (timm's DINO ViT-S/8). Memory is the CUDA allocator's delta
while the output is kept alive (with gradients on, the activations autograd saves with it); the
CPU has no such allocator, so a CPU run says "not measured" rather than guess. Models run in
float32 without autocast, as torchvision and timm ship them.
"""
from __future__ import annotations

import contextlib
import gc
import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn

from clip_prompt_sweeps.errors import UserError
from trainables.training.config import check_at_least_one, check_choices
from trainables.training.device import pick_device
from trainables.training.entry import trainable
from trainables.training.loop import Reporter

TORCHVISION = ("vgg11", "vgg11_bn", "resnet18", "densenet121", "mobilenet_v3_small", "vit_b_32")
TIMM = ("vit_small_patch8_224",)
MODELS = TORCHVISION + TIMM
# timm's pretrained config for vit_small_patch8_224.dino carries no accuracy (a self-supervised
# backbone without a classifier); this is the figure its paper gives, with its source.
DINO_S8_TOP1 = (79.7, "Caron et al. 2021 (DINO), Table 2: linear evaluation of ViT-S/8")


@dataclass
class CompareConfig:
    model: str = "resnet18"             # see MODELS
    image_size: int = 224               # ImageNet's; smaller only for a quick check
    time_batch: int = 8                 # the seed's batch for ms/image
    memory_batch: int = 64              # the seed's batch for memory
    warmup: int = 10                    # passes before timing (cuDNN autotune, allocator, caches)
    repeats: int = 50                   # timed passes; the median is reported
    device: str = "auto"

    def check(self) -> None:
        check_choices(self, model=MODELS)
        if not 32 <= self.image_size <= 512 or self.image_size % 32:
            raise UserError(f"image_size must be a multiple of 32 within 32..512, got {self.image_size}")
        check_at_least_one(self, "time_batch", "memory_batch", "repeats")


def build_model(name: str, image_size: int) -> nn.Module:
    """The architecture with random weights (timing does not depend on them)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if name in TIMM:
            import timm
            return timm.create_model(name, pretrained=False, img_size=image_size)
        import torchvision
        size = {"image_size": image_size} if name.startswith("vit") else {}
        return torchvision.models.get_model(name, weights=None, **size)


def imagenet_top1(name: str) -> tuple[float, str]:
    """(top-1 %, where the figure comes from)."""
    if name in TIMM:
        return DINO_S8_TOP1
    import torchvision
    weights = torchvision.models.get_model_weights(name).DEFAULT
    return weights.meta["_metrics"]["ImageNet-1K"]["acc@1"], f"torchvision {weights} metadata"


def _grad_context(grad: bool):
    return contextlib.nullcontext() if grad else torch.no_grad()


def seconds_per_pass(model: nn.Module, x: torch.Tensor, grad: bool, warmup: int, repeats: int) -> float:
    """Median wall time of one forward pass (CUDA events on a GPU: no host-side noise)."""
    cuda = x.is_cuda
    times = []
    with _grad_context(grad):
        for _ in range(warmup):
            model(x)
        for _ in range(repeats):
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                model(x)
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / 1000)
            else:
                start = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def cuda_memory_mb(model: nn.Module, x: torch.Tensor, grad: bool) -> tuple[float, float]:
    """(MB held while the output is alive, peak MB during the pass), above what was allocated before."""
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    with _grad_context(grad):
        out = model(x)
    torch.cuda.synchronize()
    kept, peak = torch.cuda.memory_allocated() - base, torch.cuda.max_memory_allocated() - base
    del out
    return kept / 2**20, peak / 2**20


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu ({torch.get_num_threads()} threads)"


def run_compare(cfg: CompareConfig, report: Reporter, resume_dir=None) -> dict:
    device = pick_device(cfg.device)
    model = build_model(cfg.model, cfg.image_size).to(device).eval()
    top1, source = imagenet_top1(cfg.model)
    metrics: dict = {"params": float(sum(p.numel() for p in model.parameters() if p.requires_grad)),
                     "imagenet_top1": top1}
    x = torch.randn(cfg.time_batch, 3, cfg.image_size, cfg.image_size, device=device)
    for grad, key in ((False, "no_grad"), (True, "grad")):
        seconds = seconds_per_pass(model, x, grad, cfg.warmup, cfg.repeats)
        metrics[f"ms_per_image_{key}"] = 1000 * seconds / cfg.time_batch
    if device.type == "cuda":
        x = torch.randn(cfg.memory_batch, 3, cfg.image_size, cfg.image_size, device=device)
        for grad, key in ((False, "no_grad"), (True, "grad")):
            metrics[f"memory_mb_{key}"], metrics[f"peak_memory_mb_{key}"] = cuda_memory_mb(model, x, grad)
    tags = {"top1_source": source, "device_name": device_name(device),
            "memory": "CUDA allocator" if device.type == "cuda" else "not measured (CPU)"}
    report({**metrics, "tags": tags}, None)
    return metrics


COMPARE = trainable(
    "compare", CompareConfig, run_compare,
    "an ImageNet model's ms/image and memory with and without no_grad, parameters, top-1",
    ("ms_per_image_no_grad", "ms_per_image_grad", "params", "imagenet_top1"))
