"""CIFAR-110 (seed section 2.5): the padding prompts the `visual` sweep learnt on CIFAR-10 and on
CIFAR-100, each as a 110-way classifier over both test sets."""
from reports import cross
from reports.section import ReportSection
from search_spaces.experiment import Experiment, Profile
from trainables.experiments.cross import CROSS, source_of

GRID = dict(prompt_from=["cifar10", "cifar100"])

EXPERIMENT = Experiment(
    name="cross",
    trainable=CROSS,
    summary="CIFAR-110: the padding prompts learnt on CIFAR-10 and on CIFAR-100, 110-way",
    metric="combined_acc",
    profiles={
        "full": Profile(base=dict(data="real", batch_size=256), grid=GRID, lr=None, samples=1),
        "smoke": Profile(base=dict(data="synthetic", batch_size=64), grid=GRID, lr=None, samples=1),
    },
    report=ReportSection("2.5", "CIFAR-110", cross.report, cross.headline),
    source=source_of, upstream=("visual",),
    reads=("cifar10", "cifar100"),     # CIFAR-110 is both test sets
    tiny=dict(prompt_from="cifar100", batch_size=64),
)
