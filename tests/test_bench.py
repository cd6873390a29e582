"""`bench` runs every section at smoke size and writes its figures; the speed targets themselves
live in the bench's output (README), never in assertions."""
import json
import math

from orchestrator.bench import SECTIONS
from orchestrator.cli import main


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
