"""ResNet-18 fine-tuning (seed section 1.2): what is trained x augmentation, lr per cell."""
from reports import finetune
from reports.section import ReportSection
from search_spaces.experiment import Experiment, LogUniform, Profile
from trainables.experiments.finetune import FINETUNE

LR = LogUniform(1e-4, 1e-2)         # a decade either side of the course's Adam lr of 1e-3
GRID = dict(variant=["fc", "fc_first_conv", "fc_last_conv"], augment=["none", "hflip", "crop"])

EXPERIMENT = Experiment(
    name="finetune",
    trainable=FINETUNE,
    summary="ResNet-18 on CIFAR-100: fc / fc+first conv / fc+last conv x no aug / flip / crop, lr by ASHA",
    profiles={
        "full": Profile(
            base=dict(dataset="cifar100", weights="IMAGENET1K_V1", data="real", epochs=30,
                      batch_size=128, image_size=224),
            grid=GRID, lr=LR, samples=4, grace_period=3),
        # the same grid on a random ResNet-18 at CIFAR's own 32 px
        "smoke": Profile(
            base=dict(dataset="cifar100", weights="none", data="synthetic", epochs=2,
                      batch_size=64, image_size=32),
            grid=GRID, lr=LR, samples=2),
    },
    report=ReportSection("1.2", "Fine-tuning ResNet-18", finetune.report, finetune.headline),
    tiny=dict(weights="none", image_size=32, augment="hflip"),
)
