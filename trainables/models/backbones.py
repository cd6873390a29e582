"""Which CLIP backbones there are, as open_clip knows them: any model name and pretrained tag
(`ViT-B-16:laion2b_s34b_b88k`), where their weights are cached, how to fetch them, which can
take deep prompts (a ViT), and deep-prompt layers by name (`first`, `middle`, `last`) so that one
grid applies to any depth. No model is built here."""
from __future__ import annotations

import os
from pathlib import Path

import open_clip

from clip_prompt_sweeps.errors import UserError
from clip_prompt_sweeps.names import LAYER_NAMES, named_layers

open_clip.add_model_config(Path(__file__).parent / "model_configs")

NO_WEIGHTS = "none"         # a randomly initialised model (tests, the smoke profile)
LIST_HINT = "`python -m orchestrator list --backbones` lists them"


def parse_backbone(text: str) -> tuple[str, str]:
    """'MODEL:TAG' -> (MODEL, TAG); a bare MODEL has no weights (random init)."""
    model, _, tag = str(text).strip().partition(":")
    if not model:
        raise UserError(f"backbone {text!r} is not MODEL:TAG; e.g. ViT-B-16:laion2b_s34b_b88k ({LIST_HINT})")
    return model, tag or NO_WEIGHTS


def check_backbone(model: str, pretrained: str) -> None:
    """The model is one open_clip knows and the tag is one of its pretrained tags (or 'none')."""
    if model not in open_clip.list_models():
        raise UserError(f"unknown open_clip model '{model}'; {LIST_HINT}")
    tags = open_clip.list_pretrained_tags_by_model(model)
    if pretrained != NO_WEIGHTS and pretrained not in tags:
        known = ", ".join([*tags, NO_WEIGHTS])
        raise UserError(f"pretrained tag '{pretrained}' is not one of {model}'s: {known}")


def vision_config(model: str) -> dict:
    return open_clip.get_model_config(model)["vision_cfg"]


def is_vit(model: str) -> bool:
    """open_clip's own VisionTransformer (a ModifiedResNet has a list of layers, a timm tower a
    timm_model_name): the only tower deep prompts know how to enter."""
    cfg = vision_config(model)
    return isinstance(cfg.get("layers"), int) and bool(cfg.get("patch_size")) and "timm_model_name" not in cfg


def deep_capable() -> list[str]:
    return [m for m in open_clip.list_models() if is_vit(m)]


def check_deep_capable(model: str) -> None:
    if not is_vit(model):
        vits = deep_capable()
        shown = ", ".join(vits[:8]) + (f" and {len(vits) - 8} more" if len(vits) > 8 else "")
        raise UserError(f"backbone {model} is not a ViT and cannot take deep prompts; use one that can: {shown}")


def depth(model: str) -> int:
    return int(vision_config(model)["layers"])


def image_size(model: str) -> int:
    size = vision_config(model)["image_size"]
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def resolve_layer(layer: str | int, n_blocks: int, model: str = "the model") -> int:
    """'first' -> 0, 'middle' -> depth // 2, 'last' -> depth - 1, or a number as it is: the
    seed's {0, 6, 11} on ViT-B/32's 12 blocks is first/middle/last."""
    named = named_layers(n_blocks)
    text = str(layer).strip()
    if text in named:
        index = named[text]
    elif text.lstrip("-").isdigit():
        index = int(text)
    else:
        raise UserError(f"layer {layer!r} is not first, middle, last or a block number")
    if not 0 <= index < n_blocks:
        raise UserError(f"injection layer {layer} is beyond {model}'s depth; use 0..{n_blocks - 1} or "
                        f"{', '.join(LAYER_NAMES)}")
    return index


# --- weights ----------------------------------------------------------------------------------

def pretrained_cfg(model: str, pretrained: str) -> dict:
    return open_clip.get_pretrained_cfg(model, pretrained) if pretrained != NO_WEIGHTS else {}


def _hub_files(hf_hub: str) -> tuple[str, list[str]]:
    """(repository, file names open_clip would load, safetensors first)."""
    repo, filename = os.path.split(hf_hub)      # 'org/repo/' names open_clip's default file
    filename = filename or "open_clip_pytorch_model.bin"
    stem = filename.rsplit(".", 1)[0]
    safe = ["open_clip_model.safetensors"] if filename == "open_clip_pytorch_model.bin" else [f"{stem}.safetensors"]
    return repo, [*safe, filename]


def url_cache_dir() -> str:
    return os.path.expanduser("~/.cache/clip")     # open_clip's download_pretrained_from_url


def hub_cache_dir() -> str:
    from huggingface_hub import constants
    return constants.HF_HUB_CACHE


def weights_source(model: str, pretrained: str) -> str:
    """Where the weights come from, for messages: a Hugging Face repository or a URL."""
    cfg = pretrained_cfg(model, pretrained)
    return _hub_files(cfg["hf_hub"])[0] if cfg.get("hf_hub") else cfg.get("url", "")


def cached_weights(model: str, pretrained: str) -> str | None:
    """The local path of the checkpoint if it is cached; None otherwise (and for 'none')."""
    cfg = pretrained_cfg(model, pretrained)
    if cfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache
        repo, files = _hub_files(cfg["hf_hub"])
        for name in files:
            path = try_to_load_from_cache(repo, name)
            if isinstance(path, str):
                return path
        return None
    if cfg.get("url"):
        path = Path(url_cache_dir()) / cfg["url"].rsplit("/", 1)[-1]
        return str(path) if path.is_file() else None
    return None


def cache_dir_of(model: str, pretrained: str) -> str:
    return hub_cache_dir() if pretrained_cfg(model, pretrained).get("hf_hub") else url_cache_dir()
