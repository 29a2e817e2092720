"""The dataset agent's deployer: datasets created, resized, moved, destroyed.

``DatasetDeployer`` discovers the node's datasets from its volume backend and
their roles (see ``_roles``), and ``calculate_dataset_changes`` — pure —
decides, dataset by dataset:

* configured here, missing, and no other node has a copy: create it — as a
  clone of its origin's snapshot for a clone (``_clones``), once the origin
  is exposed here with that snapshot;
* configured here with a rollback request not yet done: roll back once
  nothing uses the dataset;
* an environment's snapshot that neither an environment nor a clone
  needs any more: destroy it;
* configured here with another maximum size: resize it;
* configured deleted: destroy the local copy;
* configured on another node while this node exposes (or is handing off)
  it: push it there (a move, see ``PushDataset``);
* a leftover copy of a dataset another node now exposes: destroy it;
* configured here but another node still has it: wait for its push;
* a dataset that a transfer is writing into right now: leave it alone.
* unknown to the configuration: leave it alone (never lose data).

Changes for different datasets run in parallel, so a failing dataset never
holds up the others; the convergence loop never runs two passes at once, so
no two changes for one dataset are in flight.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import attr
from pyrsistent import PClass, field, pmap_field, pset_field, pvector_field
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred, succeed
from zope.interface import implementer

from flocker.control import (
    DatasetState,
    Deployment,
    DeploymentState,
    NodeState,
    Snapshot,
)
from flocker.volume import DatasetInfo, IVolumeBackend, SnapshotInfo

from ._clones import (
    CloneDataset,
    DestroySnapshot,
    RollbackDataset,
    unneeded_environment_snapshots,
)
from ._deploy import IDeployer, ILocalState, IStateChange, in_parallel
from ._roles import HANDOFF, PRIMARY, MemoryRoles

#: An incremental move round smaller than this is followed by the final one.
SMALL_DELTA = 8 * 1024 * 1024

#: At most this many bulk rounds per pass before the final increment.
MAXIMUM_ROUNDS = 5

#: Once a bulk round was small, no further one goes for this many seconds
#: while the dataset stays in use: the application using it is about to
#: stop (the container agent stops it as soon as the destination has a
#: copy), and a bulk round still running then would delay the final
#: increment.  After this long, another round keeps the final one small.
BULK_PAUSE = 5.0

#: Snapshots the agent takes for moves start with this.
MOVE_SNAPSHOT_PREFIX = "flocker-move-"


class LocalDataset(PClass):
    """A dataset on this node: what the backend says and its role."""

    info = field(type=DatasetInfo, mandatory=True)
    snapshots = pvector_field(SnapshotInfo)
    role = field(type=str, mandatory=True, initial=PRIMARY)


@implementer(ILocalState)
class DatasetLocalState(PClass):
    """Every dataset on the node, as the dataset deployer discovered it."""

    node_uuid = field(type=str, mandatory=True)
    hostname = field(type=str, mandatory=True)
    datasets = pmap_field(str, LocalDataset)
    receiving = pset_field(str)
    in_use = pset_field(str)
    rolled_back = pmap_field(str, str)
    #: When it was discovered, in seconds since the epoch (0: unknown).
    now = field(type=float, initial=0.0)

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
                        Snapshot(name=s.name, created=s.created) for s in local.snapshots
                    ],
                    rolled_back=self.rolled_back.get(dataset_id),
                )
                for dataset_id, local in self.datasets.items()
            },
        )


# ---------------------------------------------------------------------------
# State changes


def _fields(change: PClass) -> dict[str, Any]:
    """A change's fields as eliot log fields."""
    return {
        name: list(value) if isinstance(value, tuple) else value
        for name, value in change.serialize().items()
    }


@implementer(IStateChange)
class CreateDataset(PClass):
    """Create an empty dataset for which this node is primary."""

    dataset_id = field(type=str, mandatory=True)
    maximum_size = field(type=(int, type(None)), mandatory=True, initial=None)
    action_type = "flocker:node:dataset:create"

    def log_fields(self) -> dict[str, Any]:
        """Dataset id and maximum size."""
        return _fields(self)

    def run(self, deployer: DatasetDeployer) -> Deferred[Any]:
        """Record it as primary, then create it in the backend."""
        deployer.roles.set(self.dataset_id, PRIMARY)
        return deployer.backend.create(self.dataset_id, self.maximum_size)


@implementer(IStateChange)
class ResizeDataset(PClass):
    """Give an exposed dataset its configured maximum size."""

    dataset_id = field(type=str, mandatory=True)
    maximum_size = field(type=(int, type(None)), mandatory=True, initial=None)
    action_type = "flocker:node:dataset:resize"

    def log_fields(self) -> dict[str, Any]:
        """Dataset id and the new maximum size."""
        return _fields(self)

    def run(self, deployer: DatasetDeployer) -> Deferred[Any]:
        """Set the backend's limit."""
        return deployer.backend.set_maximum_size(self.dataset_id, self.maximum_size)


@implementer(IStateChange)
class DestroyDataset(PClass):
    """Destroy the local copy of a dataset (deleted, or moved away)."""

    dataset_id = field(type=str, mandatory=True)
    action_type = "flocker:node:dataset:destroy"

    def log_fields(self) -> dict[str, Any]:
        """The dataset id."""
        return _fields(self)

    def run(self, deployer: DatasetDeployer) -> Deferred[None]:
        """Forget its role, then destroy it."""

        async def destroy() -> None:
            # Forget the role first: a copy that cannot be destroyed (ZFS,
            # with clones) stays a mere replica, never exposed or pushed.
            deployer.roles.forget(self.dataset_id)
            await deployer.backend.destroy(self.dataset_id)

        return Deferred.fromCoroutine(destroy())


@implementer(IStateChange)
class ExposeDataset(PClass):
    """Expose a local copy again (a move was called off before its end)."""

    dataset_id = field(type=str, mandatory=True)
    action_type = "flocker:node:dataset:expose"

    def log_fields(self) -> dict[str, Any]:
        """The dataset id."""
        return _fields(self)

    def run(self, deployer: DatasetDeployer) -> Deferred[None]:
        """Record the dataset as primary."""
        deployer.roles.set(self.dataset_id, PRIMARY)
        return succeed(None)


@implementer(IStateChange)
class PushDataset(PClass):
    """
    Move a dataset this node holds to its new primary.

    :ivar destination: The new primary's UUID.
    :ivar host: The new primary's address.
    :ivar remote_snapshots: Snapshots the destination reported for its copy
        (incremental sends start from the newest one both sides have).
    """

    dataset_id = field(type=str, mandatory=True)
    destination = field(type=str, mandatory=True)
    host = field(type=str, mandatory=True)
    remote_snapshots = field(type=tuple, mandatory=True, initial=())
    action_type = "flocker:node:dataset:push"

    def log_fields(self) -> dict[str, Any]:
        """Dataset, destination and what the destination already has."""
        return _fields(self)

    def run(self, deployer: DatasetDeployer) -> Deferred[None]:
        """Run the move with the deployer's mover."""
        return Deferred.fromCoroutine(deployer.mover.push(self))


# ---------------------------------------------------------------------------
# The calculation


def _exposed_elsewhere(
    cluster_state: DeploymentState, dataset_id: str, me: str
) -> list[str]:
    """Other nodes that report the dataset with a mount path."""
    found = []
    for uuid_, state in cluster_state.nodes.items():
        if uuid_ == me or state.datasets is None:
            continue
        copy = state.datasets.get(dataset_id)
        if copy is not None and copy.path is not None:
            found.append(uuid_)
    return found


def calculate_dataset_changes(
    node_uuid: str,
    configuration: Deployment,
    cluster_state: DeploymentState,
    local_state: DatasetLocalState,
) -> IStateChange:
    """
    The changes that bring this node's datasets towards the configuration.

    Pure: the same arguments always give an equal plan.  See the module
    docstring for the rules.
    """
    configured = {d.dataset_id: (d, primary) for d, primary in configuration.all_datasets()}
    changes: list[IStateChange] = []
    for dataset_id in sorted(set(configured) | set(local_state.datasets)):
        local = local_state.datasets.get(dataset_id)
        if dataset_id not in configured or dataset_id in local_state.receiving:
            continue
        dataset, primary = configured[dataset_id]
        others = [u for u in cluster_state.holders(dataset_id) if u != node_uuid]
        exposed_elsewhere = _exposed_elsewhere(cluster_state, dataset_id, node_uuid)
        if dataset.deleted:
            # Not while a container still mounts it (a reset environment
            # copy's old clone, until its container is replaced).
            if local is not None and dataset_id not in local_state.in_use:
                changes.append(DestroyDataset(dataset_id=dataset_id))
        elif primary == node_uuid:
            if local is None:
                # Create only a dataset that exists nowhere: no node reports
                # a copy and the configuration names no other copy (a move
                # leaves the old primary as a configured replica, which
                # covers the time its state is unknown).
                configured_elsewhere = [
                    uuid_
                    for uuid_, node in configuration.nodes.items()
                    if uuid_ != node_uuid and dataset_id in node.manifestations
                ]
                if others or configured_elsewhere:
                    pass
                elif dataset.origin is None:
                    changes.append(
                        CreateDataset(
                            dataset_id=dataset_id, maximum_size=dataset.maximum_size
                        )
                    )
                else:
                    origin = local_state.datasets.get(dataset.origin.dataset_id)
                    if (
                        origin is not None
                        and origin.role == PRIMARY
                        and dataset.origin.snapshot in {s.name for s in origin.snapshots}
                    ):
                        changes.append(
                            CloneDataset(
                                dataset_id=dataset_id,
                                origin=dataset.origin.dataset_id,
                                snapshot=dataset.origin.snapshot,
                                maximum_size=dataset.maximum_size,
                            )
                        )
            elif local.role == PRIMARY:
                request = dataset.rollback
                if (
                    request is not None
                    and local_state.rolled_back.get(dataset_id) != request.request_id
                    and dataset_id not in local_state.in_use
                ):
                    changes.append(
                        RollbackDataset(
                            dataset_id=dataset_id,
                            snapshot=request.snapshot,
                            request_id=request.request_id,
                        )
                    )
                elif local.info.maximum_size != dataset.maximum_size:
                    changes.append(
                        ResizeDataset(
                            dataset_id=dataset_id, maximum_size=dataset.maximum_size
                        )
                    )
                changes.extend(
                    DestroySnapshot(dataset_id=dataset_id, snapshot=name)
                    for name in unneeded_environment_snapshots(
                        configuration, dataset_id, local.snapshots, local_state.now
                    )
                )
            elif local.role == HANDOFF and not exposed_elsewhere:
                # The move was called off before the destination took over.
                changes.append(ExposeDataset(dataset_id=dataset_id))

        elif local is not None:
            if local.role == HANDOFF and primary in exposed_elsewhere:
                # The destination exposes it, so it has the final increment
                # (it is exposed only once that arrived): the move is over,
                # even if this node never heard back.  Never push again.
                changes.append(DestroyDataset(dataset_id=dataset_id))
            elif local.role in (PRIMARY, HANDOFF):
                destination = cluster_state.nodes.get(primary)
                if destination is not None and destination.hostname is not None:
                    copy = (destination.datasets or {}).get(dataset_id)
                    snapshots = tuple(s.name for s in copy.snapshots) if copy else ()
                    changes.append(
                        PushDataset(
                            dataset_id=dataset_id,
                            destination=primary,
                            host=destination.hostname,
                            remote_snapshots=snapshots,
                        )
                    )
            elif primary in exposed_elsewhere:
                changes.append(DestroyDataset(dataset_id=dataset_id))
    return in_parallel(changes)


# ---------------------------------------------------------------------------
# Moving


Sender = Callable[[str, str, "str | None", str, bool], Deferred[int]]


@attr.s(eq=False)
class DatasetMover:
    """
    Pushes a dataset to its new primary over the transfer protocol.

    :ivar backend: This node's backend.
    :ivar roles: This node's dataset roles.
    :ivar send: ``send(dataset_id, snapshot, base, host, final)`` pushes one
        stream to ``host`` and fires with the bytes sent; with ``final`` the
        receiver exposes the dataset once it has it.
    :ivar in_use: Whether something on this node still uses the dataset (a
        lease or a running application); the final increment waits for it.
    :ivar on_handoff: Called with the dataset id once this node stops
        exposing it, before the final increment (a Deferred it returns is
        waited for): the agent reports it at once, so the cluster state
        never shows the dataset mounted on two nodes.
    """

    backend: IVolumeBackend = attr.ib()
    roles: MemoryRoles = attr.ib()
    send: Sender = attr.ib()
    in_use: Callable[[str], bool] = attr.ib(default=lambda dataset_id: False)
    on_handoff: Callable[[str], Any] = attr.ib(default=lambda dataset_id: None)
    small_delta: int = attr.ib(default=SMALL_DELTA)
    maximum_rounds: int = attr.ib(default=MAXIMUM_ROUNDS)
    bulk_pause: float = attr.ib(default=BULK_PAUSE)
    now: Callable[[], float] = attr.ib(default=time.monotonic)

    async def _snapshot(self, dataset_id: str) -> str:
        name = f"{MOVE_SNAPSHOT_PREFIX}{time.time_ns()}-{uuid.uuid4().hex[:6]}"
        await self.backend.snapshot(dataset_id, name)
        return name

    #: dataset id → (destination, snapshot) last confirmed stored there;
    #: newer than what the destination's reported state may say yet.
    _confirmed: dict[str, tuple[str, str]] = attr.ib(factory=dict, init=False)

    #: dataset id → (destination, when) of its last small bulk round.
    _settled: dict[str, tuple[str, float]] = attr.ib(factory=dict, init=False)

    def _pausing(self, dataset_id: str, destination: str) -> bool:
        """Whether a small bulk round to ``destination`` went recently."""
        settled = self._settled.get(dataset_id)
        return (
            settled is not None
            and settled[0] == destination
            and self.now() - settled[1] < self.bulk_pause
        )

    async def push(self, change: PushDataset) -> None:
        """
        Bulk rounds while the dataset stays in use, then the final increment.

        While the dataset is in use, each pass sends the changes since the
        last round (until they are small) and ends; after a small round the
        passes send nothing for :data:`BULK_PAUSE` seconds, waiting for the
        application to stop.  Once it is no longer in use and the
        destination already has a recent copy, the final increment goes at
        once, keeping the time the dataset is unavailable to the size of
        the last changes.
        """
        dataset_id = change.dataset_id
        if (
            self.roles.get(dataset_id) == PRIMARY
            and self.in_use(dataset_id)
            and self._pausing(dataset_id, change.destination)
        ):
            return
        local = [s.name for s in await self.backend.list_snapshots(dataset_id)]
        known = set(change.remote_snapshots)
        confirmed = self._confirmed.get(dataset_id)
        if confirmed is not None and confirmed[0] == change.destination:
            known.add(confirmed[1])
        common = [name for name in local if name in known]
        base = common[-1] if common else None

        async def send(final: bool) -> int:
            snapshot = await self._snapshot(dataset_id)
            sent = await self.send(dataset_id, snapshot, base, change.host, final)
            self._confirmed[dataset_id] = (change.destination, snapshot)
            return sent

        if self.roles.get(dataset_id) == PRIMARY:
            if base is None or self.in_use(dataset_id):
                for _ in range(self.maximum_rounds):
                    sent = await send(False)
                    base = self._confirmed[dataset_id][1]
                    if sent < self.small_delta:
                        self._settled[dataset_id] = (change.destination, self.now())
                        break
                if self.in_use(dataset_id):
                    return
            # From here on the dataset is exposed nowhere until the
            # destination has the final increment.
            self.roles.set(dataset_id, HANDOFF)
            await maybeDeferred(self.on_handoff, dataset_id)
        await send(True)
        self._confirmed.pop(dataset_id, None)
        self._settled.pop(dataset_id, None)
        # The destination has it and exposes it: this copy is a leftover
        # replica from now on, whether or not it can be destroyed now (ZFS
        # refuses while clones of its snapshots exist).  It is never pushed
        # again, so a failed destroy cannot send a stale final increment
        # over the data the new primary's application is writing.
        self.roles.forget(dataset_id)
        await self.backend.destroy(dataset_id)


# ---------------------------------------------------------------------------
# The deployer


@implementer(IDeployer)
@attr.s(eq=False)
class DatasetDeployer:
    """
    Converges one node's datasets.

    :ivar node_uuid: This node's UUID.
    :ivar hostname: This node's address (others push datasets to it).
    :ivar backend: The node's volume backend.
    :ivar roles: The durable record of which datasets are exposed.
    :ivar mover: Pushes datasets for moves.
    :ivar receiving: The ids of datasets a transfer is writing into now.
    """

    node_uuid: str = attr.ib()
    hostname: str = attr.ib()
    backend: IVolumeBackend = attr.ib()
    roles: MemoryRoles = attr.ib()
    mover: DatasetMover = attr.ib()
    receiving: Callable[[], Any] = attr.ib(default=lambda: ())
    now: Callable[[], float] = attr.ib(default=time.time)

    #: dataset id → the last rollback request carried out here (reported
    #: until the control service clears the request).
    rolled_back: dict[str, str] = attr.ib(factory=dict, init=False)
    _recovered: bool = attr.ib(default=False, init=False)

    def discover_state(self, cluster_state: DeploymentState) -> Deferred[DatasetLocalState]:
        """
        List the backend's datasets with their snapshots and roles.

        The first discovery first lets the backend undo what a crash left
        half done (a receive interrupted by a killed agent), if it can.
        """

        async def discover() -> DatasetLocalState:
            if not self._recovered:
                recover = getattr(self.backend, "recover", None)
                if recover is not None:
                    await recover()
                self._recovered = True
            infos = await self.backend.list_datasets()
            # One listing per dataset, all at once: discovery time stays flat
            # as a node gains datasets.
            snapshots = await gatherResults(
                [self.backend.list_snapshots(info.dataset_id) for info in infos],
                consumeErrors=True,
            )
            datasets = {
                info.dataset_id: LocalDataset(
                    info=info, snapshots=listed, role=self.roles.get(info.dataset_id)
                )
                for info, listed in zip(infos, snapshots, strict=True)
            }
            return DatasetLocalState(
                node_uuid=self.node_uuid,
                hostname=self.hostname,
                datasets=datasets,
                receiving=set(self.receiving()),
                in_use={d for d in datasets if self.mover.in_use(d)},
                rolled_back={
                    d: r for d, r in self.rolled_back.items() if d in datasets
                },
                now=float(self.now()),
            )

        return Deferred.fromCoroutine(discover())

    def calculate_changes(
        self,
        configuration: Deployment,
        cluster_state: DeploymentState,
        local_state: ILocalState,
    ) -> IStateChange:
        """See ``calculate_dataset_changes``."""
        assert isinstance(local_state, DatasetLocalState)
        return calculate_dataset_changes(
            self.node_uuid, configuration, cluster_state, local_state
        )


__all__ = [
    "CreateDataset",
    "DatasetDeployer",
    "DatasetLocalState",
    "DatasetMover",
    "DestroyDataset",
    "ExposeDataset",
    "LocalDataset",
    "PushDataset",
    "ResizeDataset",
    "calculate_dataset_changes",
]
