"""The names of the snapshots the dataset agents take for themselves.

A move's and a replication round's snapshots are named
``<prefix><nanoseconds since the epoch>-<random>``: unique, in the order
they were taken, and carrying the primary's clock to the nanosecond (ZFS
records a snapshot's creation to the second only).
"""

from __future__ import annotations

import time
import uuid

#: Snapshots the agent takes for moves start with this.
MOVE_SNAPSHOT_PREFIX = "flocker-move-"

#: Snapshots taken for replication rounds start with this.
REPLICA_SNAPSHOT_PREFIX = "flocker-replica-"


def timed_snapshot_name(prefix: str) -> str:
    """A new snapshot name with ``prefix`` and the time it is taken."""
    return f"{prefix}{time.time_ns()}-{uuid.uuid4().hex[:6]}"


def snapshot_time(name: str, created: float) -> float:
    """
    When a snapshot was taken: to the nanosecond for the agents' own move
    and replication snapshots (their names carry the primary's clock), else
    what the backend says (whole seconds on ZFS), so that a replica's
    reported lag is not up to a second too high.
    """
    for prefix in (REPLICA_SNAPSHOT_PREFIX, MOVE_SNAPSHOT_PREFIX):
        if name.startswith(prefix):
            stamp = name[len(prefix) :].split("-", 1)[0]
            if stamp.isdigit():
                return int(stamp) / 1e9
    return created


__all__ = [
    "MOVE_SNAPSHOT_PREFIX",
    "REPLICA_SNAPSHOT_PREFIX",
    "snapshot_time",
    "timed_snapshot_name",
]
