"""Mutation testing of the core pieces, with mutmut (docs/testing.md).

    pip install -e ".[dev,mutation]"
    python scripts/mutation.py          # mutmut run, then the score of each core piece
    python scripts/mutation.py --report # the scores of the last run only
    python scripts/mutation.py --modules [--report]   # the last wave's modules only, each scored whole

mutmut mutates the files listed under [tool.mutmut] in pyproject.toml and runs, for each mutant,
the fast tests that reach the mutated function. This script groups the results by the core
piece each function belongs to (a file also holds functions that only the slower tests reach,
counted apart) and lists every surviving mutant; `mutmut show NAME` prints its change.

Each run starts from a fresh mutants/ folder (mutmut's own, made by the last run): mutmut keeps
results and test mappings across runs, and after code moves they go stale (a module renamed,
a function rewritten), so a cached score can describe code that no longer exists.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# core piece -> [(module, the functions and classes of it that make the piece; empty: the whole module)]
PIECES = {
    "scheduler (PerCellASHA)": [("orchestrator.sweep.schedulers", ())],
    "searcher (CellSearcher, round_robin, cell_seed)": [("orchestrator.sweep.searchers", ())],
    "tracking callback (MLflowTrials)": [("orchestrator.sweep.tracking", ("MLflowTrials", "_numeric", "_run_name",
                                                                    "_error_line"))],
    "report's best per cell": [("reports.trials", ("best_per_cell", "best_test"))],
    "source selection": [("orchestrator.sweep.source_runs", ("best_source_run", "_matches"))],
    "store queries (parents, latest parent, children)": [("clip_prompt_sweeps.store.runs", ("parents", "latest_parent", "children",
                                                                         "current_trials"))],
    "resize (PIL-exact)": [("trainables.data.resize", ())],
    "CIFAR unpickler": [("trainables.data.sources.cifar", ("_CifarUnpickler", "_DType", "_PendingArray", "_latin1", "_resolved",
                                                                   "read_batch"))],
    "prompt insertion (deep prompts)": [("trainables.models.prompts", ("insert_prompts", "DeepPrompt"))],
    # the core added since the first study (issue #28)
    "resume planning": [("orchestrator.sweep.resume", ("read_trials", "build_record", "_continuation", "is_done"))],
    "lease": [("clip_prompt_sweeps.store.lease", ())],
    "journal": [("clip_prompt_sweeps.store.journal", ())],
    "statistics (reports/stats.py)": [("reports.stats", ())],
    # the replicates' own seeds are DataConfig.train_seed, a property: mutmut leaves decorated functions
    # alone, so tests/test_resume_core.py checks it directly; a resumed cell's sampler seed is cell_seed
    "replicate plan and chosen learning rates": [("orchestrator.sweep.replicates", ())],
    "template sets": [("trainables.models.templates", ())],
    "dataset preparation": [("trainables.data.prepared", ("_Prepared", "_write_split", "_read_split", "prepared_path",
                                                           "prepared_splits", "_prepared")),
                            ("trainables.data.sources.folder", ("_fingerprint",))],
    "cost plan": [("orchestrator.sweep.cost", ())],
}
CAUGHT = {"killed", "timeout"}
# issue #40: the modules the last wave added or changed most, each scored whole (every function)
MODULES = ("orchestrator.sweep.resume", "orchestrator.sweep.plan", "orchestrator.sweep.searchers", "orchestrator.commands.status",
           "clip_prompt_sweeps.store.runs", "clip_prompt_sweeps.store.records", "clip_prompt_sweeps.store.lease",
           "clip_prompt_sweeps.store.journal", "trainables.data.sources.folder", "orchestrator.clusters.files")

# Mutants that no test can kill because they do not change what the program does; each was read
# and its reason checked (`mutmut show NAME`). They are counted apart, not as caught. A name is
# mutmut's number within its function: when a function listed here changes, read its entries again.
_CONTROLLER = "the controller argument is passed through to Ray's ASHA, which never reads it"
_QUERY = "MLflow orders runs by start time, newest first, by default, and is case-blind in order_by; [0] is taken"
_NONE_NE_1 = "a missing `diverged` read as None is `!= 1` exactly as 0 is"
_WINDOW = "the filter is only evaluated inside its support (|x| < 1 bilinear, < 2 bicubic), where both branches agree"
_TELL = "Optuna records a trial told with a NaN value, or with neither value nor state, as FAIL itself"
_SPEED = ("how many loader processes and images a batch: how fast a split is prepared, not what is written "
          "(tests/test_preparation.py compares every image of a split of three batches with open_clip's transform)")
_PICKLE_DEFAULT = "numpy's np.load refuses pickles by default; None is falsy as False is"
_MAPPED = "a memory-mapped load never unpickles: numpy refuses to map an object array (ValueError) whatever allow_pickle says"
_PIL_AA = "v2.Resize always antialiases a PIL image; antialias applies to tensors only (the images here are PIL's)"
_PLACEHOLDER = "the placeholder of an unreadable image is never written: the split is refused with that image's line"
_NO_CELLS = "the default of max() only applies to a plan with no cells, which make_plan refuses"
_CELL_KEY = "every trial's config holds its cell key (plan.trial_config sets it): the default is never read"
_NOT_A_DICT = "a JSON text that does not parse is refused as one that is not a dict: '' is no dict, as None is not"
_SCRATCH = "the name of the scratch file that os.replace puts in the journal's place at once"
_FOLDER_ARGS = "an image folder is named by its path alone: ImageFolder.where reads neither the data root nor the kind"
_NOT_FOUND = ("without allow_not_found a missing folder raises FileNotFoundError, an OSError, which _dirs catches: "
              "no folders either way")
_TIE = ("two checkpoints of one trial that hold the same epoch: newest promises that epoch, and which of the two "
        "the listing gives first is not ordered either way")
_NO_PREFIX = "the prefix is '' for a local path, and '' + path is path"
_DEST_FS = "pyarrow infers the local file system from the absolute path of a local temporary folder"
_PAGE_SIZE = "MLflow's default page is 1,000 runs, as PAGE is: every page is read to the end either way"
_NO_REPLICATES = "a parent with no replicates param, or 0, reads 0 through `or 0` whatever the default or lower bound"
_FIRST_SPLIT = "the part before the first '://' is the same however many more splits follow"
EQUIVALENT = {
    "clip_prompt_sweeps.store.records.x_read_sources__mutmut_8": _NOT_A_DICT,
    "clip_prompt_sweeps.store.journal.xǁJournalǁflush__mutmut_42": _SCRATCH,
    **{f"trainables.data.sources.folder.xǁImageFolderǁpresent__mutmut_{n}": _FOLDER_ARGS for n in (2, 3)},
    **{f"orchestrator.sweep.resume.xǁCheckpointStoreǁ_dirs__mutmut_{n}": _NOT_FOUND for n in (4, 6, 7)},
    "orchestrator.sweep.resume.xǁCheckpointStoreǁnewest__mutmut_14": _TIE,
    "orchestrator.sweep.resume.xǁCheckpointStoreǁnewest__mutmut_18": _NO_PREFIX,
    **{f"orchestrator.sweep.resume.xǁCheckpointStoreǁ_epoch__mutmut_{n}": _DEST_FS for n in (6, 10)},
    **{f"orchestrator.sweep.resume.xǁCheckpointStoreǁ__init____mutmut_{n}": _FIRST_SPLIT for n in (14, 17)},
    "orchestrator.sweep.schedulers.xǁPerCellASHAǁon_trial_add__mutmut_1": _CONTROLLER,
    "orchestrator.sweep.schedulers.xǁPerCellASHAǁon_trial_result__mutmut_4": _CONTROLLER,
    "orchestrator.sweep.schedulers.xǁPerCellASHAǁon_trial_complete__mutmut_1": _CONTROLLER,
    "orchestrator.sweep.schedulers.xǁPerCellASHAǁon_trial_error__mutmut_1": _CONTROLLER,
    "orchestrator.sweep.schedulers.xǁPerCellASHAǁon_trial_remove__mutmut_1": _CONTROLLER,
    "orchestrator.sweep.schedulers.xǁPerCellASHAǁon_trial_error__mutmut_2": "Ray's ASHA does nothing on a trial error",
    "orchestrator.sweep.searchers.xǁCellSearcherǁ__init____mutmut_1": "any mode but 'random' is TPE (the CLI admits only the two)",
    "orchestrator.sweep.searchers.xǁCellSearcherǁ__init____mutmut_2": "any mode but 'random' is TPE (the CLI admits only the two)",
    "orchestrator.sweep.searchers.x_round_robin__mutmut_28": "the default of max() only applies to a plan with no cells, which make_plan refuses",
    "orchestrator.sweep.searchers.x_round_robin__mutmut_30": "the default of max() only applies to a plan with no cells, which make_plan refuses",
    "orchestrator.sweep.searchers.x_round_robin__mutmut_31": "the default of max() only applies to a plan with no cells, which make_plan refuses",
    "orchestrator.sweep.searchers.xǁCellSearcherǁ_replay__mutmut_15": 'float("NAN") is float("nan")',
    "orchestrator.sweep.searchers.xǁCellSearcherǁ_replay__mutmut_33": "skip_if_exists=None is falsy, as False is",
    "orchestrator.sweep.searchers.xǁCellSearcherǁ_replay__mutmut_35": "skip_if_exists defaults to False",
    "orchestrator.sweep.searchers.xǁCellSearcherǁon_trial_complete__mutmut_20": _TELL,
    "orchestrator.sweep.searchers.xǁCellSearcherǁon_trial_complete__mutmut_25": _TELL,
    "orchestrator.sweep.searchers.xǁCellSearcherǁon_trial_complete__mutmut_27": _TELL,
    # issue #38: with --fuse 1 the members taken beside the first are 0, whether asked for or not
    "orchestrator.sweep.searchers.xǁCellSearcherǁsuggest__mutmut_34": "with fuse 1, _take_same_cell is asked for 0 "
                                                                     "more samples and takes none",
    "orchestrator.sweep.tracking.xǁMLflowTrialsǁon_trial_complete__mutmut_49": "MLflow's set_terminated ends a run FINISHED when no status is given",
    "orchestrator.sweep.tracking.x__error_line__mutmut_5": "an unreadable error file gives the same generic line whether the text is None or empty",
    "orchestrator.sweep.source_runs.x_best_source_run__mutmut_34": _NONE_NE_1,
    "orchestrator.sweep.source_runs.x_best_source_run__mutmut_36": _NONE_NE_1,
    "clip_prompt_sweeps.store.runs.x_parents__mutmut_9": _QUERY,
    "clip_prompt_sweeps.store.runs.x_parents__mutmut_13": _QUERY,
    "clip_prompt_sweeps.store.runs.x_parents__mutmut_16": _QUERY,
    "clip_prompt_sweeps.store.runs.x_parents__mutmut_1": "1,001 instead of 1,000 parent runs: differs only for an experiment with over 1,000 sweeps",
    "clip_prompt_sweeps.store.runs.x_parents__mutmut_10": "no limit is MLflow's default of 1,000 runs, newest first; every caller takes [0] or the first per profile",
    "clip_prompt_sweeps.store.runs.x_parents__mutmut_14": "no limit is MLflow's default of 1,000 runs, newest first; every caller takes [0] or the first per profile",
    "clip_prompt_sweeps.store.runs.x_latest_parent__mutmut_11": "no limit returns every parent, newest first; [0] is taken",
    "clip_prompt_sweeps.store.runs.x_latest_parent__mutmut_15": "no limit returns every parent, newest first; [0] is taken",
    "clip_prompt_sweeps.store.runs.x_latest_parent__mutmut_16": "two parents, newest first; [0] is taken",
    "clip_prompt_sweeps.store.runs.x_children__mutmut_8": "max_results=None is MLflow's default of 1,000 runs; differs only for a sweep of over 1,000 trials (not tested: the study's largest has 144)",
    "clip_prompt_sweeps.store.runs.x_children__mutmut_11": "no max_results is MLflow's default of 1,000 runs; differs only for a sweep of over 1,000 trials (not tested: the study's largest has 144)",
    **{f"clip_prompt_sweeps.store.runs.x_children__mutmut_{n}": _PAGE_SIZE for n in (12, 16)},
    **{f"clip_prompt_sweeps.store.runs.x_parents__mutmut_{n}": _QUERY for n in (11, 20)},
    **{f"clip_prompt_sweeps.store.runs.x_parents__mutmut_{n}": _PAGE_SIZE for n in (12, 17)},
    "clip_prompt_sweeps.store.runs.x_parents__mutmut_33": "at exactly max_results runs one more page is asked for; the same runs are kept",
    "clip_prompt_sweeps.store.runs.x_parents__mutmut_35": "without max_results out[:None] is out",
    **{f"clip_prompt_sweeps.store.runs.x__sql_children__mutmut_{n}": "every run found carries the parent tag it was "
       "selected by: no child is without tags" for n in (86, 88)},
    "clip_prompt_sweeps.store.runs.x_metric_histories__mutmut_61": "requests upper-cases the HTTP method it is given",
    **{f"clip_prompt_sweeps.store.records.x_read_sweep_args__mutmut_{n}": _NOT_A_DICT for n in (12,)},
    **{f"clip_prompt_sweeps.store.records.x_read_parent__mutmut_{n}": _NO_REPLICATES for n in (101, 103, 106, 107)},
    **{f"clip_prompt_sweeps.store.records.x_read_trial__mutmut_{n}": "whole() reads a missing tag (None) as None, "
       "as the `in tags` guard does" for n in (26, 108)},
    "clip_prompt_sweeps.store.records.x_read_trial__mutmut_88": "_text's default limit is MAX_TEXT",
    "reports.trials.x_best_per_cell__mutmut_4": _NONE_NE_1,
    "reports.trials.x_best_per_cell__mutmut_6": _NONE_NE_1,
    "trainables.data.resize.x__bicubic__mutmut_3": "at |x| = 1 both branches give 0",
    "trainables.data.resize.x__bicubic__mutmut_15": "at |x| = 2 both branches give 0",
    "trainables.data.resize.x__bicubic__mutmut_16": _WINDOW,
    "trainables.data.resize.x__bilinear__mutmut_4": _WINDOW,
    "trainables.data.resize.x__bilinear__mutmut_7": "at |x| = 1 both branches give 0",
    "trainables.data.resize.x__bilinear__mutmut_8": _WINDOW,
    "trainables.data.resize.x__fixed_point__mutmut_10": "a weight of exactly 0 rounds to 0 either way",
    "trainables.data.resize.x_pil_resize__mutmut_10": "shape[2:] and shape[-2:] are the same slice of a (B, C, H, W) batch",
    "trainables.data.resize.x_pil_resize__mutmut_18": "device None puts the matrix on the CPU: the same on a CPU (tests/gpu_check.py covers CUDA)",
    "trainables.data.resize.x_pil_resize__mutmut_29": "device None puts the matrix on the CPU: the same on a CPU (tests/gpu_check.py covers CUDA)",
    # the pieces of issue #28
    "orchestrator.sweep.schedulers.xǁPerCellASHAǁon_trial_result__mutmut_17": _CELL_KEY,
    "orchestrator.sweep.schedulers.xǁPerCellASHAǁon_trial_result__mutmut_19": _CELL_KEY,
    "orchestrator.sweep.schedulers.xǁPerCellASHAǁon_trial_result__mutmut_20": _CELL_KEY,
    "orchestrator.sweep.searchers.x_cell_seed__mutmut_7": "a SeedSequence's first word is the same however many are drawn",
    "orchestrator.sweep.replicates.x_replicate_plan__mutmut_3": _NO_CELLS,
    "orchestrator.sweep.replicates.x_replicate_plan__mutmut_5": _NO_CELLS,
    "orchestrator.sweep.replicates.x_replicate_plan__mutmut_7": _NO_CELLS,
    "clip_prompt_sweeps.store.lease.xǁLeaseǁ__init____mutmut_6": "an empty string is falsy as None is: 'taken over by another driver' either way",
    "orchestrator.sweep.cost.x_cost_lines__mutmut_15": "default=None is falsy as 0 is: both mean a sweep that trains nothing",
    "reports.stats.x_welch_p__mutmut_23": "equal_var=None is falsy: scipy runs Welch's test, as with False",
    "trainables.models.templates.x__template_file__mutmut_23": "one byte more read changes nothing: any read longer than the limit is refused",
    "trainables.models.templates.x__template_file__mutmut_29": "codec names are case-blind: 'UTF-8' is 'utf-8'",
    "trainables.data.sources.folder.x__fingerprint__mutmut_3": ("the digest's length: equal folders still give equal digests and "
                                                            "changed ones different ones (a stamp of another version is "
                                                            "prepared once again)"),
    **{f"trainables.data.prepared.xǁ_Preparedǁ__init____mutmut_{n}": _PIL_AA for n in (11, 14, 15)},
    **{f"trainables.data.prepared.xǁ_Preparedǁ__getitem____mutmut_{n}": _PLACEHOLDER for n in (14, 18)},
    **{f"trainables.data.prepared.x__write_split__mutmut_{n}": _SPEED for n in (12, *range(14, 30), 35, 36, 37)},
    **{f"trainables.data.prepared.x__write_split__mutmut_{n}": "how often the bar redraws: the same bar and counts"
       for n in (76, 80, 83)},
    **{f"trainables.data.prepared.x__read_split__mutmut_{n}": _PICKLE_DEFAULT for n in (5, 8, 15, 18)},
    **{f"trainables.data.prepared.x__read_split__mutmut_{n}": _MAPPED for n in (11, 25)},
}
_KEY = re.compile(r"^\s*(?P<module>[\w.]+?)\.x(?:ǁ(?P<cls>\w+)ǁ(?P<method>\w+?)|_(?P<fn>\w+?))__mutmut_\d+: (?P<status>.+)$")


def piece_of(module: str, name: str) -> str:
    for piece, parts in PIECES.items():
        if any(mod == module and (not names or name in names) for mod, names in parts):
            return piece
    return f"(rest of {module})"


def _tally(by_module: bool) -> tuple[dict[str, Counter], dict[str, list[str]]]:
    """Counts per status and the mutants not caught, per core piece (or per module)."""
    out = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    counts: dict[str, Counter] = defaultdict(Counter)
    survivors: dict[str, list[str]] = defaultdict(list)
    for line in out.splitlines():
        m = _KEY.match(line)
        if not m or (by_module and m["module"] not in MODULES):
            continue
        name = line.strip().rsplit(":", 1)[0]
        piece = m["module"] if by_module else piece_of(m["module"], m["cls"] or m["fn"])
        status = "equivalent" if m["status"] not in CAUGHT and name in EQUIVALENT else m["status"]
        counts[piece][status] += 1
        if status not in CAUGHT and status != "equivalent":
            survivors[piece].append(line.strip())
    return counts, survivors


def report(by_module: bool = False) -> int:
    counts, survivors = _tally(by_module)
    if not counts:
        print("no mutation results: run `python scripts/mutation.py` first", file=sys.stderr)
        return 2
    rows = MODULES if by_module else PIECES
    print(f"| {'module' if by_module else 'core piece'} | mutants | killed | equivalent | survived | no tests | score |"
          "\n|---|---|---|---|---|---|---|")
    low = []
    for piece in [*rows, *sorted(p for p in counts if p not in rows)]:
        c = counts.get(piece, Counter())
        caught, judged = sum(c[s] for s in CAUGHT), sum(c.values()) - c["equivalent"]
        if not judged:
            continue
        print(f"| {piece} | {sum(c.values())} | {caught} | {c['equivalent']} | {c['survived']} | {c['no tests']} | "
              f"{int(1000 * caught / judged) / 10:g} % |")
        if piece in rows and caught / judged < 0.90:
            low.append(piece)
    print("\nscore: killed / (mutants - equivalent). Rows '(rest of ...)' are the other functions of the mutated "
          "files, which slower tests cover.")
    for piece, names in survivors.items():
        if piece in rows:
            print(f"\nnot killed in {piece}:\n  " + "\n  ".join(names))
    return 1 if low else 0


def main(argv: list[str]) -> int:
    by_module = "--modules" in argv
    if "--report" not in argv:
        shutil.rmtree(ROOT / "mutants", ignore_errors=True)
        children = str(max(1, (os.cpu_count() or 2)))
        only = [f"{m}.*" for m in MODULES] if by_module else []
        done = subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", children, *only], cwd=ROOT)
        if done.returncode not in (0, 1):
            return done.returncode
    return report(by_module)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
