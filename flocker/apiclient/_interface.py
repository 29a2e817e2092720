"""
`IFlockerAPIV1Client`: the REST API v1 as Python calls, its values and errors.

Values are pyrsistent classes with UUIDs as `uuid.UUID`.  Every method
returns a Deferred; failures are the exceptions below, each mapped from the
status code the REST API answers for that request (see `FlockerClient`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from pyrsistent import PClass, field, pmap_field, pvector_field
from twisted.internet.defer import Deferred
from twisted.python.filepath import FilePath
from zope.interface import Interface

__all__ = [
    "UNCHANGED",
    "BadRequest",
    "ConfigurationChanged",
    "Container",
    "ContainerAlreadyExists",
    "ContainerConflict",
    "ContainerPort",
    "ContainerState",
    "Dataset",
    "DatasetAlreadyExists",
    "DatasetConflict",
    "DatasetState",
    "DatasetsConfiguration",
    "DivergedCopy",
    "Environment",
    "EnvironmentApplication",
    "EnvironmentConflict",
    "EnvironmentCopy",
    "EnvironmentDataset",
    "FailoverRefused",
    "FailoverResult",
    "FlockerAPIError",
    "HEALTH_STATUSES",
    "MAXIMUM_INSTANCES",
    "HealthCheck",
    "IFlockerAPIV1Client",
    "Lease",
    "LeaseAlreadyHeld",
    "Link",
    "MountedDataset",
    "ImagePullState",
    "Node",
    "NodeUnavailable",
    "NothingToRollBack",
    "Origin",
    "ReplicaState",
    "Replication",
    "ResponseError",
    "RestartPolicy",
    "Rollback",
    "Snapshot",
    "SnapshotConflict",
    "Transfer",
    "Transfers",
    "UnknownContainer",
    "UnknownDataset",
    "UnknownEnvironment",
    "UnknownEra",
    "UnknownLease",
    "UnknownSnapshot",
]


class _Unchanged:
    def __repr__(self) -> str:
        return "UNCHANGED"


#: Passed to `IFlockerAPIV1Client.update_dataset` or
#: `IFlockerAPIV1Client.update_container` to leave a field as it is.
UNCHANGED: Any = _Unchanged()


# --------------------------------------------------------------------------
# Values


class Replication(PClass):
    """
    How a dataset's standing replicas are kept.

    :ivar interval_seconds: seconds between increments (0: continuously).
    :ivar failover: ``"manual"`` or ``"automatic"``.
    """

    interval_seconds = field(type=int, initial=0)
    failover = field(type=str, initial="manual")


class Origin(PClass):
    """The dataset and snapshot a clone was made from."""

    dataset_id = field(type=UUID, mandatory=True)
    snapshot = field(type=str, mandatory=True)


class Dataset(PClass):
    """
    A dataset in the configuration.

    :ivar dataset_id: its UUID.
    :ivar primary: the UUID of the node where it should be.
    :ivar maximum_size: its quota in bytes, or ``None``.
    :ivar deleted: it was deleted (and will leave the configuration once no
        node has it).
    :ivar metadata: string labels.
    :ivar replicas: the nodes keeping standing replicas of it, sorted.
    :ivar replication: how they are kept.
    :ivar epoch: how many failovers it went through.
    :ivar failover_snapshot: the snapshot its primary started from at the
        last failover (copies of older epochs rejoin from it), or ``None``.
    :ivar origin: for a clone, what it was made from; else ``None``.
    """

    dataset_id = field(type=UUID, mandatory=True)
    primary = field(type=UUID, mandatory=True)
    maximum_size = field(type=(int, type(None)), initial=None)
    deleted = field(type=bool, initial=False)
    metadata = pmap_field(str, str)
    replicas = pvector_field(UUID)
    replication = field(type=Replication, initial=Replication())
    epoch = field(type=int, initial=0)
    failover_snapshot = field(type=(str, type(None)), initial=None)
    origin = field(type=(Origin, type(None)), initial=None)


class DatasetsConfiguration(PClass):
    """
    The configured datasets and the configuration tag they were read at.

    :ivar tag: pass it as ``configuration_tag`` to write only if nothing
        changed since.
    :ivar datasets: dataset id → `Dataset`.
    """

    tag = field(type=str, mandatory=True)
    datasets = pmap_field(UUID, Dataset)


class ReplicaState(PClass):
    """
    A standing replica a node reports holding.

    :ivar last_snapshot: the newest snapshot it holds, or ``None``.
    :ivar replicated_at: when that snapshot was taken (POSIX time), or ``None``.
    :ivar lag_seconds: the age of its newest data (what would be lost were
        the primary lost now), or ``None`` while it has no snapshot.
    :ivar set_aside: the names of the snapshots it set aside when it
        rejoined after a failover superseded it (what it held then), oldest
        first.
    """

    node_uuid = field(type=UUID, mandatory=True)
    last_snapshot = field(type=(str, type(None)), initial=None)
    replicated_at = field(type=(float, type(None)), initial=None)
    lag_seconds = field(type=(float, type(None)), initial=None)
    set_aside = pvector_field(str)


class DivergedCopy(PClass):
    """
    A former primary's copy of an older epoch, kept after a failover.

    :ivar set_aside: the names of its set-aside snapshots, oldest first.
    """

    node_uuid = field(type=UUID, mandatory=True)
    epoch = field(type=(int, type(None)), initial=None)
    last_snapshot = field(type=(str, type(None)), initial=None)
    set_aside = pvector_field(str)


class DatasetState(PClass):
    """
    A dataset a node reports having mounted.

    :ivar path: where it is mounted, or ``None``.
    :ivar replicas: the standing replicas nodes report, by node.
    :ivar diverged: the diverged copies nodes report, by node.
    :ivar fenced: the primary's node fenced itself (it lost the control
        service): its copy is not exposed (``path`` is then ``None``).
    :ivar rolled_back: the request id of the last rollback the node carried
        out (see `IFlockerAPIV1Client.rollback_dataset`), or ``None``.
    """

    dataset_id = field(type=UUID, mandatory=True)
    primary = field(type=UUID, mandatory=True)
    maximum_size = field(type=(int, type(None)), initial=None)
    path = field(type=(FilePath, type(None)), initial=None)
    replicas = pvector_field(ReplicaState)
    diverged = pvector_field(DivergedCopy)
    fenced = field(type=bool, initial=False)
    rolled_back = field(type=(UUID, type(None)), initial=None)


class FailoverResult(PClass):
    """
    A failover done: a standing replica became the primary.

    :ivar dataset_id: the dataset asked for.
    :ivar primary: its new primary.
    :ivar epoch: its new epoch.
    :ivar datasets: every dataset failed over (those of its application).
    :ivar snapshot: the newest snapshot the new primary had: its data
        starts there.
    :ivar snapshot_created: when that snapshot was taken, or ``None``.
    :ivar data_loss_window_seconds: how old that snapshot was, or ``None``.
    """

    dataset_id = field(type=UUID, mandatory=True)
    primary = field(type=UUID, mandatory=True)
    epoch = field(type=int, mandatory=True)
    datasets = pvector_field(UUID)
    snapshot = field(type=str, mandatory=True)
    snapshot_created = field(type=(float, type(None)), initial=None)
    data_loss_window_seconds = field(type=(float, type(None)), initial=None)


class ImagePullState(PClass):
    """
    An application's image that a node's container agent is pulling, or
    failed to pull (and tries again later).

    :ivar application: The application's name.
    :ivar image: The image reference.
    :ivar pulling: Whether a pull runs now.
    :ivar reason: The last failed pull's message, or ``None``.
    :ivar attempts: How many pulls failed in a row.
    """

    application = field(type=str, mandatory=True)
    image = field(type=str, mandatory=True)
    pulling = field(type=bool, mandatory=True)
    reason = field(type=(str, type(None)), initial=None)
    attempts = field(type=int, initial=0)


class Node(PClass):
    """
    A node that reported its state; ``host`` is its address if known;
    ``fenced`` the datasets whose copies it reports fenced (it lost the
    control service and stopped exposing them), sorted.

    :ivar last_converged: When its dataset agent last ended a pass in which
        nothing failed (POSIX seconds), or ``None`` if unknown.
    :ivar failing_since: When the earliest of the changes failing in its
        dataset agent's latest pass began failing, or ``None``: nothing is
        failing (or it is unknown).  The node is not converging since then.
    :ivar failing: How many changes failed in that pass.
    :ivar pool_full: Whether its pool is reported full.
    :ivar image_pulls: Application name → `ImagePullState`, for the
        applications configured on it whose image is being pulled there or
        failed to be.
    """

    uuid = field(type=UUID, mandatory=True)
    host = field(type=(str, type(None)), initial=None)
    fenced = pvector_field(UUID)
    last_converged = field(type=(float, type(None)), initial=None)
    failing_since = field(type=(float, type(None)), initial=None)
    failing = field(type=int, initial=0)
    pool_full = field(type=bool, initial=False)
    image_pulls = pmap_field(str, ImagePullState)


class Lease(PClass):
    """
    A node's lease on a dataset (the dataset stays on that node).

    :ivar expires: seconds until it lapses, or ``None`` for never.
    """

    dataset_id = field(type=UUID, mandatory=True)
    node_uuid = field(type=UUID, mandatory=True)
    expires = field(type=(float, type(None)), initial=None)


class ContainerPort(PClass):
    """A port published by a container: node's ``external`` → container's ``internal``."""

    internal = field(type=int, mandatory=True)
    external = field(type=int, mandatory=True)


class MountedDataset(PClass):
    """A dataset mounted into a container at ``mountpoint``."""

    dataset_id = field(type=UUID, mandatory=True)
    mountpoint = field(type=str, mandatory=True)


class Link(PClass):
    """Inside the container, ``alias``:``local_port`` reaches ``remote_port``."""

    alias = field(type=str, mandatory=True)
    local_port = field(type=int, mandatory=True)
    remote_port = field(type=int, mandatory=True)


class RestartPolicy(PClass):
    """``never``, ``always`` or ``on-failure`` (with an optional retry limit)."""

    name = field(
        type=str,
        initial="never",
        invariant=lambda n: (
            n in ("never", "always", "on-failure"),
            f"unknown restart policy {n!r}",
        ),
    )
    maximum_retry_count = field(type=(int, type(None)), initial=None)


class HealthCheck(PClass):
    """
    How the node running a container tells whether it is ready: an HTTP
    ``GET path`` answered 2xx or 3xx (``kind="http"``) or an accepted TCP
    connection (``kind="tcp"``) on ``port``, one of the container's
    published *internal* ports; every ``interval`` seconds, each within
    ``timeout``; ``retries`` failures in a row (after ``start_period``)
    make it unhealthy.

    :ivar path: the HTTP path (``http`` only), starting with ``/``.
    """

    kind = field(
        type=str,
        mandatory=True,
        invariant=lambda k: (k in ("http", "tcp"), f"unknown health check kind {k!r}"),
    )
    port = field(type=int, mandatory=True)
    path = field(type=(str, type(None)), initial=None)
    interval = field(type=float, initial=5.0, factory=float)
    timeout = field(type=float, initial=2.0, factory=float)
    retries = field(type=int, initial=3)
    start_period = field(type=float, initial=30.0, factory=float)


#: The most instances of one container (`Container.replicas`).
MAXIMUM_INSTANCES = 64

#: What a node reports of a container's health (`ContainerState.health`).
HEALTH_STATUSES = ("starting", "healthy", "unhealthy")


class Container(PClass):
    """
    A container in the configuration, on node ``node_uuid``.

    What a user sets: everything up to ``health`` (its `HealthCheck`, or
    ``None``: then a TCP connect on its lowest published port, or nothing
    when it publishes none), and ``replicas``: how many instances run, the
    first on ``node_uuid`` and the others on the nodes after it in the
    order of their UUIDs, one per node, then doubled up round the nodes
    again when there are more instances than nodes (`instance_placement`;
    1 to `MAXIMUM_INSTANCES`; more than 1 only without volumes).  What the control service keeps, read only
    (ignored when creating): ``revision`` counts the updates of its
    specification (0 when created); ``updating``: the last update waits
    for the new instance to be healthy, and is rolled back by itself if it
    turns unhealthy; ``update_failed``: why the last update was rolled back
    by itself, or ``None``; ``previous_image``: the image of the
    specification a rollback would return to, or ``None`` when there is
    nothing to roll back to.
    """

    node_uuid = field(type=UUID, mandatory=True)
    name = field(type=str, mandatory=True)
    image = field(type=str, mandatory=True)
    ports = pvector_field(ContainerPort)
    environment = pmap_field(str, str)
    restart_policy = field(type=RestartPolicy, initial=RestartPolicy())
    volumes = pvector_field(MountedDataset)
    links = pvector_field(Link)
    cpu_shares = field(type=(int, type(None)), initial=None)
    memory_limit = field(type=(int, type(None)), initial=None)
    swappiness = field(type=(int, type(None)), initial=None)
    command_line = field(type=(tuple, type(None)), initial=None)
    health = field(type=(HealthCheck, type(None)), initial=None)
    revision = field(type=int, initial=0)
    updating = field(type=bool, initial=False)
    update_failed = field(type=(str, type(None)), initial=None)
    previous_image = field(type=(str, type(None)), initial=None)
    replicas = field(type=int, initial=1)

    def specification(self) -> Container:
        """The container without what the control service keeps (its revision and history)."""
        return self.set(
            revision=0, updating=False, update_failed=None, previous_image=None
        )


class ContainerState(PClass):
    """
    A container a node reports, and whether it is running: one for each
    instance, on the node running it (its ``container.node_uuid``), so a
    container running several instances is reported several times, also
    several times by one node running several (once while that node
    reports no health for them); the reported ``container.replicas`` is
    always 1 (nodes do not say).

    :ivar health: ``"starting"``, ``"healthy"`` or ``"unhealthy"`` as the
        node last probed it, or ``None`` if the node reported no health.
    :ivar health_reason: what the last failed probe saw (e.g. ``HTTP
        503``), or ``None``.
    """

    container = field(type=Container, mandatory=True)
    running = field(type=bool, mandatory=True)
    health = field(type=(str, type(None)), initial=None)
    health_reason = field(type=(str, type(None)), initial=None)


class Snapshot(PClass):
    """
    A snapshot of a dataset.

    :ivar created: when it was taken (POSIX seconds), or ``None`` if unknown.
    :ivar set_aside: it is a snapshot another node's copy set aside when
        it rejoined after a failover superseded it (what it held then);
        ``node_uuid`` is then that node.  Every other snapshot listed is on
        the dataset's primary, and its ``node_uuid`` is ``None``.
    """

    name = field(type=str, mandatory=True)
    created = field(type=(float, type(None)), initial=None)
    node_uuid = field(type=(UUID, type(None)), initial=None)
    set_aside = field(type=bool, initial=False)


class Rollback(PClass):
    """
    A rollback accepted: done once the dataset's primary reports
    ``request_id`` as the dataset's `DatasetState.rolled_back`.
    """

    dataset_id = field(type=UUID, mandatory=True)
    snapshot = field(type=str, mandatory=True)
    request_id = field(type=UUID, mandatory=True)


class Transfer(PClass):
    """
    A dataset stream a node is receiving now (a move or an increment).

    :ivar node_uuid: the receiving node.
    :ivar base: the snapshot an incremental stream starts from, or ``None``
        for a full one.
    :ivar bytes: stream bytes received so far.
    :ivar size: the stream's size, if the sender knew it.
    """

    dataset_id = field(type=UUID, mandatory=True)
    node_uuid = field(type=UUID, mandatory=True)
    snapshot = field(type=str, mandatory=True)
    base = field(type=(str, type(None)), initial=None)
    bytes = field(type=int, mandatory=True)
    size = field(type=(int, type(None)), initial=None)


class Transfers(PClass):
    """
    The transfers in progress, as the nodes' dataset agents answered.

    :ivar transfers: sorted by dataset, then node.
    :ivar unanswered: the nodes whose agents did not answer in time (their
        transfers, if any, are missing), sorted.
    """

    transfers = pvector_field(Transfer)
    unanswered = pvector_field(UUID)


class EnvironmentApplication(PClass):
    """
    One application of an environment copy: ``name`` is the copy's
    application, ``origin`` the application it copies.

    :ivar node_uuid: its node, or ``None`` if it is no longer in the
        configuration (``ports`` is then empty).
    :ivar ports: its published ports, by external port.
    """

    name = field(type=str, mandatory=True)
    origin = field(type=str, mandatory=True)
    node_uuid = field(type=(UUID, type(None)), initial=None)
    ports = pvector_field(ContainerPort)


class EnvironmentDataset(PClass):
    """One dataset of an environment copy: a clone of ``origin``."""

    dataset_id = field(type=UUID, mandatory=True)
    origin = field(type=Origin, mandatory=True)


class EnvironmentCopy(PClass):
    """One copy of an environment: its applications (by origin) and clones."""

    name = field(type=str, mandatory=True)
    applications = pvector_field(EnvironmentApplication)
    datasets = pvector_field(EnvironmentDataset)


class Environment(PClass):
    """
    An environment: copies of a group of applications, each on clones of
    the group's datasets taken from one snapshot.

    :ivar snapshot: the snapshot of every dataset of the group the copies
        are cloned from (one of Flocker's own names, ``flocker-env-…``).
    :ivar applications: the group's applications, as given.
    :ivar copies: sorted by name.
    """

    name = field(type=str, mandatory=True)
    snapshot = field(type=str, mandatory=True)
    applications = pvector_field(str)
    copies = pvector_field(EnvironmentCopy)


# --------------------------------------------------------------------------
# Errors


class FlockerAPIError(Exception):
    """
    The REST API refused a request.

    :ivar code: the HTTP status code.
    :ivar description: the API's explanation.
    """

    def __init__(self, code: int, description: str) -> None:
        """Remember the status and the description."""
        super().__init__(code, description)
        self.code = code
        self.description = description

    def __str__(self) -> str:
        """Say what the API said."""
        return f"{self.code}: {self.description}"


class ResponseError(FlockerAPIError):
    """An answer no more specific exception describes (e.g. a 500)."""


class BadRequest(FlockerAPIError):
    """400: the request is malformed, or names a node not in the cluster."""


class ConfigurationChanged(FlockerAPIError):
    """412: the configuration changed since the ``configuration_tag`` given."""


class UnknownDataset(FlockerAPIError):
    """404: no such dataset."""


class DatasetAlreadyExists(FlockerAPIError):
    """409 on creation: the dataset id is taken."""


class DatasetConflict(FlockerAPIError):
    """409: the dataset is deleted, used by a container, or leased elsewhere."""


class FailoverRefused(FlockerAPIError):
    """
    409 on failover: the node holds no usable standing replica (of this
    dataset or of another of its application), or the primary was heard
    from too recently and ``force`` was not given, or the dataset is deleted.
    """


class UnknownEra(FlockerAPIError):
    """404: no node reported that era."""


class LeaseAlreadyHeld(FlockerAPIError):
    """409 on acquiring: another node holds the lease (or the dataset is deleted)."""


class UnknownLease(FlockerAPIError):
    """404 on releasing: there is no lease on the dataset."""


class ContainerAlreadyExists(FlockerAPIError):
    """409 on creation: the container name is taken."""


class UnknownContainer(FlockerAPIError):
    """404: no such container."""


class ContainerConflict(FlockerAPIError):
    """409: a port is taken, or a volume's dataset is elsewhere, deleted or in use."""


class NothingToRollBack(ContainerConflict):
    """409 on a container rollback: it has no previous specification."""


class UnknownSnapshot(FlockerAPIError):
    """404: the dataset has no snapshot of that name."""


class SnapshotConflict(FlockerAPIError):
    """
    409 on a snapshot, rollback or clone: the name is taken, clones are
    made from the snapshot, the dataset is deleted or not exposed on its
    primary node yet, a rollback would discard a later snapshot that a clone
    or an environment is made from, or a clone's id is taken.
    """


class NodeUnavailable(FlockerAPIError):
    """
    503: the dataset agent of the node concerned is not connected to the
    control service, did not answer in time, or failed.
    """


class UnknownEnvironment(FlockerAPIError):
    """404: no such environment, or no such copy of it."""


class EnvironmentConflict(FlockerAPIError):
    """
    409 on an environment: its name or a copy's application name is taken,
    a port asked for is busy on the copy's node, a dataset of the group is
    deleted or not exposed, or a clone to delete is leased.
    """


# --------------------------------------------------------------------------


class IFlockerAPIV1Client(Interface):
    """
    The Flocker REST API v1.

    Writes change the *configuration*: they succeed once the change is
    durable, before the cluster converges.  Writes taking
    ``configuration_tag`` fail with `ConfigurationChanged` (changing
    nothing) unless the configuration still has that tag.  A node "in the
    cluster" is one that reported its state or holds configuration; others
    are refused with `BadRequest`.
    """

    def version() -> Deferred[str]:
        """The control service's Flocker version."""

    def list_datasets_configuration() -> Deferred[DatasetsConfiguration]:
        """The configured datasets (deleted ones until no node has them) and the tag."""

    def create_dataset(
        primary: UUID,
        maximum_size: int | None = None,
        dataset_id: UUID | None = None,
        metadata: Mapping[str, str] | None = None,
        configuration_tag: str | None = None,
        replicas: Sequence[UUID] | None = None,
        replication: Replication | Mapping[str, Any] | None = None,
    ) -> Deferred[Dataset]:
        """
        Add a dataset whose primary is ``primary``.

        :param dataset_id: its UUID; a new one is chosen if ``None``.
        :param replicas: nodes to keep standing replicas on (at most 4, not
            the primary, each once).
        :param replication: the replication settings: a `Replication`, or a
            mapping naming only the keys to set.
        :return: the new `Dataset`.  Fails with `DatasetAlreadyExists` if the id
            is taken (even by a deleted dataset), `BadRequest` for an unknown
            node, a size under 1 MiB or bad replicas or replication.
        """

    def move_dataset(
        primary: UUID, dataset_id: UUID, configuration_tag: str | None = None
    ) -> Deferred[Dataset]:
        """
        Make ``primary`` the dataset's primary node (moving to it is a no-op).

        Fails with `UnknownDataset`, `BadRequest` (unknown node) or
        `DatasetConflict` (deleted, mounted by a container, or leased).
        """

    def update_dataset(
        dataset_id: UUID,
        maximum_size: Any = UNCHANGED,
        metadata: Any = UNCHANGED,
        configuration_tag: str | None = None,
        replicas: Any = UNCHANGED,
        replication: Any = UNCHANGED,
    ) -> Deferred[Dataset]:
        """
        Replace a dataset's maximum size (``None``: unlimited), metadata,
        standing replicas (a sequence of node UUIDs; left-out nodes lose
        their copy) and/or replication settings (a `Replication`, or a
        mapping of only the keys to change).

        Fails with `UnknownDataset`, `DatasetConflict` (deleted) or
        `BadRequest` (bad replicas or replication).
        """

    def failover_dataset(
        dataset_id: UUID, node_uuid: UUID, force: bool = False
    ) -> Deferred[FailoverResult]:
        """
        Promote the standing replica on ``node_uuid`` to primary, with every
        dataset of the application using it (and the application).

        Fails with `UnknownDataset`, `BadRequest` (malformed), or
        `FailoverRefused` (no usable replica there, or, without ``force``,
        the primary's node was heard from too recently).
        """

    def delete_dataset(
        dataset_id: UUID, configuration_tag: str | None = None
    ) -> Deferred[Dataset]:
        """
        Mark a dataset deleted (idempotent); returns it with ``deleted`` set.

        Fails with `UnknownDataset`, or `DatasetConflict` if a container
        mounts it or a lease holds it.
        """

    def list_datasets_state() -> Deferred[list[DatasetState]]:
        """
        The datasets nodes report having mounted (or fenced: not exposed
        because the node lost the control service), with their replicas'
        lag, diverged copies and set-aside snapshots.
        """

    def list_nodes() -> Deferred[list[Node]]:
        """The nodes that reported their state, ordered by UUID."""

    def node_by_era(era: UUID) -> Deferred[UUID]:
        """The UUID of the node whose current era is ``era``; `UnknownEra` if none."""

    def list_leases() -> Deferred[list[Lease]]:
        """The leases that have not lapsed."""

    def acquire_lease(
        dataset_id: UUID, node_uuid: UUID, expires: float | None
    ) -> Deferred[Lease]:
        """
        Acquire or renew a node's lease on a dataset for ``expires`` seconds.

        Fails with `LeaseAlreadyHeld` if another node holds an unlapsed
        lease on it, `UnknownDataset`, or `BadRequest` (unknown node).
        """

    def release_lease(dataset_id: UUID) -> Deferred[Lease]:
        """Release the lease on a dataset; `UnknownLease` if there is none."""

    def list_containers_configuration() -> Deferred[list[Container]]:
        """The configured containers, ordered by name."""

    def create_container(container: Container) -> Deferred[Container]:
        """
        Configure a container; its volumes' datasets must have its node as primary.

        Fails with `ContainerAlreadyExists`, `UnknownDataset`, `BadRequest`
        (unknown node, invalid field, ``replicas`` out of range or above 1
        with volumes) or `ContainerConflict`.
        """

    def move_container(name: str, node_uuid: UUID) -> Deferred[Container]:
        """
        Move a container, and the datasets it mounts, to another node.

        Fails with `UnknownContainer`, `BadRequest` or `ContainerConflict`.
        """

    def update_container(
        name: str,
        node_uuid: UUID = UNCHANGED,
        image: str = UNCHANGED,
        environment: Mapping[str, str] = UNCHANGED,
        command_line: Sequence[str] | None = UNCHANGED,
        ports: Sequence[ContainerPort] = UNCHANGED,
        links: Sequence[Link] = UNCHANGED,
        cpu_shares: int | None = UNCHANGED,
        memory_limit: int | None = UNCHANGED,
        swappiness: int | None = UNCHANGED,
        restart_policy: RestartPolicy = UNCHANGED,
        health: HealthCheck | None = UNCHANGED,
        replicas: int = UNCHANGED,
        configuration_tag: str | None = None,
    ) -> Deferred[Container]:
        """
        Change a container's specification (its volumes excepted; how many
        instances run, ``replicas``, included), and/or move it
        (``node_uuid``) with the datasets it mounts.

        Each value given replaces the whole field (``environment`` is the
        whole environment); ``None`` removes ``command_line``,
        ``cpu_shares``, ``memory_limit``, ``swappiness`` or ``health``;
        fields left `UNCHANGED` keep their value.  A changed specification
        is the container's next ``revision``: the previous one is kept for
        `rollback_container`, and the container is ``updating`` until its
        new instance is healthy (if it turns unhealthy instead, the control
        service rolls it back by itself and says why in
        ``update_failed``).  The same specification changes nothing.

        Fails with `UnknownContainer`, `BadRequest` (nothing to change, an
        unknown node, an invalid field, ``replicas`` out of range or above
        1 for a container with volumes, a request whose health check probes
        a port its own new ``ports`` leave out) or `ContainerConflict` (a
        port is taken on its node; a dataset cannot move; a new health
        check on a port the container does not publish, or new ports
        leaving out the one its health check probes).
        """

    def rollback_container(
        name: str, configuration_tag: str | None = None
    ) -> Deferred[Container]:
        """
        Return a container to the specification its last update replaced,
        as its next revision (a rollback is not itself rolled back: there
        is then nothing to roll back to until the next update).

        Fails with `UnknownContainer` or `NothingToRollBack` (it was never
        updated, or was rolled back since).
        """

    def delete_container(name: str) -> Deferred[Container]:
        """Remove a container (its datasets stay); `UnknownContainer` if none."""

    def list_containers_state() -> Deferred[list[ContainerState]]:
        """
        The containers nodes report, one `ContainerState` per instance
        whose health its node reports (several for a node running several
        instances), or one for a node reporting none of them.
        """

    # -- snapshots, rollback, clones ----------------------------------------

    def list_snapshots(dataset_id: UUID) -> Deferred[list[Snapshot]]:
        """
        The dataset's snapshots as its primary node has them now, oldest
        first (Flocker's own, named ``flocker…``, left out), then those other
        nodes set aside after a failover (``set_aside``).

        Fails with `UnknownDataset`, `SnapshotConflict` (deleted, or not
        exposed on its primary yet) or `NodeUnavailable`.
        """

    def create_snapshot(dataset_id: UUID, name: str) -> Deferred[Snapshot]:
        """
        Take a snapshot of the dataset now, on its primary node.

        ``name`` is 1-64 letters, digits and ``_.:-`` starting with a letter
        or digit, not starting with ``flocker`` (in any case): else
        `BadRequest`.  Fails with `UnknownDataset`, `SnapshotConflict` (the
        name is taken; deleted or not exposed) or `NodeUnavailable`.
        """

    def delete_snapshot(dataset_id: UUID, name: str) -> Deferred[Snapshot]:
        """
        Destroy a snapshot; returns it.

        Fails with `BadRequest` (a bad name), `UnknownDataset`,
        `UnknownSnapshot`, `SnapshotConflict` (a configured clone is made
        from it; deleted or not exposed) or `NodeUnavailable`.
        """

    def rollback_dataset(
        dataset_id: UUID, snapshot: str, configuration_tag: str | None = None
    ) -> Deferred[Rollback]:
        """
        Ask for the dataset to be rolled back to ``snapshot`` (later ones
        are discarded; the application using it is stopped meanwhile).  The
        agents carry it out: it is done once `list_datasets_state` shows the
        returned ``request_id`` as the dataset's ``rolled_back``.

        Fails with `BadRequest` (a bad name), `UnknownDataset`,
        `UnknownSnapshot`, `SnapshotConflict` (a later snapshot is one a
        clone or an environment is made from; deleted or not exposed) or
        `NodeUnavailable`.
        """

    def clone_dataset(
        dataset_id: UUID,
        snapshot: str,
        new_dataset_id: UUID | None = None,
        metadata: Mapping[str, str] | None = None,
        configuration_tag: str | None = None,
    ) -> Deferred[Dataset]:
        """
        Add a new dataset cloned from one of the dataset's snapshots, on the
        same node and with the same maximum size; its ``origin`` says what it
        was made from.

        :param new_dataset_id: its UUID; a new one is chosen if ``None``.
        :return: the new `Dataset`.  Fails with `BadRequest` (a bad name),
            `UnknownDataset`, `UnknownSnapshot`, `SnapshotConflict` (the new
            id is taken; deleted or not exposed) or `NodeUnavailable`.
        """

    # -- transfers --------------------------------------------------------------

    def list_transfers() -> Deferred[Transfers]:
        """
        The dataset streams the nodes are receiving now, as their dataset
        agents answer within a bound (the nodes whose agents did not are
        named in `Transfers.unanswered`).
        """

    # -- environments -----------------------------------------------------------

    def list_environments() -> Deferred[list[Environment]]:
        """Every environment, ordered by name."""

    def get_environment(name: str) -> Deferred[Environment]:
        """One environment; `UnknownEnvironment` if there is none of that name."""

    def create_environment(
        name: str,
        applications: Sequence[str],
        copies: int | Sequence[str],
        ports: Mapping[str, Mapping[str, Mapping[int, int]]] | None = None,
        configuration_tag: str | None = None,
    ) -> Deferred[Environment]:
        """
        Snapshot every dataset of the ``applications`` (on their nodes), then
        add ``copies`` of the group: each copy's applications are named
        ``<application>-<name>-<copy>``, on the originals' nodes, mounting
        clones of the datasets, their external ports replaced by free ones
        (or those ``ports`` gives: copy → application → original external
        port → new one) and their links rewired within the copy.

        :param copies: how many (named ``"1"``, ``"2"``…), or their names.
        :return: the new `Environment`.  Fails with `BadRequest` (a bad name
            or copy name, no application, a port given for an unknown copy
            or application, or already published), `UnknownContainer` (an
            unknown application), `EnvironmentConflict` or `NodeUnavailable`;
            a refused request takes no snapshot.
        """

    def delete_environment(
        name: str, configuration_tag: str | None = None
    ) -> Deferred[Environment]:
        """
        Remove every copy of an environment (applications and clones), and
        the environment; returns it without its copies.

        Fails with `UnknownEnvironment` or `EnvironmentConflict` (a clone is
        leased).
        """

    def reset_environment_copy(
        name: str, copy: str, configuration_tag: str | None = None
    ) -> Deferred[EnvironmentCopy]:
        """
        Give a copy fresh clones of the environment's snapshot: its
        applications are pointed at them and the old clones are deleted.

        Fails with `UnknownEnvironment` (no such environment or copy) or
        `EnvironmentConflict`.
        """

    def delete_environment_copy(
        name: str, copy: str, configuration_tag: str | None = None
    ) -> Deferred[EnvironmentCopy]:
        """
        Remove one copy (its applications, then its clones); returns it as
        it was, its applications without node or ports.

        Fails with `UnknownEnvironment` (no such environment or copy) or
        `EnvironmentConflict`.
        """
