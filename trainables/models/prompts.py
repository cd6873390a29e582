"""Learned prompts for a frozen CLIP image encoder.

Visual prompts are added to the normalised image. Deep prompts are tokens of the transformer's
width inserted before block ``layer`` and carried through the later blocks.

Read-out of each deep-prompt position (one place, referenced by the docs and the report):
  front      prompts prepended: the sequence is [P1..Pn, CLS, patches]. CLIP pools token 0 after
             the last block, which is then the first *prompt* token, not CLS. This is the seed
             study's setting, kept faithfully and named so.
  back       prompts appended: [CLS, patches, P1..Pn]; token 0 is CLS.
  after_cls  VPT-style: [CLS, P1..Pn, patches]; token 0 is CLS.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

VISUAL_PROMPTS = ("padding", "fixed_patch", "random_patch")
POSITIONS = ("front", "back", "after_cls")


class PaddingPrompt(nn.Module):
    """A learned frame of width `pad` around an image of side `size` (p=30 at 224: 69,840)."""

    def __init__(self, size: int, pad: int):
        super().__init__()
        if not 0 < 2 * pad < size:
            raise ValueError(f"padding {pad} does not fit an image of {size} px (need 0 < 2*pad < size)")
        self.size, self.pad = size, pad
        self.top = nn.Parameter(torch.randn(1, 3, pad, size))
        self.bottom = nn.Parameter(torch.randn(1, 3, pad, size))
        self.left = nn.Parameter(torch.randn(1, 3, size - 2 * pad, pad))
        self.right = nn.Parameter(torch.randn(1, 3, size - 2 * pad, pad))

    def image(self) -> torch.Tensor:
        """(1, 3, size, size): the prompt as an image, zero in the middle."""
        base = torch.zeros(1, 3, self.size - 2 * self.pad, self.size - 2 * self.pad, device=self.top.device)
        middle = torch.cat([self.left, base, self.right], dim=3)
        return torch.cat([self.top, middle, self.bottom], dim=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.image().to(x.dtype)


class PatchPrompt(nn.Module):
    """A learned s x s patch, at the top-left (fixed) or at a random place per batch."""

    def __init__(self, size: int, patch: int, random_position: bool = False):
        super().__init__()
        if not 0 < patch <= size:
            raise ValueError(f"patch {patch} does not fit an image of {size} px")
        self.size, self.patch, self.random_position = size, patch, random_position
        self.patch_params = nn.Parameter(torch.randn(1, 3, patch, patch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top = left = 0
        if self.random_position:
            top, left = torch.randint(0, self.size - self.patch + 1, (2,)).tolist()
        pad = (left, self.size - self.patch - left, top, self.size - self.patch - top)
        return x + nn.functional.pad(self.patch_params, pad).to(x.dtype)


def make_visual_prompt(kind: str, image_size: int, size: int) -> nn.Module:
    if kind == "padding":
        return PaddingPrompt(image_size, size)
    if kind in ("fixed_patch", "random_patch"):
        return PatchPrompt(image_size, size, random_position=kind == "random_patch")
    raise ValueError(f"unknown visual prompt '{kind}'; known: {', '.join(VISUAL_PROMPTS)}")


def insert_prompts(tokens: torch.Tensor, prompts: torch.Tensor, position: str) -> torch.Tensor:
    """tokens (B, L, D), prompts (n, D) -> (B, L + n, D) with the prompts at `position`."""
    p = prompts.to(tokens.dtype).unsqueeze(0).expand(tokens.shape[0], -1, -1)
    if position == "front":
        return torch.cat([p, tokens], dim=1)
    if position == "back":
        return torch.cat([tokens, p], dim=1)
    if position == "after_cls":
        return torch.cat([tokens[:, :1], p, tokens[:, 1:]], dim=1)
    raise ValueError(f"unknown position '{position}'; known: {', '.join(POSITIONS)}")


class DeepPrompt(nn.Module):
    """n learned tokens injected before block `layer` of an open_clip VisionTransformer.

    Splits the frozen encoder into a prefix (embedding and blocks before `layer`) and a suffix
    (the prompt, blocks from `layer` on, pooling and projection), so a cache can hold the prefix.
    """

    def __init__(self, visual: nn.Module, layer: int, n_prompts: int, position: str):
        super().__init__()
        depth = len(visual.transformer.resblocks)
        if not 0 <= layer < depth:
            raise ValueError(f"injection layer {layer} is outside 0..{depth - 1} for this model")
        if position not in POSITIONS:
            raise ValueError(f"unknown position '{position}'; known: {', '.join(POSITIONS)}")
        self.visual = [visual]          # a list, so the frozen encoder is not a submodule here
        self.layer, self.position = layer, position
        self.prompts = nn.Parameter(torch.randn(n_prompts, visual.transformer.width))

    def prefix(self, images: torch.Tensor) -> torch.Tensor:
        visual = self.visual[0]
        x = visual._embeds(images)
        for block in visual.transformer.resblocks[:self.layer]:
            x = block(x)
        return x

    def suffix(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.frozen_suffix(insert_prompts(tokens, self.prompts, self.position))

    def frozen_suffix(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen blocks from `layer` on, pooling and projection, over tokens that hold prompts."""
        visual = self.visual[0]
        for block in visual.transformer.resblocks[self.layer:]:
            x = block(x)
        pooled, _ = visual._pool(x)     # token 0: see the module docstring
        return pooled @ visual.proj if visual.proj is not None else pooled

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.suffix(self.prefix(images))


def fused_suffix(prompts: Sequence[DeepPrompt], tokens: Sequence[torch.Tensor]) -> torch.Tensor:
    """The suffix of K deep prompts of one shape (one cell's learning rates), each over its own
    tokens (B, L, D), in one pass of the frozen blocks over the K x B rows: (K * B, D'). A row
    meets only its own member's prompt, so each member's features are what its suffix alone gives."""
    first = prompts[0]
    if any((p.layer, p.position, p.prompts.shape) != (first.layer, first.position, first.prompts.shape)
           for p in prompts):
        raise ValueError("fused deep prompts must share their layer, position and number of tokens")
    return first.frozen_suffix(torch.cat([insert_prompts(t, p.prompts, p.position) for p, t in zip(prompts, tokens)]))
