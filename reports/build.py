"""Writing a report folder: `report NAME` (one sweep) or `report all` (every section in one
document, plus a self-contained HTML page). Nothing is left half-written on failure, and only a
folder an earlier report wrote is ever replaced."""
from __future__ import annotations

import shutil
import sys
import tempfile
import uuid
from pathlib import Path

from mlflow.tracking import MlflowClient

from clip_prompt_sweeps.errors import UserError
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
                _write_sweep(folder, "\n".join(_sections(exp, sw)) + "\n", exp.report.title)
            _replace(folder, final)
            folder.mkdir()   # TemporaryDirectory cleans up the (now moved) folder on exit
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise
    if sw is not None:
        log_report(client, sw.parent.run_id, final)
    return final / "report.md"


def _sections(exp: Reported, sw) -> list[str]:
    """The report's lines; one line instead of a traceback where the runs lack what the report
    reads (a column a trial of this project always logs, absent or of another type: runs that
    someone else wrote into the sweep)."""
    try:
        return list(exp.report.build(sw))
    except (KeyError, ValueError, TypeError, IndexError, AttributeError) as err:
        raise UserError(f"sweep run {sw.parent.run_id}: its runs lack what the '{exp.name}' report reads "
                        f"({type(err).__name__}: {str(err)[:120]}); were they logged by this project? "
                        f"Pick another run with --run-id") from None


REPORT_ARTIFACTS = "report"     # the parent run's artifact folder that holds its report


def log_report(client: MlflowClient, run_id: str, folder: Path) -> None:
    """The report's files as artifacts of the sweep's parent run, so the MLflow UI shows it
    beside the runs. A store that will not take them costs a warning, not the written report."""
    try:
        for path in sorted(folder.iterdir()):
            if path.is_file() and not path.is_symlink() and path.name != MARKER:
                client.log_artifact(run_id, str(path), REPORT_ARTIFACTS)
    except Exception as err:  # noqa: BLE001 - any store or artifact-repository error
        print(f"warning: the report is written but not logged to MLflow run {run_id} "
              f"({str(err).splitlines()[0][:200] if str(err) else type(err).__name__})", file=sys.stderr)


def _write_sweep(folder: Path, markdown: str, title: str) -> None:
    from reports.html import to_html
    (folder / "report.md").write_text(markdown)
    (folder / "report.html").write_text(to_html(markdown, folder, title))


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
