"""MLflow writes that survive a store that is down, and values that are too long.

The driver logs every trial; if the tracking server is unreachable for longer than the client's
own retries, or SQLite stays locked, a write raises inside Tune's callback and would end the
whole sweep. `Journal` retries each write with backoff; what still fails is appended to a
JSON-lines file on the driver's disk and written, in order, as soon as the store answers again
(the next write tries first), at the end of the sweep, or by the next `--resume`. Once a write is
journaled, later ones queue behind it, so the store sees them in the order they happened.

A param or tag longer than MLflow accepts is cut with a marker, and the full value goes into an
artifact beside it (`values/KEY.txt`), rather than failing the write.

The journal is read back as if a stranger wrote it: its folder is named by a digest of the run id
(never by the id's text), every entry must have the shape this module writes, and a file it
uploads must lie inside the journal's own folder, under a plain file name. When the driver has
lost its lease (clip_prompt_sweeps/store/lease.py), the journal is fenced: it writes nothing more.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from pathlib import Path

import platformdirs
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_TAG_VAL_LENGTH

from clip_prompt_sweeps.errors import UserError
from clip_prompt_sweeps.store.records import RUN_ID, run_id

log = logging.getLogger(__name__)
PENDING_TAG = "pending_writes"
_MARKER = " …[cut; the full value is the artifact values/{key}.txt]"
# errors a retry cannot fix: the write is dropped with a warning instead of blocking the queue
_PERMANENT = {"INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "BAD_REQUEST", "INVALID_STATE"}


JOURNAL_ENV = "ORCHESTRATOR_JOURNAL_DIR"


_OPS = {"create_run", "log_batch", "set_terminated", "update_run", "delete_tag", "log_artifact", "log_dataset"}
_LOCAL_ID = re.compile(r"local-[0-9a-f]{32}")
_FILE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,255}")
_STATUSES = {"RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"}


# Sweeps whose lease this driver process lost (clip_prompt_sweeps/store/lease.py): their journals write nothing more.
# A module-level set, not a callable on the journal: Tune pickles its callbacks, and the journal with them.
_FENCED: set[str] = set()


def fence(parent_run_id: str) -> None:
    _FENCED.add(parent_run_id)


def journal_dir(parent_run_id: str) -> Path:
    """$ORCHESTRATOR_JOURNAL_DIR, else the user's cache: on the driver's machine, one folder per
    sweep, named by a digest of its checked run id (a store's text never becomes a path)."""
    root = os.environ.get(JOURNAL_ENV) or Path(platformdirs.user_cache_dir("clip-prompt-sweeps")) / "journal"
    digest = hashlib.sha256(run_id(parent_run_id, "parent run id").encode()).hexdigest()[:32]
    return Path(root) / f"sweep-{digest}"


def _permanent(err: Exception) -> bool:
    return isinstance(err, MlflowException) and err.error_code in _PERMANENT


def clean_dataset(record: dict) -> dict:
    """A trial's dataset record with only the fields MLflow takes, cut to its column sizes
    (ValueError or TypeError for one that is not a record)."""
    def text(key: str, limit: int) -> str:
        return str(record.get(key, ""))[:limit] or "unknown"
    splits = {str(k)[:20]: int(v) for k, v in dict(record.get("splits") or {}).items()}
    return {"name": text("name", 500), "digest": text("digest", 36), "source_type": text("source_type", 36),
            "source": text("source", 5000), "context": text("context", 100),
            "profile": json.dumps({"splits": splits, "num_rows": sum(splits.values()),
                                   "classes": int(record.get("classes") or 0)})}


def dataset_input(clean: dict) -> DatasetInput:
    dataset = Dataset(name=clean["name"], digest=clean["digest"], source_type=clean["source_type"],
                      source=clean["source"], profile=clean["profile"])
    return DatasetInput(dataset, tags=[InputTag("mlflow.data.context", clean["context"])])


class Journal:
    """The write side of an MlflowClient for one sweep; reads stay on the client."""

    def __init__(self, client: MlflowClient, parent_run_id: str, retries: int = 3, backoff_s: float = 0.5,
                 folder: Path | None = None):
        self.client, self.parent = client, parent_run_id
        self.retries, self.backoff_s = retries, backoff_s
        self.folder = folder or journal_dir(parent_run_id)
        self.path = self.folder / "pending.jsonl"
        self.delayed = 0        # writes this session had to keep on disk
        self.dropped = 0        # writes refused because the driver lost its lease
        self.recheck_s, self._next_flush = 5.0, 0.0
        self.ids_path = self.folder / "ids.json"
        self.ids: dict[str, str] = self._read_ids()     # runs created from the journal: its id -> MLflow's

    def _read_ids(self) -> dict[str, str]:
        try:
            ids = json.loads(self.ids_path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            ids = None
        if not isinstance(ids, dict) or not all(isinstance(k, str) and _LOCAL_ID.fullmatch(k) and isinstance(v, str)
                                                and RUN_ID.fullmatch(v) for k, v in ids.items()):
            raise UserError(f"journal {self.ids_path} is not what this project writes; move it away, then "
                            f"--resume again")
        return ids

    # --- the writes the project makes ---------------------------------------------------------

    def create_run(self, experiment_id: str, run_name: str, tags: dict) -> str:
        """The new run's id; while the store is down, an id of the journal's that later writes
        use, and that becomes MLflow's own when the creation goes through."""
        local = f"local-{uuid.uuid4().hex}"
        self._write("create_run", local, experiment_id=experiment_id, run_name=run_name, tags=tags)
        return self.ids.get(local, local)

    def log_batch(self, run_id: str, metrics=(), params=(), tags=()) -> None:
        params = [Param(p.key, self._fit(run_id, p.key, p.value, MAX_PARAM_VAL_LENGTH)) for p in params]
        tags = [RunTag(t.key, self._fit(run_id, t.key, t.value, MAX_TAG_VAL_LENGTH)) for t in tags]
        self._write("log_batch", run_id,
                    metrics=[[m.key, m.value, m.timestamp, m.step] for m in metrics],
                    params=[[p.key, p.value] for p in params], tags=[[t.key, t.value] for t in tags])

    def set_tag(self, run_id: str, key: str, value) -> None:
        self.log_batch(run_id, tags=[RunTag(key, str(value))])

    def set_terminated(self, run_id: str, status: str) -> None:
        self._write("set_terminated", run_id, status=status)

    def update_run(self, run_id: str, status: str) -> None:
        self._write("update_run", run_id, status=status)

    def delete_tag(self, run_id: str, key: str) -> None:
        self._write("delete_tag", run_id, key=key)

    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None) -> None:
        self._write("log_artifact", run_id, local_path=local_path, artifact_path=artifact_path)

    def log_dataset(self, run_id: str, record: dict) -> None:
        """A trial's dataset record (trainables/data/record.py) as the run's dataset input."""
        try:
            record = clean_dataset(record)
        except (ValueError, TypeError, AttributeError) as err:
            log.warning("run %s: dataset record not logged (%s)", run_id, err)
            return
        self._write("log_dataset", run_id, record=record)

    # --- machinery ------------------------------------------------------------------------------

    def _fit(self, run_id: str, key: str, value: str, limit: int) -> str:
        value = str(value)
        if len(value) <= limit:
            return value
        with_marker = _MARKER.format(key=key)
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", key)[:100] + ".txt"
        full = self.folder / "values" / f"{uuid.uuid4().hex[:8]}-{name}"
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_text(value)
        self._write("log_artifact", run_id, local_path=str(full), artifact_path="values", name=name)
        return value[:limit - len(with_marker)] + with_marker

    def _apply(self, op: str, run_id: str, **kw) -> None:
        c = self.client
        if op == "create_run":
            self.ids[run_id] = c.create_run(kw["experiment_id"], run_name=kw["run_name"], tags=kw["tags"]).info.run_id
            if self.path.exists():      # a creation the journal held: later entries name its id
                tmp = self.ids_path.with_suffix(".tmp")
                tmp.write_text(json.dumps(self.ids))
                os.replace(tmp, self.ids_path)
            return
        run_id = self.ids.get(run_id, run_id)
        if op == "log_batch":
            # an entry's lists may be absent or None (the check admits both): nothing of that kind
            c.log_batch(run_id, metrics=[Metric(*m) for m in kw.get("metrics") or ()],
                        params=[Param(*p) for p in kw.get("params") or ()],
                        tags=[RunTag(*t) for t in kw.get("tags") or ()])
        elif op == "set_terminated":
            c.set_terminated(run_id, status=kw["status"])
        elif op == "update_run":
            c.update_run(run_id, status=kw["status"])
        elif op == "delete_tag":
            c.delete_tag(run_id, kw["key"])
        elif op == "log_dataset":
            c.log_inputs(run_id, datasets=[dataset_input(kw["record"])])
        elif op == "log_artifact":
            source = Path(kw["local_path"])
            if kw.get("name"):          # logged under its own name (values/KEY.txt)
                with _renamed(source, kw["name"]) as named:
                    c.log_artifact(run_id, str(named), kw["artifact_path"])
            else:
                c.log_artifact(run_id, str(source), kw["artifact_path"])
        else:
            raise ValueError(op)

    def _try(self, op: str, run_id: str, kw: dict) -> bool:
        for attempt in range(self.retries):
            try:
                self._apply(op, run_id, **kw)
                return True
            except Exception as err:  # noqa: BLE001 - a store that is down raises many kinds
                if _permanent(err):
                    log.warning("MLflow refused %s on run %s: %s (not retried)", op, run_id, str(err)[:300])
                    return True
                if attempt + 1 < self.retries:
                    time.sleep(self.backoff_s * 2 ** attempt)
        return False

    def _write(self, op: str, run_id: str, **kw) -> None:
        if self.fenced():       # another driver holds the sweep now: this one writes nothing more
            self.dropped += 1
            return
        if self.pending() and time.monotonic() >= self._next_flush:
            self.flush()
        if not self.pending() and self._try(op, run_id, kw):
            return
        self._append(op, run_id, kw)

    def _append(self, op: str, run_id: str, kw: dict) -> None:
        self.delayed += 1
        if op == "log_artifact":     # the file may be a trial's temporary checkpoint: keep a copy
            name = kw.get("name") or re.sub(r"[^A-Za-z0-9_.-]", "_", Path(kw["local_path"]).name)[:200]
            copy = self.folder / "files" / f"{uuid.uuid4().hex[:8]}-{name}"
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(kw["local_path"], copy)
            kw = {**kw, "local_path": str(copy), "name": name}
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps({"op": op, "run_id": run_id, **kw}) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def fenced(self) -> bool:
        return self.parent in _FENCED

    def _checked(self, entry, number: int) -> tuple[str, str, dict]:
        """(op, run id, arguments) of a journal line, checked as if someone else wrote it."""
        def bad(what: str) -> UserError:
            return UserError(f"journal {self.path} line {number}: {what} is not what this project writes; move the "
                             f"file away (its writes are then lost), then --resume again")
        if not isinstance(entry, dict) or not isinstance(entry.get("op"), str) or entry["op"] not in _OPS:
            raise bad("the entry")
        kw = {k: v for k, v in entry.items() if k not in ("op", "run_id")}
        target = entry.get("run_id")
        if not isinstance(target, str) or not (RUN_ID.fullmatch(target) or _LOCAL_ID.fullmatch(target)):
            raise bad("its run id")
        op = entry["op"]
        if op in ("set_terminated", "update_run") and not (isinstance(kw.get("status"), str)
                                                          and kw["status"] in _STATUSES):
            raise bad("its status")
        if op == "log_artifact":
            self._check_artifact(kw, bad)
        elif op == "create_run" and not (isinstance(kw.get("experiment_id"), str) and isinstance(kw.get("run_name"), str)
                                         and isinstance(kw.get("tags"), dict) and _pairs(list(kw["tags"].items()))):
            raise bad("its new run")
        elif op == "log_batch" and not (_pairs(kw.get("params")) and _pairs(kw.get("tags")) and _metrics(kw.get("metrics"))):
            raise bad("its values")
        elif op == "delete_tag" and not isinstance(kw.get("key"), str):
            raise bad("its key")
        elif op == "log_dataset" and not isinstance(kw.get("record"), dict):
            raise bad("its dataset")
        return op, target, kw

    def _check_artifact(self, kw: dict, bad) -> None:
        """An upload from the journal: a regular file inside this journal's folder, logged under a
        plain name into a relative artifact folder."""
        source, name, folder = kw.get("local_path"), kw.get("name"), kw.get("artifact_path")
        inside = self.folder.resolve()
        if not isinstance(source, str) or Path(source).is_symlink() or \
                inside not in Path(os.path.realpath(source)).parents or not Path(source).is_file():
            raise bad("its file to upload")
        if name is not None and (not isinstance(name, str) or not _FILE_NAME.fullmatch(name) or name in (".", "..")):
            raise bad("its artifact name")
        if folder is not None and (not isinstance(folder, str) or folder.startswith("/") or ".." in folder.split("/")):
            raise bad("its artifact folder")

    def pending(self) -> int:
        try:
            return sum(1 for line in self.path.read_text().splitlines() if line.strip())
        except FileNotFoundError:
            return 0

    def flush(self) -> int:
        """Write what is pending, in order, until a write fails; returns how many are left."""
        try:
            lines = [line for line in self.path.read_text().splitlines() if line.strip()]
        except FileNotFoundError:
            return 0
        done = 0
        for number, line in enumerate(lines, 1):
            try:
                entry = json.loads(line)
            except ValueError:      # a line cut by a kill mid-append: nothing to write
                done += 1
                continue
            op, target, kw = self._checked(entry, number)
            if self.fenced() or not self._try(op, target, kw):
                break
            done += 1
        rest = lines[done:]
        # while the store is down, try it again only every few seconds, not at every write
        self._next_flush = time.monotonic() + (self.recheck_s if rest else 0.0)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(line + "\n" for line in rest))
        os.replace(tmp, self.path)      # never half-written
        return len(rest)


def _pairs(items) -> bool:
    """[[key, text], ...] (also [] and None for none)."""
    return items is None or (isinstance(items, list) and all(
        isinstance(i, (list, tuple)) and len(i) == 2 and all(isinstance(x, str) for x in i) for i in items))


def _metrics(items) -> bool:
    """[[key, value, timestamp, step], ...]."""
    return items is None or (isinstance(items, list) and all(
        isinstance(i, list) and len(i) == 4 and isinstance(i[0], str) and isinstance(i[1], (int, float))
        and all(isinstance(x, int) and not isinstance(x, bool) for x in i[2:]) for i in items))


class _renamed:
    """A file under another name for the time of an upload (MLflow names artifacts after files)."""

    def __init__(self, source: Path, name: str):
        self.source, self.name = source, name

    def __enter__(self) -> Path:
        import tempfile
        if not _FILE_NAME.fullmatch(self.name) or self.name in (".", ".."):
            raise ValueError(f"artifact name {self.name!r}")
        self.tmp = tempfile.TemporaryDirectory()
        target = Path(self.tmp.name) / self.name
        shutil.copy(self.source, target)
        return target

    def __exit__(self, *exc) -> None:
        self.tmp.cleanup()
