"""compare, robustness, cross and `report all`, on the study store of conftest (a smoke run of
every sweep through the CLI into one MLflow file). robustness and cross must find their inputs
among the visual and finetune runs made there, through MLflow alone."""
import json
import re

import pytest
import torchvision
from mlflow.tracking import MlflowClient

from clip_prompt_sweeps.errors import UserError
from clip_prompt_sweeps.names import cell_key
from orchestrator.commands.cli import main
from orchestrator.sweep.plan import make_plan
from orchestrator.sweep.source_runs import attach_sources
from trainables.data.sources.cifar import load_cifar
from output import command_err


def _parent(uri: str, sweep: str, where: str = ""):
    """The latest sweep run (matching `where`, an extra MLflow filter)."""
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(sweep)
    return client.search_runs([exp.experiment_id], "tags.role = 'sweep'" + where,
                              order_by=["attributes.start_time DESC"], max_results=1)[0]


# the study store's robustness sweep over both models (a pinned test below adds a one-cell one)
BOTH_MODELS = " and tags.source_runs LIKE '%model=clip_padding%'"


def _children(uri: str, sweep: str, where: str = "") -> list:
    parent = _parent(uri, sweep, where)
    return MlflowClient(uri).search_runs([parent.info.experiment_id],
                                         f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")


def _best(uri: str, sweep: str, **where):
    """The best-on-validation trial of a cell, found here independently of the orchestrator."""
    runs = [r for r in _children(uri, sweep) if all(r.data.params[k] == v for k, v in where.items())]
    return max(runs, key=lambda r: r.data.metrics["best_val_acc"])


def test_robustness_evaluates_the_best_visual_and_finetune_runs(study_store):
    uri, _ = study_store
    runs = {r.data.params["model"]: r for r in _children(uri, "robustness", BOTH_MODELS)}
    assert set(runs) == {"clip_padding", "resnet_fc"}
    sources = {"clip_padding": _best(uri, "visual", dataset="cifar100", prompt="padding"),
               "resnet_fc": _best(uri, "finetune", variant="fc", augment="none")}
    for model, run in runs.items():
        m, source = run.data.metrics, sources[model]
        assert run.info.status == "FINISHED"
        assert run.data.params["source_run"] == source.info.run_id        # recorded, as the user sees it
        # the same model, loaded from the source's artifact: its own test score comes back
        assert m["clean_acc"] == pytest.approx(source.data.metrics["test_acc"], abs=1e-9)
        assert m["source_test_acc"] == pytest.approx(source.data.metrics["test_acc"])
        assert {f"acc_noise_{level}" for level in ("0", "0.05", "0.1", "0.2", "0.4")} <= m.keys()
        assert m["noisy_acc"] == m["acc_noise_0.1"] and m["clean_acc"] == m["acc_noise_0"]
    # the parent keeps which run each cell evaluated: a resumed sweep evaluates the same ones
    recorded = json.loads(_parent(uri, "robustness", BOTH_MODELS).data.tags["source_runs"])
    assert recorded == {f"model={m}": r.data.params["source_run"] for m, r in runs.items()}


def test_a_resumed_sweep_takes_the_sources_its_parent_recorded(study_store, data_root):
    uri, _ = study_store
    plan = make_plan("robustness", "smoke", [f"data_dir={data_root}"])
    recorded = json.loads(_parent(uri, "robustness", BOTH_MODELS).data.tags["source_runs"])
    attached, sources = attach_sources(plan, uri, recorded)
    assert {k: v["source_run"] for k, v in attached.filled.items()} == recorded
    assert set(sources) == set(recorded.values())
    swapped = {cell_key(c): recorded["model=resnet_fc"] for c in plan.cells}     # a finetune run for the CLIP cell
    with pytest.raises(UserError, match="no trial of the 'visual' sweep cell"):
        attach_sources(plan, uri, swapped)


def test_cross_scores_each_padding_prompt_on_cifar110(study_store, data_root):
    uri, _ = study_store
    runs = {r.data.params["prompt_from"]: r for r in _children(uri, "cross")}
    assert set(runs) == {"cifar10", "cifar100"}
    n10, n100 = (len(load_cifar(d, data_root, "synthetic").test.labels) for d in ("cifar10", "cifar100"))
    for dataset, run in runs.items():
        m, source = run.data.metrics, _best(uri, "visual", dataset=dataset, prompt="padding")
        assert run.data.params["source_run"] == source.info.run_id
        assert m["own_acc"] == pytest.approx(source.data.metrics["test_acc"], abs=1e-9)
        assert m["combined_acc"] == pytest.approx((m["cifar10_acc"] * n10 + m["cifar100_acc"] * n100) / (n10 + n100))
        assert 0 <= m["cifar10_as_cifar100"] <= 1 and 0 <= m["cifar100_as_cifar10"] <= 1


def test_compare_measures_every_model_with_top1_from_the_weights_metadata(study_store):
    uri, _ = study_store
    runs = {r.data.params["model"]: r for r in _children(uri, "compare")}
    assert len(runs) == 7 and all(r.info.status == "FINISHED" for r in runs.values())
    resnet = runs["resnet18"]
    meta = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta
    assert resnet.data.metrics["imagenet_top1"] == meta["_metrics"]["ImageNet-1K"]["acc@1"]
    assert resnet.data.metrics["params"] == meta["num_params"]
    assert "torchvision" in resnet.data.tags["top1_source"]
    assert "DINO" in runs["vit_small_patch8_224"].data.tags["top1_source"]      # the source beside the figure
    for run in runs.values():
        assert run.data.metrics["ms_per_image_no_grad"] > 0 and run.data.metrics["ms_per_image_grad"] > 0
        assert "memory_mb_no_grad" not in run.data.metrics                       # a CPU run invents none
        assert run.data.tags["memory"] == "not measured (CPU)"


def test_report_all_has_every_section_and_one_self_contained_page(study_store):
    uri, folder = study_store
    out = folder / "out"
    assert main(["report", "all", "--tracking-uri", uri, "--out", str(out)]) == 0
    md = (out / "all" / "report.md").read_text()
    for title in ("(seed section 1.1)", "(seed section 1.2)", "(seed section 2.1a)", "2.1b CLIP on new tasks",
                  "(seed section 2.2)", "(seed section 2.3)", "Linear probe", "(seed section 2.4)",
                  "(seed section 2.5)"):
        assert re.search(rf"^## .*{re.escape(title)}", md, re.M), title
    assert "Not in this report" not in md and "not in this report" not in md
    assert "Pearson r" in md and "| 71.39 |" in md and "| 25.15 |" in md     # Figure 1's r; Table 5's seed
    glance = md[md.index("## At a glance"):md.index("## Comparing")]
    sections = {line.split(" | ")[0].strip("| ") for line in glance.splitlines() if line.startswith("| ")}
    assert {"1.2", "2.1a", "2.2", "2.3", "2.3+", "2.4", "2.5"} <= sections     # a headline row for each
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert {"compare_fig1_top1_vs_ms.png", "robustness_curve.png", "cross_bars.png", "classify_colour.png",
            "classify_origin.png"} <= set(images)
    assert all((out / "all" / name).is_file() for name in images)
    page = (out / "all" / "report.html").read_text()
    assert page.count("<img ") == len(images) and page.count('src="data:image/png;base64,') == len(images)
    assert page.count("<table>") == md.count("\n|---")


# One cell of each sweep where its report and its downstream sweeps need no more (robustness needs
# visual's CIFAR-100 padding prompt and finetune's fc-only model; cross both of visual's padding
# prompts): every report section built in seconds, for the fast tier.
ONE_CELL = {"compare": ["--set", "model=resnet18"], "cross": ["--set", "prompt_from=cifar10"],
            "deep": ["--set", "layer=first", "--set", "n_prompts=1", "--set", "position=front"],
            "finetune": ["--set", "variant=fc", "--set", "augment=none"], "linear": ["--set", "dataset=cifar10"],
            "zeroshot": ["--set", "dataset=cifar10"]}


@pytest.mark.fast
def test_report_all_of_one_cell_per_sweep_has_every_section(ray_session, data_root, tmp_path):
    from conftest import study_sweeps
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    common = ["--tracking-uri", uri, "--data-dir", str(data_root), "--gpus-per-trial", "0"]
    for name, extra in study_sweeps():
        assert main(["sweep", name, *extra, *ONE_CELL.get(name, []), "--storage-path", str(tmp_path / f"ray-{name}"),
                     *common]) == 0, name
    example = ["examples/deep_grid.toml", "--set", "dataset=cifar10", "--set", "layer=first", "--set", "n_prompts=1"]
    assert main(["sweep", *example, "--data-dir", str(data_root), "--samples", "1", "--epochs", "1", "--storage-path",
                 str(tmp_path / "ray-file"), *common[:2], "--gpus-per-trial", "0"]) == 0
    assert main(["report", "examples/deep_grid.toml", *common[:2], "--out", str(tmp_path / "out")]) == 0  # generic
    assert main(["report", "all", "--tracking-uri", uri, "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "all" / "report.md").read_text()
    for title in ("(seed section 1.1)", "(seed section 1.2)", "(seed section 2.1a)", "(seed section 2.2)",
                  "(seed section 2.3)", "Linear probe", "(seed section 2.4)", "(seed section 2.5)"):
        assert re.search(rf"^## .*{re.escape(title)}", md, re.M), title
    assert md.count("Not in this report") == 0 and "## At a glance" in md


def test_report_all_names_the_command_for_each_sweep_not_run(tmp_path):
    uri = f"sqlite:///{tmp_path}/m.db"
    MlflowClient(uri).search_experiments()          # an empty store
    assert main(["report", "all", "--tracking-uri", uri, "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "all" / "report.md").read_text()
    for sweep in ("compare", "finetune", "zeroshot", "visual", "deep", "linear", "robustness", "cross"):
        assert f"Run `python -m orchestrator sweep {sweep}`" in md, sweep
    assert "run `python -m orchestrator classify --preset colour`" in md
    assert (tmp_path / "out" / "all" / "report.html").is_file()


def test_a_pinned_source_run_is_used_and_a_wrong_one_is_refused(study_store, data_root, capsys):
    uri, folder = study_store
    visual = _best(uri, "visual", dataset="cifar100", prompt="padding")
    finetune = _best(uri, "finetune", variant="fc", augment="none")
    common = ["--tracking-uri", uri, "--data-dir", str(data_root), "--gpus-per-trial", "0",
              "--storage-path", str(folder / "ray-pinned")]
    assert main(["sweep", "robustness", "--set", "model=resnet_fc", "--set", f"source_run={finetune.info.run_id}",
                 *common]) == 0
    run = _children(uri, "robustness")[0]
    assert run.data.params["source_run"] == finetune.info.run_id
    capsys.readouterr()
    assert main(["sweep", "robustness", "--set", "model=resnet_fc", "--set", f"source_run={visual.info.run_id}",
                 *common]) == 2
    err = command_err(capsys)
    assert err.count("\n") == 1 and f"source_run={visual.info.run_id}" in err and "'finetune' sweep cell" in err
