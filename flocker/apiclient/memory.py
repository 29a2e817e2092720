"""
`FakeFlockerClient`: an in-memory `IFlockerAPIV1Client` for other packages' tests.

It keeps a configuration and a cluster state of its own and follows the same
rules as the control service (checked by the same contract suite): nodes
must be known (`add_node`), a dataset used by a container or leased cannot
move alone, a stale configuration tag is refused, and so on.  Nothing
converges by itself: `synchronize_state` makes the reported state match the
configuration, as the agents eventually would.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar
from uuid import UUID, uuid4

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.filepath import FilePath
from zope.interface import implementer

from .. import __version__
from ._interface import (
    UNCHANGED,
    BadRequest,
    ConfigurationChanged,
    Container,
    ContainerAlreadyExists,
    ContainerConflict,
    ContainerState,
    Dataset,
    DatasetAlreadyExists,
    DatasetConflict,
    DatasetsConfiguration,
    DatasetState,
    DivergedCopy,
    FailoverRefused,
    FailoverResult,
    IFlockerAPIV1Client,
    Lease,
    LeaseAlreadyHeld,
    Node,
    ReplicaState,
    Replication,
    Rollback,
    Snapshot,
    Transfers,
    UnknownContainer,
    UnknownDataset,
    UnknownEra,
    UnknownLease,
)
from ._memory_cloning import FakeCloning, _FakeEnvironment
from ._memory_containers import (
    FakeContainerUpdates,
    check_health,
    check_name,
    check_replicas,
)

__all__ = ["FakeFlockerClient"]

#: The smallest maximum_size the REST API accepts.
MINIMUM_SIZE = 1024 * 1024

#: The most standing replicas a dataset may have.
MAXIMUM_REPLICAS = 4

T = TypeVar("T")


@attrs.frozen
class _FakeLease:
    node_uuid: UUID
    expiration: float | None


@attrs.frozen
class _Configuration:
    datasets: Mapping[UUID, Dataset]
    leases: Mapping[UUID, _FakeLease]
    containers: Mapping[str, Container]
    environments: Mapping[str, _FakeEnvironment]
    rollbacks: Mapping[UUID, Rollback]
    previous: Mapping[str, Container]


@implementer(IFlockerAPIV1Client)
@attrs.define
class FakeFlockerClient(FakeCloning, FakeContainerUpdates):
    """
    An in-memory Flocker REST API.

    :ivar clock: the time, for lease expiry.
    """

    clock: IReactorTime
    _nodes: dict[UUID, Node] = attrs.field(factory=dict, init=False)
    _eras: dict[UUID, UUID] = attrs.field(factory=dict, init=False)
    _datasets: dict[UUID, Dataset] = attrs.field(factory=dict, init=False)
    _leases: dict[UUID, _FakeLease] = attrs.field(factory=dict, init=False)
    _containers: dict[str, Container] = attrs.field(factory=dict, init=False)
    #: Container name → the specification its last update replaced.
    _previous: dict[str, Container] = attrs.field(factory=dict, init=False)
    #: (container name, node) → the (status, reason) that node last reported.
    _health: dict[tuple[str, UUID], tuple[str, str | None]] = attrs.field(
        factory=dict, init=False
    )
    _generation: int = attrs.field(default=0, init=False)
    _state_datasets: list[DatasetState] = attrs.field(factory=list, init=False)
    _state_containers: list[ContainerState] = attrs.field(factory=list, init=False)
    #: (dataset id, node) → (name, created) of the newest snapshot a replica reports.
    _replica_snapshots: dict[tuple[UUID, UUID], tuple[str, float]] = attrs.field(
        factory=dict, init=False
    )
    _heard: dict[UUID, float] = attrs.field(factory=dict, init=False)
    #: (dataset id, node) → the epoch of a former primary's copy, kept after
    #: a failover; reported once the state is synchronized (as the node's
    #: agent reports it once it hears of the failover).
    _superseded: dict[tuple[UUID, UUID], int] = attrs.field(factory=dict, init=False)
    _diverged: dict[tuple[UUID, UUID], int] = attrs.field(factory=dict, init=False)
    #: dataset id → the snapshots its primary holds, oldest first.
    _snapshots: dict[UUID, list[Snapshot]] = attrs.field(factory=dict, init=False)
    _environments: dict[str, _FakeEnvironment] = attrs.field(factory=dict, init=False)
    #: dataset id → the last rollback asked for (configuration).
    _rollbacks: dict[UUID, Rollback] = attrs.field(factory=dict, init=False)
    #: dataset id → the request id of the last rollback done (state).
    _rolled_back: dict[UUID, UUID] = attrs.field(factory=dict, init=False)
    _transfers: Transfers = attrs.field(factory=Transfers, init=False)
    #: The nodes whose dataset agents are not connected.
    _disconnected: set[UUID] = attrs.field(factory=set, init=False)
    #: Seconds a primary must have been silent before failover without force.
    failover_after: float = 20.0

    # -- test controls ---------------------------------------------------------

    def add_node(
        self, uuid: UUID, host: str | None = None, era: UUID | None = None
    ) -> None:
        """Make a node known, as if it had reported its state."""
        self._nodes[uuid] = Node(uuid=uuid, host=host)
        if era is not None:
            self._eras[era] = uuid

    def synchronize_state(self) -> None:
        """
        Make the reported state what the configuration asks for: rollbacks
        asked for are done (later snapshots discarded), deleted datasets
        are gone with their snapshots, and each container's instances run
        on their nodes (`instance_placement` among the known nodes).
        """
        for dataset_id, rollback in self._rollbacks.items():
            if self._rolled_back.get(dataset_id) == rollback.request_id:
                continue
            names = [s.name for s in self._snapshots.get(dataset_id, [])]
            if rollback.snapshot in names:
                kept = names.index(rollback.snapshot) + 1
                self._snapshots[dataset_id] = self._snapshots[dataset_id][:kept]
            self._rolled_back[dataset_id] = rollback.request_id
        self._state_datasets = [
            DatasetState(
                dataset_id=d.dataset_id,
                primary=d.primary,
                maximum_size=d.maximum_size,
                path=FilePath(f"/flocker/{d.dataset_id}"),
                rolled_back=self._rolled_back.get(d.dataset_id),
            )
            for d in self._datasets.values()
            if not d.deleted
        ]
        self._datasets = {k: v for k, v in self._datasets.items() if not v.deleted}
        self._snapshots = {
            k: v for k, v in self._snapshots.items() if k in self._datasets
        }
        self._state_containers = self._instance_states(self._nodes)
        now = self.clock.seconds()
        self._replica_snapshots = {
            (d.dataset_id, node): ("replicated", now)
            for d in self._datasets.values()
            for node in d.replicas
        }
        self._diverged = {
            key: epoch for key, epoch in self._superseded.items() if key[0] in self._datasets
        }

    def fence(self, node_uuid: UUID) -> None:
        """
        Make a node report its primaries fenced (not exposed), as its
        dataset agent does after losing the control service, until the
        state is next synchronized.
        """
        self._state_datasets = [
            s.set(fenced=True, path=None) if s.primary == node_uuid else s
            for s in self._state_datasets
        ]

    def heard_from(self, node_uuid: UUID) -> None:
        """Note that a node's dataset agent was heard from now (for failover)."""
        self._heard[node_uuid] = self.clock.seconds()

    # -- helpers ---------------------------------------------------------------

    def _tag(self) -> str:
        return f"fake-{self._generation}"

    def _write(
        self, change: Callable[[], T], configuration_tag: str | None = None
    ) -> Deferred[T]:
        """Run ``change``; on any error restore the configuration."""
        if configuration_tag is not None and configuration_tag != self._tag():
            return fail(
                ConfigurationChanged(412, "the configuration changed since the tag")
            )
        saved = _Configuration(
            dict(self._datasets),
            dict(self._leases),
            dict(self._containers),
            dict(self._environments),
            dict(self._rollbacks),
            dict(self._previous),
        )
        try:
            result = change()
        except Exception as e:
            self._datasets = dict(saved.datasets)
            self._leases = dict(saved.leases)
            self._containers = dict(saved.containers)
            self._environments = dict(saved.environments)
            self._rollbacks = dict(saved.rollbacks)
            self._previous = dict(saved.previous)
            return fail(e)
        self._generation += 1
        return succeed(result)

    def _require_node(self, uuid: UUID) -> None:
        configured = (
            {d.primary for d in self._datasets.values()}
            | {r for d in self._datasets.values() for r in d.replicas}
            | {c.node_uuid for c in self._containers.values()}
        )
        if uuid not in self._nodes and uuid not in configured:
            raise BadRequest(400, f"{uuid} is not a node of this cluster")

    def _get(self, dataset_id: UUID, error: type = UnknownDataset) -> Dataset:
        dataset = self._datasets.get(dataset_id)
        if dataset is None:
            raise error(404, f"unknown dataset {dataset_id}")
        return dataset

    def _user(self, dataset_id: UUID) -> Container | None:
        for container in self._containers.values():
            if any(v.dataset_id == dataset_id for v in container.volumes):
                return container
        return None

    def _live_lease(self, dataset_id: UUID) -> _FakeLease | None:
        lease = self._leases.get(dataset_id)
        if lease is None:
            return None
        if lease.expiration is not None and lease.expiration <= self.clock.seconds():
            return None
        return lease

    def _check_taken_up(self, dataset: Dataset, error: type = DatasetConflict) -> None:
        """
        A dataset that failed over moves only once its new primary reports
        it exposed (the state is synchronized), as the control service says.
        """
        if dataset.epoch == 0:
            return
        if not any(
            s.dataset_id == dataset.dataset_id and s.primary == dataset.primary and s.path
            for s in self._state_datasets
        ):
            raise error(
                409,
                f"dataset {dataset.dataset_id} failed over to node {dataset.primary} "
                f"(epoch {dataset.epoch}), which has not reported taking it up yet: "
                "move it once that node reports its copy as the primary",
            )

    def _check_leaving(self, dataset: Dataset, error: type = DatasetConflict) -> None:
        self._check_taken_up(dataset, error)
        user = self._user(dataset.dataset_id)
        if user is not None:
            raise error(409, f"dataset {dataset.dataset_id} is used by {user.name!r}")
        lease = self._live_lease(dataset.dataset_id)
        if lease is not None and lease.node_uuid == dataset.primary:
            raise error(409, f"dataset {dataset.dataset_id} is leased")

    def _with_replicas(self, dataset: Dataset, replicas: Any) -> Dataset:
        """The dataset with this replica set, checked as the control service does."""
        replicas = list(replicas)
        for node in replicas:
            self._require_node(node)
        if len(set(replicas)) != len(replicas):
            raise BadRequest(400, "a node is listed more than once as a replica")
        if dataset.primary in replicas:
            raise BadRequest(400, f"node {dataset.primary} is the primary")
        if len(replicas) > MAXIMUM_REPLICAS:
            raise BadRequest(400, f"at most {MAXIMUM_REPLICAS} standing replicas")
        return dataset.set(replicas=sorted(replicas, key=str))

    @staticmethod
    def _with_replication(dataset: Dataset, replication: Any) -> Dataset:
        """The dataset with these replication settings (all, or those named)."""
        if isinstance(replication, Replication):
            changes = {
                "interval_seconds": replication.interval_seconds,
                "failover": replication.failover,
            }
        else:
            changes = dict(replication)
        unknown = set(changes) - {"interval_seconds", "failover"}
        if unknown:
            raise BadRequest(400, f"unknown field(s): {sorted(unknown)}")
        interval = changes.get("interval_seconds", 0)
        if not isinstance(interval, int) or isinstance(interval, bool) or interval < 0:
            raise BadRequest(400, "interval_seconds must be a non-negative integer")
        if changes.get("failover", "manual") not in ("manual", "automatic"):
            raise BadRequest(400, "failover must be manual or automatic")
        return dataset.set(replication=dataset.replication.set(**changes))

    @staticmethod
    def _moved(dataset: Dataset, primary: UUID) -> Dataset:
        """The dataset moved to ``primary``: a replica there swaps with the primary."""
        if primary == dataset.primary:
            return dataset
        replicas = list(dataset.replicas)
        if primary in replicas:
            replicas = [r for r in replicas if r != primary] + [dataset.primary]
        return dataset.set(primary=primary, replicas=sorted(replicas, key=str))

    @staticmethod
    def _check_size(maximum_size: int | None) -> None:
        if maximum_size is not None and not MINIMUM_SIZE <= maximum_size < 2**63:
            raise BadRequest(400, f"maximum_size: {maximum_size} is out of range")

    # -- IFlockerAPIV1Client ---------------------------------------------------

    def version(self) -> Deferred[str]:
        """See `IFlockerAPIV1Client.version`."""
        return succeed(__version__)

    def list_datasets_configuration(self) -> Deferred[DatasetsConfiguration]:
        """See `IFlockerAPIV1Client.list_datasets_configuration`."""
        return succeed(DatasetsConfiguration(tag=self._tag(), datasets=self._datasets))

    def create_dataset(
        self,
        primary: UUID,
        maximum_size: int | None = None,
        dataset_id: UUID | None = None,
        metadata: Mapping[str, str] | None = None,
        configuration_tag: str | None = None,
        replicas: Sequence[UUID] | None = None,
        replication: Replication | Mapping[str, Any] | None = None,
    ) -> Deferred[Dataset]:
        """See `IFlockerAPIV1Client.create_dataset`."""

        def change() -> Dataset:
            new_id = dataset_id if dataset_id is not None else uuid4()
            self._check_size(maximum_size)
            self._require_node(primary)
            if new_id in self._datasets:
                raise DatasetAlreadyExists(409, f"dataset {new_id} already exists")
            dataset = Dataset(
                dataset_id=new_id,
                primary=primary,
                maximum_size=maximum_size,
                metadata=dict(metadata or {}),
            )
            if replication is not None:
                dataset = self._with_replication(dataset, replication)
            if replicas is not None:
                dataset = self._with_replicas(dataset, replicas)
            self._datasets[new_id] = dataset
            return dataset

        return self._write(change, configuration_tag)

    def move_dataset(
        self, primary: UUID, dataset_id: UUID, configuration_tag: str | None = None
    ) -> Deferred[Dataset]:
        """See `IFlockerAPIV1Client.move_dataset`."""

        def change() -> Dataset:
            dataset = self._get(dataset_id)
            if dataset.deleted:
                raise DatasetConflict(405, f"dataset {dataset_id} is deleted")
            self._require_node(primary)
            if primary != dataset.primary:
                self._check_leaving(dataset)
            dataset = self._moved(dataset, primary)
            self._datasets[dataset_id] = dataset
            return dataset

        return self._write(change, configuration_tag)

    def update_dataset(
        self,
        dataset_id: UUID,
        maximum_size: Any = UNCHANGED,
        metadata: Any = UNCHANGED,
        configuration_tag: str | None = None,
        replicas: Any = UNCHANGED,
        replication: Any = UNCHANGED,
    ) -> Deferred[Dataset]:
        """See `IFlockerAPIV1Client.update_dataset`."""

        def change() -> Dataset:
            if maximum_size is not UNCHANGED:
                self._check_size(maximum_size)
            dataset = self._get(dataset_id)
            if dataset.deleted:
                raise DatasetConflict(409, f"dataset {dataset_id} is deleted")
            if maximum_size is not UNCHANGED:
                dataset = dataset.set(maximum_size=maximum_size)
            if metadata is not UNCHANGED:
                dataset = dataset.set(metadata=dict(metadata))
            if replication is not UNCHANGED:
                dataset = self._with_replication(dataset, replication)
            if replicas is not UNCHANGED:
                dataset = self._with_replicas(dataset, replicas)
            self._datasets[dataset_id] = dataset
            return dataset

        return self._write(change, configuration_tag)

    def failover_dataset(
        self, dataset_id: UUID, node_uuid: UUID, force: bool = False
    ) -> Deferred[FailoverResult]:
        """See `IFlockerAPIV1Client.failover_dataset`."""

        def change() -> FailoverResult:
            dataset = self._get(dataset_id)
            if dataset.deleted:
                raise FailoverRefused(409, f"dataset {dataset_id} is deleted")
            source = dataset.primary
            user = self._user(dataset_id)
            group = [dataset_id] if user is None else [v.dataset_id for v in user.volumes]
            group = sorted(group, key=str)
            for member in group:  # the dataset is one of its group
                if node_uuid not in self._datasets[member].replicas:
                    raise FailoverRefused(
                        409, f"node {node_uuid} holds no standing replica of {member}"
                    )
            snapshots = {}
            for member in group:
                snapshot = self._replica_snapshots.get((member, node_uuid))
                if snapshot is None:
                    raise FailoverRefused(
                        409, f"node {node_uuid} has reported no snapshot of {member}"
                    )
                snapshots[member] = snapshot
            heard = self._heard.get(source)
            now = self.clock.seconds()
            if not force and heard is not None and now - heard < self.failover_after:
                raise FailoverRefused(
                    409,
                    f"the dataset agent of node {source} was last heard from "
                    f"{now - heard:.1f} s ago, within failover_after "
                    f"({self.failover_after:g} s): it may still be serving the "
                    "dataset; wait, or pass force to fail over anyway",
                )
            for member in group:
                old = self._datasets[member]
                self._superseded[(member, source)] = old.epoch
                self._datasets[member] = old.set(
                    primary=node_uuid,
                    epoch=old.epoch + 1,
                    failover_snapshot=snapshots[member][0],
                    replicas=[r for r in old.replicas if r != node_uuid],
                )
                lease = self._leases.get(member)
                if lease is not None and lease.node_uuid == source:
                    del self._leases[member]
            if user is not None:
                self._containers[user.name] = user.set(node_uuid=node_uuid)
            name, created = snapshots[dataset_id]
            return FailoverResult(
                dataset_id=dataset_id,
                primary=node_uuid,
                epoch=self._datasets[dataset_id].epoch,
                datasets=group,
                snapshot=name,
                snapshot_created=created,
                data_loss_window_seconds=max(0.0, now - created),
            )

        return self._write(change)

    def delete_dataset(
        self, dataset_id: UUID, configuration_tag: str | None = None
    ) -> Deferred[Dataset]:
        """See `IFlockerAPIV1Client.delete_dataset`."""

        def change() -> Dataset:
            dataset = self._get(dataset_id)
            if dataset.deleted:
                return dataset
            self._check_leaving(dataset)
            if self._live_lease(dataset_id) is not None:
                raise DatasetConflict(409, f"dataset {dataset_id} is leased")
            dataset = dataset.set(deleted=True)
            self._datasets[dataset_id] = dataset
            return dataset

        return self._write(change, configuration_tag)

    def list_datasets_state(self) -> Deferred[list[DatasetState]]:
        """See `IFlockerAPIV1Client.list_datasets_state`."""
        now = self.clock.seconds()
        states = []
        for state in sorted(self._state_datasets, key=lambda d: str(d.dataset_id)):
            replicas = [
                ReplicaState(
                    node_uuid=node,
                    last_snapshot=name,
                    replicated_at=created,
                    lag_seconds=max(0.0, now - created),
                )
                for (dataset_id, node), (name, created) in sorted(
                    self._replica_snapshots.items(), key=lambda i: str(i[0][1])
                )
                if dataset_id == state.dataset_id
            ]
            diverged = [
                DivergedCopy(node_uuid=node, epoch=epoch, last_snapshot="replicated")
                for (dataset_id, node), epoch in sorted(
                    self._diverged.items(), key=lambda i: str(i[0][1])
                )
                if dataset_id == state.dataset_id
            ]
            states.append(state.set(replicas=replicas, diverged=diverged))
        return succeed(states)

    def list_nodes(self) -> Deferred[list[Node]]:
        """See `IFlockerAPIV1Client.list_nodes`."""
        fenced: dict[UUID, list[UUID]] = {}
        for state in self._state_datasets:
            if state.fenced:
                fenced.setdefault(state.primary, []).append(state.dataset_id)
        return succeed(
            [
                n.set(fenced=sorted(fenced.get(n.uuid, []), key=str))
                for n in sorted(self._nodes.values(), key=lambda n: str(n.uuid))
            ]
        )

    def node_by_era(self, era: UUID) -> Deferred[UUID]:
        """See `IFlockerAPIV1Client.node_by_era`."""
        if era not in self._eras:
            return fail(UnknownEra(404, f"no node reported era {era}"))
        return succeed(self._eras[era])

    def _lease_value(self, dataset_id: UUID, lease: _FakeLease) -> Lease:
        expires = None
        if lease.expiration is not None:
            expires = max(0.0, lease.expiration - self.clock.seconds())
        return Lease(dataset_id=dataset_id, node_uuid=lease.node_uuid, expires=expires)

    def list_leases(self) -> Deferred[list[Lease]]:
        """See `IFlockerAPIV1Client.list_leases`."""
        return succeed(
            [
                self._lease_value(k, v)
                for k, v in sorted(self._leases.items(), key=lambda i: str(i[0]))
                if self._live_lease(k) is not None
            ]
        )

    def acquire_lease(
        self, dataset_id: UUID, node_uuid: UUID, expires: float | None
    ) -> Deferred[Lease]:
        """See `IFlockerAPIV1Client.acquire_lease`."""

        def change() -> Lease:
            if expires is not None and expires < 0:
                raise BadRequest(400, "expires must not be negative")
            dataset = self._get(dataset_id)
            if dataset.deleted:
                raise LeaseAlreadyHeld(409, f"dataset {dataset_id} is deleted")
            self._require_node(node_uuid)
            current = self._live_lease(dataset_id)
            if current is not None and current.node_uuid != node_uuid:
                raise LeaseAlreadyHeld(
                    409, f"dataset {dataset_id} is leased to node {current.node_uuid}"
                )
            now = self.clock.seconds()
            lease = _FakeLease(
                node_uuid=node_uuid,
                expiration=None if expires is None else now + expires,
            )
            self._leases[dataset_id] = lease
            return self._lease_value(dataset_id, lease)

        return self._write(change)

    def release_lease(self, dataset_id: UUID) -> Deferred[Lease]:
        """See `IFlockerAPIV1Client.release_lease`."""

        def change() -> Lease:
            lease = self._leases.pop(dataset_id, None)
            if lease is None:
                raise UnknownLease(404, f"there is no lease on dataset {dataset_id}")
            return self._lease_value(dataset_id, lease)

        return self._write(change)

    def list_containers_configuration(self) -> Deferred[list[Container]]:
        """See `IFlockerAPIV1Client.list_containers_configuration`."""
        return succeed([self._containers[k] for k in sorted(self._containers)])

    def _check_ports(self, container: Container, node_uuid: UUID) -> None:
        taken = {
            p.external
            for other in self._containers.values()
            if other.node_uuid == node_uuid and other.name != container.name
            for p in other.ports
        }
        clash = taken & {p.external for p in container.ports}
        if clash:
            raise ContainerConflict(409, f"external ports {sorted(clash)} are taken")

    def create_container(self, container: Container) -> Deferred[Container]:
        """See `IFlockerAPIV1Client.create_container`."""
        container = container.specification()

        def change() -> Container:
            check_name(container)
            check_replicas(container)
            self._require_node(container.node_uuid)
            if container.name in self._containers:
                raise ContainerAlreadyExists(
                    409, f"application {container.name!r} already exists"
                )
            check_health(container)
            for volume in container.volumes:
                dataset = self._get(volume.dataset_id)
                if dataset.deleted or dataset.primary != container.node_uuid:
                    raise ContainerConflict(
                        409, f"dataset {dataset.dataset_id} is deleted or elsewhere"
                    )
                user = self._user(volume.dataset_id)
                if user is not None:
                    raise ContainerConflict(409, f"dataset used by {user.name!r}")
            self._check_ports(container, container.node_uuid)
            self._containers[container.name] = container
            self._previous.pop(container.name, None)
            return container

        return self._write(change)

    def _move(self, container: Container, node_uuid: UUID) -> Container:
        """``container`` moved to ``node_uuid`` with its datasets (checked)."""
        self._require_node(node_uuid)
        if container.node_uuid == node_uuid:
            return container
        self._check_ports(container, node_uuid)
        for volume in container.volumes:
            self._check_taken_up(self._datasets[volume.dataset_id], ContainerConflict)
            lease = self._live_lease(volume.dataset_id)
            if lease is not None and lease.node_uuid == container.node_uuid:
                raise ContainerConflict(409, f"dataset {volume.dataset_id} is leased")
            dataset = self._datasets[volume.dataset_id]
            self._datasets[volume.dataset_id] = self._moved(dataset, node_uuid)
        return container.set(node_uuid=node_uuid)

    def move_container(self, name: str, node_uuid: UUID) -> Deferred[Container]:
        """See `IFlockerAPIV1Client.move_container`."""

        def change() -> Container:
            container = self._containers.get(name)
            if container is None:
                raise UnknownContainer(404, f"unknown application {name!r}")
            container = self._move(container, node_uuid)
            self._containers[name] = container
            return container

        return self._write(change)

    def delete_container(self, name: str) -> Deferred[Container]:
        """See `IFlockerAPIV1Client.delete_container`."""

        def change() -> Container:
            container = self._containers.pop(name, None)
            if container is None:
                raise UnknownContainer(404, f"unknown application {name!r}")
            self._previous.pop(name, None)
            return container

        return self._write(change)

    def list_containers_state(self) -> Deferred[list[ContainerState]]:
        """See `IFlockerAPIV1Client.list_containers_state`."""
        return succeed(self._listed_states())
