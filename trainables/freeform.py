"""Free-form CLIP tasks (seed section 2.1b): a template and a few labels make a new classifier,
applied to CIFAR-100 test images or to a folder of the user's own images."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from trainables.errors import UserError
from trainables.models import Clip, class_text_features, clip_logits
from trainables.pipeline import preprocess

# The seed's two tasks, by name.
PRESETS = {
    "colour": ("This is an image mostly coloured {}", ("red", "green", "blue")),
    "origin": ("This image displays an object that is {}", ("human-made", "from-nature")),
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


@dataclass
class Task:
    template: str
    labels: tuple[str, ...]

    def check(self) -> None:
        if "{}" not in self.template:
            raise UserError(f"template {self.template!r} has no '{{}}' for the label; "
                            f"e.g. --template \"This is an image mostly coloured {{}}\"")
        if len(self.labels) < 2:
            raise UserError(f"classify needs at least two --labels (got {len(self.labels)}); "
                            f"or use --preset {' or '.join(PRESETS)}")


def task_from(preset: str | None, template: str | None, labels: list[str] | None) -> Task:
    if preset is not None:
        if preset not in PRESETS:
            raise UserError(f"unknown preset '{preset}'; known: {', '.join(PRESETS)}")
        base_template, base_labels = PRESETS[preset]
        task = Task(template or base_template, tuple(labels or base_labels))
    else:
        task = Task(template or "", tuple(labels or ()))
        if not template:
            raise UserError("classify needs --template (with '{}') and --labels, or --preset "
                            + " or ".join(PRESETS))
    task.check()
    return task


def folder_images(folder: Path) -> list[tuple[str, np.ndarray]]:
    """(file name, HxWx3 uint8) for every image file in `folder`, sorted by name."""
    from PIL import Image, UnidentifiedImageError
    if not folder.is_dir():
        raise UserError(f"image folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(f"no images in {folder} (looked for {', '.join(IMAGE_SUFFIXES)})")
    images = []
    for path in files:
        try:
            with Image.open(path) as im:
                images.append((path.name, np.asarray(im.convert("RGB"))))
        except (UnidentifiedImageError, OSError) as err:
            raise UserError(f"{path} is not an image PIL can read ({err.__class__.__name__}); "
                            f"remove it from the folder or convert it") from None
    return images


@torch.no_grad()
def probabilities_for_files(clip: Clip, images: list[np.ndarray], task: Task) -> torch.Tensor:
    """Any-size user images through CLIP's own PIL preprocessing (no training loop here)."""
    import open_clip
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    from PIL import Image
    transform = open_clip.image_transform(clip.preprocess.size, is_train=False,
                                          mean=OPENAI_DATASET_MEAN, std=OPENAI_DATASET_STD)
    device = next(clip.model.parameters()).device
    x = torch.stack([transform(Image.fromarray(im)) for im in images]).to(device)
    return _probabilities(clip, x, task)


@torch.no_grad()
def probabilities_for_cifar(clip: Clip, images: torch.Tensor, task: Task) -> torch.Tensor:
    """(N, 3, 32, 32) uint8 CIFAR images through the device pipeline."""
    device = next(clip.model.parameters()).device
    return _probabilities(clip, preprocess(images.to(device), clip.preprocess), task)


def _probabilities(clip: Clip, x: torch.Tensor, task: Task) -> torch.Tensor:
    text = class_text_features(clip, task.labels, task.template)
    return clip_logits(clip, clip.model.encode_image(x), text).softmax(-1).cpu()
