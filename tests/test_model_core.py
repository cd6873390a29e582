"""The model layer checked against values each test computes its own way: PIL itself for the
resize, open_clip's own forward with a hand-inserted prompt for the deep prompt. No Ray and no
store: the mutation run (scripts/mutation.py) drives them."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from trainables.data.resize import pil_resize
from trainables.models.clip import load_clip
from trainables.models.prompts import POSITIONS, DeepPrompt, insert_prompts

# --- resize: PIL's arithmetic, exactly where the study uses it -------------------------------


def _pil(images: torch.Tensor, size: int, mode) -> np.ndarray:
    return np.stack([np.asarray(Image.fromarray(im.numpy().transpose(1, 2, 0)).resize((size, size), mode))
                     for im in images]).transpose(0, 3, 1, 2).astype(np.float32)


@pytest.mark.parametrize("size", [224, 64])
def test_bilinear_resize_is_pils_exactly_and_bicubic_at_most_one_level_on_few_pixels(size):
    """CIFAR's 32 px up to the models' sizes. Bilinear: no pixel differs. Bicubic: PIL's
    fixed-point sums and our float32 matmuls round a few half-way values apart, by one level
    (measured: 0.009 % of pixels at 224 px, 0.04 % at 64 px over three seeds)."""
    images = torch.from_numpy(np.random.default_rng(size).integers(0, 256, (16, 3, 32, 32), dtype=np.uint8))
    bilinear = pil_resize(images, size, "bilinear").numpy()
    assert np.array_equal(bilinear, _pil(images, size, Image.BILINEAR))
    off = np.abs(pil_resize(images, size, "bicubic").numpy() - _pil(images, size, Image.BICUBIC))
    assert off.max() <= 1.0 and (off > 0).mean() < 6e-4


# --- the deep prompt against open_clip's own forward, with tokens put in before block L --------


def _reference(visual, images: torch.Tensor, prompts: torch.Tensor, layer: int, position: str) -> torch.Tensor:
    """open_clip's forward, untouched, with a hook that inserts the prompts into block `layer`'s
    input: nothing of DeepPrompt's own split (prefix/suffix, insert_prompts) is used."""
    def insert(block, args, kwargs):
        x = args[0]
        p = prompts.unsqueeze(0).expand(x.shape[0], -1, -1)
        x = {"front": lambda: torch.cat([p, x], 1), "back": lambda: torch.cat([x, p], 1),
             "after_cls": lambda: torch.cat([x[:, :1], p, x[:, 1:]], 1)}[position]()
        return (x, *args[1:]), kwargs
    assert visual.transformer.batch_first       # the hook inserts along dim 1
    handle = visual.transformer.resblocks[layer].register_forward_pre_hook(insert, with_kwargs=True)
    try:
        return visual(images)
    finally:
        handle.remove()


@pytest.fixture(scope="module")
def tiny_clip():
    torch.manual_seed(0)
    return load_clip("tiny-clip", "none")


@pytest.mark.parametrize("position", POSITIONS)
def test_deep_prompt_at_every_layer_is_the_reference_forward(tiny_clip, position):
    visual, images = tiny_clip.visual, torch.randn(3, 3, 32, 32)
    for layer in range(len(visual.transformer.resblocks)):
        torch.manual_seed(layer)
        deep = DeepPrompt(visual, layer, 3, position)
        with torch.no_grad():
            expected = _reference(visual, images, deep.prompts, layer, position)
            assert not torch.allclose(expected, visual(images), atol=1e-3)    # the prompt matters
            torch.testing.assert_close(deep(images), expected, rtol=1e-5, atol=1e-5, msg=f"layer {layer}")
            # the cached path: prefix computed once, suffix per step
            torch.testing.assert_close(deep.suffix(deep.prefix(images)), expected, rtol=1e-5, atol=1e-5)


def test_insert_prompts_keeps_the_tokens_dtype_and_names_the_positions():
    tokens = torch.zeros(2, 3, 4, dtype=torch.bfloat16)
    for position in POSITIONS:
        assert insert_prompts(tokens, torch.ones(2, 4), position).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="unknown position 'middle'; known: front, back, after_cls"):
        insert_prompts(tokens, torch.ones(2, 4), "middle")


def test_deep_prompt_without_a_projection_returns_the_pooled_token(tiny_clip):
    import copy
    visual = copy.deepcopy(tiny_clip.visual)
    visual.proj = None
    deep = DeepPrompt(visual, 1, 2, "back")
    with torch.no_grad():
        assert deep(torch.randn(2, 3, 32, 32)).shape == (2, visual.transformer.width)
    with pytest.raises(ValueError, match="unknown position 'middle'; known: front, back, after_cls"):
        DeepPrompt(visual, 1, 2, "middle")
    with pytest.raises(ValueError, match="injection layer 4 is outside 0..3"):
        DeepPrompt(visual, 4, 2, "back")


def test_resize_defaults_to_bicubic_takes_any_aspect_and_never_changes_its_input():
    images = torch.from_numpy(np.random.default_rng(7).integers(0, 256, (2, 3, 24, 40), dtype=np.uint8))
    assert np.array_equal(pil_resize(images, 64, "bilinear").numpy(), _pil(images, 64, Image.BILINEAR))
    as_float = images.float()
    before = as_float.clone()
    out = pil_resize(as_float, 64)
    assert torch.equal(as_float, before)                         # the caller's tensor, untouched
    assert torch.equal(out, pil_resize(images, 64, "bicubic"))   # bicubic by default
    square = images[..., :24, :24].float()
    same = pil_resize(square, 24)                                # nothing to resize: still a copy
    assert torch.equal(same, square)
    same.add_(1)
    assert torch.equal(square, images[..., :24, :24].float())


def test_deep_prompt_holds_n_prompts_tokens_of_the_encoders_width(tiny_clip):
    assert DeepPrompt(tiny_clip.visual, 0, 3, "front").prompts.shape == (3, tiny_clip.visual.transformer.width)
