import pytest
import torch
import torch.nn.functional as F

from clip_prompt_sweeps.errors import UserError
from trainables.models.clip import class_text_features, clip_logits, load_clip
from trainables.models.resnet import load_resnet18


@pytest.fixture(scope="module")
def tiny():
    return load_clip("tiny-clip", "none")


def test_tiny_clip_is_an_open_clip_model_of_the_same_class(tiny):
    import open_clip
    assert "tiny-clip" in open_clip.list_models()
    assert type(tiny.model).__name__ == "CLIP" and tiny.depth == 4 and tiny.preprocess.size == 32
    out = tiny.model.encode_image(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 32) and torch.isfinite(out).all()
    assert not any(p.requires_grad for p in tiny.model.parameters())


def test_zero_shot_logits_are_logit_scale_times_cosine(tiny):
    text = class_text_features(tiny, ("cat", "dog", "ship"), "This is a photo of a {}")
    image = tiny.model.encode_image(torch.randn(4, 3, 32, 32))
    expected = tiny.model.logit_scale.exp() * F.cosine_similarity(image[:, None], text[None], dim=-1)
    assert torch.allclose(clip_logits(tiny, image, text), expected, atol=1e-5)


def test_tiny_resnet18_forward():
    model = load_resnet18("none")
    assert type(model).__name__ == "ResNet"
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 1000)


def test_missing_weights_offline_give_one_clear_line():
    with pytest.raises(UserError) as err:
        load_clip("ViT-B-32", "openai")
    msg = str(err.value)
    assert "ViT-B-32" in msg and "openai" in msg and "orchestrator fetch --weights" in msg and "\n" not in msg
    with pytest.raises(UserError, match="ResNet-18 IMAGENET1K_V1.*orchestrator fetch --weights"):
        load_resnet18("IMAGENET1K_V1")


def test_unknown_model_names():
    with pytest.raises(UserError, match="unknown open_clip model 'ViT-Nope'.*list --backbones"):
        load_clip("ViT-Nope", "none")
    with pytest.raises(UserError, match="pretrained tag 'imagenet' is not one of ViT-B-32's: openai, .*none"):
        load_clip("ViT-B-32", "imagenet")
    with pytest.raises(UserError, match="known: IMAGENET1K_V1, none"):
        load_resnet18("IMAGENET1K_V2")


def test_cached_resnet_weights_load_offline(tmp_path, monkeypatch):
    """A file in torch's hub cache is used as is: no network is touched (downloads are off)."""
    from torchvision.models import resnet18

    from trainables.models.resnet import resnet_weights_path
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))
    reference = resnet18(weights=None)
    path = resnet_weights_path()
    assert path.parent == tmp_path / "checkpoints"
    path.parent.mkdir()
    torch.save(reference.state_dict(), path)
    loaded = load_resnet18("IMAGENET1K_V1")
    assert torch.equal(loaded.fc.weight, reference.fc.weight)


def test_cached_clip_weights_are_found_in_the_hugging_face_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from trainables.models.clip import cached_clip_weights
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    assert cached_clip_weights() is None
    repo = tmp_path / "models--timm--vit_base_patch32_clip_224.openai"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "open_clip_model.safetensors").write_bytes(b"weights")
    assert cached_clip_weights() == str(snapshot / "open_clip_model.safetensors")
