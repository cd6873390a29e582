"""The `classify` command's work (seed section 2.1b): a CLIP classifier made of a template and a
few labels, applied to image files or to CIFAR-100 test images; each image's probabilities as a
figure and a CSV, written together or not at all."""
from __future__ import annotations

import csv
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from clip_prompt_sweeps.errors import UserError

FIGURE_IMAGES = 24      # the figure shows the first images; the CSV holds every one


@dataclass(frozen=True)
class Request:
    preset: str | None
    template: str | None
    labels: list[str] | None
    images: str | None          # a folder of image files, else CIFAR-100 test images
    n: int
    seed: int
    data: str
    data_dir: str | None
    model: str
    pretrained: str
    out: str


def classify(req: Request) -> tuple[list[str], Path]:
    """(one line per image: its predicted label and every probability, the figure written)."""
    from trainables.experiments import freeform
    from trainables.models.clip import load_clip
    task = freeform.task_from(req.preset, req.template, req.labels)
    names, images, pixels = _images(req)
    clip = load_clip(req.model, req.pretrained, "cuda" if torch.cuda.is_available() else "cpu")
    probs = freeform.probabilities_for_files(clip, images, task) if req.images else \
        freeform.probabilities_for_cifar(clip, pixels, task)
    lines = [f"{name:<32} {task.labels[int(p.argmax())]:<16} " +
             "  ".join(f"{label} {v:.2f}" for label, v in zip(task.labels, p.tolist())) for name, p in zip(names, probs)]
    shown = min(len(names), FIGURE_IMAGES)
    thumbs = [freeform.read_image(p) for p in images[:shown]] if req.images else \
        [im.permute(1, 2, 0).numpy() for im in pixels[:shown]]
    slug = task_slug(req.preset if req.preset and not req.template and not req.labels else None, task)
    title = (f"{task.template.replace('{}', '___')}: {', '.join(task.labels)} ({req.model}, {req.pretrained})"
             + (f"; first {shown} of {len(names)}" if shown < len(names) else ""))
    figure = _write(Path(req.out) / "classify", slug, thumbs, names, task.labels, probs, title)
    return lines, figure


def _images(req: Request) -> tuple[list[str], list[Path], torch.Tensor | None]:
    """(names, image files, CIFAR pixels): the files of --images, or --n CIFAR-100 test images."""
    from trainables.experiments import freeform
    if req.images:
        paths = freeform.image_files(Path(req.images))
        return [p.name for p in paths], paths, None
    from trainables.data.catalog import load_dataset
    from trainables.paths import data_dir
    if req.n < 1:
        raise UserError(f"--n must be at least 1, got {req.n}")
    cifar = load_dataset("cifar100", data_dir(req.data_dir), req.data)
    idx = torch.randperm(len(cifar.test.labels), generator=torch.Generator().manual_seed(req.seed))[:req.n]
    return [f"#{i} {cifar.classes[cifar.test.labels[i]]}" for i in idx.tolist()], [], cifar.test.images[idx]


def _write(out: Path, slug: str, thumbs, names, labels, probs, title: str) -> Path:
    from reports.figures import probability_grid
    shown = len(thumbs)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".classify-") as tmp:   # both files, or neither
        probability_grid(thumbs, names[:shown], labels, probs[:shown].numpy(), title, Path(tmp) / "f.png")
        with open(Path(tmp) / "f.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["image", "predicted", *labels])
            writer.writerows([name, labels[int(p.argmax())], *(f"{v:.6f}" for v in p.tolist())]
                             for name, p in zip(names, probs))
        os.replace(Path(tmp) / "f.png", out / f"{slug}.png")
        os.replace(Path(tmp) / "f.csv", out / f"{slug}.csv")
    return out / f"{slug}.png"


def task_slug(preset: str | None, task) -> str:
    """The seed's presets keep their names (`report all` shows them as Figures 5 and 6); any
    other task is `custom-...`, so it can never replace a preset's figure."""
    if preset:
        return preset
    words = re.sub(r"[^a-z0-9]+", "-", task.template.replace("{}", "_").lower()).strip("-")[:40]
    digest = hashlib.sha1("\n".join((task.template, *task.labels)).encode()).hexdigest()[:8]
    return f"custom-{words}-{digest}".replace("--", "-")
