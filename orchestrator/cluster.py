"""Connecting to Ray: an existing cluster when --address / $RAY_ADDRESS is given, else a local one."""
from __future__ import annotations

import os
import socket

from trainables import UserError


def resolve_address(flag: str | None = None) -> str | None:
    return flag or os.environ.get("RAY_ADDRESS") or None


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


def connect(address: str | None, num_cpus: int | None = None, num_gpus: int | None = None) -> None:
    import ray
    if ray.is_initialized():
        return
    if address:
        _check_reachable(address)
        ray.init(address=address, logging_level="WARNING")
    else:
        ray.init(num_cpus=num_cpus, num_gpus=num_gpus, logging_level="WARNING",
                 include_dashboard=False)
