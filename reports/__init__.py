"""Reports built from MLflow alone (never Ray's result files): markdown with PNG figures, the
seed study's numbers beside the reproduced ones."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from mlflow.tracking import MlflowClient

from trainables import UserError

REPORTS = ("deep", "finetune", "linear", "visual", "zeroshot")


def check_report_name(sweep: str) -> None:
    if sweep not in REPORTS:
        raise UserError(f"no report for '{sweep}'; known: {', '.join(REPORTS)}")


def build_report(sweep: str, tracking_uri: str, out: Path, run_id: str | None = None) -> Path:
    """Write out/<sweep>/report.md and its figures; nothing is left half-written on failure."""
    from reports.prompt_reports import deep_report, load_sweep, visual_report
    from reports.study_reports import finetune_report, linear_report, zeroshot_report
    sections = {"deep": deep_report, "visual": visual_report, "finetune": finetune_report,
                "linear": linear_report, "zeroshot": zeroshot_report}
    check_report_name(sweep)
    out = out.resolve()
    # Find the sweep first: a missing one must not leave an empty output folder behind.
    sw = load_sweep(MlflowClient(tracking_uri), sweep, out, run_id)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=f".{sweep}-") as tmp:
        sw.out = Path(tmp)
        lines = sections[sweep](sw)
        (Path(tmp) / "report.md").write_text("\n".join(lines) + "\n")
        final = out / sweep
        shutil.rmtree(final, ignore_errors=True)
        shutil.move(tmp, final)
        Path(tmp).mkdir()   # TemporaryDirectory cleans up the (now moved) folder on exit
    return final / "report.md"
