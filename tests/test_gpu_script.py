"""The GPU script (scripts/gpu_check.py) rehearsed on the CPU at smoke size, every step of it, so that
the minutes of a lent GPU are never spent on a typo: the same commands, tiny model and data."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("gpu_check", "bench", "slice_dry_run_shipped", "slice_dry_run_measured", "slice",
         "packing_1_per_gpu", "packing_2_per_gpu", "packing_4_per_gpu", "fused_1", "fused_2", "fused_4")


def test_the_gpu_script_rehearses_every_step_on_the_cpu(ray_session, tmp_path):
    out = tmp_path / "rehearsal"
    address = ray_session.get_runtime_context().gcs_address      # the session's Ray: no new one per sweep
    done = subprocess.run([sys.executable, "scripts/gpu_check.py", "--device", "cpu", "--smoke", "--out", str(out),
                           "--address", address], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((out / "gpu_check.json").read_text())
    assert result["failed"] == [] and result["device"] == "cpu" and result["smoke"] is True
    assert all((out / "logs" / f"{step}.log").read_text().startswith("$ ") for step in STEPS)
    assert "all checks passed" in (out / "logs" / "gpu_check.log").read_text()
    bench = json.loads((out / "bench.json").read_text())
    assert {r["section"] for r in bench["rows"]} == {"pipeline", "deep", "visual", "fused"}
    # the slice: every layer and position of one prompt count and dataset, timed, beside its estimate
    s = result["slice"]
    assert s["exit"] == 0 and s["trials"] == 6 and s["trial_epochs"] >= 6 and s["measured_s"] > 0
    assert s["images"] == s["trial_epochs"] * (540 + 60)          # synthetic CIFAR-10: 600 train, a tenth validation
    estimates = [v for v in s["estimate_s"].values() if v is not None]
    assert estimates and all(v >= 0 for v in estimates)          # from this machine's own bench figures
    # the packing table: 1, 2 and 4 trials at once, each row with its throughput and peak memory
    rows = result["packing"]
    assert [r["trials_per_gpu"] for r in rows] == [1, 2, 4]
    assert all(r["exit"] == 0 and r["trials"] == 2 and r["images_per_s_per_gpu"] > 0 and r["peak_memory_mb"] > 0
               for r in rows)
    assert "trials per GPU | images/s per GPU | peak memory (MB)" in done.stdout
    # the fused table: the same learning rates as 1, 2 and 4 members of a trial, every member a run
    fused = result["fused"]
    assert [r["fuse"] for r in fused] == [1, 2, 4]
    assert all(r["exit"] == 0 and r["trials"] == 2 and r["images_per_s_per_gpu"] > 0 and r["peak_memory_mb"] > 0
               for r in fused)
    assert "learning rates per fused trial | images/s per GPU" in done.stdout
