"""Reports built from MLflow alone (never Ray's result files): markdown with PNG figures, the
seed study's numbers beside the reproduced ones."""
from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

from mlflow.tracking import MlflowClient

from trainables import UserError

MARKER = ".clip-prompt-sweeps-report"    # in every folder `report` writes, and only there
REPORTS = ("all", "compare", "cross", "deep", "finetune", "linear", "robustness", "visual", "zeroshot")


def check_report_name(sweep: str) -> None:
    if sweep not in REPORTS:
        raise UserError(f"no report for '{sweep}'; known: {', '.join(REPORTS)}")


def build_report(sweep: str, tracking_uri: str, out: Path, run_id: str | None = None) -> Path:
    """Write out/<sweep>/report.md and its figures (for 'all', also report.html); nothing is left
    half-written on failure, and only a folder an earlier report wrote is ever replaced."""
    from reports.prompt_reports import load_sweep
    check_report_name(sweep)
    out = out.absolute()
    final = out / sweep
    _check_replaceable(final)
    client = MlflowClient(tracking_uri)
    # Find the sweep first: a missing one must not leave an empty output folder behind.
    sw = None if sweep == "all" else load_sweep(client, sweep, out, run_id)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(dir=out, prefix=f".{sweep}-") as tmp:
            folder = Path(tmp)
            (folder / MARKER).write_text("written by `python -m orchestrator report`; the next report "
                                         "replaces this folder whole\n")
            if sw is None:
                _write_all(client, folder, out / "classify")
            else:
                sw.out = folder
                (folder / "report.md").write_text("\n".join(_section(sweep)(sw)) + "\n")
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


def _section(sweep: str):
    """The section builder of one sweep: the same one `report all` uses."""
    from reports.document import sections
    return {section.sweep: build for section, build in sections() if section.sweep}[sweep]


def _write_all(client: MlflowClient, folder: Path, classify_dir: Path) -> None:
    from reports.document import build_all
    from reports.html import to_html
    lines, _ = build_all(client, folder, classify_dir)
    markdown = "\n".join(lines) + "\n"
    (folder / "report.md").write_text(markdown)
    (folder / "report.html").write_text(to_html(markdown, folder, "CLIP prompting study, reproduced"))
