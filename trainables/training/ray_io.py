"""The only place trainables touch Ray: reporting and restoring through ray.tune."""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Iterator

from trainables.training.system import system_metrics

# Ray logs one INFO line per saved checkpoint; a sweep saves one per trial per epoch.
logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)


def tune_report(metrics: dict, checkpoint_dir: str | None) -> None:
    import ray
    from ray import tune
    checkpoint = tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
    # the node, not only its IP: several nodes can share one machine (and one IP)
    tune.report({**metrics, **system_metrics(), "node_id": ray.get_runtime_context().get_node_id()},
                checkpoint=checkpoint)


@contextlib.contextmanager
def tune_resume_dir(earlier: str | None = None) -> Iterator[Path | None]:
    """The trial's last checkpoint as a local folder, or None. Ray's own (a retry within this
    session) is newer than `earlier` (the checkpoint of an interrupted session), so it wins."""
    from ray import tune
    checkpoint = tune.get_checkpoint()
    if checkpoint is None and earlier:
        checkpoint = tune.Checkpoint(earlier)      # downloads from s3://, gs://... when needed
    if checkpoint is None:
        yield None
        return
    with checkpoint.as_directory() as folder:
        yield Path(folder)
