"""A stable, unique `group_instance_id` for each running processor (Kafka static membership).

Kafka gives a restarted static member its partitions back without a rebalance only if it comes
back under the same instance id, and fences the older of two members that claim one id. So the
id must be the same across a restart and different between processes running at once. By
default it is `<host name>-<slot>`: the slot is the lowest number whose lock file this process
can hold (an exclusive `flock`, released by the kernel when the process dies, however it dies).
A restarted processor finds its old slot free again; a second processor on the same host takes
the next one. Containers have host names of their own, so compose replicas differ by host name.
"""

import fcntl
import os
import re
import socket
import tempfile
from pathlib import Path
from typing import IO


class Slot:
    """A claimed instance id; held while its lock file stays open."""

    def __init__(self, instance_id: str, handle: IO[str]) -> None:
        self.id = instance_id
        self._handle = handle

    def release(self) -> None:
        if not self._handle.closed:
            self._handle.close()


def slot_directory() -> Path:
    return Path(os.environ.get("COTERM_SLOT_DIR") or Path(tempfile.gettempdir()) / "coterm-slots")


def claim(group_id: str, most: int = 1024) -> Slot:
    """`<host>-<slot>` for `group_id`, held until released or this process exits."""
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:200] or "host"
    directory = slot_directory()
    directory.mkdir(parents=True, exist_ok=True)
    safe_group = re.sub(r"[^A-Za-z0-9._-]", "_", group_id)
    for slot in range(most):
        handle = open(directory / f"{safe_group}.{slot}.lock", "w")  # noqa: SIM115 - held open on purpose
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        return Slot(f"{host}-{slot}", handle)
    raise RuntimeError(f"no free instance slot for group {group_id} among {most} in {directory}")
