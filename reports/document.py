"""`report all`: one document that follows the seed's sections 1.1 to 2.5, each built from its
sweep's latest run in MLflow, and for a sweep not run yet the command that produces it. The
sections and their order come from the experiments' records (their report numbers)."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import NamedTuple

from mlflow.tracking import MlflowClient

from clip_prompt_sweeps.errors import UserError
from reports.glance import glance_by_backbone
from reports.markdown import code, diff, pct, reference_pct, table, text
from reports.section import HeadlineRow, Reported
from reports.trials import SweepRuns, load_sweep


class Section(NamedTuple):
    """A section of `report all`, in the order of its number; `experiment` is None for the free-form
    figures, which `classify` makes outside any sweep."""
    number: str
    title: str
    experiment: Reported | None


# Seed section 2.1b: figures `classify` writes (a command, not a sweep), picked up when present.
FREEFORM = Section("2.1b", "CLIP on new tasks", None)


def _demote(lines: list[str]) -> list[str]:
    """A sweep report's headings one level down, under the document's title."""
    return ["#" + line if line.startswith("#") else line for line in lines]


def _missing(exp: Reported, why: str) -> list[str]:
    first = f" (after {exp.needs})" if exp.needs else ""
    return [f"## {exp.report.number} {exp.report.title}", "",
            f"Not in this report: {text(why)} Run `python -m orchestrator sweep {exp.name}`{first}, then "
            f"`python -m orchestrator report all` again.", ""]


def _freeform(out: Path, classify_dir: Path) -> tuple[list[str], int]:
    """Figures 5 and 6. Returns the lines and how many were found."""
    md, found = [f"## {FREEFORM.number} {FREEFORM.title} (seed Figures 5 and 6)", ""], 0
    for preset, figure in (("colour", 5), ("origin", 6)):
        png = classify_dir / f"{preset}.png"
        if png.is_file():
            shutil.copy(png, out / f"classify_{preset}.png")
            found += 1
            md += [f"Figure {figure}: `python -m orchestrator classify --preset {preset}`.", "",
                   f"![Figure {figure}](classify_{preset}.png)", ""]
        else:
            md += [f"Figure {figure} not in this report: run `python -m orchestrator classify --preset {preset}` "
                   f"(it writes {png}), then `report all` again.", ""]
    return md, found


def _contents_order(experiments: list[Reported]) -> list[Section]:
    """The sections in the order of their numbers."""
    entries = [Section(e.report.number, e.report.title, e) for e in experiments if e.report is not None]
    return sorted([*entries, FREEFORM], key=lambda entry: entry.number)


def _headline_rows(exp: Reported, sw: SweepRuns) -> list[HeadlineRow]:
    """An experiment's headline rows; one of a user's package may give plain (what, ours, seed)
    tuples, as the record's type allowed before HeadlineRow was named."""
    return [HeadlineRow(*row) for row in exp.report.headline(sw)]


def headline(loaded: list[tuple[Reported, SweepRuns]]) -> list[str]:
    """A table of section, what, ours, seed, Δ; top-1 (%) on the test split."""
    rows = [[exp.report.number, row.what, pct(row.ours), reference_pct(row.seed), diff(row.ours, row.seed)]
            for exp, sw in loaded if exp.report.headline for row in _headline_rows(exp, sw)]
    if not rows:
        return []
    synthetic = any(sw.synthetic for _, sw in loaded)
    note = " Some runs are on synthetic data (smoke profile): not comparable with the seed." if synthetic else ""
    return ["## At a glance", "", f"Test top-1 (%), ours beside the seed's.{note}", "",
            table(["section", "what", "ours", "seed", "Δ"], rows), ""]


def build_all(client: MlflowClient, out: Path, classify_dir: Path,
              experiments: list[Reported]) -> tuple[list[str], dict[str, str]]:
    """(markdown lines, section -> what it was built from) with the figures written to `out`."""
    body, status, loaded = [], {}, []
    for section in _contents_order(experiments):
        number, exp = section.number, section.experiment
        if exp is None:
            lines, found = _freeform(out, classify_dir)
            body += lines
            status[number] = f"{found} of 2 `classify` figures"
            continue
        try:
            sw = load_sweep(client, exp.name, out, score=exp.score)
        except UserError as err:
            why = str(err).split(";")[0]
            body += _missing(exp, why + ".")
            status[number] = "no finished trial yet" if "no finished" in why else "not run yet"
            continue
        loaded.append((exp, sw))
        body += _demote(exp.report.build(sw))
        status[number] = f"run {code(sw.parent.run_id)} ({text(sw.parent.profile)})"
    contents = [f"- {s.number} {s.title}: {status[s.number]}" for s in _contents_order(experiments)]
    head = ["# CLIP prompting and ResNet-18 transfer: the study, reproduced", "",
            "Every number is read from MLflow; the seed's own number stands beside it with the difference "
            "(Δ = ours − seed). A section whose sweep has not run says which command produces it.", "",
            *contents, "", *headline(loaded), *glance_by_backbone(loaded, out)]
    return head + body, status
