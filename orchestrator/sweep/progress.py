"""A sweep's progress at a glance, from the driver (a Tune callback): one live line on a terminal
(rich), or a plain line every N seconds in a log file; a line per cell as it completes, with its
best accuracy and learning rate; a closing count. Ray's own trial tables come back with
`sweep --verbose`."""
from __future__ import annotations

import math
import os
import sys
import time
from collections import Counter

from ray.tune import Callback

from clip_prompt_sweeps.names import CELL_KEY, LR_KEY, member_configs
from orchestrator.sweep.members import is_fused, member_key, member_results
from reports.markdown import pct

EVERY_ENV = "ORCHESTRATOR_PROGRESS_S"       # seconds between plain lines where stdout is no terminal
# A sweep of thousands of cells must not print thousands of lines: the first cells get a line each,
# then a line per tenth of the cells; plain progress lines grow sparser as the sweep grows old.
CELL_LINES = 40
SPARSER = 0.25          # a plain line at most every (this share of the elapsed time), or every N s


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class SweepProgress(Callback):
    def __init__(self, planned: int, samples: int, cells: list[str], metric: str, stopped: dict,
                 done_before: Counter | None = None, out=None, live: bool | None = None, every_s: float | None = None):
        self._out = out                         # None: sys.stdout, looked up when printing
        self.planned, self.samples, self.cells, self.metric = planned, samples, cells, metric
        self.stopped = stopped                  # trial id -> cell: PerCellASHA fills it
        self.done_in_cell = Counter(done_before or {})
        self.done_before = sum(self.done_in_cell.values())     # by an interrupted session
        self.counts = Counter(done=self.done_before)
        self.running: dict[str, int] = {}     # trial id -> its trials (a fused trial's members)
        self.best: dict[str, tuple[float, float | None, float | None]] = {}   # cell -> (val, test, lr)
        self.start = time.time()
        self.live = self.out.isatty() if live is None else live
        self.every_s = float(os.environ.get(EVERY_ENV, "30")) if every_s is None else every_s
        self._last_line = 0.0
        self._bar = None
        self.cell_lines = 0             # cells given a line of their own
        self._next_share = 0.0          # past CELL_LINES: the share of cells complete at the next line

    @property
    def out(self):
        return self._out or sys.stdout

    def __getstate__(self) -> dict:
        # Tune saves its callbacks with the experiment's state; a stream or a live display does
        # not pickle (pytest's captured stdout, a terminal), and neither is state worth keeping
        return {**self.__dict__, "_out": None, "_bar": None}

    # --- what a line says ---------------------------------------------------------------------

    def complete_cells(self) -> int:
        return sum(self.done_in_cell[c] >= self.samples for c in self.cells)

    def line(self) -> str:
        done, elapsed = self.counts["done"], time.time() - self.start
        new = done - self.done_before
        eta = _clock(elapsed / new * (self.planned - done)) if new > 0 and done < self.planned else "—"
        running = sum(self.running.values())
        pending = max(0, self.planned - done - running)
        return (f"{done}/{self.planned} done, {running} running, {pending} pending, "
                f"{self.counts['stopped']} stopped by ASHA, {self.counts['failed']} failed; cells complete "
                f"{self.complete_cells()}/{len(self.cells)}; elapsed {_clock(elapsed)}, ETA {eta}")

    def _print(self, text: str) -> None:
        if self._bar is not None:
            self._bar.console.print(text, highlight=False, markup=False)
        else:
            print(text, file=self.out, flush=True)

    def _refresh(self, force: bool = False) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=self.counts["done"], description=self.line())
        elif force or time.time() - self._last_line >= max(self.every_s, SPARSER * (time.time() - self.start)):
            self._last_line = time.time()
            self._print(self.line())

    # --- Tune's hooks -------------------------------------------------------------------------

    def setup(self, **info):
        if self.live:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn
            self._bar = Progress(BarColumn(bar_width=24), TextColumn("{task.description}"),
                                 console=Console(file=self.out), transient=True)
            self._task = self._bar.add_task(self.line(), total=self.planned, completed=self.counts["done"])
            self._bar.start()
        # a sweep of several Tune experiments sets this up for each: its first line only once
        self._refresh(force=self._last_line == 0.0)

    def on_step(self, iteration, trials, **info):
        self._refresh()

    def on_trial_start(self, iteration, trials, trial, **info):
        self.running[trial.trial_id] = len(member_configs(trial.config))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        configs = member_configs(trial.config)
        parts = member_results(result) if is_fused(trial.config) else {0: result}     # a fused trial's members
        for k, metrics in parts.items():
            value = metrics.get(self.metric)
            if value is None or (isinstance(value, float) and math.isnan(value)) or k >= len(configs):
                continue
            cell = trial.config.get(CELL_KEY, "")
            if cell not in self.best or value > self.best[cell][0]:
                self.best[cell] = (float(value), metrics.get("test_acc"), configs[k].get(LR_KEY))

    def _ended(self, trial, how: str) -> None:
        """A trial has ended: each of its members (a fused trial's) counts as a trial."""
        self.running.pop(trial.trial_id, None)
        cell = trial.config.get(CELL_KEY, "")
        for k in range(len(member_configs(trial.config))):
            stopped = member_key(trial.trial_id, k) in self.stopped if is_fused(trial.config) else how == "stopped"
            self.counts["done"] += 1
            self.counts["stopped" if stopped and how != "failed" else how] += 1
            self.done_in_cell[cell] += 1
            if self.done_in_cell[cell] == self.samples:
                self._cell_complete(cell)
        self._refresh()

    def _cell_complete(self, cell: str) -> None:
        if self.cell_lines < CELL_LINES:
            self.cell_lines += 1
            val, test, lr = self.best.get(cell, (None, None, None))
            best = "no result" if val is None else f"best {self.metric} {pct(val)} %" + (
                f" (test {pct(test)} %)" if test is not None else "") + (f" at lr {lr:.3g}" if lr else "")
            more = f" (further cells: a line per tenth of them; every cell is in the report)" \
                if self.cell_lines == CELL_LINES and len(self.cells) > CELL_LINES else ""
            self._print(f"cell {cell}: complete, {best}{more}")
            return
        share = self.complete_cells() / max(1, len(self.cells))
        if share >= self._next_share:
            self._next_share = math.floor(share * 10 + 1) / 10
            self._print(f"cells complete: {self.complete_cells()} of {len(self.cells)}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._ended(trial, "stopped" if trial.trial_id in self.stopped else "finished")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._ended(trial, "failed")

    def on_experiment_end(self, trials, **info):
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        self._print(self.line())
