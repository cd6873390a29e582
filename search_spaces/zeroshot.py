"""Zero-shot CLIP (seed Table 1): one trial per dataset, nothing tuned."""
from reports import zeroshot
from reports.section import ReportSection
from search_spaces.experiment import Experiment, Profile
from trainables.experiments.zeroshot import ZEROSHOT

EXPERIMENT = Experiment(
    name="zeroshot",
    trainable=ZEROSHOT,
    summary="CLIP ViT-B/32 zero-shot top-1 on CIFAR-10/100 train and test (no tuning)",
    metric="test_acc",
    profiles={
        "full": Profile(base=dict(model="ViT-B-32", pretrained="openai", data="real", batch_size=256),
                        grid=dict(dataset=["cifar10", "cifar100"]), lr=None, samples=1),
        "smoke": Profile(base=dict(model="tiny-clip", pretrained="none", data="synthetic", batch_size=64),
                         grid=dict(dataset=["cifar10", "cifar100"]), lr=None, samples=1),
    },
    report=ReportSection("2.1a", "CLIP zero-shot baseline", zeroshot.report, zeroshot.headline),
)
