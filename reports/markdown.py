"""Small markdown helpers (no tabulate dependency)."""
from __future__ import annotations

import math


def pct(x) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}"


def seed_pct(x) -> str:
    return "—" if x is None else f"{x:.2f}"


def diff(ours, seed) -> str:
    if ours is None or seed is None or (isinstance(ours, float) and math.isnan(ours)):
        return "—"
    return f"{100 * ours - seed:+.2f}"


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
