"""Deep prompts (seed Table 3): dataset x injection layer x prompts x position, lr per cell.

Layers are named (first, middle, last): on ViT-B/32's 12 blocks they are the seed's 0, 6 and 11,
and the same grid applies to a backbone of any depth (`--set backbone=...`)."""
from reports import deep
from reports.section import ReportSection
from search_spaces.experiment import Experiment, LogUniform, Profile
from trainables.experiments.prompt_training import DEEP_PROMPT

LR = LogUniform(4.0, 400.0)        # a decade either side of the course's SGD lr of 40

EXPERIMENT = Experiment(
    name="deep",
    trainable=DEEP_PROMPT,
    summary="deep prompts: dataset x layer {first,middle,last} x prompts {1,4,8} x front/back, lr by ASHA per cell",
    profiles={
        "full": Profile(
            base=dict(model="ViT-B-32", pretrained="openai", data="real", epochs=20,
                      batch_size=128, warmup_steps=1000),
            grid=dict(dataset=["cifar10", "cifar100"], layer=["first", "middle", "last"], n_prompts=[1, 4, 8],
                      position=["front", "back"]),
            lr=LR, samples=4, grace_period=2),
        # The same grid on tiny-clip's 4 blocks: layers 0, 2 and 3.
        "smoke": Profile(
            base=dict(model="tiny-clip", pretrained="none", data="synthetic", epochs=2,
                      batch_size=32, warmup_steps=10),
            grid=dict(dataset=["cifar10", "cifar100"], layer=["first", "middle", "last"], n_prompts=[1, 4, 8],
                      position=["front", "back"]),
            lr=LR, samples=2),
    },
    report=ReportSection("2.3", "Deep prompts", deep.report, deep.headline),
    tiny=dict(layer=1, n_prompts=2, position="after_cls"),
    smoke_args=("--set", "dataset=cifar10"),     # the tests' store: one dataset is enough
)
