"""Zero-shot CLIP (seed Table 1): one trial per dataset, nothing tuned."""
from search_spaces.spec import Profile, SweepSpace

SWEEP = SweepSpace(
    name="zeroshot",
    trainable="zeroshot",
    summary="CLIP ViT-B/32 zero-shot top-1 on CIFAR-10/100 train and test (no tuning)",
    metric="test_acc",
    profiles={
        "full": Profile(base=dict(model="ViT-B-32", pretrained="openai", data="real", batch_size=256),
                        grid=dict(dataset=["cifar10", "cifar100"]), lr=None, samples=1),
        "smoke": Profile(base=dict(model="tiny-clip", pretrained="none", data="synthetic", batch_size=64),
                         grid=dict(dataset=["cifar10", "cifar100"]), lr=None, samples=1),
    },
)
