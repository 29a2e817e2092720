"""The names of the snapshots the dataset agents take for themselves.

A move's and a replication round's snapshots are named
``<prefix><nanoseconds since the epoch>-<random>``: unique, in the order
they were taken, and carrying the primary's clock to the nanosecond (ZFS
records a snapshot's creation to the second only).  A superseded
primary's divergence, set aside when it rejoins as a replica, is named
``flocker-diverged-<epoch>-<nanoseconds>`` (the stale epoch it held).
"""

from __future__ import annotations

import time
import uuid

#: Snapshots the agent takes for moves start with this.
MOVE_SNAPSHOT_PREFIX = "flocker-move-"

#: Snapshots taken for replication rounds start with this.
REPLICA_SNAPSHOT_PREFIX = "flocker-replica-"

#: A superseded primary's set-aside divergence starts with this (see
#: `diverged_snapshot_name`).
DIVERGED_SNAPSHOT_PREFIX = "flocker-diverged-"


def timed_snapshot_name(prefix: str) -> str:
    """A new snapshot name with ``prefix`` and the time it is taken."""
    return f"{prefix}{time.time_ns()}-{uuid.uuid4().hex[:6]}"


def diverged_snapshot_name(epoch: int, ns: int | None = None) -> str:
    """
    The name of the set-aside snapshot keeping what a copy held at ``epoch``
    (the stale epoch it was primary at) when it rejoins as a replica:
    ``flocker-diverged-<epoch>-<ns>``, ``ns`` the time it is taken in
    nanoseconds since the epoch (now, unless given).
    """
    stamp = time.time_ns() if ns is None else ns
    return f"{DIVERGED_SNAPSHOT_PREFIX}{epoch}-{stamp}"


def diverged_at(name: str) -> int | None:
    """The epoch a set-aside snapshot's name carries, or ``None`` for another name."""
    if not name.startswith(DIVERGED_SNAPSHOT_PREFIX):
        return None
    epoch = name[len(DIVERGED_SNAPSHOT_PREFIX) :].split("-", 1)[0]
    return int(epoch) if epoch.isdigit() else None


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
    "DIVERGED_SNAPSHOT_PREFIX",
    "MOVE_SNAPSHOT_PREFIX",
    "REPLICA_SNAPSHOT_PREFIX",
    "diverged_at",
    "diverged_snapshot_name",
    "snapshot_time",
    "timed_snapshot_name",
]
