"""CIFAR-110 (seed section 2.5): the padding prompts the `visual` sweep learnt on CIFAR-10 and on
CIFAR-100, each as a 110-way classifier over both test sets."""
from search_spaces.spec import Profile, SweepSpace

GRID = dict(prompt_from=["cifar10", "cifar100"])

SWEEP = SweepSpace(
    name="cross",
    trainable="cross",
    summary="CIFAR-110: the padding prompts learnt on CIFAR-10 and on CIFAR-100, 110-way",
    metric="combined_acc",
    profiles={
        "full": Profile(base=dict(data="real", batch_size=256), grid=GRID, lr=None, samples=1),
        "smoke": Profile(base=dict(data="synthetic", batch_size=64), grid=GRID, lr=None, samples=1),
    },
)
