"""Sweeps defined in TOML (search_spaces/sweep_file.py): one end to end through the CLI with its
generic report, the example file, and bad files, each refused in one line naming the file, the
key and its line."""
from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.commands.cli import main
from orchestrator.sweep.plan import make_plan
from output import command_err

ROOT = Path(__file__).resolve().parents[1]
SMALL = """\
name = "my-deep"
experiment = "deep"

[profiles.smoke]
base = {{ model = "tiny-clip", pretrained = "none", data = "synthetic", epochs = 1, batch_size = 32, warmup_steps = 2, dataset = "cifar10" }}
grid = {{ layer = [0, 3], n_prompts = [1, 4] }}
lr = {{ low = 4.0, high = 400.0 }}
samples = 1
{extra}
"""


def test_a_toml_sweep_runs_end_to_end_and_gets_the_generic_report(ray_session, data_root, tmp_path, capsys):
    path = tmp_path / "my_sweep.toml"
    path.write_text(SMALL.format(extra=""))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert main(["sweep", str(path), "--tracking-uri", uri, "--data-dir", str(data_root), "--gpus-per-trial", "0",
                 "--storage-path", str(tmp_path / "ray")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("sweep my-deep (smoke): 4 cells x 1 learning rate = 4 trials, trainable deep_prompt")
    assert "build a report: python -m orchestrator report my-deep" in out
    assert main(["report", str(path), "--tracking-uri", uri, "--out", str(tmp_path / "out")]) == 0
    report = (tmp_path / "out" / "my-deep" / "report.md").read_text()
    assert report.startswith("# Sweep my-deep (from a sweep file) — SYNTHETIC DATA")
    rows = [line for line in report.splitlines() if line.startswith("| 0 ") or line.startswith("| 3 ")]
    assert sorted(r.split(" | ")[:2] for r in rows) == [["| 0", "1"], ["| 0", "4"], ["| 3", "1"], ["| 3", "4"]]
    assert "## Heatmap" in report and (tmp_path / "out" / "my-deep" / "my-deep_heatmap.png").is_file()
    assert (tmp_path / "out" / "my-deep" / "my-deep_curves.png").is_file()


def test_the_example_file_is_the_seeds_deep_grid_on_two_datasets():
    plan = make_plan(str(ROOT / "examples" / "deep_grid.toml"), "full")
    study = make_plan("deep", "full")
    assert plan.experiment.name == "deep-grid" and plan.cells == study.cells and plan.base == study.base
    assert plan.profile.lr == study.profile.lr and plan.profile.samples == study.profile.samples
    assert {c["dataset"] for c in plan.cells} == {"cifar10", "cifar100"}


@pytest.mark.parametrize("extra,edit,message", [
    ("colour = 3", None, "line 9, key 'profiles.smoke.colour': unknown key; known: base, fuse, grace_period"),
    (None, ("n_prompts = [1, 4]", 'n_prompts = [1, "four"]'), "line 6, key 'profiles.smoke.grid.n_prompts': 'n_prompts' must be int"),
    (None, ("n_prompts = [1, 4]", "n_promptz = [1, 4]"), "line 6, key 'profiles.smoke.grid.n_promptz': DeepPromptConfig has no key"),
    (None, ('experiment = "deep"', 'experiment = "deeep"'), "line 2, key 'experiment': unknown sweep 'deeep'; known: compare"),
    (None, ("samples = 1", "samples = 0"), "line 8, key 'profiles.smoke.samples': must be a whole number of at least 1"),
    (None, ('name = "my-deep"', 'name = "my deep/.."'), "line 1, key 'name': must be letters, digits"),
    (None, ('name = "my-deep"', 'name = "deep"'), "key 'name': 'deep' is a registered sweep's name"),
    (None, ("samples = 1", "samples = "), "not valid TOML (Invalid value (at line 8, column 11))"),
])
def test_a_bad_sweep_file_is_one_line_naming_the_file_key_and_line(tmp_path, capsys, extra, edit, message):
    text = SMALL.format(extra=extra or "")
    if edit:
        assert edit[0] in text
        text = text.replace(edit[0], edit[1])
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["sweep", str(path), "--dry-run"]) == 2
    err = command_err(capsys)
    assert err.count("\n") == 1 and str(path) in err and message in err, err


def test_a_sweep_file_that_does_not_exist_is_one_line(tmp_path, capsys):
    assert main(["sweep", str(tmp_path / "nope.toml"), "--dry-run"]) == 2
    assert f"sweep file {tmp_path / 'nope.toml'} does not exist" in capsys.readouterr().err
