"""Small markdown helpers (no tabulate dependency), and the one boundary where text from MLflow
enters a report: params, tags and names may come from anyone who can write to the store, so
every such value goes through `text` (or `code`) and every table cell is escaped unless the
report itself made it (`Markdown`)."""
from __future__ import annotations

import math
import re

# Markdown's punctuation that could start a link, an image, inline HTML, a code span, emphasis or
# a table cell; escaped with a backslash (CommonMark: any ASCII punctuation may be).
_SPECIAL = re.compile(r"([\\`*\[\]!|<>])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")      # never meant for a reader


class Markdown(str):
    """Markdown the report wrote itself (a code span, a link to a command): not escaped again."""


def text(value) -> Markdown:
    """`value` as literal text in markdown: one line, nothing it contains is markup."""
    flat = _CONTROL.sub("", " ".join(str(value).splitlines()))
    return Markdown(_SPECIAL.sub(r"\\\1", flat))


def code(value) -> Markdown:
    """`value` as an inline code span. Backslashes do not escape inside a code span, so a backtick
    becomes a quote; a pipe is escaped for tables (GFM unescapes it before the span)."""
    flat = _CONTROL.sub("", " ".join(str(value).splitlines())).replace("`", "'").replace("|", "\\|")
    return Markdown(f"`{flat}`")


def pct(x) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}"


def reference_pct(x) -> str:
    """A number of the reference study, already in percent."""
    return "—" if x is None else f"{x:.2f}"


def diff(ours, reference) -> str:
    """Ours (a fraction) minus the reference study's (percent), in points."""
    if ours is None or reference is None or (isinstance(ours, float) and math.isnan(ours)):
        return "—"
    return f"{100 * ours - reference:+.2f}"


def _cell(value) -> str:
    return value if isinstance(value, Markdown) else text(value)


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
