"""
What the dataset agent discovers on its node: `LocalDataset` (one copy, its
durable role and its phase) and `DatasetLocalState` (every copy, and how it
is reported to the control service).  The pure calculator
(`flocker.node._dataset_calculate`) reads them; the deployer
(`flocker.node.datasets`) makes them.
"""

from __future__ import annotations

from pyrsistent import PClass, field, pmap_field, pset_field, pvector_field
from zope.interface import implementer

from flocker.control import DatasetState, NodeState, PoolState, Snapshot
from flocker.volume import DatasetInfo, PoolSpace, SnapshotInfo

from ._deploy import ILocalState
from ._mover import MoveProgress
from ._phases import Phase
from ._replicator import ReplicationProgress
from ._roles import DIVERGED, FENCED, HANDOFF, PRIMARY
from ._snapshot_names import snapshot_time

__all__ = ["FULL_BELOW", "REPORTED_ROLE", "DatasetLocalState", "LocalDataset", "phase_from"]


#: A pool with less free than this part of it (or than 1 MiB, whichever
#: is more) is reported full.
FULL_BELOW = 0.01


def phase_from(role: str, move: MoveProgress | None) -> Phase:
    """A copy's phase from its durable role and its move's progress."""
    if role == PRIMARY:
        return Phase.MOVING if move is not None else Phase.PRIMARY
    if role == HANDOFF:
        return Phase.HANDOFF
    if role == DIVERGED:
        return Phase.DIVERGED
    if role == FENCED:
        return Phase.FENCED
    return Phase.REPLICA


#: How each phase is reported to the control service (``DatasetState.role``).
REPORTED_ROLE = {
    Phase.PRIMARY: "primary",
    Phase.MOVING: "primary",
    Phase.HANDOFF: "handoff",
    Phase.REPLICA: "replica",
    Phase.DIVERGED: "diverged",
    Phase.FENCED: "fenced",
}


class LocalDataset(PClass):
    """
    A dataset on this node: what the backend says, its role and its phase.

    :ivar role: The durable role (``_roles``).
    :ivar epoch: The dataset epoch this node holds the copy at.
    :ivar move: The progress of its move away from here, or ``None``.
    :ivar replication: Replica node → the last replication round to it
        (on a primary with standing replicas).
    :ivar set_aside: The copy's set-aside snapshots (divergences kept when
        it rejoined as a replica), oldest first.
    """

    info = field(type=DatasetInfo, mandatory=True)
    snapshots = pvector_field(SnapshotInfo)
    role = field(type=str, mandatory=True, initial=PRIMARY)
    epoch = field(type=int, initial=0)
    move = field(type=(MoveProgress, type(None)), initial=None)
    replication = pmap_field(str, ReplicationProgress)
    set_aside = pvector_field(SnapshotInfo)

    @property
    def phase(self) -> Phase:
        """Role and move progress together: where this copy is in its life."""
        return phase_from(self.role, self.move)


@implementer(ILocalState)
class DatasetLocalState(PClass):
    """
    Every dataset on the node, as the dataset deployer discovered it.

    :ivar fenced: Whether the node fenced itself (``_fence``).
    :ivar cannot_rejoin: Dataset id → why its diverged copy cannot rejoin
        as a replica, as already logged.
    """

    node_uuid = field(type=str, mandatory=True)
    hostname = field(type=str, mandatory=True)
    datasets = pmap_field(str, LocalDataset)
    receiving = pset_field(str)
    in_use = pset_field(str)
    rolled_back = pmap_field(str, str)
    fenced = field(type=bool, initial=False)
    cannot_rejoin = pmap_field(str, str)
    #: When it was discovered, in seconds since the epoch (0: unknown).
    now = field(type=float, initial=0.0)
    #: The datasets' room on the node, if the backend says (`IReportsPoolSpace`).
    pool = field(type=(PoolSpace, type(None)), initial=None)

    def pool_state(self) -> PoolState | None:
        """
        The pool as reported: full when less than `FULL_BELOW` of it (at
        least 1 MiB) is free; oversized: the datasets whose maximum size
        is larger than the whole of it.
        """
        if self.pool is None:
            return None
        size, free = max(0, self.pool.size), max(0, self.pool.free)
        return PoolState(
            size=size,
            free=free,
            full=free < max(int(size * FULL_BELOW), 1024 * 1024),
            oversized=sorted(
                dataset_id
                for dataset_id, local in self.datasets.items()
                if local.info.maximum_size is not None and local.info.maximum_size > size
            ),
        )

    def shared_state_changes(self) -> NodeState:
        """The datasets half of the node's state; only primaries have a path."""
        return NodeState(
            uuid=self.node_uuid,
            hostname=self.hostname,
            datasets={
                dataset_id: DatasetState(
                    dataset_id=dataset_id,
                    path=local.info.path if local.role == PRIMARY else None,
                    size=local.info.used,
                    maximum_size=local.info.maximum_size,
                    snapshots=[
                        Snapshot(name=s.name, created=snapshot_time(s.name, s.created))
                        for s in local.snapshots
                    ],
                    rolled_back=self.rolled_back.get(dataset_id),
                    role=REPORTED_ROLE[local.phase],
                    epoch=local.epoch,
                    set_aside=[Snapshot(name=s.name, created=s.created) for s in local.set_aside],
                )
                for dataset_id, local in self.datasets.items()
            },
            pool=self.pool_state(),
        )
