"""Names the packages agree on: the keys the driver puts in a trial's config, the vocabulary of
datasets and data kinds, and the files a learned trial leaves."""
from __future__ import annotations

# Config keys that start with '_' are the driver's, never the trainable's: a typed config ignores
# them and MLflow does not log them as params.
PRIVATE_PREFIX = "_"
CELL_KEY = "_cell"              # the trial's grid cell, as cell_key() writes it (tag `cell` in MLflow)
RUN_KEY = "_run_id"             # the child run a continued trial logs into
RESUME_KEY = "_resume_from"     # the newest readable checkpoint of an interrupted session
# A fused trial (issue #38) trains several learning rates of one cell at once: its config holds
# each member's own keys under MEMBERS_KEY, each result each member's metrics under
# MEMBER_RESULTS ({"0": {...}, ...}), each checkpoint a folder per member (member_folder(k)) in a
# trial's own format, and MEMBER_STOPS_KEY names the actor where the driver's ASHA posts the
# members it stopped.
MEMBERS_KEY = "_members"
MEMBER_STOPS_KEY = "_member_stops"
MEMBER_RESULTS = "members"


def member_folder(k: int) -> str:
    return f"member-{k}"


def member_configs(config: dict) -> list[dict]:
    """Each member's config of a fused trial, as a trial of its own would have it: the cell's
    config with the member's own keys (its learning rate) over it. A trial's own: [config]."""
    if MEMBERS_KEY not in config:
        return [config]
    shared = {k: v for k, v in config.items() if k != MEMBERS_KEY}
    return [{**shared, **member} for member in config[MEMBERS_KEY]]


# The config key (and child-run tag) of a replicate: 0 is the tuned trial, k >= 1 its k-th rerun
# with new seeds (orchestrator/sweep/replicates.py)
REPLICATE_KEY = "replicate"
# The key of a trial's result that describes its data (trainables/data/record.py); the driver
# logs it as the run's MLflow dataset input.
DATASET_KEY = "dataset"
# The profile a sweep runs without --profile: a few minutes on a laptop (`full` is the study)
DEFAULT_PROFILE = "smoke"

# The learning rate: the key of a trial's config that each cell's Optuna study tunes, its run's
# MLflow param, and the column the reports read.
LR_KEY = "lr"
# The named injection layers of a deep prompt: a ViT's first block, its middle one, its last.
LAYER_NAMES = ("first", "middle", "last")


def named_layers(n_blocks: int) -> dict[str, int]:
    """Each layer name -> its block on a ViT of `n_blocks` blocks (ViT-B/32's 12: 0, 6, 11)."""
    return dict(zip(LAYER_NAMES, (0, n_blocks // 2, n_blocks - 1)))


# Datasets a trial trains or evaluates on, and where their images come from.
DATASETS = ("cifar10", "cifar100")
DATA_KINDS = ("real", "synthetic")

# What a learned trial leaves: its checkpoint files, and the MLflow artifacts made of them.
LATEST_FILE = "learned.safetensors"     # the parameters at the latest epoch
BEST_FILE = "best.safetensors"          # the parameters of the best-on-validation epoch
ARTIFACT_DIR = "learned"                # the artifact folder of a child run
BEST_ARTIFACT = f"{ARTIFACT_DIR}/{BEST_FILE}"


def is_private(key: str) -> bool:
    return key.startswith(PRIVATE_PREFIX)


def cell_key(cell: dict) -> str:
    """A stable, readable name of a cell: 'dataset=cifar10,layer=0,...'."""
    return ",".join(f"{k}={v}" for k, v in cell.items())


def cell_axes(key: str) -> list[str]:
    """The axis names of a cell key, in the grid's order ('' has none)."""
    return [part.split("=", 1)[0] for part in key.split(",") if "=" in part]


def is_replicate_cell(key: str) -> bool:
    """Whether a cell key is a replicate's (its cell plus `replicate=k`)."""
    return REPLICATE_KEY in cell_axes(key)
