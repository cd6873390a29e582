"""The report of the `cross` sweep (seed section 2.5): the padding prompts on CIFAR-110."""
from __future__ import annotations

from clip_prompt_sweeps.names import DATASETS
from reports import figures
from reports.markdown import pct, table
from reports.section import HeadlineRow
from reports.trials import SweepRuns


def report(sw: SweepRuns) -> list[str]:
    t = sw.trials.sort_values("prompt_from").set_index("prompt_from")
    md = sw.header("Visual prompts on CIFAR-110 (seed section 2.5)",
                   "Top-1 (%) of one 110-way classifier (CIFAR-10 classes first, CIFAR-100 labels + 10) over both "
                   "test sets, with the padding prompt learnt on each dataset. The seed report stops at this "
                   "section, so there is no seed number to set beside these.")
    rows = [[f"{d} ({'10' if d == 'cifar10' else '100'}-way own task)", pct(r["own_acc"]), pct(r["cifar10_acc"]),
             pct(r["cifar100_acc"]), pct(r["combined_acc"]), pct(r.get("cifar10_as_cifar100")),
             pct(r.get("cifar100_as_cifar10"))] for d, r in t.iterrows()]
    header = ["prompt learnt on", "own task", "110-way: CIFAR-10 part", "CIFAR-100 part", "combined",
              "CIFAR-10 images given a CIFAR-100 class", "CIFAR-100 images given a CIFAR-10 class"]
    md += ["## 110-way classification", "", table(header, rows), ""]
    parts = ["own task", "CIFAR-10 part", "CIFAR-100 part", "combined"]
    series = {f"prompt from {d}": [100 * r[k] for k in ("own_acc", "cifar10_acc", "cifar100_acc", "combined_acc")]
              for d, r in t.iterrows()}
    path = figures.grouped_bars(parts, series, "test top-1 (%)", "CIFAR-110 with each padding prompt",
                                sw.out / "cross_bars.png")
    return md + [f"![CIFAR-110]({path.name})", ""]


def headline(sw: SweepRuns) -> list[HeadlineRow]:
    """Its rows of "At a glance"."""
    t = sw.trials.set_index("prompt_from")
    return [HeadlineRow(f"CIFAR-110 with the {d} padding prompt", float(t.loc[d, "combined_acc"]), None)
            for d in DATASETS if d in t.index]
