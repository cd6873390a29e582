"""`doctor --cluster-config FILE`: what to fix in a cluster file before a cluster starts. For each
kind of cluster (orchestrator/clusters/kinds/: AWS, on-premise, SLURM): its own tool's check of
the file's form (Ray's schema, bash), the values still at their shipped examples (lines marked
`# SET:`), the form of the storage paths (shared by every node), and that nothing binds to every
interface, in the file and in the node scripts it runs (clusters/node/*.sh, read from this
checkout only: a name taken from the file never leads anywhere else)."""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from clip_prompt_sweeps.errors import UserError
from orchestrator.clusters.kinds import kind_of

NODE_SCRIPTS = Path(__file__).resolve().parents[2] / "clusters" / "node"

# the example values the shipped files carry on their `# SET:` lines
EXAMPLES = {"123456789012": "the example AWS account", "my-sweeps-bucket": "the example bucket",
            "192.0.2.": "an example address", "researcher": "the example user",
            "/nfs/clip-sweeps": "the example NFS path"}
_SET = re.compile(r"#\s*SET\b[^:]*:\s*(.*)$")
_SCRIPT = re.compile(r"clusters/node/(\w+\.sh)\b")
_STORAGE = re.compile(r"--(?:storage|artifacts)\s+\"?([^\s\"]+)|(?:STORAGE_PATH|TRACKING_URI)(?:=|:-)\"?([a-z0-9]+:[^\s\"}]+)")
_EVERY_INTERFACE = re.compile(r"0\.0\.0\.0|\[::\]|--(?:dashboard-)?host[= ]\"?(?!127\.0\.0\.1|localhost)[^\s\"]+")
_SHARED = ("s3://", "gs://", "file:///", "file://$", "http://127.0.0.1", "sqlite:///$")


@dataclass
class Checked:
    kind: str
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def examples_left(text: str) -> list[str]:
    """One line for each `# SET:` line that still holds a shipped example value."""
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        marker = _SET.search(line)
        if not marker:
            continue
        value = line[:marker.start()]
        for example, what in EXAMPLES.items():
            if example in value:
                out.append(f"line {number}: {what} ({example!r}) is still there; SET: {marker.group(1).strip()}")
                break
    return out


def node_scripts(text: str) -> list[Path]:
    """The node scripts of this checkout that the file runs."""
    names = sorted(set(_SCRIPT.findall(text)))
    return [NODE_SCRIPTS / n for n in names if (NODE_SCRIPTS / n).is_file()]


def storage_problems(text: str) -> tuple[list[str], list[str]]:
    """(the storage paths and stores found, the ones no other node could reach)."""
    found = [a or b for a, b in _STORAGE.findall(text)]
    return found, [f"storage {s} is not shared by the nodes: use s3://, gs:// or file:///NFS/PATH"
                   for s in found if not s.startswith(_SHARED)]


def code_lines(text: str):
    """(line number, its words as the shell reads them): a '#' starts a comment only where the
    shell's does (at a word's start, outside quotes), so `echo '#'; cmd` keeps `cmd`. A line the
    shell cannot split alone (a quote that spans lines) is kept whole: nothing is cut from it.
    A scheduler's directive (`#SBATCH ...`, indented or not) is such a comment: it runs nothing."""
    for number, line in enumerate(text.splitlines(), 1):
        try:
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split, lexer.commenters = True, "#"
            words = list(lexer)
        except ValueError:
            words = [line]
        if words:
            yield number, " ".join(words)


# What leaves a door open: Ray's authentication turned off, or a `ray stop` (it stops every Ray
# of the account on the machine: other users' or jobs', where the account or machine is shared).
_AUTH_OFF = re.compile(r"RAY_AUTH_MODE(=|:-|:=|\s*:\s*)\s*disabled")
_AUTH_ON = re.compile(r"RAY_AUTH_MODE=token\b")
_RAY_STOP = re.compile(r"(^|[\s;&|(])ray stop\b")


def open_binds(text: str, where: str) -> list[str]:
    out = []
    for number, code in code_lines(text):
        hit = _EVERY_INTERFACE.search(code)
        if hit:
            out.append(f"{where} line {number}: {hit.group(0)!r} listens beyond 127.0.0.1; bind to 127.0.0.1 and "
                       f"forward the port over SSH")
        if _AUTH_OFF.search(code):
            out.append(f"{where} line {number}: Ray's token authentication is turned off; anyone who reaches the "
                       f"nodes could run code on them: keep RAY_AUTH_MODE=token")
        if _RAY_STOP.search(code):
            out.append(f"{where} line {number}: `ray stop` stops every Ray of this account on the machine (other "
                       f"jobs' and clusters' too); stop the Ray this file started, by its process id")
    return out


def auth_problems(texts: list[str]) -> list[str]:
    """Token authentication must be turned on by the file or by a node script it runs."""
    if any(_AUTH_ON.search(code) for text in texts for _, code in code_lines(text)):
        return []
    return ["Ray's token authentication is not turned on (RAY_AUTH_MODE=token) by the file or its node scripts; "
            "Ray's ports would take code from anyone who reaches them"]


def check_cluster_file(path: Path, text: str) -> Checked:
    kind = kind_of(text)
    checked = Checked(kind.describe(text))
    scripts = node_scripts(text)
    if scripts:
        checked.notes.append(f"runs {', '.join(f'clusters/node/{s.name}' for s in scripts)}")
    stores, bad = storage_problems(text)
    if stores:
        checked.notes.append(f"storage: {', '.join(stores)}")
    checked.problems += bad
    checked.problems += open_binds(text, path.name)
    script_texts = [script.read_text() for script in scripts]
    for script, script_text in zip(scripts, script_texts):
        checked.problems += open_binds(script_text, f"clusters/node/{script.name}")
    checked.problems += auth_problems([text, *script_texts])
    checked.problems += examples_left(text)
    return checked


def doctor_cluster_file(name: str) -> tuple[list[str], bool]:
    """doctor's lines for a cluster file, and whether it is ready to start a cluster; a file that
    cannot be read or fails its own tool's check is bad input (one line)."""
    path = Path(name)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cluster config {name}: cannot read it ({getattr(err, 'strerror', None) or err})") from None
    checked = check_cluster_file(path, text)
    form = kind_of(text).validate(name)
    lines = [f"cluster config {name}: {checked.kind}, {form}", *(f"  {note}" for note in checked.notes),
             *(f"  to fix: {problem}" for problem in checked.problems),
             f"{len(checked.problems)} thing(s) to fix" if checked.problems else "ready: nothing to fix"]
    return lines, not checked.problems
