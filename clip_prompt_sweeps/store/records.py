"""The one reader of what a store says: every tag and param the project reads back from MLflow is
parsed here, once, into a typed record with bounds, or refused in one line that names the run and
the value.

An MLflow store may be shared: anyone who can write it (a colleague, an edit of a SQLite file) can
put any text in any tag. So run ids are checked against MLflow's own id form before any use, no
number is trusted to be finite or small, JSON is parsed into the shape expected or refused, and
text meant for a terminal is cleaned of control characters. No file path is ever built from a
value read here: the records carry ids, numbers and words, never a place to read or write.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

from clip_prompt_sweeps.errors import UserError
from clip_prompt_sweeps.names import LR_KEY

# MLflow's own form of a run id (mlflow.utils.validation._RUN_ID_REGEX); MLflow makes uuid4 hex
RUN_ID = re.compile(r"[a-zA-Z0-9][\w\-]{0,255}")
TRIAL_ID = re.compile(r"[A-Za-z0-9_]{1,64}")        # a Ray trial id: 'a1b2c3d4_00001'
TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")
NODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.:_-]{0,254}")        # a node's address or host name, as Ray reports it
MAX_NODES = 64                       # nodes a trial ran on that its run remembers
MAX_PID = 4_194_304                  # the kernel's largest pid_max
MAX_TEXT = 1000                      # a cell key, a host or a reason longer than this is cut
MAX_SAMPLES = 10_000                 # learning rates per cell
MAX_EPOCHS = 100_000
MAX_REPLICATES = 1_000
MAX_SEED = 2**63 - 1
MAX_LIST = 1_000                     # --set / --grid entries in a recorded sweep
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")   # and bidi controls

# tag and param names the project writes and reads back
LEASE_TAG = "driver_lease"
ARGS_TAG = "sweep_args"
SOURCES_TAG = "source_runs"
SWEEP_FILE_TAG = "sweep_file"       # the absolute path of a TOML sweep file: printed, never opened
SUPERSEDED_TAG = "superseded_by"
CELL_TAG = "cell"
OUTCOME_TAG = "outcome"
# How a child run ended (tag `outcome`). Only these three mean "this trial is over".
DONE = ("finished", "stopped_early", "diverged")
REPLICATE_TAG = "replicate"
NODES_TAG = "nodes"                 # every node a trial ran on, oldest first (a retry moves it)


def printable(value, limit: int = 200) -> str:
    """Text from a store as a terminal may show it: control and bidi characters as '?', cut."""
    text = _CONTROL.sub("?", str(value))
    return text if len(text) <= limit else text[:limit] + "…"


def _refuse(run: str, what: str, value, fix: str = "") -> UserError:
    return UserError(f"run {printable(run, 60)}: {what} {printable(repr(value), 120)} is not what this project "
                     f"writes{'; ' + fix if fix else ''}")


def run_id(value, where: str = "run id") -> str:
    """A run id in MLflow's own form, or one line naming it."""
    if not isinstance(value, str) or not RUN_ID.fullmatch(value):
        raise UserError(f"{where} {printable(repr(value), 120)} is not an MLflow run id (letters, digits, '_' "
                        f"and '-', at most 256); the store holds a run that MLflow did not make")
    return value


def finite(value, low: float = -math.inf, high: float = math.inf) -> float | None:
    """A float within [low, high], else None (not a number, infinite, out of range)."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) and low <= number <= high else None


def whole(value, low: int, high: int) -> int | None:
    """A whole number within [low, high] (from an int, or a string of ASCII digits), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        if not re.fullmatch(r"\s*-?[0-9]{1,20}\s*", value):      # ASCII digits, as this project writes them
            return None
        value = int(value)
    if not isinstance(value, int) or not low <= value <= high:
        return None
    return value


def _text(value, limit: int = MAX_TEXT) -> str:
    return str(value)[:limit]


# --- the lease -------------------------------------------------------------------------------

@dataclass(frozen=True)
class LeaseRecord:
    host: str           # cleaned for a terminal
    pid: int
    time: float         # when it was written, by the writer's clock
    token: str
    released: bool = False


def read_lease(tags: dict) -> LeaseRecord | None:
    """The lease a driver wrote, or None: never taken, or not a lease this project writes (a
    malformed lease holds nothing, so a forged one cannot lock a sweep for ever)."""
    raw = tags.get(LEASE_TAG)
    if not isinstance(raw, str) or len(raw) > 2000:
        return None
    try:
        lease = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(lease, dict):
        return None
    pid, when = whole(lease.get("pid"), 1, MAX_PID), finite(lease.get("time"), 0.0)
    host, token = lease.get("host"), lease.get("token", "")
    if pid is None or when is None or not isinstance(host, str) or not host or not isinstance(token, str) \
            or (token and not TOKEN.fullmatch(token)):
        return None
    return LeaseRecord(printable(host, 255), pid, when, token, lease.get("released") is True)


# --- what a sweep was started with ----------------------------------------------------------

@dataclass(frozen=True)
class SweepArgs:
    """make_plan's inputs and the driver's choices, as the first session recorded them."""
    sets: tuple[str, ...] = ()
    grids: tuple[str, ...] = ()
    samples: int | None = None
    epochs: int | None = None
    search: str = "tpe"
    seed: int = 0
    replicates: int = 0
    sweep_file_sha256: str | None = None    # a sweep from a TOML file: the file's digest then


def _strings(run: str, key: str, value) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_LIST or not all(isinstance(v, str) and len(v) <= 5000
                                                                       for v in value):
        raise _refuse(run, f"tag {ARGS_TAG} field {key!r}", value, "start a new sweep without --resume")
    return tuple(value)


def read_sweep_args(run: str, raw: str | None) -> SweepArgs | None:
    """The recorded sweep_args of a parent run; None where an older version recorded none."""
    if raw is None:
        return None
    fix = "start a new sweep without --resume"
    try:
        args = json.loads(raw) if isinstance(raw, str) and len(raw) <= 200_000 else None
    except ValueError:
        args = None
    if not isinstance(args, dict):
        raise _refuse(run, f"tag {ARGS_TAG}", raw, fix)

    def number(key: str, low: int, high: int, default):
        value = args.get(key, default)
        if value == default:        # None only where the default is None (no samples, no epochs given)
            return value
        checked = whole(value, low, high)
        if checked is None or not isinstance(value, int):
            raise _refuse(run, f"tag {ARGS_TAG} field {key!r}", value, fix)
        return checked

    search = args.get("search", "tpe")
    if search not in ("tpe", "random"):
        raise _refuse(run, f"tag {ARGS_TAG} field 'search'", search, fix)
    digest = args.get("sweep_file_sha256")
    if digest is not None and not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest)):
        raise _refuse(run, f"tag {ARGS_TAG} field 'sweep_file_sha256'", digest, fix)
    return SweepArgs(_strings(run, "sets", args.get("sets")), _strings(run, "grids", args.get("grids")),
                     number("samples", 1, MAX_SAMPLES, None), number("epochs", 1, MAX_EPOCHS, None), search,
                     number("seed", 0, MAX_SEED, 0), number("replicates", 0, MAX_REPLICATES, 0), digest)


def read_sources(run: str, raw: str | None) -> dict[str, str] | None:
    """cell key -> the source run id each cell of a robustness/cross sweep evaluates."""
    if raw is None:
        return None
    try:
        sources = json.loads(raw) if len(raw) <= 200_000 else None
    except ValueError:
        sources = None
    if not isinstance(sources, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in sources.items()):
        raise _refuse(run, f"tag {SOURCES_TAG}", raw, "start a new sweep without --resume")
    return {k: run_id(v, f"run {run}: tag {SOURCES_TAG}: source run") for k, v in sources.items()}


# --- runs ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ParentRecord:
    """A sweep's parent run."""
    run_id: str
    experiment_id: str
    sweep: str
    profile: str | None
    status: str
    start_time: int
    end_time: int
    cells: int | None               # params as the sweep logged them; None where missing or not a count
    samples_per_cell: int | None
    replicates: int
    search: str | None
    git_commit: str
    data_kind: str | None
    lease: LeaseRecord | None
    sweep_file: str | None          # printable, for the commands status suggests; never opened
    tags_for_children: dict = field(default_factory=dict)
    args_tag: str | None = None     # raw: read_sweep_args parses it where a resume needs it
    sources_tag: str | None = None


_CHILD_TAGS = ("sweep", "profile", "data_kind", "git_commit")


def read_parent(run) -> ParentRecord:
    tags, params, info = run.data.tags, run.data.params, run.info
    rid = run_id(info.run_id, "parent run id")
    sweep_file = tags.get(SWEEP_FILE_TAG)
    return ParentRecord(
        rid, str(info.experiment_id), _text(tags.get("sweep", ""), 200), tags.get("profile"), str(info.status),
        int(info.start_time or 0), int(info.end_time or 0),
        whole(params.get("cells"), 0, 10**9), whole(params.get("samples_per_cell"), 1, MAX_SAMPLES),
        whole(params.get("replicates", "0"), 0, MAX_REPLICATES) or 0, tags.get("search"),
        _text(tags.get("git_commit", ""), 64), tags.get("data_kind"), read_lease(tags),
        printable(sweep_file, 4096) if isinstance(sweep_file, str) and sweep_file.endswith(".toml") else None,
        {k: _text(tags[k], 5000) for k in _CHILD_TAGS if k in tags}, tags.get(ARGS_TAG), tags.get(SOURCES_TAG))


MEMBER_TAG = "fused_member"     # a fused trial's member: its index (orchestrator/sweep/tracking.py)
MAX_MEMBERS = 1024


@dataclass(frozen=True)
class TrialRecord:
    """A sweep's child run."""
    run_id: str
    cell: str
    lr: float | None                # a positive finite learning rate, else None
    status: str
    outcome: str | None
    stop_reason: str
    replicate: int | None
    trial_ids: tuple[str, ...]      # every Ray trial id the run has had, oldest first
    nodes: tuple[str, ...]          # every node it ran on, oldest first (its last `node` where older)
    superseded: bool
    start_time: int
    params: dict                    # as logged (text); the reports type them for their tables
    metrics: dict                   # last value of each metric
    tags: dict                      # the project's own tags (not MLflow's), text
    member: int | None = None       # its index in a fused trial (its folder in that trial's checkpoints)

    @property
    def is_replicate(self) -> bool:
        return self.replicate is not None

    def metric(self, key: str) -> float | None:
        value = self.metrics.get(key)
        return value if isinstance(value, float) and not math.isnan(value) else None

    @property
    def diverged(self) -> bool:
        return self.metrics.get("diverged") == 1


def read_nodes(tags: dict) -> tuple[str, ...]:
    """The nodes a trial ran on: its `nodes` tag, or its last `node` (runs logged before the tag);
    anything that is not an address or a host name is left out."""
    raw = tags.get(NODES_TAG) or tags.get("node") or ""
    words = str(raw)[:20_000].split()
    return tuple(dict.fromkeys(w for w in words if NODE.fullmatch(w)))[:MAX_NODES]


def served_by(runs: list[TrialRecord]) -> int:
    """How many nodes ran at least one of the trials (a trial that moved counts each of its)."""
    return len({node for r in runs for node in r.nodes})


def read_trial(run) -> TrialRecord:
    tags, params, info = run.data.tags, run.data.params, run.info
    rid = run_id(info.run_id, "child run id")
    ids = tags.get("ray_trial_ids") or tags.get("ray_trial_id") or ""
    trial_ids = tuple(i for i in str(ids)[:20_000].split() if TRIAL_ID.fullmatch(i))
    replicate = whole(tags.get(REPLICATE_TAG), 1, MAX_REPLICATES) if REPLICATE_TAG in tags else None
    return TrialRecord(
        rid, _text(tags.get(CELL_TAG, ""), 5000), finite(params.get(LR_KEY), 0.0) or None, str(info.status),
        tags.get(OUTCOME_TAG), _text(tags.get("stop_reason", ""), MAX_TEXT), replicate, trial_ids,
        read_nodes(tags),
        SUPERSEDED_TAG in tags, int(info.start_time or 0), dict(params),
        {k: float(v) for k, v in run.data.metrics.items()},
        {k: v for k, v in tags.items() if not k.startswith("mlflow.")},
        whole(tags.get(MEMBER_TAG), 0, MAX_MEMBERS) if MEMBER_TAG in tags else None)
