"""The study at a glance: its headline numbers, each beside the seed's, at the top of `report all`
(only for the sweeps that have run; the contents list says what has not)."""
from __future__ import annotations

from reports.markdown import diff, pct, seed_pct, table
from reports.prompt_reports import Sweep
from reports.runs import best_per_cell, best_test
from reports.seed import seed_best_deep, seed_results, seed_visual, seed_zeroshot

DATASETS = ("cifar10", "cifar100")


def _finetune(sw: Sweep) -> list[tuple]:
    best, seeds = best_per_cell(sw.trials, ["variant", "augment"]), seed_results()["finetune_resnet18_cifar100"]
    cells = (("none", "no augmentation", "fc_only"), ("hflip", "flip", "fc_only_hflip"))
    return [("1.2", f"ResNet-18 fc only, {label}, CIFAR-100", best_test(best, variant="fc", augment=aug),
             seeds.get(key)) for aug, label, key in cells]


def _zeroshot(sw: Sweep) -> list[tuple]:
    t = sw.trials.set_index("dataset")
    return [("2.1a", f"zero-shot CLIP, {d} test", float(t.loc[d, "test_acc"]), seed_zeroshot(d))
            for d in DATASETS if d in t.index]


def _visual(sw: Sweep) -> list[tuple]:
    best = best_per_cell(sw.trials, ["dataset", "prompt", "prompt_size"])
    return [("2.2", f"{p.replace('_', ' ')} prompt, {d}", best_test(best, dataset=d, prompt=p), seed_visual(d, p))
            for p in ("padding", "fixed_patch") for d in DATASETS]


def _deep(sw: Sweep) -> list[tuple]:
    best = best_per_cell(sw.trials, ["dataset", "layer", "n_prompts", "position"])
    return [("2.3", f"best deep prompt, {d}", best_test(best, dataset=d), seed_best_deep(d)) for d in DATASETS]


def _linear(sw: Sweep) -> list[tuple]:
    best = best_per_cell(sw.trials, ["dataset"])
    return [("2.3+", f"linear probe, {d}", best_test(best, dataset=d), None) for d in DATASETS]


def _robustness(sw: Sweep) -> list[tuple]:
    t, seeds = sw.trials.set_index("model"), seed_results()["robustness_gaussian_noise_cifar100"]
    names = {"clip_padding": ("CLIP + padding", "clip_padding_30"), "resnet_fc": ("ResNet-18 fc", "resnet18_fc_only")}
    return [("2.4", f"{label}, CIFAR-100 + noise", float(t.loc[m, "noisy_acc"]), seeds.get(key, {}).get("noisy"))
            for m, (label, key) in names.items() if m in t.index]


def _cross(sw: Sweep) -> list[tuple]:
    t = sw.trials.set_index("prompt_from")
    return [("2.5", f"CIFAR-110 with the {d} padding prompt", float(t.loc[d, "combined_acc"]), None)
            for d in DATASETS if d in t.index]


ROWS = {"finetune": _finetune, "zeroshot": _zeroshot, "visual": _visual, "deep": _deep, "linear": _linear,
        "robustness": _robustness, "cross": _cross}


def headline(loaded: dict[str, Sweep]) -> list[str]:
    """A table of section, what, ours, seed, Δ; top-1 (%) on the test split."""
    rows = [[section, what, pct(ours), seed_pct(seed), diff(ours, seed)]
            for name, build in ROWS.items() if name in loaded for section, what, ours, seed in build(loaded[name])]
    if not rows:
        return []
    synthetic = any(sw.synthetic for sw in loaded.values())
    note = " Some runs are on synthetic data (smoke profile): not comparable with the seed." if synthetic else ""
    return ["## At a glance", "", f"Test top-1 (%), ours beside the seed's.{note}", "",
            table(["section", "what", "ours", "seed", "Δ"], rows), ""]
