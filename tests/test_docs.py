"""The front door and its guides: the README stays one page that links every guide, and every
link between them lands on a file that exists and a heading that is there."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _prose(path: Path) -> list[str]:
    """The lines outside fenced blocks (a link in a code block is text, not a link)."""
    lines, fenced = [], False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {slug(m.group(1)) for line in _prose(path) if (m := re.match(r"^#+ (.*)$", line))}


def test_slug_is_githubs():
    assert slug("What a sweep will cost: `--dry-run`") == "what-a-sweep-will-cost---dry-run"
    assert slug("Beyond the study: backbones, template sets") == "beyond-the-study-backbones-template-sets"


def test_every_link_in_the_readme_and_the_guides_lands():
    checked = 0
    for doc in DOCS:
        for target in (t for line in _prose(doc) for t in LINK.findall(line)):
            if re.match(r"[a-z]+://|mailto:", target):
                continue
            file, _, anchor = target.partition("#")
            dest = (doc.parent / file).resolve() if file else doc
            assert dest.exists(), f"{doc.relative_to(ROOT)}: link to {target}: no such file"
            if anchor:
                assert anchor in _anchors(dest), f"{doc.relative_to(ROOT)}: link to {target}: no such heading"
            checked += 1
    assert checked >= 20


def test_the_readme_is_one_page_that_links_every_guide():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    linked = {(ROOT / t.partition("#")[0]).resolve() for line in _prose(ROOT / "README.md")
              for t in LINK.findall(line) if t.startswith("docs/")}
    assert set(DOCS[1:]) <= linked, sorted(p.name for p in set(DOCS[1:]) - linked)


# --- every shell block a user would copy is run by a test or says why not ----------------------

MARKER = re.compile(r"^<!-- shell: (.+) -->$")
REF = re.compile(r"(?<![\w/])((?:tests|scripts|clusters)/[\w/.-]+\.py|\.ci/run)(?:::(\w+))?")


def _shell_blocks() -> list[tuple[str, int, str | None]]:
    """(file, line, the marker above it or None) of each ```bash block."""
    out = []
    for doc in DOCS:
        lines = doc.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.strip() == "```bash":
                above = MARKER.match(lines[i - 1].strip()) if i else None
                out.append((str(doc.relative_to(ROOT)), i + 1, above.group(1) if above else None))
    return out


def test_every_shell_block_is_run_by_a_test_or_says_why_not():
    blocks = _shell_blocks()
    assert len(blocks) >= 10
    unmarked = [f"{f}:{n}" for f, n, marker in blocks if marker is None]
    assert unmarked == [], "a ```bash block needs `<!-- shell: run by TEST -->` or `<!-- shell: not run ...: WHY -->` above it"
    for f, n, marker in blocks:
        assert marker.startswith(("run by", "not run")), f"{f}:{n}: {marker}"
        refs = REF.findall(marker)
        if not marker.startswith("not run"):
            assert refs, f"{f}:{n}: a block run by a test names it"
        for path, test in refs:
            assert (ROOT / path).is_file(), f"{f}:{n}: {path} does not exist"
            if test:
                assert re.search(rf"^def {test}\(", (ROOT / path).read_text(), re.M), f"{f}:{n}: no {path}::{test}"


def test_the_example_sweep_files_cost_is_printed_as_the_guide_says(capsys, monkeypatch):
    """docs/sweeps.md's first line, as written (no data, Ray or MLflow needed, nothing written)."""
    from orchestrator.commands.cli import main
    text = (ROOT / "docs" / "sweeps.md").read_text()
    line = next(l for l in text.splitlines() if l.startswith("python -m orchestrator sweep examples/deep_grid.toml --dry"))
    argv = line.split("#")[0].split()[3:]
    assert argv == ["sweep", "examples/deep_grid.toml", "--dry-run", "--profile", "full"]
    monkeypatch.chdir(ROOT)         # the guide's path is the checkout's
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("plan for sweep deep-grid (full): 36 cells x 4 learning rates = 144 trials")


def test_the_fast_tier_is_what_the_readme_names():
    """The README's fast command selects the tier tests/conftest.py declares: the marker exists,
    every test the tier names one by one exists, and the tier holds most of the suite's checks
    and its one-cell run of every sweep (its speed is measured in docs/testing.md, not here)."""
    import subprocess
    import sys
    import tomllib

    from conftest import FAST_TESTS
    assert "python -m pytest -q -m fast" in (ROOT / "README.md").read_text()
    markers = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["markers"]
    assert any(m.startswith("fast:") for m in markers)
    for entry in FAST_TESTS:
        path, test = entry.split("::")
        assert re.search(rf"^def {test}\(", (ROOT / "tests" / path).read_text(), re.M), entry
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "fast", "-p", "no:cacheprovider",
                          "-n", "0"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300).stdout
    chosen = [line for line in out.splitlines() if "::" in line]
    assert len(chosen) > 400 and not any("test_durability.py" in line or "test_many_machines.py" in line for line in chosen)
    assert "tests/test_study_experiments.py::test_report_all_of_one_cell_per_sweep_has_every_section" in chosen
    # the one-line bugs of issue #40 are each caught by a test of the tier (scripts/one_line_bugs.py)
    sys.path.insert(0, str(ROOT / "scripts"))
    from one_line_bugs import BUGS
    named = {test.split("[")[0] for *_, tests in BUGS[13:22] for test in tests}   # bugs 14 to 22
    assert len(named) == 9 and named <= {line.split("[")[0] for line in chosen}, named
