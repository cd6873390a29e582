"""Shared fixtures: no network, synthetic CIFAR written once, one Ray for the whole session."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Tests never download: a missing file must surface as the offline error, quickly.
os.environ["ORCHESTRATOR_NO_DOWNLOAD"] = "1"
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# A profile chosen in the developer's shell must not change what the tests run.
os.environ.pop("ORCHESTRATOR_PROFILE", None)
# Writes an MLflow store refused wait in a journal: the tests' go to a folder of their own.
os.environ.setdefault("ORCHESTRATOR_JOURNAL_DIR", tempfile.mkdtemp(prefix="journal-"))


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    from trainables.data.sources.cifar import load_cifar
    root = tmp_path_factory.mktemp("data")
    for name in ("cifar10", "cifar100"):
        load_cifar(name, root, "synthetic")
    return root


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for every test that needs it, with 2 fake GPUs for the resource tests."""
    import ray
    ray.init(num_cpus=4, num_gpus=2, include_dashboard=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


@pytest.fixture
def tiny_prompt_config(data_root) -> dict:
    return dict(dataset="cifar10", data="synthetic", data_dir=str(data_root), model="tiny-clip",
                pretrained="none", epochs=1, batch_size=32, warmup_steps=2, device="cpu")


# Every registered sweep at its smoke size (fewest trials that still fill each report's tables), in
# one MLflow store, each after the sweeps whose models it evaluates: robustness and cross find
# their inputs among the visual and finetune runs made here. One learning rate and one epoch where
# a sweep learns: what the tests read is which run is best and what its report shows, not how far
# a tiny model learns. A record's `smoke_args` narrow it further.
ONE = ["--samples", "1", "--epochs", "1"]


def study_sweeps() -> list[tuple[str, list[str]]]:
    from search_spaces.registry import in_dependency_order, list_experiments
    return [(e.name, [*(ONE if e.profiles["smoke"].lr else []), *e.smoke_args])
            for e in in_dependency_order(list_experiments())]


@pytest.fixture(scope="session")
def study_store(ray_session, data_root, tmp_path_factory):
    """(tracking URI, folder) holding a smoke run of every sweep and the two classify figures."""
    from orchestrator.cli import main
    folder = tmp_path_factory.mktemp("study")
    uri = f"sqlite:///{folder}/mlflow.db"
    common = ["--tracking-uri", uri, "--data-dir", str(data_root), "--gpus-per-trial", "0"]
    for name, extra in study_sweeps():
        assert main(["sweep", name, *extra, "--storage-path", str(folder / f"ray-{name}"), *common]) == 0, name
    for preset in ("colour", "origin"):
        assert main(["classify", "--preset", preset, "--data", "synthetic", "--data-dir", str(data_root), "--n", "4",
                     "--model", "tiny-clip", "--pretrained", "none", "--out", str(folder / "out")]) == 0
    return uri, folder
