"""Replicates as numbers a reader can trust: mean ± 95 % confidence interval (Student's t, n
stated), Welch's two-sided t-test between two cells, and Holm's correction across a table."""
from __future__ import annotations

import math
from statistics import mean, stdev

from scipy import stats

LEVEL = 0.95
ALPHA = 0.05
TEST_LINE = ("Marks: `*` where the difference of the replicates' mean test top-1 is significant at 5 % by "
             "Welch's two-sided t-test, Holm-corrected across the {n} comparisons of this table; `n.s.` where not.")


def mean_ci(values: list[float]) -> tuple[float, float, int]:
    """(mean, half-width of the 95 % t-interval, n); the half-width is nan below n = 2."""
    n = len(values)
    if n < 2:
        return (values[0] if values else math.nan), math.nan, n
    return mean(values), stats.t.ppf(0.5 + LEVEL / 2, n - 1) * stdev(values) / math.sqrt(n), n


def ci_text(values: list[float]) -> str:
    """Fractions as '79.98 ± 0.21 (n=3)' in percent."""
    m, half, n = mean_ci(values)
    return f"{100 * m:.2f} (n={n})" if half != half else f"{100 * m:.2f} ± {100 * half:.2f} (n={n})"


def welch_p(a: list[float], b: list[float]) -> float:
    """Two-sided p of Welch's t-test; nan where either side has fewer than 2 values. Two samples
    with no spread at all are equal (p 1) or different (p 0), not undefined."""
    if len(a) < 2 or len(b) < 2:
        return math.nan
    if stdev(a) == 0 and stdev(b) == 0:
        return 1.0 if mean(a) == mean(b) else 0.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (nan stays nan and is not counted)."""
    order = sorted((p, i) for i, p in enumerate(pvalues) if p == p)
    m, adjusted, running = len(order), [math.nan] * len(pvalues), 0.0
    for rank, (p, i) in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def mark(adjusted_p: float) -> str:
    return "" if adjusted_p != adjusted_p else ("*" if adjusted_p < ALPHA else "n.s.")


def p_text(p: float) -> str:
    return "—" if p != p else "<0.001" if p < 0.001 else f"{p:.3f}"
