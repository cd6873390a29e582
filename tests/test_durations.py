"""scripts/durations.py: where a run's time goes, per test file, read from a real pytest run's JUnit XML."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_durations_table_puts_the_slowest_file_first_with_its_tests_and_slowest_test(tmp_path):
    (tmp_path / "test_slow_one.py").write_text(
        "import time\n\ndef test_waits():\n    time.sleep(0.6)\n\ndef test_quick():\n    pass\n")
    (tmp_path / "test_quick_one.py").write_text("def test_a():\n    pass\n\ndef test_b():\n    pass\n\n"
                                                "def test_c():\n    pass\n")
    xml = tmp_path / "suite.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}",
                    str(tmp_path)], cwd=tmp_path, check=True, capture_output=True)
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "durations.py"), str(xml)],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in out[2:]]
    assert [r[0] for r in rows] == ["test_slow_one.py", "test_quick_one.py", "all"]
    assert [r[1] for r in rows] == ["2", "3", "5"]
    assert rows[0][4].startswith("test_waits (") and int(rows[0][4][len("test_waits ("):-1]) >= 1   # slept 0.6 s
    assert int(rows[0][3].rstrip(" %")) > 90            # of the time of the whole run, the sleep is most


def test_the_durations_script_names_its_one_argument_when_given_none():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "durations.py")], capture_output=True, text=True)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == ("usage: python scripts/durations.py SUITE.xml "
                                   "(from python -m pytest --junitxml=SUITE.xml)")


def test_the_durations_script_refuses_a_file_that_is_not_junit_xml_in_one_line(tmp_path):
    bad = tmp_path / "suite.xml"
    bad.write_text("631 passed in 2900s\n")
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "durations.py"), str(bad)],
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and "is not a JUnit XML file" in done.stderr
    assert f"--junitxml={bad}" in done.stderr and "Traceback" not in done.stderr


GROUPED = '''
import pytest

@pytest.fixture
def study_store():          # stands in for the session's study store: only its name matters here
    return None

@pytest.mark.xdist_group("launcher")
def test_launcher_one(): pass

@pytest.mark.xdist_group("launcher")
def test_launcher_two(): pass

def test_study_one(study_store): pass

def test_study_two(study_store): pass

def test_study_three(study_store): pass
''' + "".join(f"\ndef test_free_{k}(): pass\n" for k in range(6))


def test_the_suites_groups_each_keep_to_one_worker(tmp_path):
    """The suite's own settings (pyproject.toml's addopts, tests/conftest.py's hook) on two workers:
    the study store's tests and the launcher's each run on one worker, so each is paid once."""
    (tmp_path / "conftest.py").write_text(       # the suite's own hook, loaded under another name
        "import importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('suite_conftest', {str(ROOT / 'tests' / 'conftest.py')!r})\n"
        "suite = importlib.util.module_from_spec(spec)\nspec.loader.exec_module(suite)\n"
        "pytest_collection_modifyitems = suite.pytest_collection_modifyitems\n")
    (tmp_path / "test_grouped.py").write_text(GROUPED)
    done = subprocess.run([sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path),
                           "-p", "no:cacheprovider", "-v", "-n", "2", str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]
    ran = re.findall(r"^\[(gw\d)\] .*PASSED \S*::(test_\w+)(?:@(\w+))?", done.stdout, re.M)
    assert len(ran) == 11, done.stdout[-3000:]
    workers: dict = {}
    for worker, test, group in ran:
        if test.startswith(("test_launcher", "test_study")):
            assert group == test.split("_")[1], (test, group)       # each marked with its group
        workers.setdefault(group or test, set()).add(worker)
    assert workers["launcher"] != set() and len(workers["launcher"]) == 1, workers
    assert len(workers["study"]) == 1, workers
