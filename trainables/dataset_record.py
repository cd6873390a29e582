"""What a trial reports of the data it used, for its MLflow dataset input (the UI's Dataset
column): the dataset's name, a digest of its contents, where it came from, and the size of each
split the trial used. The driver logs it; a trainable only reports it."""
from __future__ import annotations

import hashlib
import json

from clip_prompt_sweeps.names import DATASET_KEY
from trainables.cifar import ARCHIVES, Cifar
from trainables.image_datasets import FOLDER_PREFIX, TORCHVISION
from trainables.loop import Reporter


def content_digest(data: Cifar) -> str:
    """A digest of the class names, pixels and labels read, so that two runs with one digest saw
    the same data (however the files got onto the node). blake2b reads CIFAR-100 in ~0.3 s."""
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps(data.classes).encode())
    for split in (data.train, data.val, data.test):
        if split is not None:
            h.update(split.images.contiguous().numpy().data)
            h.update(split.labels.contiguous().numpy().data)
    return h.hexdigest()


def _source(data: Cifar) -> tuple[str, str]:
    """(source type, source) as MLflow's dataset source fields take them."""
    if data.kind == "synthetic":
        return "code", json.dumps({"generator": "trainables.synthetic", "seeded": True})
    if data.name.startswith(FOLDER_PREFIX):
        return "local", json.dumps({"path": data.name[len(FOLDER_PREFIX):]})
    if data.name in TORCHVISION:
        return "code", json.dumps({"torchvision.datasets": TORCHVISION[data.name].cls})
    names = ("cifar10", "cifar100") if data.name == "cifar110" else (data.name,)
    return "http", json.dumps({"url": " ".join(ARCHIVES[n].url for n in names)})


def dataset_record(data: Cifar, context: str, **split_sizes: int) -> dict:
    """`context`: what the trial used the data for, in MLflow's words ("training", "evaluation")."""
    source_type, source = _source(data)
    return {"name": data.name if data.kind == "real" else f"{data.name}-synthetic",
            "digest": content_digest(data), "source_type": source_type, "source": source,
            "classes": len(data.classes), "splits": dict(split_sizes), "context": context}


def reporting_dataset(report: Reporter, record: dict) -> Reporter:
    """`report`, with the record added to the first result this process reports."""
    sent = False

    def with_record(metrics: dict, folder) -> None:
        nonlocal sent
        if not sent:
            metrics, sent = {**metrics, DATASET_KEY: record}, True
        report(metrics, folder)
    return with_record
