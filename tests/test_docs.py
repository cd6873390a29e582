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
