"""Any torchvision classification model by name (`torchvision.models.get_model`), loaded offline
from torch's cache, with its classification head replaced generically: the last `nn.Linear` of
the model, wherever the architecture keeps it (`fc`, `classifier[-1]`, `heads.head`). The frozen
rest is the feature extractor, so a cache can stand in for it. No Ray here.

ResNet-18, the study's, keeps its own module (resnet.py) with the first/last-conv variants."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from clip_prompt_sweeps.errors import UserError
from trainables.models.weights import fixed_init, require_hub_file

NO_WEIGHTS = "none"


def classification_models() -> list[str]:
    import torchvision
    return sorted(torchvision.models.list_models(module=torchvision.models))


def weight_names(arch: str) -> list[str]:
    import torchvision
    return [w.name for w in torchvision.models.get_model_weights(arch)]


def check_model(arch: str, weights: str) -> None:
    """A torchvision classification model and one of its weights (or 'none')."""
    known = classification_models()
    if arch not in known:
        raise UserError(f"unknown torchvision classification model '{arch}'; e.g. {', '.join(known[:6])}, ... "
                        f"(torchvision.models.list_models())")
    if weights != NO_WEIGHTS and weights not in weight_names(arch):
        raise UserError(f"weights '{weights}' are not one of {arch}'s: {', '.join([*weight_names(arch), NO_WEIGHTS])}")


def _weights(arch: str, weights: str):
    import torchvision
    return torchvision.models.get_model_weights(arch)[weights]


def weights_meta(arch: str, weights: str) -> dict:
    """ImageNet top-1 and parameter count as the weights' metadata gives them (random init: the
    default weights' figures stand for the architecture)."""
    w = _weights(arch, weights if weights != NO_WEIGHTS else weight_names(arch)[0])
    metrics = w.meta.get("_metrics", {}).get("ImageNet-1K", {})
    return {"weights_top1": float(metrics.get("acc@1", float("nan"))), "weights_params": float(w.meta["num_params"])}


def weights_path(arch: str, weights: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / _weights(arch, weights).url.rsplit("/", 1)[-1]


def load_model(arch: str, weights: str, device: str | torch.device = "cpu") -> nn.Module:
    import torchvision
    check_model(arch, weights)
    if weights == NO_WEIGHTS:
        with fixed_init():
            return torchvision.models.get_model(arch, weights=None).to(device)
    require_hub_file(weights_path(arch, weights), f"{arch} {weights}")
    return torchvision.models.get_model(arch, weights=weights).to(device)


def head_name(net: nn.Module) -> str:
    """The dotted name of the model's classification head: its last nn.Linear."""
    names = [name for name, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise UserError(f"{type(net).__name__} has no nn.Linear head to replace")
    return names[-1]


def _set(net: nn.Module, dotted: str, module: nn.Module) -> None:
    parent, _, last = dotted.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, last, module)


def replace_head(net: nn.Module, n_classes: int, device: torch.device, seed: int) -> tuple[nn.Linear, nn.Module]:
    """(a new head of n_classes, bias 0 and weight N(0, 0.01) as the study's fc; the frozen model
    with nn.Identity where its head was, so it returns the head's input)."""
    name = head_name(net)
    old = net.get_submodule(name)
    torch.manual_seed(seed)
    head = nn.Linear(old.in_features, n_classes, device=device)
    nn.init.normal_(head.weight, 0.0, 0.01)
    nn.init.zeros_(head.bias)
    _set(net, name, nn.Identity())
    return head, net.requires_grad_(False).eval()


class HeadClassifier(nn.Module):
    """A frozen feature extractor (BatchNorm and dropout in eval mode) and a learned head."""

    def __init__(self, body: nn.Module, head: nn.Linear):
        super().__init__()
        self.body, self.head = [body], head     # the body is not a submodule: only the head is state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            features = self.body[0](x)
        return self.head(features.float())
