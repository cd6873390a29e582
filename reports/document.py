"""`report all`: one document that follows the seed's sections 1.1 to 2.5, each built from its
sweep's latest run in MLflow, and for a sweep not run yet the command that produces it."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mlflow.tracking import MlflowClient

from reports.markdown import code, text
from trainables import UserError


@dataclass(frozen=True)
class Section:
    number: str
    title: str
    sweep: str | None           # None: not a sweep (the free-form tasks of 2.1b)
    needs: str = ""             # what must run before that sweep can


def sections() -> list[tuple[Section, Callable]]:
    from reports.experiment_reports import compare_report, cross_report, robustness_report
    from reports.prompt_reports import deep_report, visual_report
    from reports.study_reports import finetune_report, linear_report, zeroshot_report
    return [(Section("1.1", "Comparing models", "compare"), compare_report),
            (Section("1.2", "Fine-tuning ResNet-18", "finetune"), finetune_report),
            (Section("2.1a", "CLIP zero-shot baseline", "zeroshot"), zeroshot_report),
            (Section("2.1b", "CLIP on new tasks", None), None),
            (Section("2.2", "Visual prompts", "visual"), visual_report),
            (Section("2.3", "Deep prompts", "deep"), deep_report),
            (Section("2.3+", "Linear probe (beyond the seed)", "linear"), linear_report),
            (Section("2.4", "Robustness to noise", "robustness", "`sweep visual` and `sweep finetune`"),
             robustness_report),
            (Section("2.5", "CIFAR-110", "cross", "`sweep visual`"), cross_report)]


def _demote(lines: list[str]) -> list[str]:
    """A sweep report's headings one level down, under the document's title."""
    return ["#" + line if line.startswith("#") else line for line in lines]


def _missing(section: Section, why: str) -> list[str]:
    first = f" (after {section.needs})" if section.needs else ""
    return [f"## {section.number} {section.title}", "",
            f"Not in this report: {text(why)} Run `python -m orchestrator sweep {section.sweep}`{first}, then "
            f"`python -m orchestrator report all` again.", ""]


def _freeform(out: Path, classify_dir: Path) -> tuple[list[str], int]:
    """Figures 5 and 6: `classify` writes them (a command, not a sweep); picked up when present.
    Returns the lines and how many were found."""
    md, found = ["## 2.1b CLIP on new tasks (seed Figures 5 and 6)", ""], 0
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


def build_all(client: MlflowClient, out: Path, classify_dir: Path) -> tuple[list[str], dict[str, str]]:
    """(markdown lines, section -> what it was built from) with the figures written to `out`."""
    from reports.headline import headline
    from reports.prompt_reports import load_sweep
    body, status, loaded = [], {}, {}
    for section, build in sections():
        if section.sweep is None:
            lines, found = _freeform(out, classify_dir)
            body += lines
            status[section.number] = f"{found} of 2 `classify` figures"
            continue
        try:
            sw = load_sweep(client, section.sweep, out)
        except UserError as err:
            why = str(err).split(";")[0]
            body += _missing(section, why + ".")
            status[section.number] = "no finished trial yet" if "no finished" in why else "not run yet"
            continue
        loaded[section.sweep] = sw
        body += _demote(build(sw))
        status[section.number] = f"run {code(sw.parent.info.run_id)} ({text(sw.parent.data.tags.get('profile'))})"
    contents = [f"- {s.number} {s.title}: {status[s.number]}" for s, _ in sections()]
    head = ["# CLIP prompting and ResNet-18 transfer: the study, reproduced", "",
            "Every number is read from MLflow; the seed's own number stands beside it with the difference "
            "(Δ = ours − seed). A section whose sweep has not run says which command produces it.", "",
            *contents, "", *headline(loaded)]
    return head + body, status
