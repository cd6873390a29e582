import pytest

from orchestrator.cli import COMMANDS, main


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
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert main(["doctor", "--data-dir", str(tmp_path / "nothing"),
                 "--tracking-uri", f"sqlite:///{tmp_path}/m.db"]) == 0
    out = capsys.readouterr().out
    assert "torch" in out and "not available (trials run on CPU)" in out
    assert "a local Ray is started" in out and f"sqlite:///{tmp_path}/m.db (answers)" in out
    assert "cifar10    real: missing" in out and "cifar100   real: missing" in out
    assert "CLIP ViT-B-32 openai: missing" in out and "ResNet-18 IMAGENET1K_V1: missing" in out


BAD = [
    (["sweep", "nope"], "unknown sweep 'nope'; known: deep, finetune, linear, visual, zeroshot"),
    (["sweep", "deep", "--profile", "huge"], "unknown profile 'huge' for sweep 'deep'; known: full, smoke"),
    (["sweep", "deep", "--set", "colour=red"], "unknown key 'colour' in --set"),
    (["sweep", "deep", "--set", "epochs=many"], "'epochs' must be int, got 'many'"),
    (["sweep", "deep", "--set", "layer=9"], "injection layer 9 is beyond tiny-clip's depth; use 0..3"),
    (["sweep", "deep", "--set", "n_prompts=0"], "n_prompts must be at least 1"),
    (["sweep", "deep", "--set", "epochs"], "is not key=value"),
    (["sweep", "deep", "--set", "lr=1"], "the learning rate is tuned within each cell"),
    (["sweep", "zeroshot", "--samples", "3"], "sweep 'zeroshot' tunes no learning rate"),
    (["sweep", "finetune", "--set", "variant=all"], "variant 'all' unknown; known: fc, fc_first_conv, fc_last_conv"),
    (["sweep", "finetune", "--set", "augment=mixup"], "augment 'mixup' unknown; known: none, hflip, crop"),
    (["sweep", "zeroshot", "--set", "template=a photo"], "has no '{}' for the class name"),
    (["sweep", "deep", "--tracking-uri", "http://127.0.0.1:9"], "does not answer"),
    (["sweep", "deep", "--tracking-uri", "sqlite:////nonexistent/dir/m.db"], "does not exist or is not writable"),
    (["sweep", "deep", "--address", "127.0.0.1:9", "--tracking-uri", "sqlite:///{tmp}/m.db"], "Ray cluster at 127.0.0.1:9 does not answer"),
    (["report", "deep", "--tracking-uri", "sqlite:///{tmp}/none.db"], "run `python -m orchestrator sweep deep` first"),
    (["bench", "--only", "pipeline", "warp"], "unknown bench section(s) warp; known: pipeline, deep"),
    (["bench", "--device", "cuda", "--only", "pipeline"], "torch sees no CUDA GPU on this machine"),
    (["report", "nope", "--tracking-uri", "sqlite:///{tmp}/none.db"], "no report for 'nope'; known: deep, finetune, linear, visual, zeroshot"),
]


@pytest.mark.parametrize("argv,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_gets_one_line_and_exit_2(argv, message, tmp_path, capsys):
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "reports_out").exists() and not (tmp_path / "none.db").exists()


def test_report_of_a_sweep_not_in_the_store_leaves_no_output(tmp_path, capsys):
    from mlflow.tracking import MlflowClient
    uri = f"sqlite:///{tmp_path}/m.db"
    MlflowClient(uri).create_experiment("other")    # a real store, without any 'deep' sweep
    assert main(["report", "deep", "--tracking-uri", uri, "--out", str(tmp_path / "out")]) == 2
    assert "run `python -m orchestrator sweep deep` first" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
