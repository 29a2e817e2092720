"""Standing replicas: the primary keeps each replica up to date.

A replication *round* takes one snapshot of the primary's dataset (named
``flocker-replica-…``) and pushes it to every replica that is due, each
stream incremental from the newest snapshot primary and replica share
(the replica's reported snapshots and what it confirmed since), at
background priority like every bulk stream.  `ReplicationProgress`
remembers per replica what it confirmed and when the last round ended,
so that the pure calculator decides when the next round is due:

* continuous replication (``interval_seconds`` 0): at once after a round
  that carried changes; after a round that carried (almost) nothing, once
  `IDLE_PAUSE` has passed — the replica's newest snapshot is then never
  much older than that, so its lag is an honest data-loss window;
* interval replication: once ``interval_seconds`` have passed since the
  last round ended.

Retention (`prunable_on_primary`, `prunable_on_replica`): replication
snapshots are destroyed on both sides, but never the newest one that the
primary and any replica are known to share, nor anything newer, so a
prune can never force a full resend; nor the dataset's
``failover_snapshot`` while a superseded primary may still rejoin from it.
Only Flocker's replication snapshots are pruned: users' and environments'
snapshots never are, and set-aside divergences are not even listed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Never

import attr
from pyrsistent import PClass, field
from twisted.internet.defer import Deferred
from zope.interface import implementer

from flocker.volume import IVolumeBackend

from ._dataset_context import DatasetContext
from ._deploy import IStateChange
from ._snapshot_names import REPLICA_SNAPSHOT_PREFIX, timed_snapshot_name

#: Continuous mode: after a round that carried at most this many bytes (an
#: incremental stream of no changes is a few hundred bytes), the next one
#: waits `IDLE_PAUSE` seconds.
EMPTY_ROUND = 64 * 1024

#: Seconds between rounds of a continuously replicated dataset nobody writes.
IDLE_PAUSE = 1.0


class ReplicationProgress(PClass):
    """
    The last replication round to one replica.

    :ivar confirmed: The snapshot the replica confirmed it stored, or ``None``.
    :ivar ended_at: When the round ended (seconds since the epoch).
    :ivar bytes_sent: How much it carried.
    :ivar failed: Whether it failed (the replica keeps what it had).
    """

    confirmed = field(type=(str, type(None)), initial=None)
    ended_at = field(type=float, mandatory=True)
    bytes_sent = field(type=int, initial=0)
    failed = field(type=bool, initial=False)


def replication_due(
    interval_seconds: int, progress: ReplicationProgress | None, now: float
) -> bool:
    """Whether a replica is due a round (see the module docstring)."""
    if progress is None:
        return True
    waited = now - progress.ended_at
    if interval_seconds:
        return waited >= interval_seconds
    if progress.failed or progress.bytes_sent <= EMPTY_ROUND:
        return waited >= IDLE_PAUSE
    return True


def newest_common(local: Sequence[str], known: Iterable[str]) -> str | None:
    """The newest of the ``local`` snapshots (oldest first) also in ``known``."""
    known = set(known)
    common = [name for name in local if name in known]
    return common[-1] if common else None


def _replication_snapshots(names: Sequence[str]) -> list[str]:
    return [n for n in names if n.startswith(REPLICA_SNAPSHOT_PREFIX)]


def prunable_on_primary(
    local: Sequence[str], shared: Iterable[str | None], keep: Iterable[str] = ()
) -> list[str]:
    """
    The primary's replication snapshots that can go: those older than the
    oldest of ``shared`` (each replica's newest snapshot known to be shared
    with the primary; ``None`` for a replica that shares none yet), except
    those in ``keep`` (the dataset's ``failover_snapshot`` while a
    superseded copy may rejoin from it; the snapshots between it and the
    shared ones may go).  The newest replication snapshot always stays.
    """
    ours = _replication_snapshots(local)
    if not ours:
        return []
    keep_from = len(local) - 1 - local[::-1].index(ours[-1])
    for name in shared:
        if name is not None and name in local:
            keep_from = min(keep_from, local.index(name))
    kept = set(keep)
    return [n for n in ours if local.index(n) < keep_from and n not in kept]


def prunable_on_replica(local: Sequence[str], primary: Iterable[str]) -> list[str]:
    """
    A replica's replication snapshots that can go: those older than the
    newest one the primary also reports having.
    """
    base = newest_common(local, primary)
    if base is None:
        return []
    keep_from = local.index(base)
    return [n for n in _replication_snapshots(local) if local.index(n) < keep_from]


class ReplicaTarget(PClass):
    """
    One replica a round goes to.

    :ivar node_uuid: The replica's node.
    :ivar host: Its address.
    :ivar base: The newest snapshot both sides have, which the stream
        starts from, or ``None`` for a full stream (the replica has no copy).
    """

    node_uuid = field(type=str, mandatory=True)
    host = field(type=str, mandatory=True)
    base = field(type=(str, type(None)), initial=None)


@implementer(IStateChange)
class ReplicateDataset(PClass):
    """One replication round of a primary's dataset to the replicas that are due."""

    dataset_id = field(type=str, mandatory=True)
    epoch = field(type=int, initial=0)
    targets = field(type=tuple, initial=())
    #: Every configured replica (the progress of others is forgotten).
    replicas = field(type=tuple, initial=())
    action_type = "flocker:node:dataset:replicate"

    def log_fields(self) -> dict[str, Any]:
        """The dataset, its epoch and the replicas."""
        return {
            "dataset_id": self.dataset_id,
            "epoch": self.epoch,
            "replicas": [t.node_uuid for t in self.targets],
        }

    def run(self, deployer: DatasetContext[Never, ReplicateDataset]) -> Deferred[None]:
        """
        Run the round with the deployer's replicator.

        Whatever its mover pushes (``Never``: this change pushes nothing),
        so the dataset agent's context, defined above this module, is one.
        """
        return Deferred.fromCoroutine(deployer.replicator.replicate(self))


Sender = Callable[..., Deferred[int]]


@attr.s(eq=False)
class Replicator:
    """
    Runs replication rounds and remembers their progress.

    :ivar backend: This node's backend.
    :ivar send: ``send(dataset_id, snapshot, base, host, final, epoch=…)``
        pushes one stream and fires with the bytes sent.
    :ivar now: Wall-clock time (seconds since the epoch).
    """

    backend: IVolumeBackend = attr.ib()
    send: Sender = attr.ib()
    now: Callable[[], float] = attr.ib(default=time.time)

    #: (dataset id, replica node) → the last round to it.
    _progress: dict[tuple[str, str], ReplicationProgress] = attr.ib(factory=dict, init=False)

    def progress(self, dataset_id: str) -> dict[str, ReplicationProgress]:
        """Replica node → its last round, for one dataset."""
        return {r: p for (d, r), p in self._progress.items() if d == dataset_id}

    def forget(self, dataset_id: str, keep: Iterable[str] = ()) -> None:
        """Drop the progress of replicas of a dataset other than ``keep``."""
        keep = set(keep)
        for key in [k for k in self._progress if k[0] == dataset_id and k[1] not in keep]:
            del self._progress[key]

    async def replicate(self, change: ReplicateDataset) -> None:
        """
        Take one snapshot and push it to each target in turn; a target
        that fails keeps what it had and is tried again later (the others
        are not held up).
        """
        dataset_id = change.dataset_id
        self.forget(dataset_id, keep=change.replicas)
        snapshot = timed_snapshot_name(REPLICA_SNAPSHOT_PREFIX)
        await self.backend.snapshot(dataset_id, snapshot)

        async def one(target: ReplicaTarget) -> None:
            key = (dataset_id, target.node_uuid)
            try:
                sent = await self.send(
                    dataset_id, snapshot, target.base, target.host, False, epoch=change.epoch
                )
            except Exception:
                # What it confirmed may be gone (the replica was removed and
                # added again, or replaced): from now on only what it
                # reports counts.
                self._progress[key] = ReplicationProgress(
                    ended_at=float(self.now()), failed=True
                )
                raise
            self._progress[key] = ReplicationProgress(
                confirmed=snapshot, ended_at=float(self.now()), bytes_sent=sent
            )

        # One replica after the other: the streams share the primary's disk
        # and CPU anyway, and on one machine (one zfs-fuse for every node)
        # receives finishing together wedged it.  A replica that fails does
        # not hold up the others; the first failure is raised at the end.
        failures: list[BaseException] = []
        for target in change.targets:
            try:
                await one(target)
            except Exception as error:
                failures.append(error)
        if failures:
            raise failures[0]


__all__ = [
    "EMPTY_ROUND",
    "IDLE_PAUSE",
    "ReplicaTarget",
    "ReplicateDataset",
    "ReplicationProgress",
    "Replicator",
    "newest_common",
    "prunable_on_primary",
    "prunable_on_replica",
    "replication_due",
]
