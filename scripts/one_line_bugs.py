"""Apply each of the one-line bugs of issues #18, #28 and #40 to a scratch copy of the project, run the tests that
should catch it there, and say whether they did. Nothing in this checkout is changed.

    python scripts/one_line_bugs.py            # all of them (about 4 minutes on 2 cores)
    python scripts/one_line_bugs.py 4 6        # some of them
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (what the bug does, file, the text as it is, the text as the bug has it, tests that must fail);
# several (old, new) pairs where one bug spans two lines of one file
BUGS = [
    ("reports show the worst trial of each cell", "reports/trials.py",
     'best = ok.loc[ok.groupby("cell")[LEARNED_SCORE].idxmax()]', 'best = ok.loc[ok.groupby("cell")[LEARNED_SCORE].idxmin()]',
     ["tests/test_best_and_sources.py::test_best_per_cell_is_each_cells_best_on_validation_finite_trial"]),
    ("a trial stopped early by ASHA ends FINISHED", "orchestrator/sweep/tracking.py",
     "        elif trial.trial_id in self.stopped:\n            self._end(run_id, \"KILLED\", \"stopped_early\",\n"
     "                      f\"stopped early by ASHA within cell {self.stopped[trial.trial_id]}\")\n", "",
     ["tests/test_tracking_callback.py::test_the_tracking_callback_logs_every_trial_and_ends_it_by_what_happened"]),
    ("robustness and cross evaluate the worst source run", "orchestrator/sweep/source_runs.py",
     'return max(usable, key=lambda t: t.metric("best_val_acc"))',
     'return min(usable, key=lambda t: t.metric("best_val_acc"))',
     ["tests/test_best_and_sources.py::test_the_source_run_is_the_best_on_validation_candidate_of_the_latest_sweep"]),
    ("resize rounding that truncates", "trainables/data/resize.py",
     "return x.add_(0.5).floor_().clamp_(0, 255)", "return x.floor_().clamp_(0, 255)",
     ["tests/test_model_core.py::test_bilinear_resize_is_pils_exactly_and_bicubic_at_most_one_level_on_few_pixels"]),
    ("the searcher proposes a cell's samples back to back", "orchestrator/sweep/searchers.py",
     "return [(cell, rest[cell_key(cell)][r]) for r in range(rounds) for cell in plan.cells\n"
     "            if r < len(rest[cell_key(cell)])]",
     "return [(cell, rest[cell_key(cell)][r]) for cell in plan.cells for r in range(rounds)\n"
     "            if r < len(rest[cell_key(cell)])]",
     ["tests/test_searchers.py::test_the_searcher_proposes_cells_round_robin_while_trials_are_still_running"]),
    ("a module-prefix allowlist in the CIFAR unpickler", "trainables/data/sources/cifar.py",
     [("if (module, name) not in _ALLOWED_GLOBALS:", 'if not module.startswith(("numpy", "_codecs")):'),
      ("return _ALLOWED_GLOBALS[module, name]", "return super().find_class(module, name)")], None,
     ["tests/test_unpickler.py::test_the_cifar_unpickler_refuses_every_known_gadget"]),
    ("deep prompts injected after block `layer` instead of before it", "trainables/models/prompts.py",
     [("for block in visual.transformer.resblocks[:self.layer]:",
       "for block in visual.transformer.resblocks[:self.layer + 1]:"),
      ("for block in visual.transformer.resblocks[self.layer:]:",
       "for block in visual.transformer.resblocks[self.layer + 1:]:")], None,
     ["tests/test_model_core.py::test_deep_prompt_at_every_layer_is_the_reference_forward"]),
    ("the failure path: open child runs are not ended", "orchestrator/sweep/parent.py",
     '        end_open_children(client, exp, parent, "the sweep was interrupted before the trial ended")\n',
     "        pass\n",
     ["tests/test_independent.py::test_an_error_inside_fit_fails_the_sweep_and_leaves_no_run_running"]),
    ("the failure path: a second Ctrl-C ends the parent FAILED", "orchestrator/sweep/driver.py",
     # the second Ctrl-C, caught where Tune may raise it, is raised on as an error instead
     "            interrupted = True\n", "            raise\n",
     ["tests/test_durability.py::test_ctrl_c_interrupts_and_resume_finishes[2]"]),
    # issue #28: the three that passed the suite, and a resume defect of issue #25
    ("a cell keeps every finished run, more than it planned", "orchestrator/sweep/resume.py",
     "done = [t for t in mine if t.done][:plan.profile.samples]", "done = [t for t in mine if t.done]",
     ["tests/test_resume_core.py::test_a_cell_with_more_finished_runs_than_planned_keeps_the_first_and_sets_the_rest_aside"]),
    ("dataset preparation resizes the longer side", "trainables/data/prepared.py",
     "v2.Resize(size, interpolation=mode, antialias=True)",
     "v2.Resize(size - 1, max_size=size, interpolation=mode, antialias=True)",
     ["tests/test_preparation.py::test_prepared_pixels_are_open_clips_transform"]),
    ("the cost plan promotes the top 1/(rf+1) at each rung", "orchestrator/sweep/cost.py",
     "start, alive = rung, max(1, math.ceil(alive / rf))", "start, alive = rung, max(1, math.ceil(alive / (rf + 1)))",
     ["tests/test_cost.py::test_asha_epochs_are_the_hand_count"]),
    ("a resumed cell's sampler starts its stream again (a continued trial's lr drawn again)",
     "orchestrator/sweep/searchers.py", "    if before == 0:\n        return seed + index",
     "    if True:\n        return seed + index",
     ["tests/test_untrusted_store.py::test_17_a_resumed_cell_draws_no_learning_rate_it_already_has"]),
    # issue #40: two that only the slow grouped kill test noticed, seven that passed their code's tests
    ("a group of cells keeps every cell's unfinished trials, not its own", "orchestrator/sweep/resume.py",
     "{k: v for k, v in self.unfinished.items() if k in keys})", "dict(self.unfinished))",
     ["tests/test_searchers.py::test_a_group_of_cells_continues_only_its_own_unfinished_trials"]),
    ("checkpoints are looked for in -resume- folders only, not -cells- ones", "orchestrator/sweep/resume.py",
     'not name.startswith((self.base + "-resume-", self.base + "-cells-"))', 'not name.startswith(self.base + "-resume-")',
     ["tests/test_resume_core.py::test_a_trial_of_a_sweep_run_in_groups_continues_from_its_checkpoint_in_its_groups_folder"]),
    ("a resumed cell's sampler seed counts its done trials only", "orchestrator/sweep/searchers.py",
     "return len(record.done.get(key, [])) + len(record.unfinished.get(key, [])) if record else 0",
     "return len(record.done.get(key, [])) if record else 0",
     ["tests/test_untrusted_store.py::test_17_a_cell_resumed_twice_draws_no_learning_rate_it_already_has"]),
    ("the nodes that served a sweep counted from each trial's last node", "clip_prompt_sweeps/store/records.py",
     "return len({node for r in runs for node in r.nodes})", "return len({r.nodes[-1] for r in runs if r.nodes})",
     ["tests/test_untrusted_store.py::test_a_trial_that_moved_counts_every_node_it_ran_on"]),
    ("status shows the oldest sweep of a name and profile", "orchestrator/commands/status.py",
     "latest.setdefault((exp.name, read_parent(run).profile), run)", "latest[(exp.name, read_parent(run).profile)] = run",
     ["tests/test_status.py::test_status_shows_the_newest_sweep_of_each_name_and_profile"]),
    ("a journal upload checked by its spelled path, not its real one", "clip_prompt_sweeps/store/journal.py",
     "inside not in Path(os.path.realpath(source)).parents", "inside not in Path(os.path.abspath(source)).parents",
     ["tests/test_lease_journal.py::test_an_upload_must_be_a_plain_file_of_the_journals_own_under_a_plain_name"]),
    ("hidden folders of an image tree taken as classes", "trainables/data/sources/folder.py",
     'classes = {s: sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))',
     "classes = {s: sorted(d.name for d in folder.iterdir() if d.is_dir())",
     ["tests/test_datasets.py::test_hidden_folders_of_an_image_tree_are_not_classes"]),
    ("an image tree's val/ folder ignored", "trainables/data/sources/folder.py",
     'for s in ("train", "val", "test") if (root / s).is_dir()', 'for s in ("train", "test") if (root / s).is_dir()',
     ["tests/test_datasets.py::test_an_image_trees_val_folder_is_its_validation_split"]),
    ("doctor lists --storage paths only, not a store set in an environment line", "orchestrator/clusters/files.py",
     "found = [a or b for a, b in _STORAGE.findall(text)]", "found = [a for a, b in _STORAGE.findall(text) if a]",
     ["tests/test_cluster.py::test_doctor_checks_the_stores_a_cluster_file_sets_in_its_environment"]),
    # found by a CI run (2026-12-07): a fuzzed dtype state that numpy's own __setstate__ took
    ("the CIFAR unpickler hands numpy's own dtype and array builders to the file", "trainables/data/sources/cifar.py",
     "return _ALLOWED_GLOBALS[module, name]", "return super().find_class(module, name)",
     ["tests/test_unpickler.py::test_a_dtype_state_that_says_pixels_are_objects_is_refused"]),
]


def scratch_copy() -> Path:
    """The tracked and untracked (not ignored) files of this checkout, in a new folder."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    dest = Path(tempfile.mkdtemp(prefix="one-line-bug-"))
    for name in files:
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def _pytest(copy: Path, tests: list[str]) -> subprocess.CompletedProcess:
    # the scratch copy's packages come first, for pytest and for the Ray workers it starts
    env = {**os.environ, "PYTHONPATH": str(copy)}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-n", "0", *tests],
                          cwd=copy, env=env, capture_output=True, text=True)


def _last(done: subprocess.CompletedProcess) -> str:
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-300:]


def run(number: int) -> bool:
    """The tests pass on the scratch copy as it is (a control), then fail with the bug in it."""
    what, path, old, new, tests = BUGS[number - 1]
    changes = old if isinstance(old, list) else [(old, new)]
    copy = scratch_copy()
    try:
        control = _pytest(copy, tests)
        if control.returncode != 0:
            print(f"{number}. {what}: the tests fail without the bug ({_last(control)}); fix them first")
            return False
        source = (copy / path).read_text()
        for before, after in changes:
            assert source.count(before) == 1, f"bug {number}: {before!r} is not in {path} once"
            source = source.replace(before, after)
        (copy / path).write_text(source)
        start = time.monotonic()
        done = _pytest(copy, tests)
        caught = done.returncode == 1 and " failed" in done.stdout
        shown = "; ".join(f"{b.strip()[:60]!r} -> {a.strip()[:60]!r}" for b, a in changes)
        print(f"{number}. {what}\n   {path}: {shown}\n   {' '.join(tests)}\n"
              f"   {'CAUGHT' if caught else 'NOT CAUGHT'}: {_last(done)} ({time.monotonic() - start:.0f} s)", flush=True)
        return caught
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def main(argv: list[str]) -> int:
    numbers = [int(a) for a in argv] or list(range(1, len(BUGS) + 1))
    missed = [n for n in numbers if not run(n)]
    print(f"\n{len(numbers) - len(missed)} of {len(numbers)} bugs caught" + (f"; missed: {missed}" if missed else ""))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
