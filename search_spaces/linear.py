"""Linear probe on frozen CLIP features (beyond the seed): dataset, lr per cell."""
from reports import linear
from reports.section import ReportSection
from search_spaces.experiment import Experiment, LogUniform, Profile
from trainables.experiments.linear_probe import LINEAR_PROBE

LR = LogUniform(1e-4, 1e-1)

EXPERIMENT = Experiment(
    name="linear",
    trainable=LINEAR_PROBE,
    summary="linear probe on frozen CLIP ViT-B/32 features: CIFAR-10 and CIFAR-100, lr by ASHA",
    profiles={
        "full": Profile(
            base=dict(model="ViT-B-32", pretrained="openai", data="real", epochs=30, batch_size=256),
            grid=dict(dataset=["cifar10", "cifar100"]), lr=LR, samples=6, grace_period=3),
        "smoke": Profile(
            base=dict(model="tiny-clip", pretrained="none", data="synthetic", epochs=3, batch_size=64),
            grid=dict(dataset=["cifar10", "cifar100"]), lr=LR, samples=2),
    },
    report=ReportSection("2.3+", "Linear probe (beyond the seed)", linear.report, linear.headline),
)
