"""Multi-node, with real components on one machine: a Ray cluster of a head that takes no
trials and two worker nodes with fake GPUs (Ray's own `ray.cluster_utils.Cluster`), a real
`mlflow server` process on 127.0.0.1, and the CLI in a subprocess joining both through
--address and --tracking-uri, as `ray exec cluster.yaml "python -m orchestrator sweep deep"` does
on the head node. Also: cluster.yaml passes Ray's own schema and exposes nothing publicly."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient
from servers import free_port, start_mlflow, stop

from clip_prompt_sweeps.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    proc = start_mlflow(folder, port, "mlflow.db")
    yield f"http://127.0.0.1:{port}"
    stop(proc)


@pytest.fixture(scope="module")
def ray_cluster():
    from ray.cluster_utils import Cluster

    # the head takes no trials (cluster.yaml: CPU 0); two workers with 2 CPUs and 2 fake GPUs each
    cluster = Cluster(initialize_head=True, connect=False, head_node_args={"num_cpus": 0, "num_gpus": 0})
    workers = [cluster.add_node(num_cpus=2, num_gpus=2) for _ in range(2)]
    cluster.wait_for_nodes()
    yield cluster, workers
    cluster.shutdown()


def _cli(args: list[str], data_root: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env.update(ORCHESTRATOR_DATA_DIR=str(data_root), ORCHESTRATOR_NO_DOWNLOAD="1", RAY_AUTH_MODE="disabled")
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=timeout)


SMOKE = ["sweep", "deep", "--set", "dataset=cifar10", "--set", "position=front", "--set", "n_prompts=1",
         "--samples", "2", "--gpus-per-trial", "0.5", "--cpus-per-trial", "2"]   # 3 cells x 2 lrs; one trial
# fills a worker's CPUs, so trials running together must be on different nodes


def test_sweep_spreads_over_nodes_and_logs_to_a_real_mlflow_server(ray_cluster, mlflow_server, data_root,
                                                                    tmp_path):
    cluster, _ = ray_cluster
    run = _cli([*SMOKE, "--address", cluster.address, "--tracking-uri", mlflow_server,
                "--storage-path", f"file://{tmp_path}/ray"], data_root)
    assert run.returncode == 0, run.stderr[-3000:]
    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("deep")
    runs = client.search_runs([exp.experiment_id])
    children = [r for r in runs if r.data.tags.get("role") == "trial"]
    assert len(children) == 6 and all(r.info.status in ("FINISHED", "KILLED") for r in children)
    assert len({r.data.tags["node_id"] for r in children}) > 1          # more than one node ran trials
    for r in children:
        assert "val_acc" in r.data.metrics and client.get_metric_history(r.info.run_id, "train_loss")
        assert {a.path for a in client.list_artifacts(r.info.run_id, "learned")} >= {"learned/best.safetensors"}

    out = tmp_path / "reports"
    report = _cli(["report", "deep", "--tracking-uri", mlflow_server, "--out", str(out)], data_root)
    assert report.returncode == 0, report.stderr[-3000:]
    assert "Table 3" in (out / "deep" / "report.md").read_text()


def test_a_local_storage_path_on_a_multi_node_cluster_stops_before_any_trial(ray_cluster, mlflow_server, data_root,
                                                                             tmp_path):
    cluster, _ = ray_cluster
    before = len(MlflowClient(mlflow_server).search_runs(
        [e.experiment_id for e in MlflowClient(mlflow_server).search_experiments()]))
    run = _cli([*SMOKE, "--address", cluster.address, "--tracking-uri", mlflow_server,
                "--storage-path", str(tmp_path / "local")], data_root, timeout=120)
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert "is local to this machine, but trials run on other nodes" in run.stderr
    assert "--storage-path s3://BUCKET/PATH" in run.stderr
    after = len(MlflowClient(mlflow_server).search_runs(
        [e.experiment_id for e in MlflowClient(mlflow_server).search_experiments()]))
    assert after == before and not (tmp_path / "local").exists()     # nothing half-written


def test_cluster_yaml_passes_rays_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    validate_config(prepare_config(config))
    assert config["docker"]["image"].startswith("rayproject/ray:") and "ray-ml" not in config["docker"]["image"]
    assert config["available_node_types"][config["head_node_type"]]["resources"] == {"CPU": 0, "GPU": 0}
    assert all(t.get("min_workers", 0) == 0 for name, t in config["available_node_types"].items()
               if name != config["head_node_type"])


def test_cluster_yaml_rejects_a_broken_config():
    from ray.autoscaler._private.util import prepare_config, validate_config
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    config["available_node_types"]["gpu4"]["min_wokers"] = 1        # a typo the schema catches
    with pytest.raises(Exception, match="min_wokers"):
        validate_config(prepare_config(config))


def _shipped() -> list[str]:
    from orchestrator.clusters.kinds import discovered
    return [kind.shipped for kind in discovered()]


CLUSTER_FILES = _shipped()         # each kind's own file: a new kind's file is checked here too


def test_every_kind_of_cluster_is_known_by_its_own_file():
    from orchestrator.clusters.kinds import discovered, kind_of
    kinds = discovered()
    assert sorted(k.name for k in kinds) == ["AWS", "SLURM batch file", "on-premise"]
    for kind in kinds:
        assert kind_of((ROOT / kind.shipped).read_text()) is kind, kind.name
    assert kind_of("provider:\n  type: gcp\n").describe("provider:\n  type: gcp\n") == "Ray cluster launcher (gcp provider)"


@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_each_cluster_file_exposes_nothing_and_holds_no_secret(name, capsys):
    """doctor finds only the example values a user must set: no listener beyond 127.0.0.1 in the
    file or the node scripts it runs, shared storage only, no secret."""
    from orchestrator.commands.cli import main
    from orchestrator.clusters.files import check_cluster_file
    from orchestrator.clusters.kinds import kind_of
    text = (ROOT / name).read_text()
    checked = check_cluster_file(ROOT / name, text)
    assert all(p.startswith("line ") and "is still there; SET:" in p for p in checked.problems), checked.problems
    assert main(["doctor", "--cluster-config", str(ROOT / name)]) == (1 if checked.problems else 0)
    assert not re.search(r"(AKIA[0-9A-Z]{16}|aws_secret_access_key|password)", text, re.IGNORECASE)
    scripts = " ".join((ROOT / "clusters" / "node" / s).read_text() for s in ("head.sh", "start.sh"))
    if kind_of(text).launches_through_node_scripts:      # the launcher's files start Ray and MLflow through them
        assert "--dashboard-host=127.0.0.1" in scripts and "mlflow server --host 127.0.0.1" in scripts


def test_doctor_names_what_a_cluster_file_still_needs(tmp_path, capsys):
    from orchestrator.commands.cli import main
    text = (ROOT / "clusters" / "onprem.yaml").read_text()
    text = text.replace("192.0.2.10", "10.1.2.3").replace("192.0.2.11, 192.0.2.12", "10.1.2.4")
    text = text.replace("file:///nfs/clip-sweeps/ray-results", "/home/me/ray-results")     # one machine's disk
    text = text.replace("start.sh head", "start.sh head --dashboard-host=0.0.0.0")
    (tmp_path / "lab.yaml").write_text(text)
    assert main(["doctor", "--cluster-config", str(tmp_path / "lab.yaml")]) == 1
    out = capsys.readouterr().out
    fixes = [line for line in out.splitlines() if line.startswith("  to fix: ")]
    assert any("storage /home/me/ray-results is not shared" in f for f in fixes)
    assert any("lab.yaml line" in f and "0.0.0.0" in f for f in fixes)
    assert any("example user ('researcher')" in f for f in fixes) and not any("192.0.2." in f for f in fixes)
    assert out.strip().endswith(f"{len(fixes)} thing(s) to fix")


def test_losing_a_worker_node_mid_sweep_retries_its_trials_elsewhere(ray_cluster, mlflow_server, data_root,
                                                                    tmp_path):
    cluster, workers = ray_cluster
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env.update(ORCHESTRATOR_DATA_DIR=str(data_root), ORCHESTRATOR_NO_DOWNLOAD="1", RAY_AUTH_MODE="disabled")
    args = ["sweep", "visual", "--set", "dataset=cifar10", "--set", "batch_size=16", "--epochs", "6",
            "--samples", "2", "--gpus-per-trial", "0.5", "--cpus-per-trial", "2", "--max-failures", "3",
            "--address", cluster.address, "--tracking-uri", mlflow_server, "--storage-path", f"file://{tmp_path}/ray"]
    driver = subprocess.Popen([sys.executable, "-m", "orchestrator", *args], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    client = MlflowClient(mlflow_server)
    victim = None
    deadline = time.time() + 300
    while victim is None and time.time() < deadline and driver.poll() is None:
        exp = client.get_experiment_by_name("visual")
        running = [] if exp is None else client.search_runs(
            [exp.experiment_id], "tags.role = 'trial' and attributes.status = 'RUNNING'")
        ids = {r.data.tags.get("node_id") for r in running if r.data.metrics.get("epoch", 0) >= 1}
        victim = next((w for w in workers if w.node_id in ids), None)
        time.sleep(0.3)
    assert victim is not None, "no trial was seen running on a worker"
    cluster.remove_node(victim, allow_graceful=False)       # the machine is gone, trials and all
    workers.remove(victim)
    _, err = driver.communicate(timeout=600)
    workers.append(cluster.add_node(num_cpus=2, num_gpus=2))    # the fixture's shape, for later tests
    assert driver.returncode == 0, err[-3000:]
    exp = client.get_experiment_by_name("visual").experiment_id
    (parent,) = client.search_runs([exp], "tags.role = 'sweep'")
    children = client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(children) == 4 and all(c.info.status in ("FINISHED", "KILLED") for c in children)
    retried = [c for c in children if int(c.data.tags.get("failures", "0")) >= 1]
    assert retried and all(c.data.tags["node_id"] != victim.node_id for c in retried)   # finished elsewhere


def test_doctor_checks_the_stores_a_cluster_file_sets_in_its_environment(tmp_path, capsys):
    """A store named in an environment line (the SLURM job's STORAGE_PATH and MLFLOW_TRACKING_URI),
    not only after --storage, is listed and must be one that every node reaches."""
    from orchestrator.commands.cli import main
    from orchestrator.clusters.files import check_cluster_file
    text = (ROOT / "clusters" / "slurm" / "sweep.sbatch").read_text()
    shipped = check_cluster_file(ROOT / "clusters" / "slurm" / "sweep.sbatch", text)
    assert any("file://$SHARED/ray-results" in n and "sqlite:///$SHARED/mlflow.db" in n for n in shipped.notes)
    assert not any("not shared" in p for p in shipped.problems)
    local = text.replace("sqlite:///$SHARED/mlflow.db", "sqlite:////scratch/me/mlflow.db")   # one node's disk
    assert local != text
    (tmp_path / "job.sbatch").write_text(local)
    assert main(["doctor", "--cluster-config", str(tmp_path / "job.sbatch")]) == 1
    fixes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  to fix: ")]
    assert any("storage sqlite:////scratch/me/mlflow.db is not shared" in f for f in fixes), fixes


def test_doctors_report_of_a_cluster_file_names_each_thing_at_its_line(tmp_path, capsys):
    """What a user reads: the kind and its check, the node scripts it runs and the stores it names,
    then each thing to fix at its line of the file (a '#' that the shell reads as a word, not a
    comment, and a scheduler's own directive, indented or not, as the shell and SLURM read them),
    then the count. A file no one can read is one line."""
    from orchestrator.clusters.files import doctor_cluster_file
    job = tmp_path / "job.sbatch"
    job.write_text("#!/bin/bash\n"
                   "#SBATCH --nodes=2\n"
                   "  #SBATCH --comment='mlflow server --host 0.0.0.0'\n"
                   "bash clusters/node/start.sh worker\n"
                   "export MLFLOW_TRACKING_URI=sqlite:////scratch/me/mlflow.db\n"
                   "python -m orchestrator sweep deep --storage /home/me/ray\n"
                   "echo '#'; mlflow server --host 0.0.0.0 &\n"
                   "echo \"#\" # RAY_AUTH_MODE=token\n"
                   "export RAY_AUTH_MODE=disabled; ray stop\n")
    lines, ready = doctor_cluster_file(str(job))
    assert not ready
    assert lines == [
        f"cluster config {job}: SLURM batch file, valid (bash -n)",
        "  runs clusters/node/start.sh",
        "  storage: sqlite:////scratch/me/mlflow.db, /home/me/ray",          # in the file's order
        "  to fix: storage sqlite:////scratch/me/mlflow.db is not shared by the nodes: use s3://, gs:// or "
        "file:///NFS/PATH",
        "  to fix: storage /home/me/ray is not shared by the nodes: use s3://, gs:// or file:///NFS/PATH",
        "  to fix: job.sbatch line 7: '--host 0.0.0.0' listens beyond 127.0.0.1; bind to 127.0.0.1 and forward the "
        "port over SSH",
        "  to fix: job.sbatch line 9: Ray's token authentication is turned off; anyone who reaches the nodes could "
        "run code on them: keep RAY_AUTH_MODE=token",
        "  to fix: job.sbatch line 9: `ray stop` stops every Ray of this account on the machine (other jobs' and "
        "clusters' too); stop the Ray this file started, by its process id",
        "  to fix: Ray's token authentication is not turned on (RAY_AUTH_MODE=token) by the file or its node "
        "scripts; Ray's ports would take code from anyone who reaches them",
        "6 thing(s) to fix"]
    shipped = ROOT / "clusters" / "slurm" / "sweep.sbatch"
    lines, ready = doctor_cluster_file(str(shipped))
    assert ready and lines[0] == f"cluster config {shipped}: SLURM batch file, valid (bash -n)"
    assert lines[-1] == "ready: nothing to fix" and not any(line.startswith("  to fix") for line in lines)
    with pytest.raises(UserError, match=rf"^cluster config {re.escape(str(tmp_path))}: cannot read it \(Is a directory\)$"):
        doctor_cluster_file(str(tmp_path))
    with pytest.raises(UserError, match=r"^cluster config .*nothing: cannot read it \(No such file or directory\)$"):
        doctor_cluster_file(str(tmp_path / "nothing"))


def test_doctor_reads_every_node_script_a_file_runs_and_names_each_by_its_path(tmp_path, monkeypatch):
    """The node scripts a file runs are listed, each one checked as the file is, and a finding in
    one names that script and its line; a file that is not text is one line."""
    import orchestrator.clusters.files as files
    nodes = tmp_path / "node"
    nodes.mkdir()
    (nodes / "head.sh").write_text("export RAY_AUTH_MODE=token\nray start --head\n")
    (nodes / "start.sh").write_text("# a worker\nray start --dashboard-host 0.0.0.0\n")
    monkeypatch.setattr(files, "NODE_SCRIPTS", nodes)
    job = tmp_path / "job.sbatch"
    text = "#!/bin/bash\n#SBATCH --nodes=2\nbash clusters/node/start.sh\nbash clusters/node/head.sh\n"
    checked = files.check_cluster_file(job, text)
    assert checked.notes == ["runs clusters/node/head.sh, clusters/node/start.sh"]
    assert checked.problems == ["clusters/node/start.sh line 2: '--dashboard-host 0.0.0.0' listens beyond 127.0.0.1; "
                                "bind to 127.0.0.1 and forward the port over SSH"]
    job.write_bytes(b"#!/bin/bash\n\xff\xfe\n")
    with pytest.raises(UserError, match=rf"^cluster config {re.escape(str(job))}: cannot read it \(.*utf-8.*\)$"):
        files.doctor_cluster_file(str(job))


def test_a_cluster_files_lines_are_read_as_the_shell_reads_them_and_each_example_left_is_named():
    from orchestrator.clusters.files import auth_problems, code_lines, examples_left, open_binds
    text = ("run a 'b  c' # a comment\n"
            "\n"
            "   # only a comment\n"
            "echo 'never closed # kept\n"
            "#SBATCH --host 0.0.0.0\n"
            "x=1;y=2|z\n"
            "XLA_FLAGS=1 run Xx # X\n")
    # a scheduler's directive is a comment to the shell like any other; only '#' starts one
    assert list(code_lines(text)) == [(1, "run a b  c"), (4, "echo 'never closed # kept"),
                                      (6, "x=1 ; y=2 | z"), (7, "XLA_FLAGS=1 run Xx")]
    assert open_binds(text, "f") == [] and open_binds("a --host=10.0.0.1\n", "f") == [
        "f line 1: '--host=10.0.0.1' listens beyond 127.0.0.1; bind to 127.0.0.1 and forward the port over SSH"]
    assert open_binds("a --host 127.0.0.1 --dashboard-host localhost [::]\n", "f") == [
        "f line 1: '[::]' listens beyond 127.0.0.1; bind to 127.0.0.1 and forward the port over SSH"]
    assert open_binds("x RAY_AUTH_MODE:-disabled\nsudo ray stop --force\nmy-ray stop\n", "g")[0].startswith(
        "g line 1: Ray's token authentication is turned off")
    assert [b.split(":")[0] for b in open_binds("x RAY_AUTH_MODE:-disabled\n(ray stop)\nmy-ray stop\n", "g")] == [
        "g line 1", "g line 2"]
    assert auth_problems(["# RAY_AUTH_MODE=token\n", "echo hi\n"]) != [] and auth_problems(["x\n", "RAY_AUTH_MODE=token\n"]) == []
    shipped = ("account: 123456789012  # SET: your AWS account id\n"
               "bucket: s3://my-sweeps-bucket/x   #SET (before you start): your bucket\n"
               "head: 192.0.2.10 # SET: the head's address\n"
               "user: alice  # SET: your user\n"
               "note: researcher\n")
    assert examples_left(shipped) == [
        "line 1: the example AWS account ('123456789012') is still there; SET: your AWS account id",
        "line 2: the example bucket ('my-sweeps-bucket') is still there; SET: your bucket",
        "line 3: an example address ('192.0.2.') is still there; SET: the head's address"]


def _ours(pid: str, tmp_path: Path) -> bool:
    """clusters/node/start.sh's own `ours` check (read from the script), on a recorded `pid`."""
    script = (ROOT / "clusters" / "node" / "start.sh").read_text()
    check = script[script.index("ours() {"):script.index("if ours; then")]
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    (state / "ray.pid").write_text(pid)
    done = subprocess.run(["bash", "-c", f'set -euo pipefail\nSTATE="{state}"\n{check}\nours'], timeout=30)
    return done.returncode == 0


def test_start_sh_stops_only_the_ray_it_started_even_after_a_reboot_reused_its_pid(tmp_path):
    """After a reboot a node numbers its processes from 1 again, so the pid start.sh recorded may
    be any process's, its own check's included: only its watch (a session leader, start-ray) is
    stopped. A kill of anything else failed `ray up` of a rebooted head (seen in this suite)."""
    # a script of more than one command, as the watch is: bash -c would run a single one in its place
    watch = subprocess.Popen(["setsid", "bash", "-c", "sleep 60; true", "start-ray", "--head"])
    imposter = subprocess.Popen(["bash", "-c", "sleep 60; true", "start-ray", "--head"])   # no session of its own
    try:
        time.sleep(0.3)
        assert _ours(str(watch.pid), tmp_path)
        assert not _ours(str(imposter.pid), tmp_path)
        assert not _ours(str(2 ** 22 + 1), tmp_path)               # no such process
        assert not _ours("12 34; rm -rf /", tmp_path)              # not a pid
    finally:
        for proc in (watch, imposter):
            proc.kill()
            proc.wait()


def _setup_in(tmp_path: Path, python_exit: str = "0") -> tuple[Path, Path, Path]:
    """(repo, venv, log): clusters/node/setup.sh in a copy of the project's layout, with a venv
    whose python logs its arguments and exits `python_exit` for pip (0 for the rest)."""
    repo, venv, home = tmp_path / "repo", tmp_path / "venv", tmp_path / "home"
    (repo / "clusters" / "node").mkdir(parents=True, exist_ok=True)
    (venv / "bin").mkdir(parents=True, exist_ok=True)
    home.mkdir(exist_ok=True)
    shutil.copy(ROOT / "clusters" / "node" / "setup.sh", repo / "clusters" / "node" / "setup.sh")
    if not (repo / "pyproject.toml").exists():
        shutil.copy(ROOT / "pyproject.toml", repo / "pyproject.toml")
    log = tmp_path / "python.log"
    (venv / "bin" / "python").write_text(
        f'#!/bin/sh\necho "$*" >> {log}\ncase "$2" in pip) exit {python_exit} ;; esac\nexit 0\n')
    (venv / "bin" / "python").chmod(0o755)
    return repo, venv, log


def _run_setup(repo: Path, venv: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(repo / "clusters/node/setup.sh"), "--storage", "file:///nfs/x", "--venv", str(venv)],
                          env={**os.environ, "HOME": str(tmp_path / "home")}, capture_output=True, text=True)


def test_setup_installs_the_project_again_only_when_its_pyproject_or_place_changed(tmp_path):
    """`ray up` runs setup.sh on every node each time: pip (seconds of CPU on every node) runs on
    the first, after pyproject.toml changed, and after a setup that failed; fetch runs every time."""
    repo, venv, log = _setup_in(tmp_path)

    def pips() -> int:
        return sum(line.startswith("-m pip install") for line in log.read_text().splitlines())

    assert _run_setup(repo, venv, tmp_path).returncode == 0 and pips() == 2       # setuptools, the project
    assert _run_setup(repo, venv, tmp_path).returncode == 0 and pips() == 2       # nothing changed: no pip
    assert log.read_text().count("-m orchestrator fetch") == 2                    # the data checked each time
    (repo / "pyproject.toml").write_text((repo / "pyproject.toml").read_text() + "\n# a new dependency\n")
    assert _run_setup(repo, venv, tmp_path).returncode == 0 and pips() == 4       # its dependencies changed
    moved = tmp_path / "moved"
    shutil.copytree(repo, moved)
    assert _run_setup(moved, venv, tmp_path).returncode == 0 and pips() == 6      # the project from elsewhere

    # a pip that fails stops the setup and leaves no stamp: the next setup installs again
    (repo / "pyproject.toml").write_text((repo / "pyproject.toml").read_text() + "\n# another\n")
    _setup_in(tmp_path, python_exit="1")
    assert _run_setup(repo, venv, tmp_path).returncode != 0 and pips() == 7
    _setup_in(tmp_path)
    assert _run_setup(repo, venv, tmp_path).returncode == 0 and pips() == 9
    assert "node set up: venv" in _run_setup(repo, venv, tmp_path).stdout and pips() == 9


_SLOW_SERVER = '''#!{python}
# `mlflow server ...` as a loaded head runs it: {mode} ("exit": it fails at once; a number: it
# answers /health after that many seconds)
import os, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer
open("{seen}", "w").write(os.environ.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "unset"))
if "{mode}" == "exit":
    sys.exit(1)
time.sleep(float("{mode}"))
class Health(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"OK")
HTTPServer(("127.0.0.1", 5000), Health).serve_forever()
'''


def _head_sh(tmp_path: Path, mode: str, timeout: int, env: dict | None = None) -> subprocess.CompletedProcess:
    """head.sh in a network namespace of its own (its own 127.0.0.1:5000), with an `mlflow` that
    starts as `mode` says, as the first on the PATH its env file sets."""
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "mlflow").write_text(_SLOW_SERVER.format(python=sys.executable, mode=mode, seen=tmp_path / "jobs"))
    (fake / "mlflow").chmod(0o755)
    (tmp_path / ".clip-prompt-sweeps.env").write_text(f"export PATH={fake}:{Path(sys.executable).parent}:$PATH\n")
    store = tmp_path / f"store-{mode}"
    script = (f"ip link set lo up; bash {ROOT / 'clusters/node/head.sh'} --artifacts file://{tmp_path}/art "
              f"--store {store}; status=$?; kill $(cat {store}/server.pid) 2>/dev/null; exit $status")
    env = {**os.environ, "HOME": str(tmp_path), "MLFLOW_START_TIMEOUT": str(timeout), **(env or {})}
    return subprocess.run(["unshare", "-n", "bash", "-c", script], env=env, capture_output=True, text=True,
                          timeout=timeout + 60)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="a network namespace needs root")
def test_head_sh_waits_for_a_slow_mlflow_server_and_stops_at_one_that_exits(tmp_path):
    """A loaded head took 40 s to start the server's workers, and head.sh gave up on it (run 11 of
    docs/testing.md). It now waits while the server lives, up to $MLFLOW_START_TIMEOUT; a server
    that exits is named at once, and one that never answers at the bound. It starts the server
    without MLflow's GenAI job runner unless asked."""
    started = time.monotonic()
    slow = _head_sh(tmp_path, "4", timeout=60)
    assert slow.returncode == 0 and "MLflow server on http://127.0.0.1:5000" in slow.stdout, slow.stderr
    assert time.monotonic() - started >= 4
    assert (tmp_path / "jobs").read_text() == "false"  # no GenAI job runner beside a sweep's server...
    asked = _head_sh(tmp_path, "0", timeout=60, env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true"})
    assert asked.returncode == 0 and (tmp_path / "jobs").read_text() == "true", asked.stderr   # ...unless asked
    started = time.monotonic()
    gone = _head_sh(tmp_path, "exit", timeout=60)
    assert gone.returncode == 1 and gone.stderr.startswith("head.sh: the MLflow server exited; see "), gone.stderr
    assert time.monotonic() - started < 30            # not the 60 s bound: it saw the server go
    never = _head_sh(tmp_path, "3600", timeout=3)
    assert never.returncode == 1 and "did not answer within 3 s" in never.stderr, never.stderr
