"""What a sweep is run with (`SweepOptions`: the command line's settings beside the plan) and what
every phase and Tune experiment of one running sweep shares (`Sweep`)."""
from __future__ import annotations

from dataclasses import dataclass

from mlflow.tracking import MlflowClient

from clip_prompt_sweeps.store.journal import Journal


@dataclass(frozen=True)
class SweepOptions:
    address: str | None = None
    tracking_uri: str | None = None
    storage_path: str | None = None     # None: $ORCHESTRATOR_STORAGE_PATH, else ~/ray_results
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None  # None: 0.5 where the cluster has GPUs, else 0
    max_concurrent: int | None = None
    search: str = "tpe"
    seed: int = 0
    max_failures: int = 2
    verbose: int = 0                     # Ray's own trial tables (1, `--verbose`); 0: the project's progress only
    progress: bool = True                # the progress line and a line per completed cell (progress.py)
    resume: bool = False                 # continue the latest interrupted sweep (rebuilt from MLflow)
    replicates: int = 0                  # after tuning, each cell's chosen lr again with this many new seeds
    # a bigger sweep runs as consecutive Tune experiments over groups of whole cells (driver._run_phase)
    trials_per_experiment: int = 2000
    # up to this many new learning rates of a cell trained as one fused trial, one pass over the
    # frozen backbone for all (issue #38); each still its own trial to ASHA, Optuna and MLflow
    fuse: int | None = None             # None: the profile's (a sweep file's `fuse`), else 1


@dataclass(frozen=True)
class Sweep:
    """What every phase and Tune experiment of one sweep shares."""
    opts: SweepOptions
    client: MlflowClient
    uri: str
    storage: str | None
    trainable: object
    exp: str
    parent: str
    child_tags: dict
    store: Journal          # the sweep's one journal: every write of every experiment goes through it
    base: str               # the name of its Ray experiments: NAME-PROFILE-PARENT[:8], then each phase's own
