"""`bench` runs every section at smoke size and writes its figures; the speed targets themselves
live in the bench's output (README), never in assertions."""
import json
import math

import pytest

from orchestrator.bench.speed import SECTIONS
from orchestrator.commands.cli import main


def test_bench_runs_every_section_and_writes_json(ray_session, tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert main(["bench", "--smoke", "--device", "cpu", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    rows = result["rows"]
    assert [r["section"] for r in rows] == ["pipeline", "deep", "deep", "deep", "finetune", "visual", "overhead"]
    assert {r["section"] for r in rows} == set(SECTIONS)
    assert all(r["project"] > 0 and r["baseline"] > 0 and math.isfinite(r["ratio"]) for r in rows)
    assert result["machine"]["device"] == "cpu" and result["smoke"] is True
    out = capsys.readouterr().out
    assert "deep prompt training, layer 3 (last)" in out and "not judged at smoke size" in out


@pytest.mark.fast
def test_bench_overhead_alone_times_the_sweep_beside_bare_tune(ray_session, tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert main(["bench", "--smoke", "--device", "cpu", "--only", "overhead", "--json", str(path)]) == 0
    (row,) = json.loads(path.read_text())["rows"]
    assert row["section"] == "overhead" and row["project"] > 0 and row["baseline"] > 0
    assert "seconds per trivial trial" in capsys.readouterr().out


def test_bench_scale_measures_each_count_in_a_process_of_its_own(ray_session, tmp_path, capsys):
    """`--only scale` at smoke size: each count through the sweep and bare Tune, on the session's
    Ray, each driver's own peak memory; the flat-cost note compares with the first count."""
    path = tmp_path / "scale.json"
    assert main(["bench", "--smoke", "--device", "cpu", "--only", "scale", "--scale-trials", "2", "4",
                 "--json", str(path)]) == 0
    rows = json.loads(path.read_text())["rows"]
    assert [r["what"] for r in rows] == [
        "seconds per trivial trial, 2 trials (3 reports each)", "driver peak RSS, 2 trials",
        "seconds per trivial trial, 4 trials (3 reports each)", "driver peak RSS, 4 trials"]
    assert all(r["project"] > 0 and r["baseline"] > 0 for r in rows)
    assert all(100 < r["project"] < 20_000 for r in rows if r["unit"] == "MB")     # a driver's, in MB
    assert rows[0]["notes"]["flat"].startswith("1.00x") and "(target <= 1.3x)" in rows[2]["notes"]["flat"]
    out = capsys.readouterr().out
    # each run logged what it ran: the sweep a parent run and a child per trial, bare Tune a run per trial
    assert "scale, project, 2 trials: " in out and "driver peak" in out and " MB, 3 MLflow runs" in out
    assert "scale, bare, 4 trials: " in out and " MB, 4 MLflow runs" in out


def test_bench_scale_refuses_a_count_below_two_and_counts_without_the_section():
    import pytest

    from clip_prompt_sweeps.errors import UserError
    from orchestrator.bench.speed import run_bench
    with pytest.raises(UserError, match="--scale-trials: give one or more counts of at least 2"):
        run_bench("cpu", ("scale",), smoke=True, scale_trials=(1,))
    # counts for a section that is not run would be ignored without a word
    with pytest.raises(UserError, match="add `--only scale`"):
        run_bench("cpu", ("overhead",), smoke=True, scale_trials=(100,))


@pytest.mark.fast
def test_bench_fused_times_k_fused_members_beside_k_separate_trials(tmp_path, capsys):
    """`--only fused` at smoke size: deep prompts at the first and the last layer, a visual prompt
    and the linear probe, each at K = 1, 2, 4 against as many separate trials."""
    path = tmp_path / "fused.json"
    assert main(["bench", "--smoke", "--device", "cpu", "--only", "fused", "--json", str(path)]) == 0
    rows = json.loads(path.read_text())["rows"]
    kinds = ["deep prompt, layer 0 (first), cached prefix", "deep prompt, layer 3 (last), cached prefix",
             "visual prompt (padding)", "linear probe, cached features"]
    assert [r["what"].split(": ")[0] for r in rows] == [f"{kind}, K={k}" for kind in kinds for k in (1, 2, 4)]
    assert all(r["section"] == "fused" and r["project"] > 0 and r["baseline"] > 0 for r in rows)
    # the baseline is K separate trials' epochs per second: K = 1's is one trial's
    assert all(r["unit"] == "epochs/s" and math.isfinite(r["ratio"]) for r in rows)
    assert "fused, visual prompt (padding), K=4: " in capsys.readouterr().out
    # over whole trials the cache counts: K separate trials build it K times, a fused one once
    assert all(r["notes"]["over_20_epoch_trials_incl_cache"] > 0 for r in rows)
    from orchestrator.bench.fused import over_trials
    assert over_trials(1, 5.0, 2.0, 2.0) == 1.0 and over_trials(4, 6.0, 8.0, 8.0) == pytest.approx(
        (24 + 160) / (6 + 160)) and over_trials(4, 1.0, 0.0, 0.0) == 4.0
