"""The markdown this project writes, as one self-contained HTML page (figures inlined as base64):
a report someone can open, mail or attach without its folder. Only the subset the reports use is
understood: headings, paragraphs, pipe tables, bullet lists, images, `code`, **bold** and
backslash escapes (how reports/markdown.py writes values from MLflow).

An image is inlined only when it names, by a plain file name, a PNG that the report wrote into
its own folder; any other image line (a path, a URL, a name from a value) is shown as text and no
file is read for it."""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path

_IMAGE = re.compile(r"^!\[(?P<alt>[^\]]*)\]\((?P<src>[^)]+)\)$")
_FIGURE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*\.png$")
_ESCAPED = re.compile(r"\\([!-/:-@\[-`{-~])")      # a backslash before ASCII punctuation
_STYLE = """body{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem;line-height:1.45}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}td,th{border:1px solid #ccc;padding:.25rem .5rem}
th{background:#f3f3f3}tr:nth-child(even) td{background:#fafafa}img{max-width:100%;margin:.4rem .4rem 0 0}
code{background:#f3f3f3;padding:0 .2rem;border-radius:3px}h1,h2{border-bottom:1px solid #ddd}"""


def inline(text: str) -> str:
    # escaped characters are set aside first, so that no value can open markup, then restored
    kept: list[str] = []

    def keep(match: re.Match) -> str:
        kept.append(match.group(1))
        return f"\x00{len(kept) - 1}\x00"

    text = html.escape(_ESCAPED.sub(keep, text.replace("\x00", "")), quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)
    return re.sub("\x00(\\d+)\x00", lambda m: html.escape(kept[int(m.group(1))]), text)


def _cells(line: str) -> list[str]:
    """The cells of a table row, split on the pipes between cells, never on an escaped one."""
    cells, cell, i, body = [], "", 0, line.strip()
    body = body[1:] if body.startswith("|") else body
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            cell += body[i:i + 2]
            i += 2
            continue
        if body[i] == "|":
            cells.append(cell.strip())
            cell = ""
        else:
            cell += body[i]
        i += 1
    if cell.strip():
        cells.append(cell.strip())
    return cells


def _table(lines: list[str]) -> str:
    head = "".join(f"<th>{inline(c)}</th>" for c in _cells(lines[0]))
    body = "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in _cells(row)) + "</tr>" for row in lines[2:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _image(alt: str, src: str, folder: Path) -> str:
    path = folder / src
    if not _FIGURE_NAME.match(src) or path.is_symlink() or not path.is_file():
        return f"<p>{inline(f'[figure not inlined: {src}]')}</p>"
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def to_html(markdown: str, folder: Path, title: str) -> str:
    """`markdown` (whose images lie in `folder`) as one HTML document."""
    out, para, rows, items = [], [], [], []

    def flush():
        if para:
            out.append(f"<p>{inline(' '.join(para))}</p>")
            para.clear()
        if rows:
            out.append(_table(rows))
            rows.clear()
        if items:
            out.append("<ul>" + "".join(f"<li>{inline(i)}</li>" for i in items) + "</ul>")
            items.clear()

    for line in markdown.splitlines():
        heading, image = re.match(r"^(#{1,6}) (.*)$", line), _IMAGE.match(line.strip())
        if line.startswith("|") or line.startswith("- "):
            if para or (rows and line.startswith("- ")) or (items and line.startswith("|")):
                flush()
            (rows if line.startswith("|") else items).append(line if line.startswith("|") else line[2:])
            continue
        flush()
        if heading:
            n = len(heading.group(1))
            out.append(f"<h{n}>{inline(heading.group(2))}</h{n}>")
        elif image:
            out.append(_image(image["alt"], image["src"], folder))
        elif line.strip():
            para.append(line.strip())
    flush()
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>\n" + "\n".join(out) + "\n</body></html>\n")
