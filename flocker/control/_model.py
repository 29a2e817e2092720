"""The cluster's desired configuration and its observed state, as values.

Two families of immutable pyrsistent classes:

* **Configuration** — what the user asked for, written only by the control
  service and persisted before it is acknowledged: `Deployment` holds
  `Node` values (keyed by node UUID) and `Leases`.  A node holds
  `Application` values (keyed by name) and `Manifestation` values (keyed by dataset
  id).  A manifestation is one copy of a `Dataset` on a node: exactly one per
  dataset is the *primary* (the copy applications use, the one the REST API
  reports as ``primary``).  The others are *standing replicas* (``standing``:
  copies the user asked for, at most `MAXIMUM_REPLICAS`, kept up to date by
  the primary and promoted by `Deployment.failover_dataset`) or transient
  copies a move leaves on the old primary until it is over.  The `Dataset`
  value is the same in every manifestation of one dataset; its ``epoch``
  counts failovers.

* **State** (in `flocker.control._state`) — what agents last reported: `DeploymentState` holds one
  `NodeState` per node.  The dataset agent and the container agent report
  separately, so each half of a `NodeState` may be ``None`` ("unknown"), and
  `DeploymentState.update_node` keeps whichever halves a report leaves unknown.

Invariants live in the classes (a value that breaks one cannot be built):
ids are canonical UUID strings, sizes are positive, application names are
Docker-valid, external ports are unique per node, an application's volumes are
primary manifestations on its own node, each dataset has exactly one primary.
Changes are pure methods returning new values and raising a `ModelError`
subclass when the change makes no sense.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pyrsistent import (
    PClass,
    PMap,
    PVector,
    field,
    pmap_field,
    pset_field,
    pvector,
)

from ._checks import (
    INSTANCE_SEPARATOR,
    INSTANCE_SUFFIX,
    ApplicationAlreadyExists,
    DatasetAlreadyExists,
    DatasetDeleted,
    DatasetElsewhere,
    DatasetInUse,
    DatasetLeased,
    DuplicateReplicas,
    EnvironmentAlreadyExists,
    LeaseError,
    ModelError,
    NotAReplica,
    NothingToRollBack,
    PortBusy,
    PortsTaken,
    PrimaryAsReplica,
    ReplicatedNameTooLong,
    TooManyReplicas,
    UnknownApplication,
    UnknownDataset,
    UnknownEnvironment,
    application_name_invariant,
    is_uuid,
    is_valid_name,
    name_invariant,
    port_invariant,
    positive_or_none,
    snapshot_name_invariant,
    uuid_field,
)
from ._environments import Environment, EnvironmentCopy
from ._leases import Lease, Leases

__all__ = [
    "Environment",
    "EnvironmentAlreadyExists",
    "EnvironmentCopy",
    "Origin",
    "RollbackRequest",
    "UnknownEnvironment",
    "Application",
    "ApplicationAlreadyExists",
    "HEALTH_CHECK_KINDS",
    "NothingToRollBack",
    "HealthCheck",
    "default_health",
    "AttachedVolume",
    "Dataset",
    "DatasetAlreadyExists",
    "DatasetDeleted",
    "DatasetElsewhere",
    "DatasetInUse",
    "DatasetLeased",
    "Deployment",
    "DuplicateReplicas",
    "MAXIMUM_INSTANCES",
    "MAXIMUM_REPLICAS",
    "INSTANCE_SEPARATOR",
    "instance_base",
    "instance_name",
    "instance_nodes",
    "instance_placement",
    "NotAReplica",
    "PortBusy",
    "PortsTaken",
    "PrimaryAsReplica",
    "ReplicatedNameTooLong",
    "Replication",
    "TooManyReplicas",
    "KEEP",
    "Lease",
    "LeaseError",
    "Leases",
    "Link",
    "Manifestation",
    "ModelError",
    "Node",
    "Port",
    "RestartAlways",
    "RestartNever",
    "RestartOnFailure",
    "UnknownApplication",
    "UnknownDataset",
    "is_uuid",
    "is_valid_name",
]


# --------------------------------------------------------------------------
# Configuration


class Origin(PClass):
    """
    Where a cloned dataset comes from: a snapshot of another dataset.

    :ivar dataset_id: the dataset cloned.
    :ivar snapshot: the name of its snapshot the clone starts from.
    """

    dataset_id = uuid_field()
    snapshot = field(type=str, mandatory=True, invariant=snapshot_name_invariant)


class RollbackRequest(PClass):
    """
    A request to roll a dataset back to one of its snapshots.

    The primary's dataset agent rolls back once nothing uses the dataset
    (the container agent stops its application meanwhile) and then reports
    ``request_id`` as done (``DatasetState.rolled_back``); a new request
    (new id) asks again.

    :ivar snapshot: the snapshot to return to; later ones are discarded.
    :ivar request_id: a UUID naming this request.
    """

    snapshot = field(type=str, mandatory=True, invariant=snapshot_name_invariant)
    request_id = uuid_field()


#: The most standing replicas a dataset may have.
MAXIMUM_REPLICAS = 4

#: The most instances of one (stateless) application.
MAXIMUM_INSTANCES = 64

#: The longest name of an application running several instances: room is
#: left for ``..64``, the suffix of its last possible extra instance.  A
#: new or updated application is refused a longer one
#: (`ReplicatedNameTooLong`); one stored by an earlier release, which
#: allowed up to 128 characters, keeps it and runs at most one instance
#: per node (`instance_placement`).
_LONGEST_REPLICATED_NAME = 128 - len(f"{INSTANCE_SEPARATOR}{MAXIMUM_INSTANCES}")

#: How a dataset fails over: only when asked, or by the control service.
FAILOVER_MODES = ("manual", "automatic")


def _non_negative_int(what: str):  # type: ignore[no-untyped-def]
    def check(value: object) -> tuple[bool, str]:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        return (ok, f"{what} must be a non-negative integer: {value!r}")

    return check


class Replication(PClass):
    """
    How a dataset's standing replicas are kept.

    :ivar interval_seconds: seconds between the primary's increments to its
        replicas; 0 sends them continuously.
    :ivar failover: ``"manual"`` (only a user's failover promotes a
        replica) or ``"automatic"`` (the control service may).
    """

    interval_seconds = field(
        type=int, initial=0, invariant=_non_negative_int("interval_seconds")
    )
    failover = field(
        type=str,
        initial="manual",
        invariant=lambda v: (
            v in FAILOVER_MODES,
            f"failover must be one of {', '.join(FAILOVER_MODES)}: {v!r}",
        ),
    )


class Dataset(PClass):
    """
    A dataset: a named filesystem whose data Flocker keeps and moves.

    :ivar dataset_id: canonical UUID string.
    :ivar metadata: free-form string labels (``name`` is conventional).
    :ivar maximum_size: quota in bytes, or ``None`` for no limit.
    :ivar deleted: the user deleted it; agents destroy their copies.
    :ivar origin: for a clone, the snapshot it is created from (on the
        node that holds the origin dataset), else ``None``.
    :ivar rollback: the latest rollback asked for, or ``None``.
    :ivar replication: how its standing replicas are kept.
    :ivar epoch: how many times a replica was promoted to primary
        (failover); an ordinary move leaves it as it is.  Agents expose a
        copy only for the dataset's current epoch.
    :ivar failover_snapshot: the snapshot the current primary started from
        at the last failover (``None`` if there was none): every copy of an
        older epoch holds it too, so a superseded primary rejoins as a
        replica by rolling back to it instead of being sent the whole
        dataset again.  The primary keeps it while such copies remain.
    """

    dataset_id = uuid_field()
    metadata = pmap_field(str, str)
    maximum_size = field(
        type=(int, type(None)),
        initial=None,
        invariant=positive_or_none("maximum_size"),
    )
    deleted = field(type=bool, initial=False)
    origin = field(type=(Origin, type(None)), initial=None)
    rollback = field(type=(RollbackRequest, type(None)), initial=None)
    replication = field(type=Replication, initial=Replication())
    epoch = field(type=int, initial=0, invariant=_non_negative_int("epoch"))
    failover_snapshot = field(type=(str, type(None)), initial=None)


class Manifestation(PClass):
    """
    One copy of a dataset on one node.

    Three kinds: the *primary* (the copy applications use); a *standing
    replica* (``standing``: a non-primary copy the user asked for, kept up
    to date by the primary); and a transient copy (neither), which a move
    leaves on the old primary until the move is over.

    :ivar dataset: the dataset (the same value on every node holding it).
    :ivar primary: this is the copy applications use.
    :ivar standing: this non-primary copy is a standing replica.
    """

    dataset = field(type=Dataset, mandatory=True)
    primary = field(type=bool, initial=True)
    standing = field(type=bool, initial=False)

    def __invariant__(self) -> tuple[bool, str]:
        """A primary is never a standing replica."""
        return (
            not (self.primary and self.standing),
            "a primary manifestation cannot be a standing replica",
        )

    @property
    def dataset_id(self) -> str:
        """The id of the dataset this is a copy of."""
        dataset_id: str = self.dataset.dataset_id
        return dataset_id


class Port(PClass):
    """A container port published on the node: ``external_port`` → ``internal_port``."""

    internal_port = field(type=int, mandatory=True, invariant=port_invariant)
    external_port = field(type=int, mandatory=True, invariant=port_invariant)


class Link(PClass):
    """
    A link to another application, wherever it runs.

    Inside the container, ``alias`` on ``local_port`` reaches ``remote_port``
    on the node running the linked application.
    """

    alias = field(type=str, mandatory=True, invariant=name_invariant)
    local_port = field(type=int, mandatory=True, invariant=port_invariant)
    remote_port = field(type=int, mandatory=True, invariant=port_invariant)


class AttachedVolume(PClass):
    """A dataset mounted into a container at ``mountpoint`` (an absolute path)."""

    dataset_id = uuid_field()
    mountpoint = field(
        type=str,
        mandatory=True,
        invariant=lambda p: (
            p.startswith("/") and "\0" not in p,
            f"mountpoint must be an absolute path: {p!r}",
        ),
    )


class RestartNever(PClass):
    """Never restart the container when it exits."""


class RestartAlways(PClass):
    """Always restart the container when it exits."""


class RestartOnFailure(PClass):
    """Restart when the container exits non-zero, at most ``maximum_retry_count`` times."""

    maximum_retry_count = field(
        type=(int, type(None)),
        initial=None,
        invariant=positive_or_none("maximum_retry_count"),
    )


_RESTART_POLICIES = (RestartNever, RestartAlways, RestartOnFailure)


#: The kinds of health check: an HTTP GET answered 2xx or 3xx, or a TCP connect.
HEALTH_CHECK_KINDS = ("http", "tcp")


def _positive_seconds(what: str, zero: bool = False):  # type: ignore[no-untyped-def]
    def check(value: float) -> tuple[bool, str]:
        ok = math.isfinite(value) and (value >= 0 if zero else value > 0) and value <= 86400
        bound = "at least 0" if zero else "more than 0"
        return (ok, f"{what} must be {bound} and at most 86400 seconds: {value!r}")

    return check


class HealthCheck(PClass):
    """
    How the container agent tells whether an application's instance is ready.

    Probed on the node running the instance, every ``interval`` seconds: an
    HTTP ``GET path`` answered with a 2xx or 3xx status (``kind="http"``), or
    a TCP connection accepted (``kind="tcp"``), on one of the application's
    internal ports, within ``timeout`` seconds.  An instance is *starting*
    until its first probe succeeds; failures in its first ``start_period``
    seconds do not count; ``retries`` failures in a row make it *unhealthy*,
    and a success makes it *healthy* again.

    :ivar kind: ``"http"`` or ``"tcp"``.
    :ivar port: the internal port probed (one the application publishes).
    :ivar path: the HTTP path (``http`` only), starting with ``/``.
    """

    kind = field(
        type=str,
        mandatory=True,
        invariant=lambda k: (k in HEALTH_CHECK_KINDS, f"health check kind must be http or tcp: {k!r}"),
    )
    port = field(type=int, mandatory=True, invariant=port_invariant)
    path = field(
        type=(str, type(None)),
        initial=None,
        invariant=lambda p: (
            p is None
            or (p.startswith("/") and len(p) <= 2048 and not any(c.isspace() or ord(c) < 32 for c in p)),
            f"health check path must start with / and hold no white space: {p!r}",
        ),
    )
    interval = field(type=float, initial=5.0, factory=float, invariant=_positive_seconds("interval"))
    timeout = field(type=float, initial=2.0, factory=float, invariant=_positive_seconds("timeout"))
    retries = field(
        type=int,
        initial=3,
        invariant=lambda r: (
            not isinstance(r, bool) and 1 <= r <= 1000,
            f"retries must be from 1 to 1000: {r!r}",
        ),
    )
    start_period = field(
        type=float, initial=30.0, factory=float, invariant=_positive_seconds("start_period", zero=True)
    )

    def __invariant__(self) -> tuple[bool, str]:
        """Only HTTP checks have a path, and they always do."""
        if self.kind == "http" and self.path is None:
            return (False, "an http health check needs a path")
        if self.kind == "tcp" and self.path is not None:
            return (False, "a tcp health check has no path")
        return (True, "")


#: The default readiness of an application without a health check that
#: publishes ports: its lowest published port accepts TCP connections.
def default_health(application: Application) -> HealthCheck | None:
    """
    The health check an application is probed with: its own, or a TCP
    connect on the internal port of its lowest external port, or ``None``
    when it publishes no port (then running is ready).
    """
    if application.health is not None:
        return application.health
    if not application.ports:
        return None
    first = min(application.ports, key=lambda p: p.external_port)
    return HealthCheck(kind="tcp", port=first.internal_port)


def _volumes_invariant(volumes: Iterable[AttachedVolume]) -> tuple[bool, str]:
    volumes = list(volumes)
    mountpoints = [v.mountpoint for v in volumes]
    ids = [v.dataset_id for v in volumes]
    return (
        len(set(mountpoints)) == len(mountpoints) and len(set(ids)) == len(ids),
        "an application mounts each dataset once, at distinct mountpoints",
    )


class Application(PClass):
    """
    A container that should run on a node.

    :ivar name: the container's name, unique in the cluster.
    :ivar image: the Docker image reference.
    :ivar ports: published ports.
    :ivar links: links to other applications.
    :ivar environment: environment variables.
    :ivar volumes: datasets mounted into the container (several allowed).
    :ivar restart_policy: `RestartNever`, `RestartAlways` or `RestartOnFailure`.
    :ivar cpu_shares: relative CPU weight, or ``None``.
    :ivar memory_limit: bytes, or ``None``.
    :ivar swappiness: how readily the kernel swaps the container's memory
        out (0–100, the cgroup's ``memory.swappiness``), or ``None`` for the
        engine's default.
    :ivar command_line: replaces the image's command, or ``None``.
    :ivar health: its `HealthCheck`, or ``None`` (then `default_health`).
    :ivar revision: counts the updates of its specification (0 when
        created); the container agent reports which revision an instance's
        health is of.
    :ivar previous: the specification the last update replaced (itself
        without a ``previous``), what a rollback returns to; or ``None``.
    :ivar updating: the last update waits for its instance to be healthy;
        if it turns unhealthy instead, the control service rolls it back.
    :ivar update_failed: why the last update was rolled back by itself,
        or ``None``.
    :ivar replicas: how many instances run (only without volumes): one on
        its node, the others one per other node, then doubled up round the
        nodes again when there are more replicas than nodes
        (`instance_placement`).  Adding or updating an application refuses
        more than one under a name longer than `_LONGEST_REPLICATED_NAME`
        (`ReplicatedNameTooLong`), but such an application stored by an
        earlier release is valid: it runs at most one instance per node.
    """

    name = field(type=str, mandatory=True, invariant=application_name_invariant)
    image = field(
        type=str,
        mandatory=True,
        invariant=lambda i: (
            bool(i) and not any(c.isspace() for c in i),
            f"not an image reference: {i!r}",
        ),
    )
    ports = pset_field(Port)
    links = pset_field(Link)
    environment = pmap_field(str, str)
    volumes = pset_field(AttachedVolume)
    restart_policy = field(type=_RESTART_POLICIES, initial=RestartNever())
    cpu_shares = field(
        type=(int, type(None)), initial=None, invariant=positive_or_none("cpu_shares")
    )
    memory_limit = field(
        type=(int, type(None)),
        initial=None,
        invariant=positive_or_none("memory_limit"),
    )
    swappiness = field(
        type=(int, type(None)),
        initial=None,
        invariant=lambda v: (
            v is None or (not isinstance(v, bool) and 0 <= v <= 100),
            f"swappiness must be an integer from 0 to 100 or null: {v!r}",
        ),
    )
    command_line = field(
        type=(PVector, type(None)),
        initial=None,
        factory=lambda v: None if v is None else pvector(v),
        invariant=lambda v: (
            v is None or all(isinstance(a, str) for a in v),
            "command_line must be a list of strings or null",
        ),
    )
    health = field(type=(HealthCheck, type(None)), initial=None)
    revision = field(
        type=int,
        initial=0,
        invariant=lambda r: (not isinstance(r, bool) and r >= 0, f"revision must be >= 0: {r!r}"),
    )
    # The initial value is made by a function: pyrsistent checks a plain
    # initial value against the field's types in no set order, and the
    # string naming this very class cannot be checked before it exists.
    previous = field(
        type=("flocker.control._model.Application", type(None)), initial=lambda: None
    )
    updating = field(type=bool, initial=False)
    update_failed = field(type=(str, type(None)), initial=None)
    replicas = field(
        type=int,
        initial=1,
        invariant=lambda n: (
            not isinstance(n, bool) and 1 <= n <= MAXIMUM_INSTANCES,
            f"replicas must be from 1 to {MAXIMUM_INSTANCES}: {n!r}",
        ),
    )

    def __invariant__(self) -> tuple[bool, str]:
        """
        Volumes are distinct; link aliases are distinct; the health check
        probes an internal port the application publishes; a previous
        specification has none of its own.
        """
        ok, message = _volumes_invariant(self.volumes)
        if not ok:
            return ok, message
        if self.replicas > 1 and self.volumes:
            return (
                False,
                "an application with volumes runs once: its data is on one node "
                "(replicas are for applications without volumes)",
            )
        if self.health is not None and self.health.port not in {p.internal_port for p in self.ports}:
            return (
                False,
                f"the health check's port {self.health.port} is not one of the "
                "application's published internal ports",
            )
        if self.previous is not None and (
            self.previous.previous is not None or self.previous.name != self.name
        ):
            return (False, "a previous specification is of the same application and has none itself")
        aliases = [link.alias for link in self.links]
        return (len(set(aliases)) == len(aliases), "link aliases must be distinct")

    def specification(self) -> Application:
        """The application without its update history: what an update keeps as ``previous``."""
        return self.set(previous=None, updating=False, update_failed=None)

    def updated(self, new: Application) -> Application:
        """
        ``new`` as this application's next revision: it remembers this
        specification as ``previous`` and waits to be healthy (``updating``).
        """
        return new.set(
            revision=self.revision + 1,
            previous=self.specification(),
            updating=True,
            update_failed=None,
        )

    def rolled_back(self, reason: str | None = None) -> Application:
        """
        The previous specification as this application's next revision.

        :param reason: why the update was rolled back by itself (``None``
            for a rollback the user asked for).
        :raise NothingToRollBack: there is no previous specification.
        """
        previous: Application | None = self.previous
        if previous is None:
            raise NothingToRollBack(self.name)
        return previous.set(
            revision=self.revision + 1, previous=None, updating=False, update_failed=reason
        )


class Node(PClass):
    """
    The configuration of one node.

    :ivar uuid: the node's UUID (from its certificate).
    :ivar applications: application name → `Application`.
    :ivar manifestations: dataset id → `Manifestation` (copies kept here).
    """

    uuid = uuid_field()
    applications = pmap_field(str, Application)
    manifestations = pmap_field(str, Manifestation)

    def __invariant__(self) -> tuple[bool, str]:
        """Keys match values; external ports are unique; volumes are primaries here."""
        for name, app in self.applications.items():
            if name != app.name:
                return (False, f"application keyed {name!r} is named {app.name!r}")
        for dataset_id, manifestation in self.manifestations.items():
            if dataset_id != manifestation.dataset_id:
                return (
                    False,
                    f"manifestation keyed {dataset_id} is of another dataset",
                )
        external = [
            p.external_port for a in self.applications.values() for p in a.ports
        ]
        if len(set(external)) != len(external):
            return (False, f"external ports must be unique on node {self.uuid}")
        users: dict[str, str] = {}
        for app in self.applications.values():
            for volume in app.volumes:
                m = self.manifestations.get(volume.dataset_id)
                if m is None or not m.primary or m.dataset.deleted:
                    return (
                        False,
                        f"application {app.name!r} mounts dataset {volume.dataset_id} "
                        f"which is not a live primary on node {self.uuid}",
                    )
                if volume.dataset_id in users:
                    return (
                        False,
                        f"dataset {volume.dataset_id} is mounted by both "
                        f"{users[volume.dataset_id]!r} and {app.name!r}",
                    )
                users[volume.dataset_id] = app.name
        return (True, "")

    def application_using(self, dataset_id: str) -> Application | None:
        """The application on this node that mounts the dataset, if any."""
        for app in self.applications.values():
            if any(v.dataset_id == dataset_id for v in app.volumes):
                return app
        return None


#: Passed to `Deployment.update_dataset` to leave a field as it is.
KEEP: Any = object()


class Deployment(PClass):
    """
    The whole desired configuration of the cluster.

    :ivar nodes: node UUID → `Node`.
    :ivar leases: the `Leases`.
    :ivar environments: name → `Environment` (groups of cloned applications).
    """

    nodes = pmap_field(str, Node)
    leases = field(type=Leases, initial=Leases())
    environments = pmap_field(str, Environment)

    def __invariant__(self) -> tuple[bool, str]:
        """Exactly one primary per dataset; every copy carries the same `Dataset`."""
        for uuid, node in self.nodes.items():
            if uuid != node.uuid:
                return (False, f"node keyed {uuid} has uuid {node.uuid}")
        seen: dict[str, Dataset] = {}
        primaries: dict[str, int] = {}
        apps: set[str] = set()
        for node in self.nodes.values():
            for dataset_id, m in node.manifestations.items():
                if dataset_id in seen and seen[dataset_id] != m.dataset:
                    return (False, f"copies of dataset {dataset_id} disagree")
                seen[dataset_id] = m.dataset
                primaries[dataset_id] = primaries.get(dataset_id, 0) + int(m.primary)
            for name in node.applications:
                if name in apps:
                    return (False, f"application {name!r} is on two nodes")
                apps.add(name)
        for dataset_id, count in primaries.items():
            if count != 1:
                return (False, f"dataset {dataset_id} has {count} primaries, not one")
        return (True, "")

    # -- nodes ---------------------------------------------------------------

    def get_node(self, uuid: str) -> Node:
        """The node with this UUID, or a new empty one if it has no configuration."""
        node = self.nodes.get(uuid)
        return node if node is not None else Node(uuid=uuid)

    def update_node(self, node: Node) -> Deployment:
        """Replace (or add) one node's configuration; empty nodes are dropped."""
        if not node.applications and not node.manifestations:
            return self.remove_node(node.uuid)
        return self.set(nodes=self.nodes.set(node.uuid, node))

    def remove_node(self, uuid: str) -> Deployment:
        """Drop a node's configuration (its datasets and applications too)."""
        if uuid not in self.nodes:
            return self
        return self.set(nodes=self.nodes.remove(uuid))

    # -- datasets ------------------------------------------------------------

    def all_datasets(self) -> Iterator[tuple[Dataset, str]]:
        """Each dataset with the UUID of its primary node, ordered by dataset id."""
        found = []
        for node in self.nodes.values():
            for m in node.manifestations.values():
                if m.primary:
                    found.append((m.dataset, node.uuid))
        return iter(sorted(found, key=lambda pair: pair[0].dataset_id))

    def get_dataset(self, dataset_id: str) -> tuple[Dataset, str]:
        """
        A dataset and the UUID of its primary node.

        :raise UnknownDataset: no such dataset.
        """
        for node in self.nodes.values():
            m = node.manifestations.get(dataset_id)
            if m is not None and m.primary:
                return m.dataset, node.uuid
        raise UnknownDataset(dataset_id)

    def _replace_dataset(self, dataset: Dataset) -> Deployment:
        """Put a new value of a dataset in every manifestation of it."""
        nodes = self.nodes
        for uuid, node in self.nodes.items():
            m = node.manifestations.get(dataset.dataset_id)
            if m is not None:
                node = node.set(
                    manifestations=node.manifestations.set(
                        dataset.dataset_id, m.set(dataset=dataset)
                    )
                )
                nodes = nodes.set(uuid, node)
        return self.set(nodes=nodes)

    def add_dataset(self, dataset: Dataset, primary: str) -> Deployment:
        """
        Add a new dataset with its primary copy on a node.

        :raise DatasetAlreadyExists: its id is taken (even by a deleted one).
        """
        try:
            self.get_dataset(dataset.dataset_id)
        except UnknownDataset:
            pass
        else:
            raise DatasetAlreadyExists(dataset.dataset_id)
        node = self.get_node(primary)
        node = node.set(
            manifestations=node.manifestations.set(
                dataset.dataset_id, Manifestation(dataset=dataset, primary=True)
            )
        )
        return self.update_node(node)

    def update_dataset(
        self,
        dataset_id: str,
        *,
        metadata: dict[str, str] | PMap[str, str] | None = None,
        maximum_size: Any = KEEP,
    ) -> Deployment:
        """
        Replace a dataset's metadata and/or maximum size.

        :param metadata: the new metadata, or ``None`` to keep it.
        :param maximum_size: the new maximum size (``None`` for unlimited), or
            `KEEP` (the default) to keep it.
        :raise UnknownDataset: no such dataset.
        :raise DatasetDeleted: it is deleted.
        """
        dataset, _ = self.get_dataset(dataset_id)
        if dataset.deleted:
            raise DatasetDeleted(dataset_id)
        changes: dict[str, Any] = {}
        if metadata is not None:
            changes["metadata"] = metadata
        if maximum_size is not KEEP:
            changes["maximum_size"] = maximum_size
        return self._replace_dataset(dataset.set(**changes))

    def clone_dataset(self, dataset: Dataset, origin: Origin) -> Deployment:
        """
        Add ``dataset`` as a clone of ``origin``, on the origin's primary node.

        The node's dataset agent creates it from the origin's snapshot
        (copy-on-write where the backend can); whether the snapshot exists
        is for the caller to check, since only the node knows.

        :raise UnknownDataset: the origin dataset does not exist.
        :raise DatasetDeleted: the origin dataset is deleted.
        :raise DatasetAlreadyExists: ``dataset``'s id is taken.
        """
        source, node_uuid = self.get_dataset(origin.dataset_id)
        if source.deleted:
            raise DatasetDeleted(origin.dataset_id)
        return self.add_dataset(dataset.set(origin=origin), node_uuid)

    def rollback_dataset(self, dataset_id: str, request: RollbackRequest) -> Deployment:
        """
        Ask for a dataset to be rolled back (see `RollbackRequest`).

        :raise UnknownDataset: no such dataset.
        :raise DatasetDeleted: it is deleted.
        """
        dataset, _ = self.get_dataset(dataset_id)
        if dataset.deleted:
            raise DatasetDeleted(dataset_id)
        return self._replace_dataset(dataset.set(rollback=request))

    def _check_leaving(self, dataset_id: str, source: str) -> None:
        """Refuse to take a dataset away from ``source`` if it is used or leased."""
        user = self.get_node(source).application_using(dataset_id)
        if user is not None:
            raise DatasetInUse(dataset_id, user.name)
        lease = self.leases.get(dataset_id)
        if lease is not None and lease.node_uuid == source:
            raise DatasetLeased(dataset_id, lease.node_uuid)

    def move_dataset(self, dataset_id: str, node_uuid: str) -> Deployment:
        """
        Make another node the dataset's primary.

        A copy already on the destination is promoted.  If it was a
        standing replica, the two swap: the old primary becomes a standing
        replica, so the dataset keeps as many copies and the old node keeps
        its data for increments.  Otherwise the old primary becomes a
        transient copy (a non-primary, non-standing manifestation), so the
        destination knows the data exists and waits for it even if the old
        primary's state is not known (e.g. after a restart of the control
        service); `cleanup_configuration` drops it once the move is over.
        Either way the epoch stays: a move is not a failover.
        Moving to the current primary changes nothing.

        :raise UnknownDataset: no such dataset.
        :raise DatasetDeleted: it is deleted.
        :raise DatasetInUse: an application on the current primary mounts it
            (move the application with `move_application` instead).
        :raise DatasetLeased: a lease holds it on its current primary.
        """
        dataset, source = self.get_dataset(dataset_id)
        if dataset.deleted:
            raise DatasetDeleted(dataset_id)
        if source == node_uuid:
            return self
        self._check_leaving(dataset_id, source)
        return self._move_manifestation(dataset, source, node_uuid)

    def _move_manifestation(
        self, dataset: Dataset, source: str, target: str
    ) -> Deployment:
        """
        Make ``target``'s copy the primary and ``source``'s a replica: a
        standing one if ``target``'s was standing (a swap), else transient.
        """
        current = self.get_node(target).manifestations.get(dataset.dataset_id)
        swap = current is not None and current.standing
        old = self.get_node(source)
        old = old.set(
            manifestations=old.manifestations.set(
                dataset.dataset_id,
                Manifestation(dataset=dataset, primary=False, standing=swap),
            )
        )
        new = self.get_node(target)
        new = new.set(
            manifestations=new.manifestations.set(
                dataset.dataset_id, Manifestation(dataset=dataset, primary=True)
            )
        )
        nodes = self.nodes.discard(source)
        if old.applications or old.manifestations:
            nodes = nodes.set(source, old)
        return self.set(nodes=nodes.set(target, new))

    # -- standing replicas and failover ----------------------------------------

    def replicas_of(self, dataset_id: str) -> list[str]:
        """The UUIDs of the nodes holding standing replicas of a dataset, sorted."""
        return sorted(
            uuid
            for uuid, node in self.nodes.items()
            if (m := node.manifestations.get(dataset_id)) is not None and m.standing
        )

    def set_replicas(
        self,
        dataset_id: str,
        node_uuids: Iterable[str],
        replication: Any = KEEP,
    ) -> Deployment:
        """
        Replace the set of nodes holding standing replicas of a dataset.

        A node left out of the set loses its manifestation (its agent then
        destroys its copy); a node in the set that holds a transient copy
        (left by a move) keeps it, as a standing replica.

        :param replication: the new `Replication` settings, or `KEEP`.
        :raise UnknownDataset: no such dataset.
        :raise DatasetDeleted: it is deleted.
        :raise DuplicateReplicas: a node is listed twice.
        :raise PrimaryAsReplica: the primary's node is listed.
        :raise TooManyReplicas: more than `MAXIMUM_REPLICAS` nodes are listed.
        """
        dataset, primary = self.get_dataset(dataset_id)
        if dataset.deleted:
            raise DatasetDeleted(dataset_id)
        wanted = list(node_uuids)
        repeated = sorted({u for u in wanted if wanted.count(u) > 1})
        if repeated:
            raise DuplicateReplicas(dataset_id, repeated)
        if primary in wanted:
            raise PrimaryAsReplica(dataset_id, primary)
        if len(wanted) > MAXIMUM_REPLICAS:
            raise TooManyReplicas(dataset_id, len(wanted), MAXIMUM_REPLICAS)
        result = self
        if replication is not KEEP:
            dataset = dataset.set(replication=replication)
            result = result._replace_dataset(dataset)
        for uuid in self.replicas_of(dataset_id):
            if uuid not in wanted:
                node = result.get_node(uuid)
                result = result.update_node(
                    node.set(manifestations=node.manifestations.remove(dataset_id))
                )
        replica = Manifestation(dataset=dataset, primary=False, standing=True)
        for uuid in wanted:
            node = result.get_node(uuid)
            result = result.update_node(
                node.set(manifestations=node.manifestations.set(dataset_id, replica))
            )
        return result

    def failover_group(self, dataset_id: str) -> list[str]:
        """
        The datasets that fail over together with this one, sorted: those
        mounted by the application using it on its primary, or itself alone.

        :raise UnknownDataset: no such dataset.
        """
        _, source = self.get_dataset(dataset_id)
        app = self.get_node(source).application_using(dataset_id)
        return sorted(v.dataset_id for v in app.volumes) if app else [dataset_id]

    def failover_dataset(
        self,
        dataset_id: str,
        node_uuid: str,
        *,
        snapshots: Mapping[str, str] | None = None,
        keep_source: bool = False,
    ) -> tuple[Deployment, list[str]]:
        """
        Promote a standing replica to primary: a failover.

        Every dataset mounted by the application that uses this one fails
        over with it, to the same node (`failover_group`), and the
        application moves there.  For each dataset the epoch goes up by
        one, its ``failover_snapshot`` becomes the snapshot the target's
        copy starts from (from ``snapshots``; ``None`` if not given), and
        the target's replica becomes the primary.  The old primary's
        manifestation leaves the configuration (its agent, seeing the newer
        epoch, stops exposing its copy and keeps it as diverged), unless
        ``keep_source``: then it stays as a standing replica, so that its
        agent sets its divergence aside and rejoins from
        ``failover_snapshot`` (what an automatic failover does).  The other
        standing replicas stay.  Leases the old primary held on these
        datasets are released.

        :param snapshots: dataset id → the newest snapshot the target
            reported of it.
        :param keep_source: keep the old primary as a standing replica.
        :return: the new configuration and the ids of the datasets failed
            over, sorted.
        :raise UnknownDataset: no such dataset.
        :raise DatasetDeleted: it is deleted.
        :raise NotAReplica: the target holds no standing replica of one of
            the datasets (it may be the primary already).
        """
        dataset, source = self.get_dataset(dataset_id)
        if dataset.deleted:
            raise DatasetDeleted(dataset_id)
        app = self.get_node(source).application_using(dataset_id)
        group = self.failover_group(dataset_id)
        target = self.get_node(node_uuid)
        for member in group:  # the dataset is one of its group
            m = target.manifestations.get(member)
            if m is None or not m.standing:
                raise NotAReplica(member, node_uuid)
        result = self if app is None else self.remove_application(app.name)
        leases = result.leases
        for member in group:
            promoted, _ = result.get_dataset(member)
            promoted = promoted.set(
                epoch=promoted.epoch + 1,
                failover_snapshot=(snapshots or {}).get(member),
            )
            result = result._replace_dataset(promoted)
            old = result.get_node(source)
            if keep_source:
                kept = Manifestation(dataset=promoted, primary=False, standing=True)
                old = old.set(manifestations=old.manifestations.set(member, kept))
            else:
                old = old.set(manifestations=old.manifestations.remove(member))
            new = result.get_node(node_uuid)
            new = new.set(
                manifestations=new.manifestations.set(
                    member, Manifestation(dataset=promoted, primary=True)
                )
            )
            nodes = result.nodes.discard(source).set(node_uuid, new)
            if old.applications or old.manifestations:
                nodes = nodes.set(source, old)
            result = result.set(nodes=nodes)
            lease = leases.get(member)
            if lease is not None and lease.node_uuid == source:
                leases = leases.release(member)
        result = result.set(leases=leases)
        if app is not None:
            result = result._place_application(app, node_uuid)
        return result, group

    def delete_dataset(self, dataset_id: str) -> Deployment:
        """
        Mark a dataset deleted (agents then destroy their copies).

        Deleting a deleted dataset changes nothing.

        :raise UnknownDataset: no such dataset.
        :raise DatasetInUse: an application mounts it.
        :raise DatasetLeased: a lease holds it.
        """
        dataset, source = self.get_dataset(dataset_id)
        if dataset.deleted:
            return self
        self._check_leaving(dataset_id, source)
        lease = self.leases.get(dataset_id)
        if lease is not None:
            raise DatasetLeased(dataset_id, lease.node_uuid)
        return self._replace_dataset(dataset.set(deleted=True))

    # -- applications --------------------------------------------------------

    def all_applications(self) -> Iterator[tuple[Application, str]]:
        """Each application with the UUID of its node, ordered by name."""
        found = [
            (app, node.uuid)
            for node in self.nodes.values()
            for app in node.applications.values()
        ]
        return iter(sorted(found, key=lambda pair: pair[0].name))

    def get_application(self, name: str) -> tuple[Application, str]:
        """
        An application and the UUID of its node.

        :raise UnknownApplication: no such application.
        """
        for node in self.nodes.values():
            app = node.applications.get(name)
            if app is not None:
                return app, node.uuid
        raise UnknownApplication(name)

    def add_application(self, application: Application, node_uuid: str) -> Deployment:
        """
        Add an application to a node; its volumes must be primaries there.

        :raise ReplicatedNameTooLong: it runs several instances and its
            name leaves no room for their ``..k``.
        :raise ApplicationAlreadyExists: the name is taken.
        :raise UnknownDataset: a volume's dataset does not exist.
        :raise DatasetDeleted: a volume's dataset is deleted.
        :raise DatasetElsewhere: a volume's dataset's primary is on another node.
        :raise DatasetInUse: another application on the node mounts a volume's
            dataset.
        :raise PortsTaken: another application on the node publishes one of
            its external ports.
        """
        _refuse_long_replicated_name(application)
        try:
            self.get_application(application.name)
        except UnknownApplication:
            pass
        else:
            raise ApplicationAlreadyExists(application.name)
        return self._add_checked(application, node_uuid)

    def replace_application(self, application: Application, node_uuid: str) -> Deployment:
        """
        Put a new specification of an existing application (same name) on a
        node in place of the old one, checked as `add_application` checks
        its volumes and ports (and raising as it does for them); its name
        is not checked again, so an application stored by an earlier
        release with a replicated name longer than new ones may have keeps
        running.

        :raise UnknownApplication: no such application.
        """
        return self.remove_application(application.name)._add_checked(application, node_uuid)

    def _add_checked(self, application: Application, node_uuid: str) -> Deployment:
        """Put an application not in the configuration on a node, its volumes and ports checked."""
        node = self.get_node(node_uuid)
        for volume in application.volumes:
            dataset, primary = self.get_dataset(volume.dataset_id)
            if dataset.deleted:
                raise DatasetDeleted(dataset.dataset_id)
            if primary != node_uuid:
                raise DatasetElsewhere(dataset.dataset_id, primary, node_uuid)
            user = node.application_using(volume.dataset_id)
            if user is not None:
                raise DatasetInUse(volume.dataset_id, user.name)
        self.check_ports(application, node_uuid)
        return self._place_application(application, node_uuid)

    def _place_application(self, application: Application, node_uuid: str) -> Deployment:
        """Put an application on a node, checked only by the invariants."""
        node = self.get_node(node_uuid)
        return self.update_node(
            node.set(applications=node.applications.set(application.name, application))
        )

    def check_ports(self, application: Application, node_uuid: str) -> None:
        """
        Refuse an application whose external ports another application on
        the node already publishes.

        :raise PortsTaken: one or more of them are taken.
        """
        node = self.get_node(node_uuid)
        taken = {
            p.external_port
            for other in node.applications.values()
            if other.name != application.name
            for p in other.ports
        }
        clash = sorted(taken & {p.external_port for p in application.ports})
        if clash:
            raise PortsTaken(clash, node_uuid)

    def remove_application(self, name: str) -> Deployment:
        """
        Remove an application (its datasets stay where they are).

        :raise UnknownApplication: no such application.
        """
        _, node_uuid = self.get_application(name)
        node = self.get_node(node_uuid)
        return self.update_node(node.set(applications=node.applications.remove(name)))

    def update_application(self, application: Application) -> Deployment:
        """
        Replace an application's specification (not its volumes), as its
        next revision; the same specification changes nothing.

        :raise UnknownApplication: no such application.
        :raise ReplicatedNameTooLong: the new specification runs several
            instances and the name leaves no room for their ``..k`` (even
            when an earlier release stored it so).
        :raise PortsTaken: another application on its node publishes one of
            the new external ports.
        """
        current, node_uuid = self.get_application(application.name)
        if application.specification().set(revision=current.revision) == current.specification():
            return self
        if application.replicas > current.replicas:
            # Only more instances are refused: one an earlier release
            # stored with a long name runs on as it is, updated like any.
            _refuse_long_replicated_name(application)
        if application.volumes != current.volumes:
            raise ValueError("an update does not change an application's volumes")
        self.check_ports(application, node_uuid)
        return self._place_application(current.updated(application.specification()), node_uuid)

    def rollback_application(self, name: str, reason: str | None = None) -> Deployment:
        """
        Return an application to the specification its last update replaced.

        :param reason: why, when the update is rolled back by itself.
        :raise UnknownApplication: no such application.
        :raise NothingToRollBack: it has no previous specification.
        """
        current, node_uuid = self.get_application(name)
        return self._place_application(current.rolled_back(reason), node_uuid)

    def move_application(self, name: str, node_uuid: str) -> Deployment:
        """
        Move an application, and the datasets it mounts, to another node.

        :raise UnknownApplication: no such application.
        :raise DatasetLeased: a lease holds one of its datasets on the old node.
        """
        app, source = self.get_application(name)
        if source == node_uuid:
            return self
        for volume in app.volumes:
            lease = self.leases.get(volume.dataset_id)
            if lease is not None and lease.node_uuid == source:
                raise DatasetLeased(volume.dataset_id, lease.node_uuid)
        result = self.remove_application(name)
        for volume in app.volumes:
            dataset, _ = result.get_dataset(volume.dataset_id)
            result = result._move_manifestation(dataset, source, node_uuid)
        return result._place_application(app, node_uuid)


def _refuse_long_replicated_name(application: Application) -> None:
    """
    Refuse (`ReplicatedNameTooLong`) an application asked to run several
    instances under a name that leaves no room for their ``..k``.
    """
    if application.replicas > 1 and not _has_room_for_instances(application.name):
        raise ReplicatedNameTooLong(
            application.name, application.replicas, _LONGEST_REPLICATED_NAME
        )


def _has_room_for_instances(name: str) -> bool:
    """Tell whether ``name..k`` is a valid name for every possible ``k``."""
    return len(name) <= _LONGEST_REPLICATED_NAME


def instance_name(name: str, k: int) -> str:
    """
    The name of the ``k``-th instance (1, 2, …) of application ``name`` on
    one node: the application's own name for the first, ``name..k`` for
    the others.
    """
    return name if k == 1 else f"{name}{INSTANCE_SEPARATOR}{k}"


def instance_base(name: str) -> str:
    """
    The application an instance name is of: the name without a trailing
    ``..`` and digits, ``web`` for ``web`` and for ``web..2``, ``my..app``
    for ``my..app`` and ``my..app..2`` (no application's name ends in
    ``..`` and digits).
    """
    return INSTANCE_SUFFIX.sub("", name)


def instance_placement(
    application: Application, home: str, nodes: Iterable[str]
) -> list[tuple[str, str]]:
    """
    Where an application's instances run: (node UUID, instance name) for
    each of its ``replicas`` instances, instance 0 first.

    The nodes form a ring in the order of their UUIDs, starting at the
    node the application is configured on (``home``).  The first pass
    round the ring places one instance on each node; with more replicas
    than nodes, further passes place the extra instances round the same
    ring, so 5 instances on nodes A (home), B and C run on A, B, C, A, B.
    The first instance on a node is named after the application, the k-th
    ``name..k`` (`instance_name`).

    An application whose name leaves no room for ``..k`` (longer than
    `_LONGEST_REPLICATED_NAME`: only one stored by an earlier release,
    which allowed it) runs at most one instance per node, so fewer than its
    replicas when there are fewer nodes: with replicas 3 on 2 nodes it runs
    2 instances, and no ``name..k`` is ever placed for it.

    :param home: the node the application is configured on.
    :param nodes: the nodes that can run instances (those whose container
        agents report); ``home`` counts whether or not it is among them.
    """
    ring = sorted(set(nodes) | {home})
    start = ring.index(home)
    ordered = ring[start:] + ring[:start]
    count = application.replicas
    if not _has_room_for_instances(application.name):
        count = min(count, len(ordered))
    placed = []
    for i in range(count):
        node = ordered[i % len(ordered)]
        placed.append((node, instance_name(application.name, i // len(ordered) + 1)))
    return placed


def instance_nodes(
    application: Application, home: str, nodes: Iterable[str]
) -> list[str]:
    """
    The distinct nodes an application's instances run on, in the order of
    their first instance (`instance_placement`): home first, at most one
    entry per node.
    """
    return list(dict.fromkeys(node for node, _ in instance_placement(application, home, nodes)))
