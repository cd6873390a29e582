"""Which modules of the project the fast tier (`pytest -m fast`) runs code of, and which it only
imports. Runs the tier under coverage (`pip install coverage`; not a dependency of the project)
in the driver process; code that runs only in Ray's workers is not counted.

    python scripts/fast_tier_coverage.py          # the tier, then one line per module it misses
"""
from __future__ import annotations

import ast
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("clip_prompt_sweeps", "trainables", "search_spaces", "reports", "orchestrator")
# runs only inside Ray's workers (every sweep of the tier reports through it): not measured here
WORKERS_ONLY = ("trainables/training/ray_io.py",)


def _body_lines(path: Path) -> set[int]:
    """The lines inside the module's functions: what importing it does not run."""
    lines = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0]
            start = first.end_lineno + 1 if isinstance(first, ast.Expr) and isinstance(
                getattr(first, "value", None), ast.Constant) and len(node.body) > 1 else first.lineno
            lines |= set(range(start, node.end_lineno + 1))
    return lines


def main() -> int:
    import coverage
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / ".coverage"
        run = subprocess.run([sys.executable, "-m", "coverage", "run", f"--data-file={data}",
                              f"--source={','.join(PACKAGES)}", "-m", "pytest", "-m", "fast", "-q",
                              "-p", "no:cacheprovider", "-n", "0"], cwd=ROOT)
        cov = coverage.Coverage(data_file=str(data))
        cov.load()
        measured = {str(Path(f).resolve()): set(cov.get_data().lines(f) or ()) for f in cov.get_data().measured_files()}
    missed = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            body = _body_lines(path)
            name = str(path.relative_to(ROOT))
            if body and name not in WORKERS_ONLY and not (measured.get(str(path.resolve()), set()) & body):
                missed.append(name)
    modules = sum(1 for p in PACKAGES for _ in (ROOT / p).rglob("*.py"))
    print(f"\nthe fast tier runs code of {modules - len(missed) - len(WORKERS_ONLY)} of {modules} modules in this "
          f"process, and {', '.join(WORKERS_ONLY)} in Ray's workers"
          + (f"; none of: {', '.join(missed)}" if missed else ""))
    return run.returncode or (1 if missed else 0)


if __name__ == "__main__":
    sys.exit(main())
