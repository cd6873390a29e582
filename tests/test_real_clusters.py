"""The project's SLURM file started for real on this machine, in a namespace of its own
(tests/namespaces.py): clusters/slurm/sweep.sbatch as a job of a single-node SLURM with munge,
stopped by its time limit's signal and resumed by the next job; and the helpers the many-machines
tests share (`ray up` of clusters/onprem.yaml is checked there, on three nodes booted once).
Skipped where slurmd or munged are not installed; .ci/run installs them (docs/testing.md)."""
from __future__ import annotations

import glob
import os
import re
import shutil
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from namespaces import Namespace, available

from clip_prompt_sweeps.store.runs import children, latest_parent

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
SSH_TOOLS = ("sshd", "ssh-keygen", "nc", "rsync")
SLURM_TOOLS = ("slurmctld", "slurmd", "munged", "mungekey", "sbatch")
pytestmark = pytest.mark.real_cluster


def _skip_reason(tools: tuple[str, ...]) -> str | None:
    missing = [t for t in tools if shutil.which(t) is None and not Path(f"/usr/sbin/{t}").exists()]
    return available() or (f"needs {', '.join(missing)} (apt-get install openssh-server rsync netcat-openbsd "
                           f"slurm-wlm munge)" if missing else None)


def _env(**more) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RAY_", "MLFLOW_", "ORCHESTRATOR_", "SLURM_"))}
    return {**env, "PATH": f"{VENV_BIN}:{env['PATH']}", "RAY_AUTH_MODE": "disabled", **more}


def _listeners(ns: Namespace) -> dict[int, set[str]]:
    """Listening TCP port -> the addresses it listens on, inside the namespace."""
    out = ns.run(["ss", "-Hltn"]).stdout
    found: dict[int, set[str]] = {}
    for line in out.splitlines():
        local = line.split()[3]
        address, port = local.rsplit(":", 1)
        found.setdefault(int(port), set()).add(address)
    return found


def _new_tmp_files(before: set[str]) -> set[str]:
    """What the launcher left in the machine's /tmp (outside the namespace's /tmp/ray)."""
    return set(glob.glob("/tmp/ray-config-*") + glob.glob("/tmp/ray_ssh_*")) - before


def _is_ray_or_driver(command: str) -> bool:
    """A Ray daemon or worker, or the sweep's driver (paths in other commands do not count)."""
    words = command.split()
    return bool(words) and (Path(words[0]).name in ("ray", "raylet", "gcs_server") or "ray::" in command
                            or "site-packages/ray/" in command or "-m orchestrator" in command)


def _gone(ns: Namespace, which, within_s: float = 30) -> list[str]:
    """The processes `which` names that are still there after `within_s` (a helper process, such
    as the forkserver of Ray's dashboard, ends a moment after its parent)."""
    deadline = time.time() + within_s
    while (left := [p for p in ns.processes() if which(p)]) and time.time() < deadline:
        time.sleep(0.5)
    return left


@pytest.fixture
def namespace(tmp_path):
    ns = Namespace(tmp_path / "ns")
    yield ns
    ns.close()


# --- SLURM -------------------------------------------------------------------------------------

MUNGE_SOCKET = "/tmp/ray/munge-run"      # each namespace's own /tmp/ray, open to all as munged wants


def munged(ns: Namespace, t: Path, key: Path) -> None:
    """munged inside the namespace, with the cluster's one key (files of its own under `t`)."""
    (t / "munge").mkdir(parents=True, exist_ok=True)
    (t / "munge").chmod(0o700)
    ns.run(f"mkdir -p {MUNGE_SOCKET} && chmod 755 {MUNGE_SOCKET}")
    ns.run(["munged", f"--socket={MUNGE_SOCKET}/munge.socket", f"--key-file={key}", f"--log-file={t}/munge/munged.log",
            f"--pid-file={MUNGE_SOCKET}/munged.pid", f"--seed-file={t}/munge/seed"])


def slurm_conf(t: Path, controller: str, nodes: dict[str, str], options: tuple[str, ...] = ()) -> Path:
    """slurm.conf of a test cluster: the controller's host, node name -> address, 2 CPUs each."""
    for sub in ("state", "log"):
        (t / "slurm" / sub).mkdir(parents=True, exist_ok=True)
    conf = t / "slurm.conf"
    conf.write_text("\n".join([
        "ClusterName=test", f"SlurmctldHost={controller}", "SlurmUser=root", "SlurmdUser=root",
        "AuthType=auth/munge", f"AuthInfo=socket={MUNGE_SOCKET}/munge.socket", "CredType=cred/munge", *options,
        # slurmstepd makes unix sockets in its spool: a folder under pytest's basetemp can pass their
        # 108-byte limit (it did in CI), so each node spools in its namespace's own short /tmp/ray
        f"StateSaveLocation={t}/slurm/state", "SlurmdSpoolDir=/tmp/ray/slurmd-%n",
        f"SlurmctldPidFile={t}/slurm/slurmctld.pid", f"SlurmdPidFile={t}/slurm/slurmd-%n.pid",
        f"SlurmctldLogFile={t}/slurm/log/slurmctld.log", f"SlurmdLogFile={t}/slurm/log/slurmd-%n.log",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU", "AccountingStorageType=accounting_storage/none",
        "JobAcctGatherType=jobacct_gather/none", "JobCompType=jobcomp/none", "MpiDefault=none",
        *(f"NodeName={name} NodeAddr={address} CPUs=2 RealMemory=4000 State=UNKNOWN" for name, address in nodes.items()),
        f"PartitionName=debug Nodes={','.join(nodes)} Default=YES MaxTime=INFINITE State=UP", ""]))
    return conf


def wait_idle(ns: Namespace, env: dict, t: Path, nodes: int) -> None:
    deadline = time.time() + 60
    while ns.run(["sinfo", "-h", "-N", "-o", "%T"], env=env, check=False).stdout.split().count("idle") < nodes:
        assert time.time() < deadline, "\n".join(p.read_text()[-2000:] for p in (t / "slurm" / "log").glob("*.log"))
        time.sleep(0.5)


def _slurm(ns: Namespace, t: Path) -> dict:
    """munged and a single-node slurmctld/slurmd inside the namespace; the environment for sbatch."""
    (t / "munge").mkdir(parents=True, exist_ok=True)
    ns.run(["mungekey", "--create", f"--keyfile={t}/munge/munge.key"])
    munged(ns, t, t / "munge" / "munge.key")
    conf = slurm_conf(t, "localhost", {"localhost": "127.0.0.1"}, ("CommunicationParameters=NoCtldInAddrAny,NoInAddrAny",))
    ns.run(["slurmctld", "-f", str(conf)])
    ns.run(["slurmd", "-f", str(conf), "-N", "localhost"])
    env = _env(SLURM_CONF=str(conf))
    wait_idle(ns, env, t, 1)
    return env


def submit(ns: Namespace, env: dict, sbatch: list[str], sweep_args: str) -> str:
    out = ns.run([*sbatch, sweep_args], env=env, cwd=ROOT)
    return re.search(r"Submitted batch job (\d+)", out.stdout).group(1)


def _submit(ns: Namespace, env: dict, t: Path, sweep_args: str) -> str:
    return submit(ns, env, ["sbatch", "--nodes=1", "--cpus-per-task=2", "--gpus-per-node=0", f"--output={t}/job-%j.out",
                            str(ROOT / "clusters" / "slurm" / "sweep.sbatch")], sweep_args)


def wait_for_job(ns: Namespace, env: dict, job: str, t: Path, until=None, timeout: float = 240) -> str:
    """The job's output once the job has ended (or, given `until`, once `until(output)` holds)."""
    deadline = time.time() + timeout
    while True:
        said = ns.run(["squeue", "-h", "-j", job], env=env, check=False)
        # squeue's own failure (a busy controller) says nothing of the job; an id SLURM no longer
        # knows, or no line for it, says it has ended
        running = None if said.returncode and "Invalid job id" not in said.stderr else said.stdout.strip()
        # read after squeue: output read before it could miss what the job printed as it ended
        out = (t / f"job-{job}.out").read_text() if (t / f"job-{job}.out").exists() else ""
        if (until is not None and until(out)) or (until is None and running == ""):
            return out
        assert running != "" or until is None, f"job {job} ended first:\n{out[-3000:]}"
        if time.time() > deadline:
            raise AssertionError(f"job {job}: still waiting after {timeout} s:\n{out[-3000:]}\n{_why(ns, env, job, t)}")
        time.sleep(0.5)


def _why(ns: Namespace, env: dict, job: str, t: Path) -> str:
    """What SLURM says of a job that keeps the test waiting: its state and reason, the nodes, the logs."""
    said = [ns.run(argv, env=env, check=False).stdout for argv in (
        ["squeue", "-h", "-j", job, "-o", "%T %r %N"], ["sinfo", "-h", "-N", "-o", "%N %T %E"])]
    logs = [f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted((t / "slurm" / "log").glob("*.log"))]
    return "\n".join(["squeue: " + said[0].strip(), "sinfo: " + said[1].strip(), *logs])


@pytest.mark.skipif(_skip_reason(SLURM_TOOLS) is not None, reason=str(_skip_reason(SLURM_TOOLS)))
def test_the_sbatch_file_survives_the_time_limit_signal_and_the_next_job_resumes(namespace, tmp_path, data_root):
    t = tmp_path
    env = _slurm(namespace, t)
    shared = t / "shared"
    env = {**env, "ORCHESTRATOR_VENV": str(VENV_BIN.parent), "CLIP_SWEEPS_SHARED": str(shared),
           "RAY_HEAD_IP": "127.0.0.1", "ORCHESTRATOR_DATA_DIR": str(data_root), "ORCHESTRATOR_NO_DOWNLOAD": "1",
           "ORCHESTRATOR_PROGRESS_S": "1"}
    # one trial at a time, so that the sweep is still running when the signal comes
    args = "visual --profile smoke --gpus-per-trial 0 --epochs 4 --max-concurrent 1"
    start = time.monotonic()
    first = _submit(namespace, env, t, args)
    wait_for_job(namespace, env, first, t, until=lambda out: re.search(r"^cell .*: complete", out, re.MULTILINE))
    # what SLURM sends at --signal=B:TERM@300: SIGTERM to the batch script alone
    namespace.run(["scancel", "--batch", "--signal=TERM", first], env=env)
    out = wait_for_job(namespace, env, first, t)
    assert "sweep visual (smoke): 4 cells x 2 learning rates = 8 trials" in out, out[-3000:]
    assert "interrupted: " in out and "continue with `python -m orchestrator sweep visual" in out, out[-3000:]
    assert f"job {first}: Ray stopped" in out and "submit again with --resume" in out, out[-3000:]
    client = MlflowClient(f"sqlite:///{shared}/mlflow.db")
    parent = latest_parent(client, "visual")
    assert parent.info.status == "KILLED"
    assert not children(client, parent.info.experiment_id, parent.info.run_id, "RUNNING")
    stopped = time.monotonic() - start

    second = _submit(namespace, env, t, f"{args} --resume")
    out = wait_for_job(namespace, env, second, t)
    assert "8 trials, 0 failed; MLflow parent run" in out and f"job {second}: Ray stopped" in out, out[-3000:]
    parent = client.get_run(parent.info.run_id)
    runs = children(client, parent.info.experiment_id, parent.info.run_id)
    assert parent.info.status == "FINISHED" and latest_parent(client, "visual").info.run_id == parent.info.run_id
    assert len(runs) == 8 and all(r.info.status in ("FINISHED", "KILLED") for r in runs)   # one run per trial
    assert (shared / "ray-results").is_dir()
    assert not list(shared.glob(".ray-token-*"))           # each job's Ray token, made and removed by the job
    assert "RAY_AUTH_MODE=token" in (ROOT / "clusters/slurm/sweep.sbatch").read_text()
    assert _gone(namespace, _is_ray_or_driver) == []
    print(f"measured: SLURM job stopped by the signal {stopped:.1f} s, resumed job "
          f"{time.monotonic() - start - stopped:.1f} s")
