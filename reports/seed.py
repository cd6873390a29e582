"""The seed study's numbers (reports/seed_results.json, copied from the study's reference)."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def seed_results() -> dict:
    return json.loads((Path(__file__).parent / "seed_results.json").read_text())


def seed_deep(dataset: str, layer: int, n_prompts: int, position: str) -> float | None:
    table = seed_results()["deep_prompt_clip_vit_b32"].get(dataset, {})
    return table.get(str(layer), {}).get(str(n_prompts), {}).get(position)


def seed_layers() -> list[int]:
    return sorted(int(k) for k in seed_results()["deep_prompt_clip_vit_b32"]["cifar10"])


def seed_visual(dataset: str, prompt: str) -> float | None:
    key = {"padding": "padding_30", "fixed_patch": "fixed_patch_1"}.get(prompt)
    return seed_results()["visual_prompt_clip_vit_b32"].get(dataset, {}).get(key)


def seed_zeroshot(dataset: str) -> float | None:
    return seed_results()["zeroshot_clip_vit_b32"].get(dataset, {}).get("test")


def seed_best_deep(dataset: str) -> float | None:
    table = seed_results()["deep_prompt_clip_vit_b32"].get(dataset, {})
    values = [v for by_n in table.values() for by_pos in by_n.values() for v in by_pos.values()]
    return max(values) if values else None
