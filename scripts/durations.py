"""Where the suite's time goes, per test file, from a JUnit XML file of a whole run (issue #37).

    python -m pytest -q --junitxml=suite.xml --durations=0 > durations.txt
    python scripts/durations.py suite.xml            # a markdown table, slowest file first

A test's time in the XML is its setup, call and teardown together, so a session fixture (one Ray,
the study store: every sweep once) is counted in the first test that asks for it; `--durations=0`
shows those setups on lines of their own. What each file waits on is read from its tests (KINDS).
"""
from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

# what the time of a file is spent on, read from its tests
KINDS = {
    "test_many_machines.py": "node boots: namespaces joined by veth pairs, a Ray node started in each; sweeps across them",
    "test_durability.py": "sweeps killed (SIGKILL, Ctrl-C) at several moments, each resumed: Ray started per sweep",
    "test_real_clusters.py": "a single-node SLURM job in a namespace, stopped by its time limit's signal and resumed",
    "test_study_reports.py": "the study store (every sweep once, in its first test), then reports read from it",
    "test_independent.py": "the study store, copied and planted; sweeps of its own",
    "test_postgres_store.py": "a PostgreSQL server and an MLflow server started",
    "test_mlflow_ui.py": "an MLflow server and a headless browser",
    "test_store_faults.py": "sweeps against a store that fails, a real `mlflow server` stopped and started again",
    "test_reliability.py": "sweeps with failing trials and lost workers",
    "test_scale_store.py": "20,000 runs written into MLflow's tables, then read by each command",
    "test_cluster.py": "a Ray cluster of three nodes on one machine, an `mlflow server`, the CLI in a subprocess",
    "test_study_experiments.py": "the study store; every sweep at one cell for `report all`",
    "test_sweep.py": "sweeps on the session's Ray",
}


def by_file(xml: Path) -> dict[str, list[tuple[str, float]]]:
    files: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for case in ET.parse(xml).getroot().iter("testcase"):
        path = case.get("classname", "").split(".")
        name = next((p for p in path if p.startswith("test_")), path[-1]) + ".py"
        files[name].append((case.get("name", ""), float(case.get("time", 0))))
    return files


def table(files: dict[str, list[tuple[str, float]]]) -> list[str]:
    total = sum(t for cases in files.values() for _, t in cases) or 1.0     # a run of instant tests
    rows = ["| file | tests | minutes | share | slowest test (s) | what it waits on |", "|---|---|---|---|---|---|"]
    for name, cases in sorted(files.items(), key=lambda kv: -sum(t for _, t in kv[1])):
        spent = sum(t for _, t in cases)
        slow, slow_t = max(cases, key=lambda c: c[1])
        rows.append(f"| {name} | {len(cases)} | {spent / 60:.1f} | {100 * spent / total:.0f} % | "
                    f"{slow[:60].replace('|', '/')} ({slow_t:.0f}) | {KINDS.get(name, 'quick checks, small sweeps')} |")
    rows.append(f"| all | {sum(map(len, files.values()))} | {total / 60:.1f} | 100 % | | |")
    return rows


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_file():
        print("usage: python scripts/durations.py SUITE.xml (from python -m pytest --junitxml=SUITE.xml)",
              file=sys.stderr)
        return 2
    try:
        files = by_file(Path(argv[0]))
    except ET.ParseError as e:
        print(f"{argv[0]} is not a JUnit XML file ({e}): write one with python -m pytest --junitxml={argv[0]}",
              file=sys.stderr)
        return 2
    print("\n".join(table(files)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
