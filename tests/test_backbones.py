"""Backbones beyond ViT-B/32 (any open_clip MODEL:TAG; two tiny ones registered through open_clip's
config mechanism: a ViT of another depth and a ModifiedResNet), deep layers by name, template
sets, and torchvision models for `finetune`."""
import math

import pytest
import torch
import torch.nn.functional as F
from mlflow.tracking import MlflowClient

from clip_prompt_sweeps.errors import UserError
from orchestrator.commands.cli import main
from orchestrator.sweep.plan import make_plan
from trainables.experiments.finetune import FINETUNE, FinetuneConfig
from trainables.experiments.linear_probe import LINEAR_PROBE
from trainables.experiments.prompt_training import DEEP_PROMPT, VISUAL_PROMPT, DeepPromptConfig
from trainables.experiments.zeroshot import ZEROSHOT
from trainables.models import backbones
from trainables.models.clip import backbone_preprocess, class_text_features, load_clip
from trainables.models.templates import CLIP_CIFAR_TEMPLATES, fill, template_set
from trainables.training.config import from_dict
from output import command_err


def _run(trainable, config: dict) -> list[dict]:
    reports = []
    trainable.fn(config, report=lambda metrics, ckpt: reports.append(metrics))
    return reports


@pytest.mark.parametrize("layer, index", [("first", 0), ("middle", 3), ("last", 5), ("4", 4)])
def test_a_vit_of_another_depth_takes_deep_prompts_at_named_layers(tiny_prompt_config, layer, index):
    config = {**tiny_prompt_config, "backbone": "tiny-clip-6:none", "layer": layer, "n_prompts": 2}
    reports = _run(DEEP_PROMPT, config)
    assert reports[-1]["layer_index"] == index and 0 <= reports[-1]["test_acc"] <= 1


def test_named_layers_are_the_seeds_on_vit_b32_and_scale_with_depth():
    assert [backbones.resolve_layer(n, 12) for n in ("first", "middle", "last")] == [0, 6, 11]
    assert [backbones.resolve_layer(n, 4) for n in ("first", "middle", "last")] == [0, 2, 3]
    with pytest.raises(UserError, match="injection layer 6 is beyond tiny-clip's depth; use 0..3 or first"):
        from_dict(DeepPromptConfig, {"model": "tiny-clip", "pretrained": "none", "layer": "6"})
    with pytest.raises(UserError, match="layer 'top' is not first, middle, last or a block number"):
        backbones.resolve_layer("top", 12)


def test_a_non_vit_is_refused_for_deep_prompts_in_one_line_naming_those_that_can():
    with pytest.raises(UserError) as err:
        make_plan("deep", "smoke", ["backbone=tiny-rn:none"])
    msg = str(err.value)
    assert msg.startswith("backbone tiny-rn is not a ViT and cannot take deep prompts; use one that can:")
    assert "ViT-B-32" in msg and "\n" not in msg


@pytest.mark.parametrize("backbone", ["tiny-clip-6:none", "tiny-rn:none"])
def test_zeroshot_visual_and_linear_run_on_other_backbones(tiny_prompt_config, backbone):
    base = {**tiny_prompt_config, "backbone": backbone}
    zs = _run(ZEROSHOT, {k: v for k, v in base.items() if k not in ("epochs", "warmup_steps")})
    visual = _run(VISUAL_PROMPT, {**base, "prompt": "padding", "prompt_size": 4})
    linear = _run(LINEAR_PROBE, {k: v for k, v in base.items() if k != "warmup_steps"})
    for metrics in (zs[-1], visual[-1], linear[-1]):
        assert 0 <= metrics["test_acc"] <= 1


def test_a_backbone_brings_its_own_preprocessing():
    class Visual:           # what open_clip's model gives before the tag's config is applied
        preprocess_cfg = {"mean": (0.1, 0.1, 0.1), "std": (0.2, 0.2, 0.2), "interpolation": "bicubic"}
    pre = backbone_preprocess("ViT-L-14", "laion2b_s32b_b82k", Visual())
    assert pre == backbones_pre(224, "bicubic", ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)))
    pre = backbone_preprocess("ViT-L-14-CLIPA", "datacomp1b", Visual())
    assert pre.interpolation == "bilinear" and pre.stats == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert backbone_preprocess("ViT-B-32", "openai", Visual()).stats == "clip"      # the study's, by name


def backbones_pre(size, interpolation, stats):
    from trainables.data.pipeline import Preprocess
    return Preprocess(size, interpolation, stats)


def test_clip_template_set_is_the_mean_of_normalised_features_normalised_again():
    clip = load_clip("tiny-clip", "none")
    classes = ("cat", "aquarium fish")
    ours = class_text_features(clip, classes, CLIP_CIFAR_TEMPLATES)
    per_template = []
    for template in CLIP_CIFAR_TEMPLATES:      # directly, one template at a time
        tokens = clip.tokenizer([fill(template, c) for c in classes])
        per_template.append(F.normalize(clip.model.encode_text(tokens).float(), dim=-1))
    expected = torch.stack(per_template).mean(0)
    expected = expected / expected.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(ours, expected)
    assert len(CLIP_CIFAR_TEMPLATES) == 18 and len(set(CLIP_CIFAR_TEMPLATES)) == 18
    single = class_text_features(clip, classes, "This is a photo of a {}")
    assert not torch.allclose(single, ours)


def test_template_files_are_read_and_a_bad_one_is_one_line(tmp_path):
    good = tmp_path / "t.txt"
    good.write_text("a photo of a {}.\n\n  art of the {}  \n")
    assert template_set(f"file:{good}", "x {}") == ("a photo of a {}.", "art of the {}")
    bad = tmp_path / "bad.txt"
    bad.write_text("a photo of a {}.\nno slot here\n")
    cases = {f"file:{bad}": "line 2: template 'no slot here' has no '{}'",
             f"file:{tmp_path / 'missing.txt'}": "cannot be read (No such file or directory)",
             "file:" + str(tmp_path / "empty.txt"): "holds no template",
             "ensemble": "template_set 'ensemble' unknown; known: single, clip, file:PATH"}
    (tmp_path / "empty.txt").write_text("\n \n")
    for name, expected in cases.items():
        with pytest.raises(UserError) as err:
            template_set(name, "x {}")
        assert expected in str(err.value) and "\n" not in str(err.value)


def test_list_backbones_marks_vits_and_cached_weights(tmp_path, monkeypatch, capsys):
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--laion--CLIP-ViT-B-16-laion2B-s34B-b88K"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc")
    (repo / "snapshots" / "abc").mkdir(parents=True)
    (repo / "snapshots" / "abc" / "open_clip_model.safetensors").write_bytes(b"w")
    assert main(["list", "--backbones"]) == 0
    lines = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()[1:-1]}
    assert lines["ViT-B-16:laion2b_s34b_b88k"] == ["vit", "cached"]
    assert lines["ViT-B-32:openai"] == ["vit"] and lines["RN50:openai"] == []


def test_fetching_a_backbone_offline_names_model_tag_and_cache(capsys):
    assert main(["fetch", "--datasets", "--weights", "ViT-B-16:laion2b_s34b_b88k"]) == 2
    err = command_err(capsys)
    assert "ViT-B-16 'laion2b_s34b_b88k'" in err and "huggingface" in err and "fetch --weights ViT-B-16:laion2b_s34b_b88k" in err
    assert err.count("\n") == 1
    assert main(["fetch", "--datasets", "--weights", "ViT-B-16:nope"]) == 2
    assert "pretrained tag 'nope' is not one of ViT-B-16's" in capsys.readouterr().err


def test_finetune_takes_any_torchvision_model_with_a_generic_head(tiny_prompt_config):
    config = {**{k: v for k, v in tiny_prompt_config.items() if k not in ("model", "pretrained", "warmup_steps")},
              "dataset": "cifar10", "arch": "mobilenet_v3_small", "weights": "none", "image_size": 32, "epochs": 1}
    reports = _run(FINETUNE, config)
    import torchvision
    meta = torchvision.models.MobileNet_V3_Small_Weights.IMAGENET1K_V1.meta
    assert reports[-1]["weights_top1"] == meta["_metrics"]["ImageNet-1K"]["acc@1"]
    assert reports[-1]["weights_params"] == meta["num_params"]
    assert 0 <= reports[-1]["test_acc"] <= 1 and not math.isnan(reports[-1]["train_loss"])
    with pytest.raises(UserError, match="arch mobilenet_v3_small: only the head is learned"):
        from_dict(FinetuneConfig, {**config, "variant": "fc_last_conv"})
    with pytest.raises(UserError, match="unknown torchvision classification model 'resnet9000'"):
        from_dict(FinetuneConfig, {**config, "arch": "resnet9000"})


def test_open_clips_published_numbers_stand_beside_a_matching_backbone_and_template_set():
    from reports.reference import reference_open_clip
    assert reference_open_clip("ViT-B-32:datacomp_xl_s13b_b90k", "cifar100", "clip") == 80.31
    assert reference_open_clip("ViT-B-32:laion2b_s34b_b79k", "cifar10", "clip") == 93.58
    assert reference_open_clip("ViT-B-32:openai", "cifar100", "single") is None     # other templates
    assert reference_open_clip("ViT-B-16:openai", "cifar100", "clip") is None       # not copied


def test_grid_axes_from_the_command_line_are_typed_and_do_not_clash_with_set():
    plan = make_plan("deep", "smoke", ["dataset=cifar10"], grids=["n_prompts=2,5", "backbone=tiny-clip-6:none"])
    assert sorted({(c["n_prompts"], c["backbone"]) for c in plan.cells}) == [(2, "tiny-clip-6:none"), (5, "tiny-clip-6:none")]
    assert len(plan.cells) == 2 * 3 * 2         # prompts x layers x positions
    for bad, message in ((["n_prompts=two"], "'n_prompts' must be int"), (["lr=1,2"], "--grid lr"),
                         (["n_prompts"], "is not KEY=V1,V2")):
        with pytest.raises(UserError, match=message):
            make_plan("deep", "smoke", grids=bad)
    with pytest.raises(UserError, match="--set and --grid both name n_prompts"):
        make_plan("deep", "smoke", ["n_prompts=1"], grids=["n_prompts=2,3"])


def test_a_grid_of_backbones_sweeps_and_report_all_has_a_row_each_and_the_parameters_figure(
        ray_session, data_root, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    common = ["--tracking-uri", uri, "--gpus-per-trial", "0", "--data-dir", str(data_root)]
    grid = ["--grid", "backbone=tiny-clip:none,tiny-clip-6:none", "--set", "dataset=cifar10"]
    quick = ["--samples", "1", "--epochs", "1"]
    for sweep, extra in (("zeroshot", ["--set", "template_set=clip"]), ("visual", quick), ("linear", quick),
                         ("deep", [*quick, "--set", "n_prompts=1", "--set", "position=front", "--set", "layer=last"])):
        assert main(["sweep", sweep, *grid, *extra, *common, "--storage-path", str(tmp_path / f"ray-{sweep}")]) == 0
    out = tmp_path / "out"
    assert main(["report", "all", "--tracking-uri", uri, "--out", str(out)]) == 0
    md = (out / "all" / "report.md").read_text()
    glance = md[md.index("## At a glance, per backbone"):]
    for backbone in ("tiny-clip:none", "tiny-clip-6:none"):
        row = next(line for line in glance.splitlines() if line.startswith(f"| {backbone} | cifar10 |"))
        assert row.count("—") == 0, row         # zero-shot, visual, deep and linear all present
        assert f"### cifar10, {backbone}" in md     # Table 3, one per dataset x backbone
    assert (out / "all" / "glance_params_cifar10.png").is_file()
    for backbone in ("tiny-clip:none", "tiny-clip-6:none"):     # Table 1: a row per backbone and template set
        assert f"| cifar10 | {backbone} | clip |" in md
    client = MlflowClient(uri)
    zs = client.search_runs([client.get_experiment_by_name("zeroshot").experiment_id], "tags.role = 'trial'")
    assert {(r.data.params["backbone"], r.data.params["template_set"]) for r in zs} == {
        ("tiny-clip:none", "clip"), ("tiny-clip-6:none", "clip")}
    runs = MlflowClient(uri).search_runs([MlflowClient(uri).get_experiment_by_name("deep").experiment_id],
                                         "tags.role = 'trial'")
    params = {(r.data.params["backbone"], r.data.params["layer"]): r.data.metrics["trainable_params"] for r in runs}
    assert params == {("tiny-clip-6:none", "last"): 48, ("tiny-clip:none", "last"): 64}     # 1 prompt x width
