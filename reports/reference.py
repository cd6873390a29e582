"""The reference study's numbers (reports/reference_results.json, copied from the study's own
report in shared/reference/), which every report sets beside ours in its 'seed' columns."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def reference_results() -> dict:
    return json.loads((Path(__file__).parent / "reference_results.json").read_text())


def reference_deep(dataset: str, layer: int, n_prompts: int, position: str) -> float | None:
    table = reference_results()["deep_prompt_clip_vit_b32"].get(dataset, {})
    return table.get(str(layer), {}).get(str(n_prompts), {}).get(position)


def reference_layers() -> list[int]:
    return sorted(int(k) for k in reference_results()["deep_prompt_clip_vit_b32"]["cifar10"])


def reference_visual(dataset: str, prompt: str) -> float | None:
    key = {"padding": "padding_30", "fixed_patch": "fixed_patch_1"}.get(prompt)
    return reference_results()["visual_prompt_clip_vit_b32"].get(dataset, {}).get(key)


def reference_best_visual(dataset: str) -> float | None:
    values = [v for v in (reference_visual(dataset, "padding"), reference_visual(dataset, "fixed_patch"))
              if v is not None]
    return max(values) if values else None


def reference_zeroshot(dataset: str) -> float | None:
    return reference_results()["zeroshot_clip_vit_b32"].get(dataset, {}).get("test")


def reference_best_deep(dataset: str) -> float | None:
    table = reference_results()["deep_prompt_clip_vit_b32"].get(dataset, {})
    values = [v for by_n in table.values() for by_pos in by_n.values() for v in by_pos.values()]
    return max(values) if values else None


def reference_open_clip(backbone: str, dataset: str, template_set: str) -> float | None:
    """open_clip's published zero-shot top-1, where the backbone, tag and template set match it."""
    if template_set != "clip":
        return None
    return reference_results()["published_anchors"]["open_clip_zeroshot_clip_templates"].get(backbone, {}).get(dataset)


def seed_backbone(backbone: str) -> bool:
    """Whether the seed's numbers stand for this backbone: its own ViT-B/32, or a tiny model
    standing in for it at smoke size."""
    return backbone.split(":", 1)[0] in ("ViT-B-32", "tiny-clip")
