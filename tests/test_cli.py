from pathlib import Path

import pytest
import torch

from orchestrator.commands.cli import COMMANDS, main
from output import command_err

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_on_every_command(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(([command] if command else []) + ["--help"])
    assert exit_.value.code == 0 and "usage:" in capsys.readouterr().out


def test_list_shows_registries(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "deep " in out and "visual " in out and "deep_prompt" in out and "visual_prompt" in out


def test_doctor_tells_the_truth_on_a_bare_machine(tmp_path, capsys, monkeypatch):
    """Empty caches and an empty data dir, whatever this machine has cached: the GPU line says
    what torch sees here, so the test holds on a GPU machine too."""
    from huggingface_hub import constants
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "torch"))
    assert main(["doctor", "--data-dir", str(tmp_path / "nothing"),
                 "--tracking-uri", f"sqlite:///{tmp_path}/m.db"]) == 0
    out = capsys.readouterr().out
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert "torch" in out and (f"available, {gpus} GPU(s)" if gpus else "not available (trials run on CPU)") in out
    assert "a local Ray is started" in out and f"sqlite:///{tmp_path}/m.db (answers)" in out
    assert "cifar10    real: missing" in out and "cifar100   real: missing" in out
    assert f"CLIP ViT-B-32 openai: missing (cache {tmp_path / 'hf'})" in out
    assert f"ResNet-18 IMAGENET1K_V1: missing (cache {tmp_path / 'torch' / 'checkpoints'})" in out


# Inputs outside the bad-input table of docs/troubleshooting.md, which tests/test_bad_input.py walks row by row.
BAD = [
    (["sweep", "finetune", "--set", "augment=mixup"], "augment 'mixup' unknown; known: none, hflip, crop"),
    pytest.param(["bench", "--device", "cuda", "--only", "pipeline"], "torch sees no CUDA GPU on this machine",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")),
]


@pytest.mark.parametrize("argv,message", BAD)
def test_bad_input_gets_one_line_and_exit_2(argv, message, tmp_path, capsys):
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    err = command_err(capsys)
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "reports_out").exists() and not (tmp_path / "none.db").exists()


def test_report_of_a_sweep_not_in_the_store_leaves_no_output(tmp_path, capsys):
    from mlflow.tracking import MlflowClient
    uri = f"sqlite:///{tmp_path}/m.db"
    MlflowClient(uri).create_experiment("other")    # a real store, without any 'deep' sweep
    assert main(["report", "deep", "--tracking-uri", uri, "--out", str(tmp_path / "out")]) == 2
    assert "run `python -m orchestrator sweep deep` first" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_profile_comes_from_the_flag_else_the_environment_else_smoke():
    from orchestrator.sweep.plan import choose_profile
    assert choose_profile("full", {"ORCHESTRATOR_PROFILE": "smoke"}) == ("full", "from --profile")
    assert choose_profile(None, {"ORCHESTRATOR_PROFILE": " full "}) == ("full", "from $ORCHESTRATOR_PROFILE")
    name, why = choose_profile(None, {"ORCHESTRATOR_PROFILE": ""})
    assert name == "smoke" and why.startswith("the default")


def test_sweep_honours_orchestrator_profile_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ORCHESTRATOR_PROFILE", "full")
    # the full profile reads real CIFAR, which this machine lacks: the run stops at the preflight,
    # after the header says which profile was chosen and why
    code = main(["sweep", "zeroshot", "--data-dir", str(tmp_path / "data"), "--tracking-uri", f"sqlite:///{tmp_path}/m.db"])
    out, err = capsys.readouterr()
    assert code == 2 and "sweep zeroshot (full): 2 cells x 1 trial" in out
    assert "profile full: from $ORCHESTRATOR_PROFILE" in out and "cifar10" in err
    monkeypatch.setenv("ORCHESTRATOR_PROFILE", "huge")
    assert main(["sweep", "zeroshot"]) == 2
    err = command_err(capsys)
    assert "$ORCHESTRATOR_PROFILE='huge' is not a profile of sweep 'zeroshot'; known: full, smoke" in err
    assert err.count("\n") == 1 and not any(tmp_path.glob("*.db"))      # one line; nothing written


def _launcher_files() -> list[str]:
    from orchestrator.clusters.kinds import discovered
    return [kind.shipped for kind in discovered() if kind.launches_through_node_scripts]


@pytest.mark.parametrize("cluster_file", _launcher_files())
def test_cluster_files_run_the_study_on_the_head(cluster_file):
    import yaml
    config = yaml.safe_load((ROOT / cluster_file).read_text())
    # the head's server among the start commands, which `ray up` runs again on a rebooted head
    assert "clusters/node/head.sh" in config["head_start_ray_commands"][0]
    assert "start.sh head" in config["head_start_ray_commands"][-1]
    assert all("clusters/node/setup.sh" in c for c in config["setup_commands"])
    assert "export ORCHESTRATOR_PROFILE=full" in (ROOT / "clusters/node/head.sh").read_text()
    assert "ORCHESTRATOR_PROFILE" not in (ROOT / "clusters/node/setup.sh").read_text()   # workers take no profile
