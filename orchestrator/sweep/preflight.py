"""What a sweep needs on disk, checked in the driver before Ray starts (and fetched there where
downloads are allowed): a missing dataset or weights file is one line, not a hundred failed
trials."""
from __future__ import annotations

from orchestrator.sweep.plan import SweepPlan
from trainables.data.catalog import verify
from trainables.paths import data_dir


def _needs(plan: SweepPlan, sources: dict) -> list[dict]:
    """Each trial's config; a trial that evaluates a source model also needs what the source
    needed (its dataset, its weights), and any trial what its record says it reads, on this
    sweep's data kind."""
    configs = [plan.config(cell, None) for cell in plan.cells]
    out = list(configs)
    for config in configs:
        source = sources.get(config.get("source_run"))
        if source is not None:
            out.append({**source.params, "data": config.get("data", "real")})
        out += [{"dataset": name, "data": config.get("data", "real")} for name in plan.experiment.reads]
    return out


def check_inputs(plan: SweepPlan, sources: dict | None = None) -> None:
    configs = _needs(plan, sources or {})
    root = data_dir(plan.base.get("data_dir"))
    for name, kind in sorted({(str(c["dataset"]), c.get("data", "real")) for c in configs if "dataset" in c}):
        verify(name, root, kind)
    for model, tag in sorted(clip_backbones(configs)):
        from trainables.models.clip import fetch_clip_weights
        fetch_clip_weights(model, tag)
    if any(c.get("weights") == "IMAGENET1K_V1" for c in configs):
        from trainables.models.resnet import load_resnet18
        load_resnet18("IMAGENET1K_V1")


def clip_backbones(configs: list[dict]) -> set[tuple[str, str]]:
    """(model, tag) of each pretrained CLIP backbone the trials load."""
    from trainables.models.backbones import NO_WEIGHTS, parse_backbone
    pairs = {parse_backbone(c["backbone"]) if c.get("backbone") else (str(c["model"]), str(c["pretrained"]))
             for c in configs if c.get("backbone") or "pretrained" in c}
    return {p for p in pairs if p[1] != NO_WEIGHTS}
