"""Visual prompts (seed Table 2): dataset x {padding 30, fixed 1x1 patch}, lr per cell."""
from reports import visual
from reports.section import ReportSection
from search_spaces.experiment import Experiment, LogUniform, Profile
from trainables.experiments.prompt_training import VISUAL_PROMPT

LR = LogUniform(4.0, 400.0)

EXPERIMENT = Experiment(
    name="visual",
    trainable=VISUAL_PROMPT,
    summary="visual prompts: dataset x {padding 30, fixed patch 1}, lr by ASHA per cell",
    profiles={
        "full": Profile(
            base=dict(model="ViT-B-32", pretrained="openai", data="real", epochs=20,
                      batch_size=128, warmup_steps=1000),
            grid=dict(dataset=["cifar10", "cifar100"],
                      prompt=[dict(prompt="padding", prompt_size=30),
                              dict(prompt="fixed_patch", prompt_size=1)]),
            lr=LR, samples=4, grace_period=2),
        "smoke": Profile(
            base=dict(model="tiny-clip", pretrained="none", data="synthetic", epochs=3,
                      batch_size=32, warmup_steps=10),
            # padding 4 at 32 px covers the share of the image that padding 30 does at 224 px
            grid=dict(dataset=["cifar10", "cifar100"],
                      prompt=[dict(prompt="padding", prompt_size=4),
                              dict(prompt="fixed_patch", prompt_size=1)]),
            lr=LR, samples=2),
    },
    report=ReportSection("2.2", "Visual prompts", visual.report, visual.headline),
    tiny=dict(prompt="padding", prompt_size=4),
)
