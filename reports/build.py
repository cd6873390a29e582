"""Writing a report folder: `report NAME` (one sweep) or `report all` (every section in one
document, plus a self-contained HTML page). Nothing is left half-written on failure, and only a
folder an earlier report wrote is ever replaced."""
from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

from mlflow.tracking import MlflowClient

from common.errors import UserError
from reports.section import Reported

MARKER = ".clip-prompt-sweeps-report"    # in every folder `report` writes, and only there
ALL = "all"


def report_names(experiments: list[Reported]) -> list[str]:
    return sorted([ALL, *(e.name for e in experiments if e.report is not None)])


def check_report_name(name: str, experiments: list[Reported]) -> None:
    if name not in report_names(experiments):
        raise UserError(f"no report for '{name}'; known: {', '.join(report_names(experiments))}")


def build_report(name: str, experiments: list[Reported], tracking_uri: str, out: Path,
                 run_id: str | None = None) -> Path:
    """Write out/<name>/report.md and its figures (for 'all', also report.html)."""
    from reports.trials import load_sweep
    check_report_name(name, experiments)
    out = out.absolute()
    final = out / name
    _check_replaceable(final)
    client = MlflowClient(tracking_uri)
    exp = next((e for e in experiments if e.name == name), None)
    # Find the sweep first: a missing one must not leave an empty output folder behind.
    sw = None if exp is None else load_sweep(client, name, out, run_id, exp.score)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(dir=out, prefix=f".{name}-") as tmp:
            folder = Path(tmp)
            (folder / MARKER).write_text("written by `python -m orchestrator report`; the next report "
                                         "replaces this folder whole\n")
            if sw is None:
                _write_all(client, folder, out / "classify", experiments)
            else:
                sw.out = folder
                (folder / "report.md").write_text("\n".join(exp.report.build(sw)) + "\n")
            _replace(folder, final)
            folder.mkdir()   # TemporaryDirectory cleans up the (now moved) folder on exit
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise
    return final / "report.md"


def _check_replaceable(final: Path) -> None:
    if final.is_symlink():
        raise UserError(f"{final} is a symbolic link; a report is never written through one: remove the link "
                        f"or pass another --out")
    if final.exists() and not (final.is_dir() and (final / MARKER).is_file() and not (final / MARKER).is_symlink()):
        raise UserError(f"{final} exists and was not written by `report` (no {MARKER} in it); move it away "
                        f"or pass another --out")


def _replace(built: Path, final: Path) -> None:
    """`built` becomes `final` by renames in one folder: a reader sees the old report or the new one."""
    _check_replaceable(final)
    if not final.exists():
        built.rename(final)
        return
    old = final.with_name(f".{final.name}-old-{uuid.uuid4().hex[:8]}")
    final.rename(old)
    built.rename(final)
    shutil.rmtree(old)      # the earlier report: a folder with our marker in it


def _write_all(client: MlflowClient, folder: Path, classify_dir: Path, experiments: list[Reported]) -> None:
    from reports.document import build_all
    from reports.html import to_html
    lines, _ = build_all(client, folder, classify_dir, experiments)
    markdown = "\n".join(lines) + "\n"
    (folder / "report.md").write_text(markdown)
    (folder / "report.html").write_text(to_html(markdown, folder, "CLIP prompting study, reproduced"))
