"""CUDA checks for a machine with a GPU (not collected by pytest; CI has no GPU):

    python tests/gpu_check.py            (--device cpu: a dry run of the same code here;
                                          --smoke: tiny models, the rehearsal scripts/gpu_check.py runs)

1. the caches are exact to the tolerance of bf16: deep-prompt logits and prompt gradients from
   the cached prefix against the uncached path, at the first, middle and last layer of ViT-B/32
   (random weights); fc-only ResNet-18 logits from cached features against the full network;
2. every trainable runs one tiny epoch on CUDA and reports finite metrics (tests/tiny.py, as in
   the registry test); `compare` measures more CUDA memory with gradients than without; one
   visual-prompt trial runs with `compile=True`;
3. the device resize gives the CPU's pixels on the GPU;
4. a real-size backbone other than ViT-B/32 (ViT-B-16, random weights): the prefix cache at its
   first, middle and last layer, CLIP's 18-template text features, and one deep-prompt and one
   zero-shot trial with `backbone=ViT-B-16:none` and `template_set=clip`, with their throughput.
Prints one line per check and exits non-zero if one fails.
"""
from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
os.environ.setdefault("ORCHESTRATOR_NO_DOWNLOAD", "1")

from tiny import run_tiny  # noqa: E402

from search_spaces.registry import list_experiments, list_trainables  # noqa: E402
from trainables.data.dataset import Split  # noqa: E402
from trainables.data.pipeline import DeviceData, Preprocess, preprocess  # noqa: E402
from trainables.data.resize import pil_resize  # noqa: E402
from trainables.data.sources.cifar import load_cifar  # noqa: E402
from trainables.experiments.finetune import resnet_features  # noqa: E402
from trainables.experiments.prompt_training import DEEP_PROMPT  # noqa: E402
from trainables.experiments.zeroshot import ZEROSHOT  # noqa: E402
from trainables.models.backbones import resolve_layer  # noqa: E402
from trainables.models.clip import PromptedClip  # noqa: E402
from trainables.models.clip import (  # noqa: E402
    class_text_features,
    load_clip,
)
from trainables.models.prompts import DeepPrompt  # noqa: E402
from trainables.models.resnet import load_resnet18  # noqa: E402
from trainables.models.templates import CLIP_CIFAR_TEMPLATES  # noqa: E402
from trainables.training.features import FeatureData  # noqa: E402
from trainables.training.loop import autocast  # noqa: E402

BF16_TOLERANCE = 2e-2       # relative L2 error of bf16 operands (METHOD: 1e-3 .. 1e-2)
failures: list[str] = []


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def check(name: str, ok: bool, detail: str) -> None:
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}", flush=True)
    if not ok:
        failures.append(name)


def prefix_cache(device: torch.device, cifar, model: str = "ViT-B-32") -> None:
    clip = load_clip(model, "none", device)
    text = class_text_features(clip, cifar.classes, "This is a photo of a {}")
    x = preprocess(cifar.test.images[:64].to(device), clip.preprocess)
    for layer in [resolve_layer(name, clip.depth) for name in ("first", "middle", "last")]:
        torch.manual_seed(0)
        prompt = DeepPrompt(clip.visual, layer, 8, "front").to(device)
        with autocast(device):
            plain = PromptedClip(clip, text, deep_prompt=prompt)(x)
        (g_plain,) = torch.autograd.grad(plain.float().logsumexp(-1).sum(), prompt.prompts)
        data = DeviceData(Split(cifar.test.images[:64], cifar.test.labels[:64]), device, clip.preprocess)
        tokens = FeatureData.from_split(data, prompt.prefix, 64).features
        with autocast(device):
            cached = PromptedClip(clip, text, deep_prompt=prompt, from_prefix=True)(tokens)
        (g_cached,) = torch.autograd.grad(cached.float().logsumexp(-1).sum(), prompt.prompts)
        e_logits, e_grad = rel(cached, plain), rel(g_cached, g_plain)
        check(f"prefix cache {model} layer {layer}", e_logits < BF16_TOLERANCE and e_grad < BF16_TOLERANCE,
              f"logits rel err {e_logits:.2e}, prompt grad rel err {e_grad:.2e} (cache {tokens.dtype})")


def feature_cache(device: torch.device, cifar) -> None:
    net = load_resnet18("none", device).eval().to(memory_format=torch.channels_last)
    data = DeviceData(Split(cifar.test.images[:128], cifar.test.labels[:128]), device,
                      Preprocess(224, "bilinear", "cifar100"))
    cache = FeatureData.from_split(data, lambda x: resnet_features(net, x, True), 64, hflip=True)
    with torch.no_grad(), autocast(device):
        plain = torch.cat([net.fc(resnet_features(net, x, True)) for x, _ in data.batches(64)])
        cached = net.fc(cache.features)
    e = rel(cached, plain)
    check("fc feature cache", e < BF16_TOLERANCE, f"logits rel err {e:.2e}")


def trainables_run(root: Path, device: torch.device, only: tuple[str, ...] | None = None,
                   compiled: bool = True) -> None:
    shared = dict(dataset="cifar10", data="synthetic", data_dir=str(root), model="tiny-clip", pretrained="none",
                  epochs=1, batch_size=64, warmup_steps=2, device=device.type)
    for exp in list_experiments():
        if only is not None and exp.name not in only:
            continue
        spec = exp.trainable
        start = time.perf_counter()
        reports, _ = run_tiny(exp, shared)
        finite = bool(reports) and all(math.isfinite(reports[-1][k]) for k in spec.metrics)
        shown = ", ".join(f"{k}={reports[-1][k]:.3g}" for k in spec.metrics[:3])
        check(f"trainable {spec.name} on {device.type}", finite, f"{time.perf_counter() - start:.1f} s, {shown}")
        if spec.name == "compare" and device.type == "cuda":
            m = reports[-1]
            more = m["memory_mb_grad"] > m["memory_mb_no_grad"] >= 0
            check("compare: more CUDA memory kept with gradients than without", more,
                  f"{m['memory_mb_no_grad']:.1f} MB no_grad, {m['memory_mb_grad']:.1f} MB grad")
    if not compiled:
        return
    extra = {"model": "tiny-clip", "pretrained": "none", "prompt_size": 4, "warmup_steps": 2}
    reports = []
    start = time.perf_counter()
    [s for s in list_trainables() if s.name == "visual_prompt"][0].fn(
        {**shared, **extra, "compile": True}, report=lambda m, ckpt: reports.append(m))
    check("visual_prompt with compile=True", math.isfinite(reports[-1]["val_acc"]),
          f"{time.perf_counter() - start:.1f} s incl. compilation")


def resize_on_device(device: torch.device) -> None:
    """The device resize gives the CPU's pixels (which tests/test_model_core.py holds to PIL's): the
    coefficient matrices must reach the GPU, and float32 matmuls there must not round apart."""
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    for interpolation in ("bicubic", "bilinear"):
        here = pil_resize(images.to(device), 224, interpolation).cpu()
        off = (here - pil_resize(images, 224, interpolation)).abs()
        check(f"resize {interpolation} on {device.type}", off.max().item() <= 1 and (off > 0).float().mean().item() < 6e-4,
              f"max {off.max().item():.0f} level(s), {100 * (off > 0).float().mean().item():.4f} % of pixels differ from the CPU")


def other_backbone(root: Path, device: torch.device, cifar, model: str = "ViT-B-16") -> None:
    prefix_cache(device, cifar, model)
    clip = load_clip(model, "none", device)
    text = class_text_features(clip, cifar.classes, CLIP_CIFAR_TEMPLATES)
    norms = text.norm(dim=-1)
    check(f"{model}: 18-template text features", text.shape[0] == len(cifar.classes) and bool(
        torch.allclose(norms, torch.ones_like(norms), atol=1e-4)), f"{tuple(text.shape)}, unit norm")
    shared = dict(dataset="cifar10", data="synthetic", data_dir=str(root), backbone=f"{model}:none",
                  template_set="clip", batch_size=64, device=device.type)
    for spec, extra in ((DEEP_PROMPT, dict(layer="middle", n_prompts=8, epochs=1, warmup_steps=2)), (ZEROSHOT, {})):
        reports = []
        start = time.perf_counter()
        spec.fn({**shared, **extra}, report=lambda m, ckpt: reports.append(m))
        m = reports[-1]
        check(f"{spec.name} on {model}", math.isfinite(m["test_acc"]),
              f"{time.perf_counter() - start:.1f} s, {m['images_per_s']:.0f} images/s, test {m['test_acc']:.3f}")


def main() -> int:
    import argparse
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny models (tiny-clip, tiny-clip-6), the deep trainable only, no compile: a rehearsal")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA GPU: nothing to check here (--device cpu runs the same code on the CPU)")
        return 2
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU dry run"
    print(f"{name}, torch {torch.__version__}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        cifar = load_cifar("cifar10", Path(tmp), "synthetic")
        resize_on_device(device)
        prefix_cache(device, cifar, "tiny-clip" if args.smoke else "ViT-B-32")
        if not args.smoke:
            feature_cache(device, cifar)
        trainables_run(Path(tmp), device, only=("deep",) if args.smoke else None, compiled=not args.smoke)
        other_backbone(Path(tmp), device, cifar, "tiny-clip-6" if args.smoke else "ViT-B-16")
    print("all checks passed" if not failures else f"failed: {', '.join(failures)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
