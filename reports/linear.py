"""The report of the `linear` sweep (beyond the seed): the linear probe beside our best prompts
and the seed's."""
from __future__ import annotations

from clip_prompt_sweeps.names import DATASETS, LR_KEY
from reports.markdown import Markdown, pct, reference_pct, table
from reports.reference import reference_best_deep, reference_visual, reference_zeroshot
from reports.section import HeadlineRow
from reports.trials import (
    SweepRuns,
    best_per_cell,
    best_test,
    other_best,
    score_text,
    study_rows,
)


def report(sw: SweepRuns) -> list[str]:
    best = best_per_cell(sw.trials)
    visual = other_best(sw, "visual")
    deep = other_best(sw, "deep")
    md = sw.header("Linear probe on frozen CLIP features (beyond the seed)")
    rows = []
    many = "backbone" in best and best["backbone"].nunique() > 1
    for _, r in best.sort_values([c for c in ("dataset", "backbone") if c in best]).iterrows():
        d = r["dataset"]
        rows.append([d, *([r["backbone"]] if many else []), score_text(sw, r), f"{r[LR_KEY]:.2g}",
                     pct(visual.get(d)) if visual is not None else Markdown("run `sweep visual`"),
                     pct(deep.get(d)) if deep is not None else Markdown("run `sweep deep`"),
                     reference_pct(reference_visual(d, "padding")), reference_pct(reference_best_deep(d)), reference_pct(reference_zeroshot(d))])
    header = ["dataset", *(["backbone"] if many else []), "linear probe", "lr", "best visual prompt (ours)", "best deep prompt (ours)",
              "seed padding prompt", "seed best deep prompt", "seed zero-shot"]
    return md + ["## Linear probe beside prompting", "", table(header, rows), ""]

def headline(sw: SweepRuns) -> list[HeadlineRow]:
    """Its rows of "At a glance"."""
    best = best_per_cell(study_rows(sw.trials))
    return [HeadlineRow(f"linear probe, {d}", best_test(best, dataset=d), None) for d in DATASETS]
