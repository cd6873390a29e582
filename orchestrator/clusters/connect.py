"""Connecting to Ray: an existing cluster when --address / $RAY_ADDRESS is given, else a local one."""
from __future__ import annotations

import os
import socket

from clip_prompt_sweeps.errors import UserError

STORAGE_ENV = "ORCHESTRATOR_STORAGE_PATH"


def resolve_address(flag: str | None = None) -> str | None:
    return flag or os.environ.get("RAY_ADDRESS") or None


def resolve_storage(flag: str | None = None) -> str | None:
    """--storage-path, else $ORCHESTRATOR_STORAGE_PATH (cluster.yaml sets it), else Ray's default."""
    return flag or os.environ.get(STORAGE_ENV) or None


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    # ray.init on a dead address retries for minutes; a socket probe answers in seconds.
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"Ray address {address!r} is not HOST:PORT (e.g. 127.0.0.1:6379), 'auto' or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise UserError(f"Ray cluster at {address} does not answer ({err}); start it with "
                        f"`ray start --head` or `ray up cluster.yaml`, or drop --address/$RAY_ADDRESS "
                        f"to run locally") from None


def connect(address: str | None) -> None:
    """Join the cluster at `address`, else start a local Ray (unless this process holds one)."""
    import ray
    if address:
        _check_reachable(address)       # also when this process already holds a Ray
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, logging_level="WARNING")
    else:
        ray.init(logging_level="WARNING", include_dashboard=False)


def multi_node() -> tuple[bool, int]:
    """(whether trials may run on a machine other than the driver's, alive nodes). A head that
    takes no trials (CPU 0, as in cluster.yaml) sends every trial to workers, even before any
    worker has started."""
    import ray
    nodes = sum(1 for n in ray.nodes() if n["Alive"])
    return nodes > 1 or ray.cluster_resources().get("CPU", 0) == 0, nodes


def check_storage(storage_path: str | None) -> None:
    """Stop before any trial when a multi-node sweep would keep trial state on one disk: trials
    elsewhere could neither save nor restore their checkpoints. A URI (s3://, gs://, or file://
    for a file system every node mounts, e.g. NFS) is shared; a plain path is not."""
    if storage_path and "://" in storage_path:
        return
    spread, nodes = multi_node()
    if spread:
        where = storage_path or "~/ray_results (Ray's default)"
        raise UserError(f"storage path {where} is local to this machine, but trials run on other nodes of "
                        f"this {nodes}-node Ray cluster; pass --storage-path s3://BUCKET/PATH (or gs://..., or "
                        f"file:///MOUNT for a file system every node mounts) or set ${STORAGE_ENV}")
