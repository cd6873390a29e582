"""Shared fixtures: no network, synthetic CIFAR written once, one Ray for the whole session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never download: a missing file must surface as the offline error, quickly.
os.environ["ORCHESTRATOR_NO_DOWNLOAD"] = "1"
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    from trainables.cifar import load_cifar
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
