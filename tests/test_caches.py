"""Every cache is exact: the cached path gives the uncached path's logits, gradients, batches and
metrics (within float32 rounding on CPU)."""
import pytest
import torch

from trainables.data.pipeline import Augment, DeviceData, Preprocess, preprocess, random_crop
from trainables.data.sources.cifar import load_cifar
from trainables.experiments.finetune import FinetuneConfig, run_finetune
from trainables.experiments.prompt_training import DeepPromptConfig, run_deep
from trainables.models.clip import PromptedClip, class_text_features, load_clip
from trainables.models.prompts import POSITIONS, DeepPrompt
from trainables.models.resnet import load_resnet18
from trainables.training.config import from_dict
from trainables.training.features import FeatureData


@pytest.fixture(scope="module")
def clip():
    torch.manual_seed(0)
    return load_clip("tiny-clip", "none")


@pytest.fixture(scope="module")
def cifar10(data_root):
    return load_cifar("cifar10", data_root, "synthetic")


@pytest.mark.parametrize("layer", [0, 2, 3])
@pytest.mark.parametrize("position", POSITIONS)
def test_prefix_cache_gives_the_same_logits_and_prompt_gradients(clip, cifar10, layer, position):
    text = class_text_features(clip, cifar10.classes, "This is a photo of a {}")
    x = preprocess(cifar10.train.images[:16], clip.preprocess)
    torch.manual_seed(1)
    prompt = DeepPrompt(clip.visual, layer, 4, position)
    uncached = PromptedClip(clip, text, deep_prompt=prompt)(x)
    (g_uncached,) = torch.autograd.grad(uncached.logsumexp(-1).sum(), prompt.prompts)
    with torch.no_grad():
        tokens = prompt.prefix(x)
    cached = PromptedClip(clip, text, deep_prompt=prompt, from_prefix=True)(tokens)
    (g_cached,) = torch.autograd.grad(cached.logsumexp(-1).sum(), prompt.prompts)
    torch.testing.assert_close(cached, uncached, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g_cached, g_uncached, rtol=1e-4, atol=1e-6)


def test_feature_cache_serves_the_pipelines_batches_flips_included(cifar10):
    torch.manual_seed(0)
    net = load_resnet18("none").eval()
    encode = lambda x: net(x)  # noqa: E731 - any frozen function of the image
    pre, aug = Preprocess(32, "bilinear", "cifar100"), Augment(hflip=True)
    images = DeviceData(cifar10.test, torch.device("cpu"), pre, seed=7)
    cache = FeatureData.from_split(DeviceData(cifar10.test, torch.device("cpu"), pre, seed=7), encode, 50,
                                   hflip=True)
    for epoch in range(2):
        for (x, y), (f, fy) in zip(images.batches(32, shuffle=True, aug=aug),
                                   cache.batches(32, shuffle=True, aug=aug), strict=True):
            with torch.no_grad():
                torch.testing.assert_close(f, encode(x), rtol=1e-4, atol=1e-5)
            assert torch.equal(y, fy)
    # the two views differ, so serving the wrong one for a flipped sample would fail above
    assert cache.flipped is not None and not torch.allclose(cache.flipped, cache.features)


def test_feature_cache_refuses_what_it_cannot_serve_exactly(cifar10):
    data = DeviceData(cifar10.test, torch.device("cpu"), Preprocess(32, "bilinear", "cifar100"))
    cache = FeatureData.from_split(data, lambda x: x.mean((2, 3)), 64)
    for aug in (Augment(crop_padding=4), Augment(noise_std=0.1), Augment(hflip=True)):
        with pytest.raises(ValueError):
            next(cache.batches(8, aug=aug))


def test_random_crop_is_a_window_of_the_zero_padded_image():
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    out = random_crop(images, 4, torch.Generator().manual_seed(3))
    top, left = torch.randint(0, 9, (2, 64), generator=torch.Generator().manual_seed(3))
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    for i in range(64):
        assert torch.equal(out[i], padded[i, :, top[i]:top[i] + 32, left[i]:left[i] + 32])
    assert len({(t, l) for t, l in zip(top.tolist(), left.tolist())}) > 10


def _trial(run, cls, config) -> list[dict]:
    reports = []
    run(from_dict(cls, config), lambda metrics, ckpt: reports.append(metrics))
    return reports


def _same_numbers(a: list[dict], b: list[dict], keys: tuple[str, ...]) -> None:
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        for key in keys:
            assert ra[key] == pytest.approx(rb[key], rel=1e-4, abs=1e-6), key


def test_deep_prompt_trial_is_the_same_with_and_without_the_prefix_cache(tiny_prompt_config):
    config = {**tiny_prompt_config, "epochs": 2, "layer": 2, "n_prompts": 4, "position": "back", "lr": 10.0}
    cached = _trial(run_deep, DeepPromptConfig, {**config, "prefix_cache": True})
    plain = _trial(run_deep, DeepPromptConfig, {**config, "prefix_cache": False})
    _same_numbers(cached, plain, ("train_loss", "train_acc", "val_acc", "test_acc"))
    assert cached[0]["cache_mb"] > 0 and "cache_mb" not in plain[0]


def test_fc_only_finetune_is_the_same_with_and_without_the_feature_cache(tiny_prompt_config):
    config = dict(dataset="cifar10", data="synthetic", data_dir=tiny_prompt_config["data_dir"],
                  weights="none", image_size=32, epochs=2, batch_size=64, augment="hflip", device="cpu",
                  lr=1e-2)
    cached = _trial(run_finetune, FinetuneConfig, {**config, "feature_cache": True})
    plain = _trial(run_finetune, FinetuneConfig, {**config, "feature_cache": False})
    _same_numbers(cached, plain, ("train_loss", "train_acc", "val_acc", "test_acc"))
    assert cached[0]["cache_mb"] > 0 and plain[0]["cache_mb"] == 0


@pytest.mark.parametrize("layer", [0, 3])
def test_prefix_cache_matches_under_bf16_autocast(clip, cifar10, layer):
    """As on CUDA: the cache holds the prefix in bf16, the dtype the blocks carry under autocast,
    so the cached path computes what the uncached one does (CPU autocast stands in for CUDA's)."""
    text = class_text_features(clip, cifar10.classes, "This is a photo of a {}")
    x = preprocess(cifar10.train.images[:16], clip.preprocess)
    torch.manual_seed(1)
    prompt = DeepPrompt(clip.visual, layer, 4, "front")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        uncached = PromptedClip(clip, text, deep_prompt=prompt)(x)
        with torch.no_grad():
            tokens = prompt.prefix(x)
        cached = PromptedClip(clip, text, deep_prompt=prompt, from_prefix=True)(tokens)
    assert tokens.dtype == torch.bfloat16
    torch.testing.assert_close(cached, uncached, rtol=1e-3, atol=1e-3)
