"""`doctor`: what this machine has, told truthfully, without downloading or starting anything."""
from __future__ import annotations

from clip_prompt_sweeps.names import DATASETS
from clip_prompt_sweeps.store.uri import resolve_tracking_uri, tracking_answers
from orchestrator.clusters.connect import resolve_address
from trainables.data.catalog import is_present
from trainables.models import backbones
from trainables.models.clip import cached_clip_weights
from trainables.models.resnet import resnet_weights_path
from trainables.paths import data_dir, downloads_allowed


def doctor_lines(data_dir_flag: str | None = None, address: str | None = None,
                 tracking_uri: str | None = None) -> list[str]:
    import torch
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    names = ", ".join(torch.cuda.get_device_name(i) for i in range(gpus))
    root = data_dir(data_dir_flag)
    uri = resolve_tracking_uri(tracking_uri)
    ray_address = resolve_address(address)
    lines = [
        f"torch        {torch.__version__}",
        f"cuda         {'available, ' + str(gpus) + ' GPU(s): ' + names if gpus else 'not available (trials run on CPU)'}",
        f"ray address  {ray_address or 'none: a local Ray is started'}",
        f"mlflow       {uri} ({'answers' if tracking_answers(uri) else 'does NOT answer'})",
        f"data dir     {root}{'' if root.is_dir() else ' (does not exist yet)'}",
    ]
    for name in DATASETS:
        real = "present" if is_present(name, root, "real") else "missing"
        synth = "present" if is_present(name, root, "synthetic") else "written on first use"
        lines.append(f"  {name:<10} real: {real}; synthetic: {synth}")
    lines.append(f"downloads    {'allowed' if downloads_allowed() else 'disabled ($ORCHESTRATOR_NO_DOWNLOAD)'}")
    clip = cached_clip_weights()
    lines.append(f"weights      CLIP ViT-B-32 openai: {'cached at ' + clip if clip else 'missing (cache ' + backbones.hub_cache_dir() + ')'}")
    resnet = resnet_weights_path()
    lines.append(f"             ResNet-18 IMAGENET1K_V1: {'cached at ' + str(resnet) if resnet.is_file() else 'missing (cache ' + str(resnet.parent) + ')'}")
    return lines


def backbone_lines() -> list[str]:
    """Every open_clip MODEL:TAG (open_clip's list_pretrained), with whether it is a ViT (deep
    prompts need one) and whether its weights are in the cache; then the random-init models."""
    import open_clip
    lines = ["open_clip backbones (MODEL:TAG; `vit`: takes deep prompts; `cached`: weights on this machine):"]
    for model, tag in open_clip.list_pretrained():
        marks = [m for m, on in (("vit", backbones.is_vit(model)), ("cached", backbones.cached_weights(model, tag)))
                 if on]
        lines.append(f"  {model + ':' + tag:<56} {' '.join(marks)}".rstrip())
    tiny = sorted(m for m in open_clip.list_models() if m.startswith("tiny-"))
    lines.append(f"random init (tests, smoke): {', '.join(f'{m}:none' for m in tiny)}; any model also takes :none")
    return lines
