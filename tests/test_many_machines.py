"""Many machines for real (issue #26): three nodes, each a network, PID and mount namespace of its own
with its own address, sshd and disk, joined by veth pairs to a bridge in a namespace the test made
(tests/namespaces.py, Network); one host folder, at the same path in every node, is their NFS.

`ray up` of the real clusters/onprem.yaml (only its SET values changed) starts the head, and the
head's autoscaler sets up and starts the two workers over SSH: the file mounts,
clusters/node/setup.sh on every node, `start.sh worker` joining the head. On that one cluster, in
order: every node set up, the head's ports on 127.0.0.1 only and Ray's token required; a smoke sweep whose MLflow `nodes` tags show trials on all three nodes; a worker's power cut
while its trials run (they go on elsewhere from their checkpoints, the node boots again and takes
trials); the head's power cut mid-sweep (driver, Ray head and MLflow server with it), then the head
booted again, `ray up`, and `--resume` finishing the sweep from MLflow alone.

The MLflow server's SQLite database is on the shared folder (`head.sh --store`), so the record
outlives the head. Skipped where sshd, rsync or nc are missing (.ci/run installs them) or without root."""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient
from namespaces import Namespace, Network
from test_real_clusters import (
    SLURM_TOOLS,
    SSH_TOOLS,
    VENV_BIN,
    _env,
    _gone,
    _is_ray_or_driver,
    _listeners,
    _new_tmp_files,
    _skip_reason,
    munged,
    slurm_conf,
    submit,
    wait_for_job,
    wait_idle,
)

from clip_prompt_sweeps.store.records import read_parent, read_trial
from clip_prompt_sweeps.store.runs import children, latest_parent

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.real_cluster,
              pytest.mark.skipif(_skip_reason(SSH_TOOLS) is not None, reason=str(_skip_reason(SSH_TOOLS)))]

# A node's venv, made inside the node (on its own disk): the test's packages through a .pth file,
# the project installed by setup.sh from the node's own copy, no downloads.
_MAKE_VENV = """
import subprocess, sys, sysconfig
from pathlib import Path
venv = Path.home() / "node-venv"
subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
site = subprocess.run([str(venv / "bin" / "python"), "-c",
                       "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                      capture_output=True, text=True, check=True).stdout.strip()
Path(site, "test-packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\\n")
for name in ("ray", "mlflow"):
    script = Path(sys.argv[1], name).read_text().split("\\n", 1)[1]
    (venv / "bin" / name).write_text(f"#!{venv}/bin/python\\n{script}")
    (venv / "bin" / name).chmod(0o755)
"""
# A trial takes a whole node (2 CPUs of 2), so the cluster holds three at once, one per node.
SWEEP = ("python -m orchestrator sweep visual --profile smoke --cpus-per-trial 2 --gpus-per-trial 0 "
         "--epochs {epochs}")
# Where the check is that every node takes a trial: one learning rate per cell (4 trials, none
# stopped by ASHA, which keeps a rung's lone trial), each longer than an actor's start. Tune gives a
# trial waiting for its new actor any actor a trial that ended leaves (reuse_actors), and discards
# the new one: with 12-epoch trials on a machine a second test run kept busy, a node's actor took
# 15 s to start (importing torch) while trials elsewhere ended in 13, and it was discarded three
# times (its raylet's log): 8 trials on two nodes, none on the third.
SPREAD = SWEEP.format(epochs=36) + " --samples 1"


@dataclass
class Cluster:
    t: Path
    net: Network
    config: Path
    env: dict
    times: dict = field(default_factory=dict)

    @property
    def head(self) -> Namespace:
        return self.net.nodes[0]

    def addresses(self) -> set[str]:
        return {self.net.address(k) for k in range(3)}

    def exec(self, command: str, timeout: float = 600) -> str:
        """`ray exec` on the head, as a user runs a command there; its output."""
        out = self.head.run(["ray", "exec", str(self.config), command], timeout=timeout, env=self.env, cwd=ROOT)
        return out.stdout + out.stderr

    def client(self) -> MlflowClient:
        return MlflowClient(f"sqlite:///{self.t}/nfs/mlflow/mlflow.db")

    def runs(self, parent_id: str | None = None) -> list:
        client = self.client()
        parent = client.get_run(parent_id) if parent_id else latest_parent(client, "visual")
        return children(client, parent.info.experiment_id, parent.info.run_id)

    def alive(self, until: int = 0, within_s: float = 0) -> dict[str, float]:
        """Node address -> its CPUs, as the head's Ray sees them (a client with the token); given
        `until`, the client asks again every 3 s, up to `within_s`, until that many are alive: one
        process, not one per look (each imports Ray and connects, about 3 CPU-seconds)."""
        probe = (f"import json, time, ray\nray.init(address='{self.net.address(0)}:6379', logging_level='ERROR')\n"
                 f"end = time.monotonic() + {within_s}\n"
                 "while True:\n"
                 "    nodes = {n['NodeManagerAddress']: n['Resources'].get('CPU', 0) for n in ray.nodes() if n['Alive']}\n"
                 "    print(json.dumps(nodes), flush=True)\n"
                 f"    if len(nodes) >= {until} or time.monotonic() > end:\n"
                 "        break\n"
                 "    time.sleep(3)\n")
        out = self.head.run([sys.executable, "-c", probe], check=False, timeout=within_s + 120,
                            env=_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(self.t / "ray_token")))
        lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
        return json.loads(lines[-1]) if lines else {}

    def wait_for_nodes(self, what: str, since: float | None = None, within_s: float = 600) -> dict[str, float]:
        """Wait for the three nodes alive in Ray; `what` took the time from `since` (default: now)."""
        start, nodes = time.monotonic(), {}
        while set(nodes) != self.addresses() and time.monotonic() - start < within_s:
            # a client that cannot connect yet (the head's Ray starting) is started again
            nodes = self.alive(until=3, within_s=max(0.0, within_s - (time.monotonic() - start)))
            if set(nodes) != self.addresses():
                time.sleep(3)
        self.times[what] = time.monotonic() - (start if since is None else since)
        # what the autoscaler did with each worker (its node updaters' lines), to show on failure
        monitor = self.head.run("cat /tmp/ray/session_latest/logs/monitor.* | grep -v 'idle for' | tail -n 60",
                                check=False).stdout
        assert set(nodes) == self.addresses(), monitor
        return nodes


def _sshd(node: Namespace, t: Path, address: str) -> None:
    """An sshd on port 22 of the node's address, taking the test's key."""
    config = t / f"sshd-{address}"
    config.write_text(
        f"ListenAddress {address}\nPort 22\nHostKey {t}/host_key\nPermitRootLogin prohibit-password\n"
        f"PasswordAuthentication no\nUsePAM no\nStrictModes no\nAuthorizedKeysFile {t}/authorized_keys\n"
        f"PidFile {t}/sshd-{address}.pid\n")
    node.run(f"mkdir -p /run/sshd && /usr/sbin/sshd -f {config} -E {t}/sshd-{address}.log")


def _cluster_file(t: Path, net: Network, key: Path) -> Path:
    """clusters/onprem.yaml with its SET values filled for the three namespaces."""
    text = (ROOT / "clusters" / "onprem.yaml").read_text()
    text = text.replace('--fetch "--weights"', '--fetch "--data synthetic" --venv $HOME/node-venv')
    text = text.replace("file:///nfs/clip-sweeps/", f"file://{t}/nfs/").replace("/nfs/clip-sweeps/", f"{t}/nfs/")
    config = yaml.safe_load(text)
    config["provider"].update(head_ip=net.address(0), worker_ips=[net.address(1), net.address(2)])
    config["auth"] = {"ssh_user": "root", "ssh_private_key": str(key)}
    assert config["min_workers"] == config["max_workers"] == 2           # as shipped: the two workers
    assert f"--store {t}/nfs/mlflow" in str(config["head_start_ray_commands"])  # the record on the shared folder
    (t / "ray_token").write_text(secrets.token_hex(32))
    assert set(config["file_mounts"]) == {"~/clip-prompt-sweeps", "~/.clip-prompt-sweeps-ray-token"}   # as shipped
    config["file_mounts"] = {"~/clip-prompt-sweeps": str(ROOT), "~/.clip-prompt-sweeps-ray-token": str(t / "ray_token")}
    path = t / "onprem.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _boot(c: Cluster, k: int) -> None:
    _sshd(c.net.nodes[k], c.t, c.net.address(k))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    t = tmp_path_factory.mktemp("three")
    before = _new_tmp_files(set())
    net = Network(t / "net", 3)
    c = None
    try:
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(t / "key")], check=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(t / "host_key")], check=True)
        shutil.copy(t / "key.pub", t / "authorized_keys")
        (t / "make_venv.py").write_text(_MAKE_VENV)
        (t / "nfs").mkdir()
        c = Cluster(t, net, _cluster_file(t, net, t / "key"), _env())
        for k, node in enumerate(net.nodes):
            _boot(c, k)
            node.run([sys.executable, str(t / "make_venv.py"), str(VENV_BIN)])
        start = time.monotonic()
        up = c.head.run(["ray", "up", "-y", "--no-config-cache", str(c.config)], timeout=600, env=c.env, cwd=ROOT)
        assert "node set up: venv" in up.stdout + up.stderr and "MLflow server on http://127.0.0.1:5000" in up.stdout + up.stderr
        c.wait_for_nodes("ray up, three nodes alive", since=start)
        yield c
        start = time.monotonic()
        c.head.run(["ray", "down", "-y", str(c.config)], timeout=300, env=c.env, cwd=ROOT)
        c.times["ray down"] = time.monotonic() - start
        c.head.run(f"kill $(cat {t}/nfs/mlflow/server.pid)")
        # `ray down` of Ray's local provider stops the head's Ray alone; a worker's raylet gives up
        # on the head's GCS after 60 s (Ray's gcs_rpc_server_reconnect_timeout_s) and its Ray ends
        for node in net.nodes:
            assert _gone(node, lambda p: "sshd" not in p, within_s=150) == []
    finally:
        if c is not None:
            print("measured:", json.dumps({k: round(v, 1) for k, v in c.times.items()}))
        net.close()
        for path in _new_tmp_files(before):
            shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)
        assert net.left_behind() == []


# one worker runs them: they share the module's three nodes (tests/conftest.py)
LAUNCHER = pytest.mark.xdist_group("launcher")


def _where(runs) -> Counter:
    return Counter(node for r in runs for node in read_trial(r).nodes)


def _epochs_once(client: MlflowClient, runs) -> None:
    for r in runs:
        steps = [m.step for m in client.get_metric_history(r.info.run_id, "epoch")]
        assert len(steps) == len(set(steps)), (r.info.run_name, steps)


@LAUNCHER
def test_0_ray_up_sets_up_every_node_and_the_head_plans_the_study_behind_locked_doors(cluster):
    c = cluster
    nodes = c.alive()           # a client with the cluster's token is served
    assert set(nodes) == c.addresses() and all(cpus == 2 for cpus in nodes.values()), nodes
    for node in c.net.nodes:    # setup.sh ran on each node: the project in its venv, the data there
        here = node.run([f"{Path.home()}/node-venv/bin/python", "-c", "import orchestrator; print(orchestrator.__file__)"])
        assert here.stdout.strip() == f"{Path.home()}/clip-prompt-sweeps/orchestrator/__init__.py"
        assert "RAY_AUTH_MODE=token" in node.run(f"cat {Path.home()}/.clip-prompt-sweeps.env").stdout
        data = node.run(f"ls {Path.home()}/.cache/clip-prompt-sweeps/data/synthetic").stdout.split()
        assert {"cifar-10-batches-py", "cifar-100-python"} <= set(data)

    # the MLflow server and the dashboard listen on the head's 127.0.0.1 only
    listening = _listeners(c.head)
    assert listening[5000] == {"127.0.0.1"} and listening[8265] == {"127.0.0.1"}, listening
    # Ray's doors are locked: a client without the token is turned away
    probe = "import ray; ray.init(address='%s:6379'); print('nodes', len(ray.nodes()))" % c.net.address(0)
    stranger = c.head.run(f'timeout 60 {sys.executable} -c "{probe}"', env=_env(), check=False, timeout=120)
    assert stranger.returncode != 0 and "nodes" not in stranger.stdout
    assert "InvalidAuthToken" in stranger.stdout + stranger.stderr       # refused for its missing token

    # on the head, `sweep NAME` plans the study (the head's ORCHESTRATOR_PROFILE)
    assert "plan for sweep visual (full): 4 cells x 4 learning rates" in c.exec(
        "python -m orchestrator sweep visual --dry-run", timeout=120)


@LAUNCHER
def test_1_ray_up_starts_three_nodes_and_a_sweep_runs_on_all_three(cluster):
    c = cluster
    start = time.monotonic()
    out = c.exec(SPREAD)
    c.times["smoke sweep, 4 trials of 36 epochs on three nodes"] = time.monotonic() - start
    assert "4 trials, 0 failed; MLflow parent run" in out, out[-3000:]
    runs = c.runs()
    where = _where(runs)
    print("trials per node:", dict(where), {r.info.run_name: read_trial(r).nodes for r in runs})
    assert len(runs) == 4 and set(where) == c.addresses(), where
    assert {r.info.status for r in runs} <= {"FINISHED", "KILLED"}
    assert "4 of 4 trials on 3 nodes; report:" in c.exec("python -m orchestrator status visual")
    assert "report written: " in c.exec("python -m orchestrator report visual")
    parent = latest_parent(c.client(), "visual").info.run_id
    report = next((c.t / "nfs" / "mlflow-artifacts").glob(f"*/{parent}/artifacts/report/report.md"))
    assert "; 3 nodes ran them." in report.read_text()


def _running_on(c: Cluster, address: str, parent_id: str, min_epoch: int) -> list:
    """The RUNNING runs now on `address` with at least `min_epoch` epochs logged (a checkpoint)."""
    return [r for r in c.runs(parent_id) if r.info.status == "RUNNING"
            and r.data.tags.get("node") == address and r.data.metrics.get("epoch", 0) >= min_epoch]


def _started_parent(c: Cluster, before: set[str], driver: subprocess.Popen, within_s: float = 300) -> str:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline and driver.poll() is None:
        new = _parents(c) - before
        if new:
            return new.pop()
        time.sleep(2)
    raise AssertionError(f"no new sweep started; driver exited {driver.poll()}")


def _parents(c: Cluster) -> set[str]:
    client = c.client()
    exp = client.get_experiment_by_name("visual")
    return {r.info.run_id for r in client.search_runs([exp.experiment_id], "tags.role = 'sweep'")} if exp else set()


def _wait(what: str, check, within_s: float = 300, every: float = 2):
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"waited {within_s:.0f} s for {what}")


@LAUNCHER
def test_2_a_worker_lost_mid_sweep_its_trials_go_on_elsewhere_and_it_comes_back(cluster):
    c = cluster
    before = _parents(c)
    driver = c.head.popen(f"ray exec {c.config} '{SWEEP.format(epochs=8)}'", c.t / "loss.log", env=c.env, cwd=ROOT)
    try:
        parent = _started_parent(c, before, driver)
        # the worker that first runs a trial past its checkpoint: in these short trials Tune's actor
        # reuse can leave one node without any (SPREAD, above; a fresh-clone run saw it so)
        k, victims = _wait("a trial with a checkpoint on a worker node", lambda: next(
            ((k, runs) for k in (1, 2) if (runs := _running_on(c, c.net.address(k), parent, 2))), None))
        lost = c.net.address(k)
        ids_before = {r.info.run_id for r in c.runs(parent)}
        c.net.power_cut(k)
        died = time.monotonic()
        victim = victims[0].info.run_id
        moved = _wait("the lost node's trial running on another node",
                      lambda: [n for n in read_trial(c.client().get_run(victim)).nodes if n != lost], within_s=400)
        c.times["worker lost -> its trial running elsewhere"] = time.monotonic() - died
        assert driver.wait(timeout=900) == 0, (c.t / "loss.log").read_text()[-3000:]
    finally:
        if driver.poll() is None:
            driver.kill()
    out = (c.t / "loss.log").read_text()
    assert "sweep visual (smoke): 4 cells x 2 learning rates = 8 trials" in out, out[-3000:]
    assert "8 trials, 0 failed; MLflow parent run" in out and "at http://127.0.0.1:5000" in out, out[-3000:]
    record = c.client().get_run(parent)
    assert record.data.tags.get("profile") == "smoke" and record.info.status == "FINISHED"
    assert (c.t / "nfs" / "ray-results").is_dir()                      # trial state on the shared path
    runs = c.runs(parent)
    by_id = {r.info.run_id: read_trial(r) for r in runs}
    assert ids_before <= set(by_id) and len(runs) == 8                    # every planned trial once, none deleted
    assert {r.status for r in by_id.values()} <= {"FINISHED", "KILLED"}   # nothing RUNNING
    assert {r.outcome for r in by_id.values()} <= {"finished", "stopped_early"}
    moved_run = by_id[victim]
    assert moved_run.nodes[0] == lost and moved_run.nodes[1:] == tuple(moved), moved_run.nodes
    assert int(moved_run.tags["failures"]) >= 1                             # its run counts the failure
    assert int(moved_run.tags["resumed_at_epoch"]) >= 2                     # from its checkpoint, not epoch 1
    _epochs_once(c.client(), runs)
    print("trials per node, worker lost:", {by_id[r].cell + f" lr={by_id[r].lr:.3g}": by_id[r].nodes for r in by_id})

    # the node boots again; the head's autoscaler finds it without a heartbeat and starts Ray on it
    c.net.power_on(k)
    _boot(c, k)
    c.wait_for_nodes("worker booted -> alive in Ray again")
    before = _parents(c)
    out = c.exec(SPREAD)
    assert "4 trials, 0 failed; MLflow parent run" in out, out[-3000:]
    where = _where(c.runs((_parents(c) - before).pop()))
    assert where[lost] >= 1, where                                          # it takes trials again


def _midway(runs) -> bool:
    statuses = Counter(r.info.status for r in runs)
    return statuses["FINISHED"] >= 2 and statuses["RUNNING"] >= 1


@LAUNCHER
def test_3_the_head_lost_mid_sweep_is_booted_and_the_sweep_resumed_from_mlflow(cluster):
    c = cluster
    assert set(c.alive()) == c.addresses(), "a node is down before the test (an earlier test failed)"
    before = _parents(c)
    command = SPREAD            # its status counts the nodes that ran trials: the spread's own sweep
    driver = c.head.popen(f"ray exec {c.config} '{command}'", c.t / "head.log", env=c.env, cwd=ROOT)
    try:
        parent = _started_parent(c, before, driver)
        _wait("two trials finished and one running", lambda: _midway(c.runs(parent)), within_s=600)
        finished = {r.info.run_id: [m.step for m in c.client().get_metric_history(r.info.run_id, "epoch")]
                    for r in c.runs(parent) if r.info.status == "FINISHED"}
        dead_driver = read_parent(c.client().get_run(parent)).lease
        c.net.power_cut(0)          # the driver, the Ray head and the MLflow server with it
        driver.wait(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
    killed = {r.info.run_id for r in c.runs(parent)}
    assert any(r.info.status == "RUNNING" for r in c.runs(parent))      # cut short: no one ended them

    start = time.monotonic()
    c.net.power_on(0)
    _boot(c, 0)
    up = c.head.run(["ray", "up", "-y", "--no-config-cache", str(c.config)], timeout=600, env=c.env, cwd=ROOT)
    assert "MLflow server on http://127.0.0.1:5000" in up.stdout + up.stderr
    c.wait_for_nodes("head booted: ray up -> three nodes alive", since=start)
    out = c.exec(command + " --resume")
    assert f"resuming run {parent}: " in out and " of 4 trials done, " in out, out[-3000:]
    assert " trials, 0 failed; MLflow parent run" in out, out[-3000:]
    lease = read_parent(c.client().get_run(parent)).lease      # the dead driver's, taken over
    assert dead_driver is not None and not dead_driver.released
    assert lease is not None and lease.token != dead_driver.token and lease.released
    runs = c.runs(parent)
    by_id = {r.info.run_id: read_trial(r) for r in runs}
    current = {k: r for k, r in by_id.items() if not r.superseded}
    assert killed <= set(by_id) and len(current) == 4, (len(current), len(by_id))
    assert {r.status for r in by_id.values()} <= {"FINISHED", "KILLED"}
    for run_id, steps in finished.items():          # the finished trials were not run again
        assert [m.step for m in c.client().get_metric_history(run_id, "epoch")] == steps
        assert current[run_id].trial_ids == by_id[run_id].trial_ids and len(by_id[run_id].trial_ids) == 1
    _epochs_once(c.client(), runs)
    status = c.exec("python -m orchestrator status visual")
    assert ": finished, run " in status and "of 4 trials on 3 nodes" in status, status[-2000:]
    assert "report written: " in c.exec("python -m orchestrator report visual")


# --- SLURM across two nodes ----------------------------------------------------------------------

@pytest.fixture
def slurm_pair(tmp_path):
    """Two SLURM nodes (n1, n2) in two namespaces, munged on each with one key, slurmctld on n1."""
    t = tmp_path
    net = Network(t / "net", 2)
    try:
        (t / "munge").mkdir()
        subprocess.run(["mungekey", "--create", f"--keyfile={t}/munge/munge.key"], check=True)
        for k, node in enumerate(net.nodes, 1):
            munged(node, t / f"n{k}", t / "munge" / "munge.key")
        conf = slurm_conf(t, f"node1({net.address(0)})", {"n1": net.address(0), "n2": net.address(1)})
        net.nodes[0].run(["slurmctld", "-f", str(conf)])
        for k, node in enumerate(net.nodes, 1):
            node.run(["slurmd", "-f", str(conf), "-N", f"n{k}"])
        env = _env(SLURM_CONF=str(conf))
        wait_idle(net.nodes[0], env, t, 2)
        yield net, env
    finally:
        net.close()
        assert net.left_behind() == []


@pytest.mark.skipif(_skip_reason(SLURM_TOOLS) is not None, reason=str(_skip_reason(SLURM_TOOLS)))
def test_4_a_two_node_slurm_job_runs_trials_on_both_and_resumes_after_the_time_limit(slurm_pair, tmp_path, data_root):
    (net, env), t = slurm_pair, tmp_path
    n1 = net.nodes[0]
    shared = t / "shared"
    env = {**env, "ORCHESTRATOR_VENV": str(VENV_BIN.parent), "CLIP_SWEEPS_SHARED": str(shared),
           "RAY_HEAD_IP": net.address(0), "ORCHESTRATOR_DATA_DIR": str(data_root), "ORCHESTRATOR_NO_DOWNLOAD": "1",
           "ORCHESTRATOR_PROGRESS_S": "1"}
    # a trial takes a whole node, so the two nodes run one each; trials that outlast an actor's start (SPREAD)
    args = "visual --profile smoke --cpus-per-trial 2 --gpus-per-trial 0 --epochs 36 --samples 1"
    sbatch = ["sbatch", "--nodes=2", "--cpus-per-task=2", "--gpus-per-node=0", f"--output={t}/job-%j.out",
              str(ROOT / "clusters" / "slurm" / "sweep.sbatch")]
    start = time.monotonic()
    first = submit(n1, env, sbatch, args)
    wait_for_job(n1, env, first, t, until=lambda out: re.search(r"^cell .*: complete", out, re.MULTILINE))
    n1.run(["scancel", "--batch", "--signal=TERM", first], env=env)     # SLURM's --signal=B:TERM@300
    out = wait_for_job(n1, env, first, t)
    assert f"Ray head on n1 ({net.address(0)}), 2 node(s)" in out, out[-3000:]
    assert "interrupted: " in out and f"job {first}: Ray stopped" in out, out[-3000:]
    client = MlflowClient(f"sqlite:///{shared}/mlflow.db")
    parent = latest_parent(client, "visual")
    assert parent.info.status == "KILLED"
    stopped = time.monotonic() - start

    second = submit(n1, env, sbatch, f"{args} --resume")
    out = wait_for_job(n1, env, second, t, timeout=400)
    assert " trials, 0 failed; MLflow parent run" in out and f"job {second}: Ray stopped" in out, out[-3000:]
    runs = children(client, parent.info.experiment_id, parent.info.run_id)
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"
    assert len(runs) == 4 and {r.info.status for r in runs} <= {"FINISHED", "KILLED"}
    where = _where(runs)
    print("SLURM trials per node:", dict(where))
    assert set(where) == {net.address(0), net.address(1)}, where
    for node in net.nodes:                      # no Ray process, no driver left on either node
        assert _gone(node, _is_ray_or_driver) == []
    print(f"measured: two-node SLURM job stopped by the signal {stopped:.1f} s, resumed job "
          f"{time.monotonic() - start - stopped:.1f} s")
