"""What an experiment's record declares about its report: where its section stands in `report
all`, its title, the builder of its markdown, and its rows of the "At a glance" table."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple, Protocol

from reports.trials import SweepRuns


class HeadlineRow(NamedTuple):
    """One row of an experiment's part of "At a glance" (the section is the record's)."""
    what: str
    ours: float | None          # a fraction, test top-1
    seed: float | None          # the reference study's %, where it has one


@dataclass(frozen=True)
class ReportSection:
    number: str                 # its place in `report all`: sections sort by it ("1.1" < "2.3" < "2.3+")
    title: str
    build: Callable[[SweepRuns], list[str]]                         # the section's markdown lines
    headline: Callable[[SweepRuns], list[HeadlineRow]] | None = None


class Reported(Protocol):
    """What the reports read of an experiment's record (search_spaces.experiment.Experiment)."""
    name: str
    report: ReportSection | None
    score: str                  # what every finished trial of it logged
    needs: str                  # what must run before it, as words ('' if nothing)
