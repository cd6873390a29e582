"""Walks the bad-input table of docs/troubleshooting.md: every row with a command runs exactly as written there,
gets one line on stderr, exit code 2, no traceback, each part of the message, and leaves the
scratch folder as it was."""
from __future__ import annotations

import re
import shlex
import time
from pathlib import Path

import pytest
import yaml

from orchestrator.commands.cli import main
from output import command_err

ROOT = Path(__file__).resolve().parents[1]


def _rows() -> list[tuple[str, str, str, float | None]]:
    text = (ROOT / "docs" / "troubleshooting.md").read_text()
    section = text[text.index("## Bad input"):]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) == 3 and cells[1].startswith("`python -m orchestrator "):
            within = re.search(r"\s*\(within (\d+) s\)$", cells[2])
            message = cells[2][:within.start()] if within else cells[2]
            rows.append((cells[0], cells[1].strip("`"), message[1:-1] if message.startswith("`") else message,
                         float(within.group(1)) if within else None))
    return rows


ROWS = _rows()


def test_the_table_covers_every_kind_of_input():
    kinds = " ".join(row[0] for row in ROWS)
    for kind in ("sweep name", "profile name", "`--set` key", "`--set` type", "layer range", "prompt count",
                 "data dir", "Ray address", "tracking URI", "cluster.yaml", "resume"):
        assert kind in kinds, kind
    assert len(ROWS) >= 20
    assert sum(row[3] is not None for row in ROWS) >= 2      # the promised time limits are read too


@pytest.mark.parametrize("kind,command,message,within", ROWS, ids=[r[0] for r in ROWS])
def test_bad_input_row(kind, command, message, within, tmp_path, capsys, monkeypatch):
    """Run from a working directory inside the scratch folder, so that a default written to the
    current directory (./mlflow.db without --tracking-uri) would show as written too."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("ORCHESTRATOR_DATA_DIR", raising=False)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    config["available_node_types"]["gpu4"]["min_wokers"] = 1          # a typo the schema catches
    (tmp_path / "BROKEN.yaml").write_text(yaml.safe_dump(config))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    argv = shlex.split(command.replace("TMP", str(tmp_path)))[3:]       # after `python -m orchestrator`
    start = time.monotonic()
    assert main(argv) == 2
    elapsed = time.monotonic() - start
    err = command_err(capsys)
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    for part in message.replace("TMP", str(tmp_path)).split("..."):
        assert part.strip() in err, part
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before     # nothing written
    if within is not None:      # the guide promises this limit (a fail-fast timeout, not a speed target)
        assert elapsed < within, f"answered after {elapsed:.1f} s; the guide says within {within:.0f} s"
