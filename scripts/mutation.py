"""Mutation testing of the core pieces, with mutmut (README "Testing").

    pip install -e ".[dev,mutation]"
    python scripts/mutation.py          # mutmut run, then the score of each core piece
    python scripts/mutation.py --report # the scores of the last run only

mutmut mutates the files listed under [tool.mutmut] in pyproject.toml and runs, for each mutant,
the fast tests that reach the mutated function. This script groups the results by the core
piece each function belongs to (a file also holds functions that only the slower tests reach,
counted apart) and lists every surviving mutant; `mutmut show NAME` prints its change.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# core piece -> (module, the functions and classes that make it; empty: the whole module)
PIECES = {
    "scheduler (PerCellASHA)": ("orchestrator.schedulers", ()),
    "searcher (CellSearcher, round_robin)": ("orchestrator.searchers", ()),
    "tracking callback (MLflowTrials)": ("orchestrator.tracking", ("MLflowTrials", "_numeric", "_run_name",
                                                                   "_error_line")),
    "report's best per cell": ("reports.runs", ("best_per_cell", "best_test")),
    "source selection": ("orchestrator.sources", ("best_source_run", "_matches")),
    "resize (PIL-exact)": ("trainables.resize", ()),
    "CIFAR unpickler": ("trainables.cifar", ("_CifarUnpickler", "_only_empty", "read_batch")),
    "prompt insertion (deep prompts)": ("trainables.prompts", ("insert_prompts", "DeepPrompt")),
}
CAUGHT = {"killed", "timeout"}
_KEY = re.compile(r"^\s*(?P<module>[\w.]+?)\.x(?:ǁ(?P<cls>\w+)ǁ(?P<method>\w+?)|_(?P<fn>\w+?))__mutmut_\d+: (?P<status>.+)$")


def piece_of(module: str, name: str) -> str:
    for piece, (mod, names) in PIECES.items():
        if mod == module and (not names or name in names):
            return piece
    return f"(rest of {module})"


def report() -> int:
    out = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    counts: dict[str, Counter] = defaultdict(Counter)
    survivors: dict[str, list[str]] = defaultdict(list)
    for line in out.splitlines():
        m = _KEY.match(line)
        if not m:
            continue
        piece = piece_of(m["module"], m["cls"] or m["fn"])
        counts[piece][m["status"]] += 1
        if m["status"] not in CAUGHT:
            survivors[piece].append(f"{line.strip()}")
    if not counts:
        print("no mutation results: run `python scripts/mutation.py` first", file=sys.stderr)
        return 2
    print("| core piece | mutants | killed | survived | no tests | score |\n|---|---|---|---|---|---|")
    low = []
    for piece in [*PIECES, *sorted(p for p in counts if p not in PIECES)]:
        c = counts.get(piece, Counter())
        total = sum(c.values())
        if not total:
            continue
        score = sum(c[s] for s in CAUGHT) / total
        print(f"| {piece} | {total} | {sum(c[s] for s in CAUGHT)} | {c['survived']} | {c['no tests']} | "
              f"{100 * score:.0f} % |")
        if piece in PIECES and score < 0.85:
            low.append(piece)
    for piece, names in survivors.items():
        if piece in PIECES:
            print(f"\nnot killed in {piece}:\n  " + "\n  ".join(names))
    return 1 if low else 0


def main(argv: list[str]) -> int:
    if "--report" not in argv:
        children = str(max(1, (os.cpu_count() or 2)))
        done = subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", children], cwd=ROOT)
        if done.returncode not in (0, 1):
            return done.returncode
    return report()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
