"""Shared fixtures: no network, synthetic CIFAR written once, one Ray for the whole session."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Tests never download: a missing file must surface as the offline error, quickly.
os.environ["ORCHESTRATOR_NO_DOWNLOAD"] = "1"
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# Ray would start a thread in each of its processes to report usage to a server these machines cannot reach
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# A local Ray starts a worker per CPU as its first driver connects, before anything asks for one;
# the suite starts a Ray in each of its many sweep processes, whose trial actors start workers of
# their own, so those went unused (docs/testing.md): the nodes' and the user's Ray keep the default
os.environ.setdefault("RAY_prestart_worker_first_driver", "0")
# On several workers (the default, pyproject.toml) each worker's torch, and what it starts, keeps to one
# thread: two of torch's per worker on two cores wait on each other (the fast tier: 136 s, not 170)
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
# A profile chosen in the developer's shell must not change what the tests run.
os.environ.pop("ORCHESTRATOR_PROFILE", None)
# Writes an MLflow store refused wait in a journal: the tests' go to a folder of their own.
os.environ.setdefault("ORCHESTRATOR_JOURNAL_DIR", tempfile.mkdtemp(prefix="journal-"))


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    from trainables.data.sources.cifar import load_cifar
    root = tmp_path_factory.mktemp("data")
    for name in ("cifar10", "cifar100"):
        load_cifar(name, root, "synthetic")
    return root


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for every test that needs it, with 2 fake GPUs for the resource tests.

    One CPU: a sweep runs as many trials at once as there are CPUs, and each trial's actor first
    imports torch and open_clip (about 7 CPU-seconds), far more than a tiny trial's training. The
    study store's sweeps (one process, nothing else running): 4 CPUs started 22 actors, 2 CPUs 15
    (122 CPU-seconds in all), 1 CPU 8 (94). A test whose check needs trials at once asks for
    fractions of a CPU (`--cpus-per-trial 0.5`); a sweep in a process of its own has a Ray of its
    own, with every core (docs/testing.md)."""
    import ray
    ray.init(num_cpus=1, num_gpus=2, include_dashboard=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


@pytest.fixture
def tiny_prompt_config(data_root) -> dict:
    return dict(dataset="cifar10", data="synthetic", data_dir=str(data_root), model="tiny-clip",
                pretrained="none", epochs=1, batch_size=32, warmup_steps=2, device="cpu")


# Every registered sweep at its smoke size (fewest trials that still fill each report's tables), in
# one MLflow store, each after the sweeps whose models it evaluates: robustness and cross find
# their inputs among the visual and finetune runs made here. One learning rate and one epoch where
# a sweep learns: what the tests read is which run is best and what its report shows, not how far
# a tiny model learns. A record's `smoke_args` narrow it further.
ONE = ["--samples", "1", "--epochs", "1"]


def study_sweeps() -> list[tuple[str, list[str]]]:
    from search_spaces.registry import in_dependency_order, list_experiments
    return [(e.name, [*(ONE if e.profiles["smoke"].lr else []), *e.smoke_args])
            for e in in_dependency_order(list_experiments())]


@pytest.fixture(scope="session")
def study_store(ray_session, data_root, tmp_path_factory):
    """(tracking URI, folder) holding a smoke run of every sweep and the two classify figures."""
    from orchestrator.commands.cli import main
    folder = tmp_path_factory.mktemp("study")
    uri = f"sqlite:///{folder}/mlflow.db"
    common = ["--tracking-uri", uri, "--data-dir", str(data_root), "--gpus-per-trial", "0"]
    for name, extra in study_sweeps():
        assert main(["sweep", name, *extra, "--storage-path", str(folder / f"ray-{name}"), *common]) == 0, name
    for preset in ("colour", "origin"):
        assert main(["classify", "--preset", preset, "--data", "synthetic", "--data-dir", str(data_root), "--n", "4",
                     "--model", "tiny-clip", "--pretrained", "none", "--out", str(folder / "out")]) == 0
    return uri, folder


# --- the fast tier ----------------------------------------------------------------------------
# `python -m pytest -m fast`: what a developer runs while working, under 4 minutes on 2 cores.
# Whole files of quick checks, less their few slow tests, and no test that needs the study store
# (every sweep run once: 2.5 minutes alone). scripts/fast_tier_coverage.py shows which modules
# it runs code of (every module with a function). The full suite stays what CI runs.
FAST_FILES = {
    "test_bad_input.py", "test_backbones.py", "test_best_and_sources.py", "test_caches.py", "test_cifar.py",
    "test_classify.py", "test_cli.py", "test_cost.py", "test_cost_plan.py", "test_datasets.py", "test_docs.py", "test_durations.py",
    "test_fused.py", "test_fused_trials.py", "test_fuzz.py", "test_fuzz_store.py", "test_house.py", "test_lease_journal.py", "test_mlflow_ui.py",
    "test_model_core.py", "test_models.py", "test_per_cell_asha.py", "test_pipeline.py", "test_plan.py", "test_preparation.py",
    "test_prompts.py", "test_records.py", "test_registry.py", "test_resume_core.py", "test_searchers.py", "test_stats_templates.py",
    "test_status.py", "test_store_queries.py", "test_sweep_file.py", "test_tracking_callback.py", "test_unpickler.py", "test_untrusted.py",
    "test_untrusted_store.py",
}
# the slow tests of those files (a sweep each, or more), by name
NOT_FAST = (
    "test_a_toy_experiment_is_one_module_picked_up_everywhere", "test_a_folder_and_dtd_sweep_as_a_grid_axis",
    "test_8_a_grid_over_epochs_runs_each_cell_to_its_own_last_epoch", "test_resume_ignores_a_forged_ray_experiment_tag",
    "test_a_browser_opens_a_sweep_on_its_runs_through_the_printed_link", "test_a_toml_sweep_runs_end_to_end",
    "test_dry_run_of_the_full_deep_grid", "test_a_grid_of_backbones_sweeps_and_report_all",
    "test_status_of_a_finished_an_interrupted_and_a_running_sweep", "test_a_fused_sweep_logs_and_reports",
    "test_the_fast_tier_is_what_the_readme_names",      # collects the suite again: a check of the tier itself
)
# one test each from other files, for what the files above do not reach
FAST_TESTS = (
    "test_sweep.py::test_four_half_gpu_trials_share_two_fake_gpus",
    "test_progress.py::test_a_sweep_of_thousands_of_cells_prints_about_a_hundred_lines_at_most",
    "test_cluster.py::test_each_cluster_file_exposes_nothing_and_holds_no_secret",
    "test_cluster.py::test_doctor_names_what_a_cluster_file_still_needs",
    "test_cluster.py::test_every_kind_of_cluster_is_known_by_its_own_file",
    "test_cluster.py::test_start_sh_stops_only_the_ray_it_started_even_after_a_reboot_reused_its_pid",
    "test_cluster.py::test_doctor_checks_the_stores_a_cluster_file_sets_in_its_environment",
    "test_cluster.py::test_doctors_report_of_a_cluster_file_names_each_thing_at_its_line",
    "test_cluster.py::test_a_cluster_files_lines_are_read_as_the_shell_reads_them_and_each_example_left_is_named",
    "test_cluster.py::test_doctor_reads_every_node_script_a_file_runs_and_names_each_by_its_path",
)


def is_fast(item) -> bool:
    test = item.nodeid.split("::", 1)[-1].split("[")[0]
    if f"{item.path.name}::{test}" in FAST_TESTS:
        return True
    return item.path.name in FAST_FILES and not test.startswith(NOT_FAST) and "study_store" not in item.fixturenames


# --- on every core -----------------------------------------------------------------------------
# `python -m pytest` runs on every core, up to 4 (pyproject.toml: `-n auto --maxprocesses 4 --dist
# loadgroup`; `-n 0` is one process). Tests that share a costly resource keep to one worker, so it is paid once a run: the
# study store's tests (every sweep once, a session fixture) are one group, and the `ray up` tests
# mark themselves a group of their own (tests/test_many_machines.py: its three nodes, booted once).
# Groups and the files with tests of half a minute or more start first (docs/testing.md has the
# timings), so that no worker is left alone with a long one at the end (longest processing time
# first); in the fast tier too, whose every-sweep test takes a minute and a half.
LONG = ("test_many_machines.py", "test_real_clusters.py", "test_durability.py", "test_store_faults.py",
        "test_reliability.py", "test_postgres_store.py", "test_study_experiments.py", "test_cluster.py",
        "test_gpu_script.py", "test_bench.py", "test_sweep.py", "test_status.py", "test_house.py",
        "test_backbones.py", "test_progress.py", "test_fused_trials.py")


def _order(item) -> int:
    if item.get_closest_marker("xdist_group") is not None:
        return 0
    return 1 if item.path.name in LONG else 2


@pytest.hookimpl(tryfirst=True)     # before xdist reads the groups off the marks
def pytest_collection_modifyitems(config, items):
    for item in items:
        if is_fast(item):
            item.add_marker(pytest.mark.fast)
        if "study_store" in item.fixturenames:
            item.add_marker(pytest.mark.xdist_group("study"))
    if os.environ.get("PYTEST_XDIST_WORKER"):      # a worker (they collect); one process keeps its order
        items.sort(key=_order)                      # stable: each file's tests keep their order
