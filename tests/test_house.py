"""The house: imports point one way with no circles, the model layer knows nothing of Ray, and a
new experiment is one module, picked up by every command and by the registry-parametrised tests."""
from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the design card's packages and the project's own (clip_prompt_sweeps: the shared names and errors,
# and the store); nothing else is installed at the top level, where generic names would clash
PACKAGES = ("clip_prompt_sweeps", "trainables", "search_spaces", "reports", "orchestrator")
# what each layer may import of the project: imports point one way
ALLOWED = {"common": set(), "store": {"common"}, "trainables": {"common"}, "reports": {"common", "store"},
           "search_spaces": {"common", "trainables", "reports"},
           "orchestrator": {"common", "store", "trainables", "search_spaces", "reports"}}


def layer(module: str) -> str:
    """A module's layer: its top-level package, but the project's own package holds two."""
    if module == "clip_prompt_sweeps.store" or module.startswith("clip_prompt_sweeps.store."):
        return "store"
    return "common" if module.split(".")[0] == "clip_prompt_sweeps" else module.split(".")[0]
# the rooms of trainables/ and what each may import of the others (and the package itself, whose
# __init__ runs first): imports point one way
ROOMS = {"trainables": set(), "paths": set(), "data": {"paths"}, "models": {"paths", "data"},
         "training": {"paths", "data"}, "experiments": {"paths", "data", "models", "training"}}
# the data room's front: what other modules may import of it (never a source, never the preparation)
DATA_FRONT = ("trainables.data.catalog", "trainables.data.config", "trainables.data.dataset",
              "trainables.data.pipeline", "trainables.data.record", "trainables.data.resize")


def room(module: str) -> str:
    """A module of trainables/: its sub-package, `paths`, or the package's own __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]

def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imported(name: str, path: Path) -> set[str]:
    """Every module an import statement of the file names (at any depth: a function's imports
    count too), with the packages above it, whose __init__ runs first."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            names |= {base} | {f"{base}.{a.name}" for a in node.names}
    return {".".join(n.split(".")[:i]) for n in names for i in range(1, len(n.split(".")) + 1)}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: {m for m in _imported(name, path) if m in modules and m != name} for name, path in modules.items()}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_circle_finder_finds_a_circle_through_an_init():
    # a.b imports a.c; a/__init__ imports a.b: the package's own __init__ closes the circle
    graph = {"a": {"a.b"}, "a.b": {"a", "a.c"}, "a.c": {"a"}, "d": {"a.c"}}
    assert _circles(graph) == [["a", "a.b", "a.c"]]


def test_no_import_circles_among_the_projects_modules():
    graph = _graph()
    assert len(graph) > 60 and graph["trainables.experiments.prompt_training"]       # the walk found the house
    assert _circles(graph) == []


def test_imports_point_one_way():
    wrong = [f"{name} imports {target}" for name, targets in _graph().items() for target in targets
             if layer(target) not in ALLOWED[layer(name)] | {layer(name)}]
    assert wrong == []


def test_only_the_cards_packages_and_the_projects_own_are_installed():
    """pyproject's package list, and every folder of the checkout that is a package, are the
    design card's four and clip_prompt_sweeps (tests/ is pytest's, never installed)."""
    import tomllib
    found = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert sorted(found["include"]) == sorted(f"{p}*" for p in PACKAGES)
    on_disk = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    assert on_disk == set(PACKAGES)


def test_the_model_and_data_rooms_know_nothing_of_ray_and_register_nothing():
    modules = _modules()
    entry = {"trainables.training.entry", "trainables.training.ray_io"}
    plain = [n for n in modules if room(n) in ("data", "models", "training") and n.startswith("trainables.") and n not in entry]
    assert len(plain) > 20
    for name in plain:
        imported = _imported(name, modules[name])
        assert not {"ray", "search_spaces", *entry} & imported, name
    ray_users = sorted(n for n in modules if n.startswith("trainables") and "ray" in _imported(n, modules[n]))
    assert ray_users == ["trainables.training.ray_io"]


def test_trainables_is_four_rooms_whose_imports_point_one_way():
    modules = [n for n in _modules() if n.startswith("trainables")]
    assert {room(n) for n in modules} == set(ROOMS)         # no module outside a room
    graph = _graph()
    wrong = [f"{name} imports {target}" for name in modules for target in graph[name]
             if target.startswith("trainables") and room(target) not in ROOMS[room(name)] | {room(name), "trainables"}]
    assert wrong == []


# the rooms of orchestrator/ and what each may import of the others: the commands a user types
# call the sweep, the clusters and the bench; the bench times the sweep's machinery; the sweep runs
# where the clusters room connects it; the clusters room imports nothing else of the driver
DRIVER_ROOMS = {"__main__": {"commands"}, "commands": {"sweep", "clusters", "bench"}, "bench": {"sweep", "clusters"},
                "sweep": {"clusters"}, "clusters": set()}


def test_the_driver_is_four_rooms_whose_imports_point_one_way():
    modules = [n for n in _modules() if n.startswith("orchestrator.")]
    assert {room(n) for n in modules} == set(DRIVER_ROOMS)      # no module outside a room
    assert {n for n in _modules() if n.startswith("orchestrator")} - set(modules) == {"orchestrator"}
    graph = _graph()
    wrong = [f"{name} imports {target}" for name in modules for target in graph[name]
             if target.startswith("orchestrator.") and room(target) not in DRIVER_ROOMS[room(name)] | {room(name)}]
    assert wrong == []
    assert graph["orchestrator.commands.cli"] and graph["orchestrator.sweep.driver"]      # the walk found them


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.end_lineno - node.lineno + 1


def test_no_function_of_the_tree_is_fifty_lines_or_more():
    """A function a reader follows without scrolling back: steps with names, not one long body."""
    files = [*(ROOT / "scripts").glob("*.py"), *(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))]
    long = [f"{path.relative_to(ROOT)}::{name} ({n} lines)" for path in files for name, n in _functions(path) if n >= 50]
    assert len(files) > 100 and long == []


def _strings(path: Path) -> set[str]:
    """The string values of a module's code (its docstrings are prose, not values)."""
    tree = ast.parse(path.read_text())
    prose = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in prose}


def test_no_module_outside_the_data_room_knows_which_dataset_sources_there_are():
    """Outside trainables/data, a module imports only the data room's front, and no string of it
    names a dataset only a source knows (a torchvision name, a `folder:` path): adding a source
    is one module in trainables/data/sources/."""
    from clip_prompt_sweeps.names import DATASETS
    from trainables.data.catalog import path_prefixes
    from trainables.data.sources import discovered
    named = {n for s in discovered() for n in s.listed} - set(DATASETS)
    assert "stl10" in named and path_prefixes() == ("folder:",)
    outside = {n: p for n, p in _modules().items() if not n.startswith("trainables.data")}
    graph = _graph()
    reaching = [f"{n} imports {t}" for n in outside for t in graph[n]
                if t.startswith("trainables.data.") and t not in DATA_FRONT]
    assert reaching == []
    written = re.compile("|".join(rf"\b{re.escape(prefix)}(?=\S)" for prefix in path_prefixes()))   # folder:PATH
    knowing = [f"{n}: {s!r}" for n, p in outside.items() for s in _strings(p) if s in named or written.search(s)]
    assert knowing == []


def test_only_the_cluster_kinds_tell_the_kinds_of_cluster_apart():
    """doctor, the file checks and the tests ask orchestrator/clusters/kinds which kind a file is;
    no other module reads a kind's marks (a SLURM directive) to decide it."""
    from orchestrator.clusters.kinds import discovered
    directives = [k.directive for k in discovered() if k.directive]
    assert directives == ["#SBATCH"]
    sniffing = [f"{n}: {s!r}" for n, p in _modules().items() if not n.startswith("orchestrator.clusters.kinds")
                for s in _strings(p) if any(d in s for d in directives)]
    assert sniffing == []


def test_every_module_of_the_sources_room_declares_one_source_that_answers_for_its_names(tmp_path):
    import pkgutil

    import trainables.data.sources as sources
    from trainables.data.catalog import source_of
    modules = [i.name for i in pkgutil.iter_modules(sources.__path__)]
    assert len(sources.discovered()) == len(modules) >= 4
    for source in sources.discovered():
        for name in source.listed:
            assert source_of(name, source.kinds[0]) is source
    assert source_of(f"folder:{tmp_path}").path_prefix == "folder:"


# --- a new experiment is one module ---------------------------------------------------------


def _run(args: list[str], env: dict, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{args}: {out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.fixture
def toy_package(tmp_path) -> dict:
    """tests/toy/toy.py as the only module of a package of the user's, named in
    $ORCHESTRATOR_EXPERIMENTS and importable by the driver and Ray's workers (PYTHONPATH)."""
    package = tmp_path / "site" / "my_experiments"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    shutil.copy(ROOT / "tests" / "toy" / "toy.py", package / "toy.py")
    env = {**os.environ, "ORCHESTRATOR_EXPERIMENTS": "my_experiments",
           "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
           "ORCHESTRATOR_STORAGE_PATH": str(tmp_path / "ray"), "RAY_ADDRESS": ""}
    return env


def test_a_toy_experiment_is_one_module_picked_up_everywhere(toy_package, tmp_path):
    env = toy_package
    listed = _run(["-m", "orchestrator", "list"], env, tmp_path).stdout
    assert "  toy " in listed and "a toy sweep from the test suite" in listed and "toy_trainable" in listed
    assert "  deep " in listed                                # the study's own are still there

    swept = _run(["-m", "orchestrator", "sweep", "toy", "--gpus-per-trial", "0"], env, tmp_path)
    assert "sweep toy (smoke): 2 cells x 2 learning rates = 4 trials" in swept.stdout
    assert "build a report: python -m orchestrator report toy" in swept.stdout

    _run(["-m", "orchestrator", "report", "toy"], env, tmp_path)
    own = (tmp_path / "reports_out" / "toy" / "report.md").read_text()
    assert "# Toy experiment — SMOKE PROFILE" in own and "| width 1 |" in own and "| width 2 |" in own

    _run(["-m", "orchestrator", "report", "all"], env, tmp_path)
    document = (tmp_path / "reports_out" / "all" / "report.md").read_text()
    contents = [line for line in document.splitlines() if line.startswith("- ")]
    assert contents[-1].startswith("- 9 Toy experiment: run `")           # last: sections sort by number
    assert "| 9 | best toy cell |" in document                           # its headline row
    assert "## Toy table" in document and "## 2.3 Deep prompts" in document   # beside the study's (not run)

    tested = _run(["-m", "pytest", "tests/test_registry.py", "-k", "toy", "-v", "-p", "no:cacheprovider", "-n", "0"],
                  env, ROOT).stdout
    for test in ("test_trainable_runs_one_tiny_step[toy]", "test_every_profile_plans_every_cell[toy-smoke]",
                 "test_the_record_is_sound[toy]"):
        assert f"{test} PASSED" in tested
    assert "3 passed" in tested


def test_an_experiments_package_that_cannot_be_imported_is_one_line(monkeypatch):
    from clip_prompt_sweeps.errors import UserError
    from search_spaces.registry import list_experiments
    monkeypatch.setenv("ORCHESTRATOR_EXPERIMENTS", "no_such_package_of_experiments")
    with pytest.raises(UserError, match=r"\$ORCHESTRATOR_EXPERIMENTS names 'no_such_package_of_experiments', which "
                                        r"cannot be imported .*; put it on PYTHONPATH or remove it"):
        list_experiments()


def test_only_the_checked_reader_reads_what_a_store_says():
    """Tags, params and metrics read back from MLflow go through clip_prompt_sweeps/store/records.py, which checks
    them once (run ids, numbers, JSON shapes); no other module of the project reads them raw."""
    raw = re.compile(r"\.data\.(tags|params|metrics)\b")
    readers = [str(path.relative_to(ROOT)) for package in PACKAGES for path in (ROOT / package).rglob("*.py")
               if raw.search(path.read_text()) and path != ROOT / "clip_prompt_sweeps" / "store" / "records.py"]
    assert readers == []


def test_status_loads_no_model_library():
    """`status` reads MLflow alone: importing torch and open_clip as well took 13 s of a 20,000-run
    status (against 4.5 s), and a laptop that only watches a cluster need not have them working."""
    probe = "import sys, orchestrator.commands.status; print(sorted({'torch', 'open_clip', 'ray'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
