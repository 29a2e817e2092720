"""The cluster's observed state, as values: what agents last reported.

`DeploymentState` holds one `NodeState` per node.  The dataset agent and the
container agent report separately, so each half of a `NodeState` may be
``None`` ("unknown"), and `DeploymentState.update_node` keeps whichever halves
a report leaves unknown.  `cleanup_deleted` uses the state to drop deleted
datasets from the configuration once no node has them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pyrsistent import (
    PClass,
    PMap,
    PSet,
    PVector,
    field,
    pmap,
    pmap_field,
    pset,
    pvector,
    pvector_field,
)

from ._checks import (
    DivergedCopyOnTarget,
    FailoverNotTakenUp,
    NoConsistentReplica,
    PoolTooSmall,
    ReplicaNotReady,
    UnknownNode,
    finite_or_none,
    is_uuid,
    positive_or_none,
    uuid_field,
)
from ._model import Application, Deployment

__all__ = [
    "DATASET_ROLES",
    "HEALTH_STATUSES",
    "ApplicationHealth",
    "ChangeFailure",
    "DatasetState",
    "DeploymentState",
    "ImagePull",
    "NodeState",
    "PoolState",
    "Snapshot",
    "cleanup_configuration",
    "cleanup_deleted",
    "cleanup_moved",
]


class Snapshot(PClass):
    """A snapshot of a dataset on a node; ``created`` is POSIX time or ``None``."""

    name = field(type=str, mandatory=True)
    created = field(
        type=(float, type(None)),
        initial=None,
        factory=lambda v: None if v is None else float(v),
        invariant=finite_or_none,
    )


#: The roles a node reports holding a dataset's copy in: the primary; a
#: replica (a standing one, or a copy being moved in: the configuration
#: tells them apart); the old primary handing a move over; a copy of an
#: older epoch, kept after a failover elsewhere; the primary's copy while
#: its node fenced itself (it lost the control service: not exposed).
DATASET_ROLES = ("primary", "replica", "handoff", "diverged", "fenced")


class DatasetState(PClass):
    """
    A dataset as one node's dataset agent last saw it.

    :ivar path: where it is mounted, or ``None`` if not mounted (a replica).
    :ivar size: bytes used, or ``None`` if unknown.
    :ivar maximum_size: the quota in force, or ``None``.
    :ivar snapshots: its snapshots, oldest first.
    :ivar rolled_back: the ``request_id`` of the last `RollbackRequest` the
        node carried out on it, or ``None``.
    :ivar role: what the node holds this copy as (one of `DATASET_ROLES`),
        or ``None`` if it did not say.
    :ivar epoch: the dataset epoch the node holds its copy at, or ``None``.
    :ivar set_aside: the snapshots keeping what this copy held when a
        failover superseded it (``flocker-diverged-<epoch>-<ns>``), oldest
        first: kept when the copy rejoined as a replica, never pruned.
    """

    dataset_id = uuid_field()
    path = field(type=(str, type(None)), initial=None)
    size = field(
        type=(int, type(None)),
        initial=None,
        invariant=lambda v: (
            v is None or (isinstance(v, int) and v >= 0),
            f"size must be non-negative: {v!r}",
        ),
    )
    maximum_size = field(
        type=(int, type(None)),
        initial=None,
        invariant=positive_or_none("maximum_size"),
    )
    snapshots = pvector_field(Snapshot)
    rolled_back = field(type=(str, type(None)), initial=None)
    role = field(
        type=(str, type(None)),
        initial=None,
        invariant=lambda v: (
            v is None or v in DATASET_ROLES,
            f"role must be one of {', '.join(DATASET_ROLES)} or null: {v!r}",
        ),
    )
    epoch = field(
        type=(int, type(None)),
        initial=None,
        invariant=lambda v: (
            v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0),
            f"epoch must be a non-negative integer or null: {v!r}",
        ),
    )
    set_aside = pvector_field(Snapshot)


def _non_negative_int(name: str):  # type: ignore[no-untyped-def]
    def check(v: Any) -> tuple[bool, str]:
        return (
            isinstance(v, int) and not isinstance(v, bool) and v >= 0,
            f"{name} must be a non-negative integer: {v!r}",
        )

    return check


class ChangeFailure(PClass):
    """
    A change the node's dataset agent tried and failed in its latest
    convergence pass.

    :ivar dataset_id: The dataset the change was for, or ``None`` (a
        discovery that failed, a change of no one dataset).
    :ivar change: The change's eliot action type, e.g.
        ``flocker:node:dataset:push``.
    :ivar reason: One line saying why it failed (the error's type and text).
    :ivar since: Wall-clock POSIX time of the first of the consecutive passes
        it failed in.
    :ivar count: How many consecutive passes it failed in (1 or more).
    """

    dataset_id = field(
        type=(str, type(None)),
        initial=None,
        invariant=lambda v: (v is None or is_uuid(v), f"dataset_id must be a UUID: {v!r}"),
    )
    change = field(type=str, mandatory=True)
    reason = field(type=str, mandatory=True)
    since = field(
        type=float,
        mandatory=True,
        factory=float,
        invariant=lambda v: (finite_or_none(v)[0], f"since must be finite: {v!r}"),
    )
    count = field(
        type=int,
        mandatory=True,
        invariant=lambda v: (
            isinstance(v, int) and not isinstance(v, bool) and v >= 1,
            f"count must be a positive integer: {v!r}",
        ),
    )


class ImagePull(PClass):
    """
    The image of an application configured on a node that the node's
    container agent is getting, or failed to get.

    :ivar application: The application's name.
    :ivar image: The image reference.
    :ivar pulling: Whether a pull runs now (else the last one failed and
        will be tried again).
    :ivar reason: The last failed pull's message (the registry's words),
        or ``None``.
    :ivar attempts: How many pulls failed in a row.
    :ivar since: Wall-clock POSIX time the first of them started.
    :ivar layers_done: Layers of the running pull done, of ``layers_total``
        known so far (both 0 when unknown).
    :ivar bytes_done: Bytes of the running pull downloaded, of
        ``bytes_total`` known so far.
    """

    application = field(type=str, mandatory=True)
    image = field(type=str, mandatory=True)
    pulling = field(type=bool, mandatory=True)
    reason = field(type=(str, type(None)), initial=None)
    attempts = field(type=int, initial=0, invariant=lambda v: (v >= 0, "attempts < 0"))
    since = field(
        type=float,
        initial=0.0,
        factory=float,
        invariant=lambda v: (finite_or_none(v)[0], f"since must be finite: {v!r}"),
    )
    layers_done = field(type=int, initial=0)
    layers_total = field(type=int, initial=0)
    bytes_done = field(type=int, initial=0)
    bytes_total = field(type=int, initial=0)


#: What a node says of an application instance's health.
HEALTH_STATUSES = ("starting", "healthy", "unhealthy", "stopping")


class ApplicationHealth(PClass):
    """
    The health of the instance of an application configured on a node, as
    its container agent last probed it (`flocker.control.HealthCheck`).

    :ivar application: The application's name.
    :ivar status: ``"starting"`` (no probe succeeded yet, or the instance
        started less than its start period ago and the probes failed),
        ``"healthy"`` or ``"unhealthy"`` (``retries`` probes failed in a row
        after the start period, or the container is not running), or
        ``"stopping"`` (the agent is about to stop it: the routers send it
        no new connection while those open finish).
    :ivar revision: The application's ``revision`` the probed instance was
        started from, or ``None`` when it is not the configured one (an old
        instance still running while the new one's image is got).
    :ivar reason: What the last failed probe saw (e.g. ``HTTP 500`` or
        ``connection refused``), or ``None``.
    :ivar failures: Probes failed in a row.
    :ivar since: Wall-clock POSIX time the status began.
    :ivar ports: Where the instance answers: each published internal port →
        the port of the node's address it is published on now (Docker
        chooses it; the node's router forwards the application's external
        port there); empty while it is not running.
    """

    application = field(type=str, mandatory=True)
    status = field(
        type=str,
        mandatory=True,
        invariant=lambda v: (v in HEALTH_STATUSES, f"not a health status: {v!r}"),
    )
    revision = field(type=(int, type(None)), initial=None)
    reason = field(type=(str, type(None)), initial=None)
    failures = field(type=int, initial=0, invariant=lambda v: (v >= 0, "failures < 0"))
    ports = pmap_field(
        int,
        int,
        invariant=lambda ports: (
            all(0 < p < 65536 for pair in ports.items() for p in pair),
            f"ports must be TCP port numbers: {dict(ports)!r}",
        ),
    )
    since = field(
        type=float,
        initial=0.0,
        factory=float,
        invariant=lambda v: (finite_or_none(v)[0], f"since must be finite: {v!r}"),
    )


class PoolState(PClass):
    """
    The storage pool of a node's datasets, as its dataset agent last saw it.

    :ivar size: Bytes the node's datasets can use in all: the pool less
        the room the backend keeps for snapshots and sends (so that a full
        pool can still be drained).
    :ivar free: Bytes of ``size`` not used yet.
    :ivar full: Whether (nearly) nothing is left: writes into the node's
        datasets and streams into it fail.
    :ivar oversized: Datasets held here whose maximum size is larger than
        ``size``: they can never grow to it on this node.
    """

    size = field(type=int, mandatory=True, invariant=_non_negative_int("size"))
    free = field(type=int, mandatory=True, invariant=_non_negative_int("free"))
    full = field(type=bool, mandatory=True)
    oversized = pvector_field(str)


def _optional_pmap(value_type: type):  # type: ignore[no-untyped-def]
    def factory(value: Any) -> PMap[str, Any] | None:
        if value is None:
            return None
        result = pmap(value)
        for k, v in result.items():
            if not isinstance(k, str) or not isinstance(v, value_type):
                raise TypeError(f"expected str → {value_type.__name__}: {k!r}: {v!r}")
        return result

    return factory


def _port_conflicts(value: Any) -> PMap[str, Any] | None:
    """``None``, or application name → a `PSet` of port numbers."""
    if value is None:
        return None
    result = pmap({name: pset(ports) for name, ports in dict(value).items()})
    for name, ports in result.items():
        if not isinstance(name, str) or not all(
            isinstance(p, int) and not isinstance(p, bool) and 0 < p < 65536 for p in ports
        ):
            raise TypeError(f"expected application name → port numbers: {name!r}: {ports!r}")
    return result


class NodeState(PClass):
    """
    What one node last reported about itself.

    ``None`` in ``applications`` or ``datasets`` means "unknown": the
    container agent reports only applications, the dataset agent only datasets.

    :ivar uuid: the node's UUID.
    :ivar hostname: the node's address, or ``None`` if unknown.
    :ivar era: UUID that changes each time the node boots, or ``None``.
    :ivar applications: name → `Application` running there, or ``None``.
    :ivar datasets: dataset id → `DatasetState` held there, or ``None``.
    :ivar busy_ports: TCP ports something other than this cluster's
        applications listens on at the node's address (or on a wildcard
        address), as the container agent last read them; ``None`` if
        unknown.  Ports for environment copies are chosen outside them.
    :ivar port_conflicts: application name → those of its published ports
        its container could not publish here because something else holds
        them (the container agent's last try to start it failed so), or
        ``None`` if unknown.  The control service moves environment copies
        off such ports (`flocker.control._cloning.move_blocked_ports`).
    :ivar last_converged: Wall-clock POSIX time at which the dataset agent's
        last fully successful convergence pass ended (refreshed in reports
        at most every half minute while all goes well), or ``None`` if
        unknown or it never had one.
    :ivar failing_changes: The changes that failed in the dataset agent's
        latest pass (`ChangeFailure`), by dataset and change; empty when it
        succeeded; ``None`` if unknown.
    :ivar pool: The node's storage pool (`PoolState`), or ``None`` if
        unknown (or the backend does not say).
    :ivar image_pulls: application name → `ImagePull`, for the applications
        configured on this node whose image its container agent is getting
        or failed to get (empty when none), or ``None`` if unknown.
    :ivar deletions_seen: The ids of the datasets that the configuration of
        the dataset agent's last finished pass marked deleted on this node
        (that pass destroyed any copy it found), or ``None`` if unknown.
        A deleted dataset leaves the configuration only once every node it
        was on has seen its deletion so (`cleanup_deleted`): a pass planned
        from an older configuration may still have been creating it.
    :ivar health: application name → `ApplicationHealth`, for the
        applications configured on this node that have a container here,
        or ``None`` if unknown.
    """

    uuid = uuid_field()
    hostname = field(type=(str, type(None)), initial=None)
    era = field(
        type=(str, type(None)),
        initial=None,
        invariant=lambda v: (v is None or is_uuid(v), f"era must be a UUID: {v!r}"),
    )
    applications = field(
        type=(PMap, type(None)), initial=None, factory=_optional_pmap(Application)
    )
    datasets = field(
        type=(PMap, type(None)), initial=None, factory=_optional_pmap(DatasetState)
    )
    busy_ports = field(
        type=(PSet, type(None)),
        initial=None,
        factory=lambda v: None if v is None else pset(v),
        invariant=lambda v: (
            v is None
            or all(isinstance(p, int) and not isinstance(p, bool) and 0 < p < 65536 for p in v),
            f"busy ports must be TCP port numbers: {v!r}",
        ),
    )
    port_conflicts = field(
        type=(PMap, type(None)), initial=None, factory=_port_conflicts
    )
    last_converged = field(
        type=(float, type(None)),
        initial=None,
        factory=lambda v: None if v is None else float(v),
        invariant=finite_or_none,
    )
    failing_changes = field(
        type=(PVector, type(None)),
        initial=None,
        factory=lambda v: None if v is None else pvector(v),
        invariant=lambda v: (
            v is None or all(isinstance(f, ChangeFailure) for f in v),
            f"failing changes must be ChangeFailure values: {v!r}",
        ),
    )
    pool = field(type=(PoolState, type(None)), initial=None)
    image_pulls = field(
        type=(PMap, type(None)), initial=None, factory=_optional_pmap(ImagePull)
    )
    health = field(
        type=(PMap, type(None)), initial=None, factory=_optional_pmap(ApplicationHealth)
    )
    deletions_seen = field(
        type=(PSet, type(None)),
        initial=None,
        factory=lambda v: None if v is None else pset(v),
        invariant=lambda v: (
            v is None or all(is_uuid(d) for d in v),
            f"deletions seen must be dataset ids: {v!r}",
        ),
    )

    def __invariant__(self) -> tuple[bool, str]:
        """Maps are keyed by the names and ids of their values."""
        for name, app in (self.applications or {}).items():
            if name != app.name:
                return (False, f"application keyed {name!r} is named {app.name!r}")
        for dataset_id, ds in (self.datasets or {}).items():
            if dataset_id != ds.dataset_id:
                return (
                    False,
                    f"dataset state keyed {dataset_id} is of another dataset",
                )
        return (True, "")


_NODE_HALVES = (
    "hostname",
    "era",
    "applications",
    "datasets",
    "busy_ports",
    "port_conflicts",
    "last_converged",
    "failing_changes",
    "pool",
    "deletions_seen",
    "image_pulls",
    "health",
)


#: The fields of a node's state that its container agent reports.
CONTAINER_HALF = (
    "applications",
    "busy_ports",
    "port_conflicts",
    "image_pulls",
    "health",
)


class DeploymentState(PClass):
    """The last reported state of every node: node UUID → `NodeState`."""

    nodes = pmap_field(str, NodeState)

    def __invariant__(self) -> tuple[bool, str]:
        """Each node state is keyed by its UUID."""
        return (
            all(k == v.uuid for k, v in self.nodes.items()),
            "node states must be keyed by their uuid",
        )

    def get_node(self, uuid: str) -> NodeState:
        """A node's state, or a wholly unknown one if it never reported."""
        state = self.nodes.get(uuid)
        return state if state is not None else NodeState(uuid=uuid)

    def update_node(self, state: NodeState) -> DeploymentState:
        """
        Merge a report: its known fields replace the old, its unknowns keep them.

        A report with a new ``era`` (the node rebooted) forgets what was known
        from the old era.  A report that changes nothing returns this very
        state (agents report every second; a new state would check the
        invariant over every node).
        """
        old = self.nodes.get(state.uuid)
        if old is not None and not (
            state.era is not None and old.era is not None and state.era != old.era
        ):
            changes = {
                name: value
                for name in _NODE_HALVES
                if (value := getattr(state, name)) is not None
            }
            if all(getattr(old, name) == value for name, value in changes.items()):
                return self
            state = old.set(**changes)
        if state == old:
            return self
        return self.set(nodes=self.nodes.set(state.uuid, state))

    def forget_containers(self, uuid: str) -> DeploymentState:
        """
        Forget what a node's container agent reported (it went silent while
        its dataset agent still reports): its applications, their health
        and image pulls, and its ports become unknown.
        """
        old = self.nodes.get(uuid)
        if old is None:
            return self
        state = old.set(**{name: None for name in CONTAINER_HALF})
        if state == old:
            return self
        return self.set(nodes=self.nodes.set(uuid, state))

    def remove_node(self, uuid: str) -> DeploymentState:
        """Forget a node's state (it went silent)."""
        if uuid not in self.nodes:
            return self
        return self.set(nodes=self.nodes.remove(uuid))

    def all_datasets(self) -> Iterator[tuple[DatasetState, str]]:
        """Each reported dataset copy with its node's UUID, by dataset id then node."""
        found = [
            (ds, uuid)
            for uuid, state in self.nodes.items()
            for ds in (state.datasets or {}).values()
        ]
        return iter(sorted(found, key=lambda pair: (pair[0].dataset_id, pair[1])))

    def node_by_era(self, era: str) -> NodeState | None:
        """The node whose current era is ``era``, or ``None``."""
        for state in self.nodes.values():
            if state.era == era:
                return state
        return None

    def require_node(self, deployment: Deployment, node_uuid: str, what: str) -> None:
        """
        Refuse a node that neither reported state nor holds configuration in
        ``deployment``.

        :param what: how the request names the node (``"primary"``, …).
        :raise UnknownNode: it is not a node of this cluster.
        """
        if node_uuid not in deployment.nodes and node_uuid not in self.nodes:
            raise UnknownNode(what, node_uuid)

    def refuse_diverged_target(self, dataset_ids: list[str], node_uuid: str) -> None:
        """
        Refuse to move datasets to a node that keeps a diverged copy of one
        of them (its copy of an older epoch, kept after a failover): that
        copy refuses every stream, so the move could never finish and the
        dataset would be exposed nowhere.

        :raise DivergedCopyOnTarget: the node keeps one.
        """
        held = self.get_node(node_uuid).datasets or {}
        for dataset_id in dataset_ids:
            copy = held.get(dataset_id)
            if copy is not None and copy.role == "diverged":
                raise DivergedCopyOnTarget(node_uuid, dataset_id, copy.epoch)

    def refuse_unsettled_failover(
        self, deployment: Deployment, dataset_ids: list[str]
    ) -> None:
        """
        Refuse to move a dataset that failed over while its new primary has
        not yet reported its copy as primary at the new epoch: until then
        the data of that epoch is on no node that could send it (the chosen
        replica becomes primary only when its agent hears of the failover),
        so the move would leave the dataset exposed nowhere.

        :raise FailoverNotTakenUp: one of them is such a dataset.
        """
        for dataset_id in dataset_ids:
            dataset, primary = deployment.get_dataset(dataset_id)
            if dataset.epoch == 0:
                continue
            copy = (self.get_node(primary).datasets or {}).get(dataset_id)
            if copy is None or copy.role != "primary" or (copy.epoch or 0) < dataset.epoch:
                raise FailoverNotTakenUp(dataset_id, primary, dataset.epoch)

    def refuse_oversized(self, deployment: Deployment, dataset_id: str) -> None:
        """
        Refuse a dataset whose maximum size is larger than the pool its
        primary or one of its standing replicas reported: it could never
        grow to it there, and filling the pool would stop the node taking
        anything else.

        :raise PoolTooSmall: a pool is too small.
        """
        dataset, primary = deployment.get_dataset(dataset_id)
        reason = self.too_small_for(
            [primary, *deployment.replicas_of(dataset_id)], dataset.maximum_size
        )
        if reason is not None:
            raise PoolTooSmall(reason)

    def promotable_snapshot(self, node_uuid: str, dataset_id: str) -> Snapshot:
        """
        The newest snapshot a node reports of its standing replica of a
        dataset: where that replica starts from if it is promoted.

        :raise NoConsistentReplica: the node reports no snapshot of it.
        :raise ReplicaNotReady: the node reports its copy in another role.
        """
        copy = (self.get_node(node_uuid).datasets or {}).get(dataset_id)
        if copy is None or not copy.snapshots:
            raise NoConsistentReplica(node_uuid, dataset_id)
        if copy.role is not None and copy.role != "replica":
            raise ReplicaNotReady(node_uuid, dataset_id, copy.role)
        snapshot: Snapshot = copy.snapshots[-1]
        return snapshot

    def too_small_for(
        self, node_uuids: list[str], maximum_size: int | None
    ) -> str | None:
        """
        Why a dataset of ``maximum_size`` cannot fit on one of the nodes (a
        sentence naming it, its pool's size and the room kept), or ``None``:
        none of them reported a pool smaller than that, or there is no
        maximum size.  Nodes whose pool is unknown are not judged.
        """
        if maximum_size is None:
            return None
        for uuid in node_uuids:
            pool = self.get_node(uuid).pool
            if pool is not None and maximum_size > pool.size:
                return (
                    f"a maximum_size of {maximum_size} bytes cannot fit on node {uuid}: "
                    f"its datasets have {pool.size} bytes in all (the pool less the "
                    "room kept for snapshots and sends); give a smaller maximum_size "
                    "or choose another node"
                )
        return None

    def holders(self, dataset_id: str) -> list[str]:
        """UUIDs of nodes that report having a copy of the dataset, sorted."""
        return sorted(
            uuid
            for uuid, state in self.nodes.items()
            if state.datasets is not None and dataset_id in state.datasets
        )


def _saw_deletion(node: NodeState, dataset_id: str) -> bool:
    """Whether a node reported its datasets after a pass that saw one deleted."""
    seen = node.deletions_seen
    return node.datasets is not None and seen is not None and dataset_id in seen


def cleanup_deleted(deployment: Deployment, state: DeploymentState) -> Deployment:
    """
    Drop deleted datasets that no node has any more.

    A deleted dataset is dropped only when every node holding a manifestation
    of it has reported its datasets, none of them (nor any other node)
    still has it, and each of those nodes' agents has finished a pass that
    saw it deleted (``NodeState.deletions_seen``): a node that has not
    reported keeps the dataset configured so its agent still learns to
    destroy its copy, and so does one whose agent may still be creating it
    from a configuration planned before the deletion (its next report would
    show the copy, with nothing left to say it must go).
    """
    drop = set()
    for node in deployment.nodes.values():
        for dataset_id, m in node.manifestations.items():
            if not m.dataset.deleted or state.holders(dataset_id):
                continue
            holders = [
                n.uuid
                for n in deployment.nodes.values()
                if dataset_id in n.manifestations
            ]
            if all(_saw_deletion(state.get_node(h), dataset_id) for h in holders):
                drop.add(dataset_id)
    if not drop:
        return deployment
    nodes = {}
    for uuid, node in deployment.nodes.items():
        node = node.set(
            manifestations={
                k: v for k, v in node.manifestations.items() if k not in drop
            }
        )
        if node.applications or node.manifestations:
            nodes[uuid] = node
    leases = deployment.leases
    for dataset_id in drop:
        if leases.get(dataset_id) is not None:
            leases = leases.release(dataset_id)
    return deployment.set(nodes=nodes, leases=leases)


def cleanup_moved(deployment: Deployment, state: DeploymentState) -> Deployment:
    """
    Drop the transient copies that finished moves left in the configuration.

    A move leaves the old primary as a transient copy so the new primary
    waits for the data.  Once the new primary reports the dataset mounted
    and the old node has reported its datasets without it, that copy goes.
    Standing replicas are never dropped: only the user removes them.
    """
    nodes = deployment.nodes
    for uuid, node in deployment.nodes.items():
        reported = state.get_node(uuid).datasets
        if reported is None:
            continue
        drop = []
        for dataset_id, m in node.manifestations.items():
            if m.primary or m.standing or dataset_id in reported:
                continue
            try:
                _, primary = deployment.get_dataset(dataset_id)
            except KeyError:
                continue
            copy = (state.get_node(primary).datasets or {}).get(dataset_id)
            if copy is not None and copy.path is not None:
                drop.append(dataset_id)
        if drop:
            node = node.set(
                manifestations={
                    k: v for k, v in node.manifestations.items() if k not in drop
                }
            )
            nodes = (
                nodes.set(uuid, node)
                if node.applications or node.manifestations
                else nodes.discard(uuid)
            )
    if nodes is deployment.nodes:
        return deployment
    return deployment.set(nodes=nodes)


def cleanup_rollbacks(deployment: Deployment, state: DeploymentState) -> Deployment:
    """
    Clear the rollback requests that are over: those whose dataset's
    primary reports them done (``rolled_back``).  A primary that cannot
    carry one out (the snapshot is not there, later snapshots have clones)
    reports it done too, after logging why, so no application stays
    stopped for ever; and a primary's own, live view of its snapshots
    decides that, never a report that may predate the snapshot.
    """
    result = deployment
    for dataset, primary in deployment.all_datasets():
        request = dataset.rollback
        if request is None:
            continue
        copy = (state.get_node(primary).datasets or {}).get(dataset.dataset_id)
        if copy is not None and copy.rolled_back == request.request_id:
            result = result._replace_dataset(dataset.set(rollback=None))
    return result


def cleanup_configuration(deployment: Deployment, state: DeploymentState) -> Deployment:
    """
    Everything the control service tidies once the nodes report it is done.

    Returns ``deployment`` itself when nothing is to go.
    """
    return cleanup_rollbacks(cleanup_moved(cleanup_deleted(deployment, state), state), state)
