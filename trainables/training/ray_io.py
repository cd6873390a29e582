"""The only place trainables touch Ray: reporting and restoring through ray.tune."""
from __future__ import annotations

import contextlib
import logging
import math
from pathlib import Path
from typing import Callable, Collection, Iterator

from clip_prompt_sweeps.names import MEMBER_RESULTS

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


def _lead(parts: list[tuple[int, dict]]) -> dict:
    def score(metrics: dict) -> float:
        value = metrics.get("val_acc", float("nan"))
        return value if isinstance(value, (int, float)) and math.isfinite(value) else -math.inf
    return max((m for _, m in parts), key=score)


def tune_fused_report(parts: list[tuple[int, dict]], checkpoint_dir: str | None) -> None:
    """One Ray result for an epoch of a fused trial: each member's metrics under MEMBER_RESULTS
    (what the driver's ASHA, searcher and MLflow runs read), and at the top the metrics of the
    member leading on validation, which Tune's own checks and tables read."""
    tune_report({**_lead(parts), MEMBER_RESULTS: {str(k): m for k, m in parts}}, checkpoint_dir)


def tune_member_stops(actor_name: str | None) -> Callable[[], Collection[int]]:
    """The members of this fused trial that the driver's ASHA has stopped: it posts them to a
    named actor before the report that made it stop them returns (Tune's function trainables
    report synchronously)."""
    def stopped() -> Collection[int]:
        if not actor_name:
            return frozenset()
        import ray
        from ray import tune
        return frozenset(ray.get(ray.get_actor(actor_name).stopped.remote(tune.get_context().get_trial_id())))
    return stopped


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
