"""Zero-shot CLIP (seed section 2.1a): top-1 on the train and test splits of CIFAR-10/100 against
the text features of one template (the seed's) or of a template set (CLIP's ensemble). Image features are computed once per split and text features
once per class set; nothing is learned, so the trial reports once."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

from clip_prompt_sweeps.errors import UserError
from clip_prompt_sweeps.names import DATASET_KEY
from trainables.data.catalog import check_dataset, load_dataset
from trainables.data.pipeline import DeviceData
from trainables.data.record import dataset_record
from trainables.models.clip import TextHead, class_text_features, load_clip
from trainables.models.clip_config import BackboneConfig, TextConfig
from trainables.paths import data_dir
from trainables.training.device import pick_device
from trainables.training.entry import trainable
from trainables.training.features import FeatureData
from trainables.training.loop import Reporter, evaluate


@dataclass
class ZeroShotConfig(BackboneConfig, TextConfig):
    dataset: str = "cifar10"            # cifar10 | cifar100 | a torchvision dataset | folder:PATH
    data: str = "real"                  # real | synthetic
    data_dir: Optional[str] = None
    batch_size: int = 256
    device: str = "auto"

    def check(self) -> None:
        check_dataset(self.dataset, self.data)
        self.check_backbone()
        self.templates()
        if self.batch_size < 1:
            raise UserError(f"'batch_size' must be at least 1, got {self.batch_size}")


def run_zeroshot(cfg: ZeroShotConfig, report: Reporter, resume_dir=None) -> dict:
    device = pick_device(cfg.device)
    clip = load_clip(cfg.model, cfg.pretrained, device)
    data = load_dataset(cfg.dataset, data_dir(cfg.data_dir), cfg.data, clip.preprocess.size,
                        clip.preprocess.interpolation)
    head = TextHead(clip, class_text_features(clip, data.classes, cfg.templates()))
    start = time.perf_counter()
    metrics = {}
    for name, split in (("train", data.train), ("test", data.test)):
        features = FeatureData.from_split(DeviceData(split, device, clip.preprocess), clip.model.encode_image,
                                          cfg.batch_size)
        metrics[f"{name}_acc"] = evaluate(head, features, cfg.batch_size)
    seconds = time.perf_counter() - start
    metrics["images_per_s"] = (len(data.train.labels) + len(data.test.labels)) / seconds
    metrics["trainable_params"] = 0.0       # nothing is learned: the accuracy-vs-parameters figure's origin
    report({**metrics, DATASET_KEY: dataset_record(data, "evaluation", train=len(data.train.labels),
                                                   test=len(data.test.labels))}, None)
    return metrics


ZEROSHOT = trainable(
    "zeroshot", ZeroShotConfig, run_zeroshot,
    "CLIP zero-shot top-1 on train and test, one template or a set (nothing learned)",
    ("train_acc", "test_acc", "images_per_s", "trainable_params"))
