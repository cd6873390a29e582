"""The `fetch` command's work: datasets and weights into this node's caches ahead of time (on a
machine with network, before a cluster goes offline), one line each."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from clip_prompt_sweeps.errors import UserError
from trainables.data.catalog import fetch, is_present, stored_at


def fetch_datasets(names: list[str], root: Path, kind: str) -> Iterator[str]:
    """Each dataset made present (downloaded md5-checked by its source, or written), in turn."""
    for name in names:
        try:
            fetch(name, root, kind)
        except UserError as err:
            raise UserError(f"fetch: {err}") from None
        state = "present" if is_present(name, root, kind) else "missing"
        yield f"{name}{'' if kind == 'real' else f' ({kind})'}: {state} in {stored_at(name, root, kind)}"


def fetch_weights(backbones: list[str]) -> Iterator[str]:
    """The CLIP backbones named (MODEL:TAG), or with none named the study's two: CLIP ViT-B-32
    openai and torchvision's ResNet-18. Every name is checked before the first download."""
    from trainables.models.backbones import check_backbone, parse_backbone
    from trainables.models.clip import fetch_clip_weights
    wanted = [parse_backbone(b) for b in backbones] or [("ViT-B-32", "openai")]
    for model, tag in wanted:
        check_backbone(model, tag)
    for model, tag in wanted:
        yield f"CLIP {model} {tag}: {fetch_clip_weights(model, tag) if tag != 'none' else 'random init, nothing to fetch'}"
    if not backbones:
        from trainables.models.resnet import load_resnet18
        load_resnet18("IMAGENET1K_V1")
        yield "ResNet-18 IMAGENET1K_V1: cached"
