"""A private network, PID and mount namespace for a test that starts real cluster software
(../shared/cluster-testing.md): `ray stop`, which `ray down` runs, kills every Ray process it can
see, and a namespace whose only network device is loopback keeps every listener on this machine.

Inside: loopback up (and 127.0.0.2, for SLURM's `localhost`), a private /tmp/ray, and an overlay
on root's home, so that what the launcher and the node scripts write there (~/.bashrc,
~/ray_bootstrap_config.yaml, caches) never reaches the real one. Ending the namespace's first
process ends everything in it.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

TOOLS = ("unshare", "nsenter", "ip")

_INIT = """#!/bin/bash
set -e
ip link set lo up
ip addr add 127.0.0.2/32 dev lo
mkdir -p /tmp/ray
mount --bind {root}/tmpray /tmp/ray
mount -t tmpfs tmpfs {root}/home-layer
mkdir -p {root}/home-layer/upper {root}/home-layer/work
mount -t overlay overlay -o lowerdir={home},upperdir={root}/home-layer/upper,workdir={root}/home-layer/work {home}
touch {root}/ready
trap 'exit 0' TERM
while :; do sleep 3600 & wait $!; done
"""


def available() -> str | None:
    """Why namespaces cannot be made here, or None."""
    if os.geteuid() != 0:
        return "needs root"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    return f"needs {', '.join(missing)}" if missing else None


class Namespace:
    def __init__(self, root: Path):
        self.root = root
        for sub in ("tmpray", "home-layer"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        init = root / "ns_init.sh"
        init.write_text(_INIT.format(root=root, home=Path.home()))
        init.chmod(0o755)
        self.proc = subprocess.Popen(
            ["unshare", "--net", "--pid", "--mount", "--fork", "--mount-proc", "--propagation", "private", str(init)],
            start_new_session=True, stdout=(root / "ns.log").open("w"), stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while not (root / "ready").exists():
            if self.proc.poll() is not None or time.time() > deadline:
                self.close()
                raise RuntimeError(f"namespace did not start: {(root / 'ns.log').read_text()}")
            time.sleep(0.1)
        self.pid = self._init_pid()

    def _init_pid(self) -> int:
        """The namespace's first process (a child of `unshare`)."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        return int(children[0])

    def run(self, command: list[str] | str, timeout: float = 300, env: dict | None = None,
            cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
        """`command` inside the namespace (a string runs in bash)."""
        argv = ["bash", "-c", command] if isinstance(command, str) else command
        out = subprocess.run(["nsenter", "-t", str(self.pid), "-n", "-p", "-m", *argv], capture_output=True,
                             text=True, timeout=timeout, env=env, cwd=cwd)
        if check and out.returncode != 0:
            raise AssertionError(f"{command!r} exited {out.returncode}:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}")
        return out

    def processes(self) -> list[str]:
        """The command lines of every process in the namespace but its first and this query."""
        out = self.run("for p in /proc/[0-9]*; do [ \"${p#/proc/}\" = 1 ] || [ \"${p#/proc/}\" = $$ ] || "
                       "tr '\\0' ' ' < $p/cmdline 2>/dev/null && echo; done", check=False)
        return [line.strip() for line in out.stdout.splitlines()
                if line.strip() and not line.startswith(("sleep 3600", "bash -c for p in"))]

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
