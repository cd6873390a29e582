"""What a sweep needs on disk, checked in the driver before Ray starts (and fetched there where
downloads are allowed): a missing dataset or weights file is one line, not a hundred failed
trials."""
from __future__ import annotations

from orchestrator.plan import SweepPlan
from trainables.cifar import ensure_archive
from trainables.paths import data_dir


def check_inputs(plan: SweepPlan) -> None:
    configs = [plan.config(cell, None) for cell in plan.cells]
    root = data_dir(plan.base.get("data_dir"))
    for name in sorted({c["dataset"] for c in configs if "dataset" in c and c.get("data", "real") == "real"}):
        ensure_archive(name, root)
    if any(c.get("pretrained") == "openai" for c in configs):
        from trainables.models import fetch_clip_weights
        fetch_clip_weights()
    if any(c.get("weights") == "IMAGENET1K_V1" for c in configs):
        from trainables.models import load_resnet18
        load_resnet18("IMAGENET1K_V1")
