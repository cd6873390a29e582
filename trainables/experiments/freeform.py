"""Free-form CLIP tasks (seed section 2.1b): a template and a few labels make a new classifier,
applied to CIFAR-100 test images or to a folder of the user's own images."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from clip_prompt_sweeps.errors import UserError
from trainables.data.pipeline import preprocess
from trainables.models.clip import Clip, class_text_features, clip_logits
from trainables.models.templates import check_template

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
        check_template(self.template, "label", "This is an image mostly coloured {}")
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


# Larger images are refused before they are decoded (a 20000 x 20000 header is 1.2 GB of RGB).
MAX_PIXELS = 40_000_000
BATCH = 64          # images encoded per forward pass


def image_files(folder: Path) -> list[Path]:
    """The image files directly in `folder` (links and sub-folders are not followed), by name."""
    if not folder.is_dir():
        raise UserError(f"image folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir()
                   if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.is_symlink())
    if not files:
        raise UserError(f"no images in {folder} (looked for {', '.join(IMAGE_SUFFIXES)})")
    return files


def read_image(path: Path) -> np.ndarray:
    """HxWx3 uint8; a file that is not an image, or too large, is one line naming it."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_PIXELS:
                raise UserError(f"{path} is too large: {im.width}x{im.height} pixels, more than {MAX_PIXELS:,} "
                                f"(a decompression bomb, or a photo to scale down first); remove or resize it")
            return np.asarray(im.convert("RGB"))
    except Image.DecompressionBombError as err:
        raise UserError(f"{path} is too large to decode ({err}); remove or resize it") from None
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise UserError(f"{path} is not an image PIL can read ({err.__class__.__name__}); "
                        f"remove it from the folder or convert it") from None


@torch.no_grad()
def probabilities_for_files(clip: Clip, paths: list[Path], task: Task) -> torch.Tensor:
    """Any-size user images through CLIP's own PIL preprocessing, read and encoded a batch at a
    time (a folder of thousands never sits in memory at full size)."""
    import open_clip
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    from PIL import Image
    transform = open_clip.image_transform(clip.preprocess.size, is_train=False,
                                          mean=OPENAI_DATASET_MEAN, std=OPENAI_DATASET_STD)
    device = next(clip.model.parameters()).device
    out = []
    for start in range(0, len(paths), BATCH):
        x = torch.stack([transform(Image.fromarray(read_image(p))) for p in paths[start:start + BATCH]])
        out.append(_probabilities(clip, x.to(device), task))
    return torch.cat(out)


@torch.no_grad()
def probabilities_for_cifar(clip: Clip, images: torch.Tensor, task: Task) -> torch.Tensor:
    """(N, 3, 32, 32) uint8 CIFAR images through the device pipeline."""
    device = next(clip.model.parameters()).device
    return torch.cat([_probabilities(clip, preprocess(images[s:s + BATCH].to(device), clip.preprocess), task)
                      for s in range(0, len(images), BATCH)])


def _probabilities(clip: Clip, x: torch.Tensor, task: Task) -> torch.Tensor:
    text = class_text_features(clip, task.labels, task.template)
    return clip_logits(clip, clip.model.encode_image(x), text).softmax(-1).cpu()
