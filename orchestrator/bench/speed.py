"""`python -m orchestrator bench`: what the project's speed work buys, on this machine, in one run.

Every figure is a ratio against a baseline measured in the same run, on the same device, with
the same images: the device pipeline against torchvision's CIFAR100 + DataLoader + CLIP's PIL
preprocessing; deep prompts and the fc-only fine-tune with and without their caches; visual
prompts against the course code's recipe (DataLoader + PIL, float32); and the orchestration cost
per trial against bare `tune.Tuner` + `MLflowLoggerCallback`. Weights are random (speed does not
depend on them), so the bench runs offline; data is CIFAR-100 where it is cached, else synthetic
CIFAR-format images. Targets are printed beside the figures, never asserted.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from clip_prompt_sweeps.errors import UserError
from clip_prompt_sweeps.names import named_layers
from trainables.data.catalog import is_present, load_dataset, stored_at
from trainables.data.dataset import Split
from trainables.data.pipeline import Augment, DeviceData, Preprocess
from trainables.models.clip import (
    PromptedClip,
    class_text_features,
    load_clip,
    model_depth,
    model_image_size,
)
from trainables.models.prompts import DeepPrompt, PaddingPrompt
from trainables.models.resnet import ResNetClassifier, load_resnet18, resnet_features
from trainables.paths import data_dir
from trainables.training.features import FeatureData
from trainables.training.loop import LoopSettings, make_optimizer, train_epoch

SECTIONS = ("pipeline", "deep", "finetune", "visual", "overhead")     # the default run
# `--only scale` (hours at 10,000 trials): trivial trials per sweep, and at smoke size
SCALE_TRIALS, SMOKE_SCALE_TRIALS = (100, 1_000, 10_000), (4, 8)


@dataclass(frozen=True)
class Size:
    clip: str               # CLIP architecture (random weights)
    images: int             # images per timed epoch
    batch: int
    resnet_px: int          # ResNet-18 input size
    trials: int             # trivial trials per orchestration run


def default_size(device: torch.device, smoke: bool) -> Size:
    if smoke:       # the suite's check that everything runs: tiny model, a few batches
        return Size("tiny-clip", 64, 32, 32, 4)
    if device.type == "cuda":
        return Size("ViT-B-32", 8192, 256, 224, 16)
    return Size("ViT-B-32", 256, 64, 224, 16)


@dataclass
class Row:
    section: str
    what: str
    project: float
    baseline: float
    unit: str
    target: float | None = None     # the ratio the issue asks for, where it asks for one
    notes: dict = field(default_factory=dict)
    throughput: dict = field(default_factory=dict)  # figure key -> images/s, what `sweep --dry-run` reads

    @property
    def ratio(self) -> float:
        return self.project / self.baseline if self.baseline else float("inf")


# --- helpers ----------------------------------------------------------------------------------

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _cycled(split: Split, n: int) -> Split:
    idx = torch.arange(n) % len(split.labels)
    return Split(split.images[idx], split.labels[idx])


def _head(data, n: int):
    """The first n samples of a DeviceData or FeatureData, as the same kind (for warm-ups)."""
    if isinstance(data, FeatureData):
        flipped = None if data.flipped is None else data.flipped[:n]
        return FeatureData(data.features[:n], data.labels[:n], data.generator, flipped)
    return DeviceData(Split(data.images[:n].cpu(), data.labels[:n].cpu()), data.images.device, data.pre)


def epoch_seconds(model: nn.Module, params, data, batch: int, aug: Augment = Augment(),
                  optimizer: str = "sgd", lr: float = 1e-3) -> float:
    """One training epoch over `data`, after one untimed warm-up batch."""
    s = LoopSettings(epochs=1, batch_size=batch, lr=lr, momentum=0.9, weight_decay=0.0,
                     warmup_steps=0, optimizer=optimizer)
    opt = make_optimizer(params, s)
    model.train()
    train_epoch(model, opt, _head(data, batch), s, aug, 0, 1)
    device = data.labels.device
    return timed(lambda: train_epoch(model, opt, data, s, aug, 0, len(data) // batch + 1), device)


@dataclass
class Context:
    device: torch.device
    size: Size
    cifar: object               # trainables.data.dataset.ImageDataset (CIFAR-100)
    root: Path                  # where the archive folder lies, for torchvision's dataset
    real: bool
    compile: bool = False       # also time the visual prompt under torch.compile
    scale_trials: tuple[int, ...] = SCALE_TRIALS
    progress: Callable = print

    def train(self) -> Split:
        return _cycled(self.cifar.train, self.size.images)


def _loader_baseline(ctx: Context, transform) -> torch.utils.data.DataLoader:
    """torchvision's CIFAR100 dataset and DataLoader, cycled to the same number of images."""
    from torchvision.datasets import CIFAR100

    class SyntheticCifar100(CIFAR100):
        # synthetic archives have their own checksums (None: only that the files exist)
        train_list = [[name, None] for name, _ in CIFAR100.train_list]
        test_list = [[name, None] for name, _ in CIFAR100.test_list]
        meta = {**CIFAR100.meta, "md5": None}

    cls = CIFAR100 if ctx.real else SyntheticCifar100
    dataset = cls(str(ctx.root), train=True, transform=transform, download=False)
    subset = torch.utils.data.Subset(dataset, [i % len(dataset) for i in range(ctx.size.images)])
    workers = min(8, os.cpu_count() or 1)
    return torch.utils.data.DataLoader(subset, batch_size=ctx.size.batch, shuffle=True, num_workers=workers,
                                       pin_memory=ctx.device.type == "cuda", persistent_workers=False)


def _clip_pil_transform(size: int):
    import open_clip
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    return open_clip.image_transform(size, is_train=False, mean=OPENAI_DATASET_MEAN, std=OPENAI_DATASET_STD)


# --- sections ---------------------------------------------------------------------------------

def bench_pipeline(ctx: Context) -> list[Row]:
    size = model_image_size(ctx.size.clip)
    pre = Preprocess(size, "bicubic", "clip")

    def project():
        data = DeviceData(ctx.train(), ctx.device, pre)      # the one copy to the device counts
        for x, _ in data.batches(ctx.size.batch, shuffle=True):
            x.sum()

    def baseline():
        for x, _ in _loader_baseline(ctx, _clip_pil_transform(size)):
            x.to(ctx.device, non_blocking=True).sum()

    warm = DeviceData(Split(ctx.cifar.train.images[:ctx.size.batch], ctx.cifar.train.labels[:ctx.size.batch]),
                      ctx.device, pre)
    next(warm.batches(ctx.size.batch))[0].sum()        # first-use costs (CUDA context, kernels) stay out
    t_project, t_base = timed(project, ctx.device), timed(baseline, ctx.device)
    n = ctx.size.images
    return [Row("pipeline", f"CLIP preprocessing at {size} px (PIL-exact resize)", n / t_project, n / t_base,
                "images/s", 2.0, {"baseline": f"CIFAR100 + DataLoader({min(8, os.cpu_count() or 1)} workers) + PIL"})]


def bench_deep(ctx: Context) -> list[Row]:
    clip = load_clip(ctx.size.clip, "none", ctx.device)
    text = class_text_features(clip, ctx.cifar.classes, "This is a photo of a {}")
    depth = model_depth(ctx.size.clip)
    rows = []
    for name, layer in named_layers(depth).items():
        data = DeviceData(ctx.train(), ctx.device, clip.preprocess)
        torch.manual_seed(0)
        prompt = DeepPrompt(clip.visual, layer, 4, "front").to(ctx.device)
        t_plain = epoch_seconds(PromptedClip(clip, text, deep_prompt=prompt), [prompt.prompts], data,
                                ctx.size.batch)
        holder: dict = {}
        t_cache = timed(lambda: holder.update(data=FeatureData.from_split(
            data, prompt.prefix, ctx.size.batch)), ctx.device)
        cached = PromptedClip(clip, text, deep_prompt=prompt, from_prefix=True)
        t_cached = epoch_seconds(cached, [prompt.prompts], holder["data"], ctx.size.batch)
        n = ctx.size.images
        amortised = 20 * t_plain / (t_cache + 20 * t_cached)
        rows.append(Row("deep", f"deep prompt training, layer {layer} ({name})", n / t_cached, n / t_plain,
                        "images/s", 4.0 if name == "last" else None,
                        {"cache_build_s": round(t_cache, 2), "speedup_over_20_epochs_incl_cache": round(amortised, 2)},
                        {f"deep_prompt/{name}": n / t_cached, f"deep_prompt/{name}/uncached": n / t_plain,
                         f"deep_prompt/{name}/cache_build": n / t_cache}))
    return rows


def bench_finetune(ctx: Context) -> list[Row]:
    pre = Preprocess(ctx.size.resnet_px, "bilinear", "cifar100")
    net = load_resnet18("none", ctx.device).requires_grad_(False).eval()
    net.fc = nn.Linear(512, 100, device=ctx.device)
    net.to(memory_format=torch.channels_last)
    data = DeviceData(ctx.train(), ctx.device, pre)
    aug = Augment(hflip=True)
    t_plain = epoch_seconds(ResNetClassifier(net, False, True), net.fc.parameters(), data, ctx.size.batch, aug, "adam")
    holder: dict = {}
    t_cache = timed(lambda: holder.update(data=FeatureData.from_split(
        data, lambda x: resnet_features(net, x, True), ctx.size.batch, hflip=True)), ctx.device)
    t_cached = epoch_seconds(net.fc, net.fc.parameters(), holder["data"], ctx.size.batch, aug, "adam")
    n = ctx.size.images
    return [Row("finetune", f"fc-only fine-tune epoch, ResNet-18 at {ctx.size.resnet_px} px, with flips",
                n / t_cached, n / t_plain, "images/s", 50.0,
                {"cache_build_s": round(t_cache, 2), "cache_covers": "both flips of every image"},
                {"finetune/cached": n / t_cached, "finetune/uncached": n / t_plain, "finetune/cache_build": n / t_cache})]


def bench_visual(ctx: Context) -> list[Row]:
    clip = load_clip(ctx.size.clip, "none", ctx.device)
    text = class_text_features(clip, ctx.cifar.classes, "This is a photo of a {}")
    size = clip.preprocess.size
    torch.manual_seed(0)
    prompt = PaddingPrompt(size, max(1, round(size * 30 / 224))).to(ctx.device)
    model = PromptedClip(clip, text, visual_prompt=prompt)
    data = DeviceData(ctx.train(), ctx.device, clip.preprocess)
    t_project = epoch_seconds(model, prompt.parameters(), data, ctx.size.batch, lr=40.0)

    def course_recipe():    # DataLoader + PIL preprocessing, float32 throughout
        opt = torch.optim.SGD(prompt.parameters(), lr=40.0, momentum=0.9)
        for x, y in _loader_baseline(ctx, _clip_pil_transform(size)):
            x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()

    t_base = timed(course_recipe, ctx.device)
    n = ctx.size.images
    notes = {"precision": "bf16 autocast" if ctx.device.type == "cuda" else "float32",
             "baseline": "DataLoader + PIL, float32"}
    if ctx.device.type == "cuda" and ctx.size.clip == "ViT-B-32":
        notes["aim_on_h100"] = "10000 images/s"
    rows = [Row("visual", f"visual prompt (padding) training, {ctx.size.clip} at {size} px", n / t_project,
                n / t_base, "images/s", None, notes, {"visual_prompt": n / t_project})]
    if ctx.compile:     # the warm-up batch of epoch_seconds pays the compilation
        start = time.perf_counter()
        t_compiled = epoch_seconds(torch.compile(model), prompt.parameters(), data, ctx.size.batch, lr=40.0)
        rows.append(Row("visual", "  the same under torch.compile (compile=True)", n / t_compiled, n / t_project,
                        "images/s", None, {"baseline": "the same, eager",
                                           "compile_and_epoch_s": round(time.perf_counter() - start, 1)}))
    return rows


def bench_overhead(ctx: Context) -> list[Row]:
    from orchestrator.bench.overhead import bare_tune_seconds, project_seconds
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        n = ctx.size.trials
        t_project = project_seconds(Path(tmp) / "project", n)
        t_bare = bare_tune_seconds(Path(tmp) / "bare", n)
    # a cost, so the ratio is project over bare (<= 1.2 meets the target)
    return [Row("overhead", f"seconds per trivial trial ({n} trials, 3 reports each)", t_project / n,
                t_bare / n, "s/trial", 1.2, {"baseline": "tune.Tuner + MLflowLoggerCallback"})]


def bench_scale(ctx: Context) -> list[Row]:
    """Trivial trials at each count through the sweep and through bare Tune, each run in a
    process of its own (peak RSS is that driver's): the cost per trial stays flat, and the
    driver's memory bounded, as the sweep grows."""
    from orchestrator.bench.overhead import measure_apart
    address = _ray_address()
    rows: list[Row] = []
    first: float | None = None
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        for n in ctx.scale_trials:
            got = {}
            for kind in ("project", "bare"):
                got[kind] = measure_apart(kind, n, Path(tmp) / f"{kind}-{n}", address)
                ctx.progress(f"    scale, {kind}, {n:,} trials: {got[kind]['seconds']:.0f} s, "
                             f"driver peak {got[kind]['peak_rss_mb']:.0f} MB, {got[kind]['runs']:,} MLflow runs")
            per_trial = got["project"]["seconds"] / n
            first = first or per_trial
            rows += [Row("scale", f"seconds per trivial trial, {n:,} trials (3 reports each)", per_trial,
                         got["bare"]["seconds"] / n, "s/trial", 1.0,
                         {"baseline": "tune.Tuner + MLflowLoggerCallback, each count in a new process",
                          "flat": f"{per_trial / first:.2f}x the project's cost per trial at "
                                  f"{ctx.scale_trials[0]:,} (target <= 1.3x)"}),
                     Row("scale", f"driver peak RSS, {n:,} trials", got["project"]["peak_rss_mb"],
                         got["bare"]["peak_rss_mb"], "MB", None, {"target": "under 1,500 MB, growing less than linearly"})]
    return rows


def _ray_address() -> str | None:
    """The Ray this process is on (the scale runs join it), or None: each starts its own."""
    import ray
    return ray.get_runtime_context().gcs_address if ray.is_initialized() else None


BENCHES = {"pipeline": bench_pipeline, "deep": bench_deep, "finetune": bench_finetune,
           "visual": bench_visual, "overhead": bench_overhead, "scale": bench_scale}


# --- running and printing ---------------------------------------------------------------------

def make_context(device_name: str, smoke: bool, images: int | None, batch: int | None, root: str | None,
                 tmp: Path) -> Context:
    if device_name == "cuda" and not torch.cuda.is_available():
        raise UserError("bench --device cuda: torch sees no CUDA GPU on this machine; use --device cpu")
    device = torch.device(device_name)
    size = default_size(device, smoke)
    size = Size(size.clip, images or size.images, batch or size.batch, size.resnet_px, size.trials)
    if size.batch < 1 or size.images < size.batch:
        raise UserError(f"--images ({size.images}) must hold at least one batch (--batch {size.batch})")
    base = data_dir(root)
    real = is_present("cifar100", base, "real") and not smoke
    where, kind = (base, "real") if real else (tmp, "synthetic")
    cifar = load_dataset("cifar100", where, kind)
    return Context(device, size, cifar, stored_at("cifar100", where, kind), real)


def machine(device: torch.device) -> dict:
    info = {"python": sys.version.split()[0], "torch": torch.__version__, "platform": platform.platform(),
            "cpus": os.cpu_count(), "device": device.type}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def run_bench(device_name: str = "cpu", sections: tuple[str, ...] = SECTIONS, smoke: bool = False,
              images: int | None = None, batch: int | None = None, compile: bool = False,
              root: str | None = None, progress=print, scale_trials: tuple[int, ...] | None = None,
              benches: dict | None = None) -> dict:
    """`benches`: section -> its bench (default BENCHES; the command adds fused.py's, which builds
    on this module's helpers)."""
    benches = benches or BENCHES
    unknown = [s for s in sections if s not in benches]
    if unknown:
        raise UserError(f"unknown bench section(s) {', '.join(unknown)}; known: {', '.join(benches)}")
    if scale_trials is not None and (not scale_trials or min(scale_trials) < 2):
        raise UserError("--scale-trials: give one or more counts of at least 2 trials, e.g. 100 1000 10000")
    if scale_trials is not None and "scale" not in sections:
        raise UserError("--scale-trials sets the counts of the scale section: add `--only scale`")
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        ctx = make_context(device_name, smoke, images, batch, root, Path(tmp))
        ctx.compile, ctx.progress = compile, progress
        ctx.scale_trials = tuple(scale_trials or (SMOKE_SCALE_TRIALS if smoke else SCALE_TRIALS))
        progress(f"bench on {ctx.device.type}: {ctx.size.clip}, {ctx.size.images} images per epoch, "
                 f"batch {ctx.size.batch}, {'CIFAR-100' if ctx.real else 'synthetic CIFAR-100'}")
        rows: list[Row] = []
        for name in sections:
            start = time.perf_counter()
            rows += benches[name](ctx)
            progress(f"  {name}: {time.perf_counter() - start:.0f} s")
        return {"machine": machine(ctx.device), "size": asdict(ctx.size), "smoke": smoke,
                "date": time.strftime("%Y-%m-%d"), "model": ctx.size.clip,
                "throughput": {k: v for r in rows for k, v in r.throughput.items()},
                "data": "cifar100" if ctx.real else "synthetic",
                "rows": [{**asdict(r), "ratio": r.ratio} for r in rows]}


def format_table(result: dict) -> str:
    lines = [f"{'what':<62} {'project':>11} {'baseline':>11} {'unit':<9} {'ratio':>7}  target",
             "-" * 110]
    for r in result["rows"]:
        target = "" if r["target"] is None else _verdict(r, result["smoke"], result["machine"]["device"])
        lines.append(f"{r['what'][:62]:<62} {r['project']:>11.4g} {r['baseline']:>11.4g} {r['unit']:<9} "
                     f"{r['ratio']:>6.2f}x  {target}")
        for key, value in r["notes"].items():
            lines.append(f"{'':<4}{key}: {value}")
    m = result["machine"]
    lines.append(f"machine: {m.get('gpu', m['platform'])}, {m['cpus']} CPUs, torch {m['torch']}, "
                 f"data {result['data']}")
    return "\n".join(lines)


def _verdict(row: dict, smoke: bool, device: str) -> str:
    lower_is_better = row["section"] in ("overhead", "scale")
    text = f"{'<=' if lower_is_better else '>='} {row['target']:g}x"
    if smoke:
        return f"{text} (not judged at smoke size)"
    if device != "cpu":
        return f"{text} (a target for 2-core CPUs; not judged here)"
    met = row["ratio"] <= row["target"] if lower_is_better else row["ratio"] >= row["target"]
    return f"{text} {'met' if met else 'MISSED'}"


def write_json(result: dict, path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(result, indent=2))
