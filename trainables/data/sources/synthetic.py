"""The synthetic source: CIFAR-10/100 written here in the exact archive format
(trainables/data/synthetic_archives.py) and read by CIFAR's own reader, offline and small: what
the smoke profile and the tests train on (`--set data=synthetic`, tagged data_kind=synthetic)."""
from __future__ import annotations

import json

from trainables.data.dataset import ImageDataset
from trainables.data.sources.cifar import CifarArchives


class SyntheticCifar(CifarArchives):
    kinds = ("synthetic",)

    def provenance(self, data: ImageDataset) -> tuple[str, str]:
        return "code", json.dumps({"generator": "trainables.data.synthetic_archives", "seeded": True})


SOURCE = SyntheticCifar()
