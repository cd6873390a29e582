"""Robustness to noise (seed Table 5): the best CIFAR-100 padding prompt of the `visual` sweep and
the best fc-only ResNet-18 (no augmentation) of the `finetune` sweep, found in MLflow by the
driver; clean, N(0, 0.1) and a curve of noise levels."""
from reports import robustness
from reports.section import ReportSection
from search_spaces.experiment import Experiment, Profile
from trainables.experiments.robustness import ROBUSTNESS, source_of

GRID = dict(model=["clip_padding", "resnet_fc"])

EXPERIMENT = Experiment(
    name="robustness",
    trainable=ROBUSTNESS,
    summary="CIFAR-100 test + Gaussian noise: best padding prompt (visual) vs fc-only ResNet-18 (finetune)",
    metric="clean_acc",
    profiles={
        "full": Profile(base=dict(data="real", noise_std=0.1, curve="0,0.05,0.1,0.2,0.4", batch_size=256),
                        grid=GRID, lr=None, samples=1),
        "smoke": Profile(base=dict(data="synthetic", noise_std=0.1, curve="0,0.05,0.1,0.2,0.4", batch_size=64),
                         grid=GRID, lr=None, samples=1),
    },
    report=ReportSection("2.4", "Robustness to noise", robustness.report, robustness.headline),
    source=source_of, upstream=("visual", "finetune"),
    tiny=dict(model="resnet_fc", batch_size=64, curve="0,0.2"),
)
