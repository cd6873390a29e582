"""A private network, PID and mount namespace for a test that starts real cluster software
(../shared/cluster-testing.md): `ray stop`, which `ray down` runs, kills every Ray process it can
see, and a namespace whose only network device is loopback keeps every listener on this machine.

Inside: loopback up (and 127.0.0.2, for SLURM's `localhost`), a private /tmp/ray, and an overlay
on root's home (its writes on a tmpfs, or on the node's "disk" in the test's folder), so that
what the launcher and the node scripts write there (~/.bashrc, ~/ray_bootstrap_config.yaml,
caches) never reaches the real one. Ending the namespace's first process ends everything in it.
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
{hostname}
ip link set lo up
ip addr replace 127.0.0.2/32 dev lo
mkdir -p /tmp/ray
mount --bind {root}/tmpray /tmp/ray
{hosts}
{home_layer}
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
    """One machine: its own PID and mount namespace, and its own network namespace (a new one
    with loopback alone, or the named one `netns`, which a Network joined to its bridge)."""

    def __init__(self, root: Path, netns: str | None = None, hostname: str | None = None, disk: bool = False,
                 hosts: Path | None = None):
        """`disk`: what is written over the home folder stays in `root` when the namespace ends, as
        a machine's disk outlives a power cut (a Namespace on the same root starts "rebooted");
        otherwise it is a tmpfs that ends with the namespace. `hosts`: the node's /etc/hosts."""
        self.root = root
        for sub in ("tmpray", "home-layer"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "ready").unlink(missing_ok=True)
        init = root / "ns_init.sh"
        init.write_text(_INIT.format(root=root, home=Path.home(), hostname=f"hostname {hostname}" if hostname else "",
                                     home_layer="" if disk else f"mount -t tmpfs tmpfs {root}/home-layer",
                                     hosts=f"mount --bind {hosts} /etc/hosts" if hosts else ""))
        init.chmod(0o755)
        isolate = ["unshare", "--pid", "--mount", "--fork", "--mount-proc", "--propagation", "private",
                   *(["--uts"] if hostname else []), str(init)]
        # into a named network namespace with nsenter, not `ip netns exec`, which mounts a sysfs of
        # its own and so hides the machine's cgroups (slurmd will not start without them)
        argv = ["nsenter", f"--net=/run/netns/{netns}", *isolate] if netns else [isolate[0], "--net", *isolate[1:]]
        self.proc = subprocess.Popen(argv, start_new_session=True, stdout=(root / "ns.log").open("w"),
                                     stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while not (root / "ready").exists():
            if self.proc.poll() is not None or time.time() > deadline:
                self.close()
                raise RuntimeError(f"namespace did not start: {(root / 'ns.log').read_text()}")
            time.sleep(0.1)
        self.pid = self._init_pid()

    def _init_pid(self) -> int:
        """The namespace's first process: the child of `unshare` (which `nsenter` becomes)."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        return int(children[0])

    def run(self, command: list[str] | str, timeout: float = 300, env: dict | None = None,
            cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
        """`command` inside the namespace (a string runs in bash)."""
        argv = ["bash", "-c", command] if isinstance(command, str) else command
        out = subprocess.run(["nsenter", "-t", str(self.pid), "-n", "-p", "-m", "-u", *argv], capture_output=True,
                             text=True, timeout=timeout, env=env, cwd=cwd)
        if check and out.returncode != 0:
            raise AssertionError(f"{command!r} exited {out.returncode}:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}")
        return out

    def popen(self, command: str, log: Path, env: dict | None = None, cwd: Path | None = None) -> subprocess.Popen:
        """`command` (bash) inside the namespace, in the background, its output in `log`."""
        return subprocess.Popen(["nsenter", "-t", str(self.pid), "-n", "-p", "-m", "-u", "bash", "-c", command],
                                stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, cwd=cwd)

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


class Network:
    """Several machines on one: a node is a Namespace in a network namespace of its own, joined by
    a veth pair to a bridge that lives in a namespace of its own (../shared/cluster-testing.md, C).
    The addresses (10.77.0.K/24) exist only inside these namespaces, and none has a route out.
    One host folder is at the same path in every node (their mount namespaces are copies of this
    machine's): the test's shared "NFS" folder. close() ends every process of every node and
    removes the namespaces, and with them the veths and the bridge."""

    SUBNET = "10.77.0"

    def __init__(self, root: Path, n: int):
        self.tag = f"t{os.getpid() % 10000}x{time.monotonic_ns() % 100000}"     # unique names in /run/netns
        self.bridge = f"{self.tag}br"
        self.nodes: list[Namespace] = []
        self._netns = [f"{self.tag}n{k}" for k in range(1, n + 1)]
        # every node knows the others by name (nodeK, and nK as SLURM names them), as a lab's DNS does
        self.hosts = root / "hosts"
        root.mkdir(parents=True, exist_ok=True)
        self.hosts.write_text("127.0.0.1 localhost\n" + "".join(
            f"{self.address(k - 1)} node{k} n{k}\n" for k in range(1, n + 1)))
        try:
            self._ip("netns", "add", self.bridge)
            self._ip("-n", self.bridge, "link", "add", "br0", "type", "bridge")
            self._ip("-n", self.bridge, "link", "set", "br0", "up")
            for k, netns in enumerate(self._netns, 1):
                self._ip("netns", "add", netns)
                veth, peer = f"{self.tag}v{k}", f"{self.tag}b{k}"
                self._ip("link", "add", veth, "type", "veth", "peer", "name", peer)
                self._ip("link", "set", veth, "netns", netns)
                self._ip("link", "set", peer, "netns", self.bridge)
                self._ip("-n", self.bridge, "link", "set", peer, "master", "br0")
                self._ip("-n", self.bridge, "link", "set", peer, "up")
                self._ip("-n", netns, "link", "set", veth, "name", "eth0")
                self._ip("-n", netns, "addr", "add", f"{self.address(k - 1)}/24", "dev", "eth0")
                self._ip("-n", netns, "link", "set", "eth0", "up")
                # a default route into the bridge, which leads nowhere: software that finds its own
                # address by routing towards a public one (Ray does) finds eth0's
                self._ip("-n", netns, "route", "add", "default", "dev", "eth0")
                self.nodes.append(Namespace(root / f"node{k}", netns=netns, hostname=f"node{k}", disk=True,
                                            hosts=self.hosts))
        except BaseException:
            self.close()
            raise

    def power_cut(self, index: int) -> None:
        """Node `index` dies at once: every process in it (its first process ends, and the kernel
        kills the rest of its PID namespace). Its address and disk stay, as a machine's do."""
        self.nodes[index].close()

    def power_on(self, index: int) -> Namespace:
        """Node `index` boots again: a new namespace on the same network namespace and disk."""
        old = self.nodes[index]
        self.nodes[index] = Namespace(old.root, netns=self._netns[index], hostname=f"node{index + 1}", disk=True,
                                      hosts=self.hosts)
        return self.nodes[index]

    def address(self, index: int) -> str:
        return f"{self.SUBNET}.{index + 1}"

    @staticmethod
    def _ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)

    def close(self) -> None:
        for node in self.nodes:
            node.close()
        for netns in [*self._netns, self.bridge]:
            subprocess.run(["ip", "netns", "del", netns], capture_output=True, timeout=30)

    def left_behind(self) -> list[str]:
        """Namespaces and interfaces of this network still on the machine."""
        names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        return [line for line in (names + links).splitlines() if self.tag in line]
