"""Model comparison (seed section 1.1): one trial per model, nothing tuned. Timing trials run one
at a time on a whole device (`exclusive`): two timed models sharing a GPU or the CPU cores would
slow each other down."""
from reports import compare
from reports.section import ReportSection
from search_spaces.experiment import Experiment, Profile
from trainables.experiments.compare import COMPARE

MODELS = ["vgg11", "vgg11_bn", "resnet18", "densenet121", "mobilenet_v3_small", "vit_b_32",
          "vit_small_patch8_224"]

EXPERIMENT = Experiment(
    name="compare",
    trainable=COMPARE,
    summary="7 ImageNet models: ms/image (batch 8) and memory (batch 64) with/without no_grad, params, top-1",
    metric="ms_per_image_no_grad",
    exclusive=True,
    profiles={
        "full": Profile(base=dict(image_size=224, time_batch=8, memory_batch=64, warmup=10, repeats=50),
                        grid=dict(model=MODELS), lr=None, samples=1),
        # the same seven architectures at 32 px and a few passes: checks the pipeline, not speed
        "smoke": Profile(base=dict(image_size=32, time_batch=8, memory_batch=8, warmup=1, repeats=3),
                         grid=dict(model=MODELS), lr=None, samples=1),
    },
    report=ReportSection("1.1", "Comparing models", compare.report),
    tiny=dict(model="mobilenet_v3_small", image_size=32, warmup=1, repeats=2),
)
