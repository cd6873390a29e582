"""Walks the README's bad-input table: every row with a command runs exactly as written there,
gets one line on stderr, exit code 2, no traceback, each part of the message, and leaves the
scratch folder as it was."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from orchestrator.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _rows() -> list[tuple[str, str, str]]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Bad input"):text.index("## Layout")]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) == 3 and cells[1].startswith("`python -m orchestrator "):
            message = re.sub(r"\s*\(within \d+ s\)$", "", cells[2])
            rows.append((cells[0], cells[1].strip("`"), message[1:-1] if message.startswith("`") else message))
    return rows


ROWS = _rows()


def test_the_table_covers_every_kind_of_input():
    kinds = " ".join(kind for kind, _, _ in ROWS)
    for kind in ("sweep name", "profile name", "`--set` key", "`--set` type", "layer range", "prompt count",
                 "data dir", "Ray address", "tracking URI", "cluster.yaml", "resume"):
        assert kind in kinds, kind
    assert len(ROWS) >= 20


@pytest.mark.parametrize("kind,command,message", ROWS, ids=[r[0] for r in ROWS])
def test_bad_input_row(kind, command, message, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    config["available_node_types"]["gpu4"]["min_wokers"] = 1          # a typo the schema catches
    (tmp_path / "BROKEN.yaml").write_text(yaml.safe_dump(config))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    argv = shlex.split(command.replace("TMP", str(tmp_path)))[3:]       # after `python -m orchestrator`
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    for part in message.replace("TMP", str(tmp_path)).split("..."):
        assert part.strip() in err, part
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before     # nothing written
