"""Reports of the zero-shot, fine-tune and linear-probe sweeps, built from MLflow after smoke
sweeps run through the CLI (conftest's study store), with the seed's numbers beside the
reproduced ones."""
import re

import pytest

from orchestrator.commands.cli import main
from search_spaces.registry import list_experiments


@pytest.fixture(scope="module")
def store(study_store):
    return study_store


def _report(store, name: str) -> str:
    uri, folder = store
    assert main(["report", name, "--tracking-uri", uri, "--out", str(folder / "out")]) == 0
    return (folder / "out" / name / "report.md").read_text()


def test_zeroshot_report_is_table_1_beside_the_seed(store):
    report = _report(store, "zeroshot")
    assert "SYNTHETIC DATA" in report.splitlines()[0] and "## Table 1: zero-shot top-1" in report
    rows = {line.split(" | ")[0].strip("| "): line for line in report.splitlines() if line.startswith("| cifar")}
    assert set(rows) == {"cifar10", "cifar100"}
    assert "88.73" in rows["cifar10"] and "88.94" in rows["cifar10"] and "91.30" in rows["cifar10"]
    assert "63.56" in rows["cifar100"] and "63.15" in rows["cifar100"]
    assert re.search(r"\| \d+\.\d\d \| 88\.73 \| [+-]\d+\.\d\d \|", rows["cifar10"])   # ours, seed, Δ


def test_finetune_report_has_every_variant_and_augmentation(store):
    uri, folder = store
    report = _report(store, "finetune")
    rows = [line for line in report.splitlines() if line.startswith("| fc")]
    assert [r.split(" | ")[0].strip("| ") for r in rows] == ["fc", "fc_first_conv", "fc_last_conv"]
    assert "58.55" in rows[0] and "59.27" in rows[0]                        # the seed's two numbers
    assert all("—" not in r.split(" | ")[1] for r in rows)                   # every cell reproduced
    assert (folder / "out" / "finetune" / "finetune_curves.png").is_file()


def test_linear_report_sits_beside_the_prompts(store):
    report = _report(store, "linear")
    rows = [line.strip("| ").split(" | ") for line in report.splitlines() if line.startswith("| cifar")]
    assert len(rows) == 2
    assert all(re.fullmatch(r"\d+\.\d\d", r[3]) for r in rows)            # the visual sweep of the same store
    assert re.fullmatch(r"\d+\.\d\d", rows[0][4]) and rows[1][4] == "—"    # deep ran on cifar10 only here
    assert rows[0][5:] == ["92.74", "96.59", "88.94"]                        # seed padding, best deep, zero-shot


REPORTED = [e for e in list_experiments() if e.report is not None]


@pytest.mark.parametrize("exp", REPORTED, ids=lambda e: e.name)
def test_every_records_report_builds_from_the_store_and_stands_in_report_all(store, exp):
    report = _report(store, exp.name)
    title = report.splitlines()[0]      # a smoke run says so (compare reads no data: its profile)
    assert title.startswith("# ") and (" — SYNTHETIC DATA" in title or " — SMOKE PROFILE" in title)
    uri, folder = store
    if not (folder / "out" / "all" / "report.md").is_file():
        assert main(["report", "all", "--tracking-uri", uri, "--out", str(folder / "out")]) == 0
    document = (folder / "out" / "all" / "report.md").read_text()
    assert f"- {exp.report.number} {exp.report.title}: run `" in document       # built from its run
    if exp.report.headline:
        assert f"| {exp.report.number} | " in document                        # its "At a glance" rows
