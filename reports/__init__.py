"""Reports built from MLflow alone (never Ray's result files): markdown with PNG figures, the
seed study's numbers beside the reproduced ones."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from mlflow.tracking import MlflowClient

from trainables import UserError

REPORTS = ("all", "compare", "cross", "deep", "finetune", "linear", "robustness", "visual", "zeroshot")


def check_report_name(sweep: str) -> None:
    if sweep not in REPORTS:
        raise UserError(f"no report for '{sweep}'; known: {', '.join(REPORTS)}")


def build_report(sweep: str, tracking_uri: str, out: Path, run_id: str | None = None) -> Path:
    """Write out/<sweep>/report.md and its figures (for 'all', also report.html); nothing is left
    half-written on failure."""
    from reports.prompt_reports import load_sweep
    check_report_name(sweep)
    out = out.resolve()
    client = MlflowClient(tracking_uri)
    # Find the sweep first: a missing one must not leave an empty output folder behind.
    sw = None if sweep == "all" else load_sweep(client, sweep, out, run_id)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=f".{sweep}-") as tmp:
        folder = Path(tmp)
        if sw is None:
            _write_all(client, folder, out / "classify")
        else:
            sw.out = folder
            (folder / "report.md").write_text("\n".join(_section(sweep)(sw)) + "\n")
        final = out / sweep
        shutil.rmtree(final, ignore_errors=True)
        shutil.move(tmp, final)
        folder.mkdir()   # TemporaryDirectory cleans up the (now moved) folder on exit
    return final / "report.md"


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
