"""
From (applications, placement, what the cluster is configured with) to the
list of REST API changes that make the configuration match — a pure
calculation, checked in full before anything is changed.

The files describe the cluster's whole container configuration: a container
not deployed by them is removed (its dataset stays).  Each application with
a volume has one dataset, found again on later runs as the dataset its
container mounts or, failing that, the live dataset whose metadata ``name``
is the application's name; a new one is created with that name.  Moving an
application moves its container (and the control service moves the dataset
with it).  An application whose specification changes (image, ports,
environment, links, limits, restart policy, health check, how many
instances run) is *updated* in place: the control service makes it a new revision, replaces its instance
once the new one is healthy and rolls it back by itself if it turns
unhealthy (`flocker.apiclient.IFlockerAPIV1Client.update_container`); if
it also changes node, that one request moves it too.  Only a change of its
volume (another mountpoint, a volume added or removed) still removes the
container and adds it again, its dataset moved first if it must change
node.

Changes run in this order, so that no step trips over a port or a dataset
still held by an older container: removals, dataset creations, resizes and
moves, container moves, container updates, container additions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any
from uuid import UUID

from pyrsistent import PClass, field, pmap_field, pvector_field
from twisted.internet.defer import Deferred

from ..apiclient import (
    Container,
    Dataset,
    IFlockerAPIV1Client,
    Lease,
    MountedDataset,
    Node,
)
from ._checks import SINGLE_INSTANCE, fail
from ._model import Application, ConfigurationError, Placement

__all__ = [
    "AddContainer",
    "ClusterConfiguration",
    "CreateDataset",
    "MoveContainer",
    "MoveDataset",
    "RemoveContainer",
    "ResizeDataset",
    "UpdateContainer",
    "calculate_changes",
    "check_deployment",
    "read_cluster",
    "resolve_nodes",
]


class ClusterConfiguration(PClass):
    """What the control service says the cluster is, and is configured with."""

    nodes = pvector_field(Node)
    containers = pvector_field(Container)
    datasets = pmap_field(UUID, Dataset)
    leases = pvector_field(Lease)


async def read_cluster(client: IFlockerAPIV1Client) -> ClusterConfiguration:
    """Ask the REST API for the nodes, containers, datasets and leases."""
    nodes = await client.list_nodes()
    containers = await client.list_containers_configuration()
    datasets = await client.list_datasets_configuration()
    leases = await client.list_leases()
    return ClusterConfiguration(
        nodes=nodes,
        containers=containers,
        datasets=datasets.datasets,
        leases=leases,
    )


def check_deployment(
    application_source: str,
    applications: Mapping[str, Application],
    deployment_source: str,
    placement: Placement,
) -> None:
    """
    Refuse a deployment naming an unknown application, running several
    instances of an application with a volume, publishing one node port
    from two applications, or linking to a port no deployed application
    publishes.
    """
    for app_name in sorted(placement.nodes):
        if app_name not in applications:
            fail(
                deployment_source,
                placement.paths[app_name],
                f"{app_name!r} is not an application in {application_source}",
            )
        app = applications[app_name]
        if app.replicas > 1 and app.volume is not None:
            fail(
                application_source,
                app_name,
                f"{app.replicas} instances of {app_name!r}, which has a volume: "
                f"{SINGLE_INSTANCE}",
            )
    publishers: dict[int, str] = {}
    for app_name in sorted(placement.nodes):
        for port in applications[app_name].ports:
            other = publishers.setdefault(port.external, app_name)
            if other != app_name:
                fail(
                    application_source,
                    app_name,
                    f"publishes port {port.external}, as {other!r} does",
                )
    for app_name in sorted(placement.nodes):
        for link in applications[app_name].links:
            if link.remote_port not in publishers:
                fail(
                    application_source,
                    app_name,
                    f"link {link.alias!r} goes to port {link.remote_port}, "
                    "which no deployed application publishes",
                )


def resolve_nodes(
    deployment_source: str, placement: Placement, nodes: Sequence[Node]
) -> dict[str, UUID]:
    """
    Application name → node UUID, a node being named by its address or UUID.

    :raise ConfigurationError: a node is in no way known to the cluster.
    """
    by_name: dict[str, UUID] = {}
    for node in nodes:
        by_name[str(node.uuid)] = node.uuid
        if node.host:
            by_name.setdefault(node.host, node.uuid)
    resolved = {}
    for node_name in sorted(placement.node_names | set(placement.nodes.values())):
        uuid = by_name.get(node_name.strip().lower()) or by_name.get(node_name.strip())
        if uuid is None:
            fail(
                deployment_source,
                f"nodes.{node_name}",
                "no node of the cluster has this address or UUID",
            )
        resolved[node_name] = uuid
    return {app: resolved[node] for app, node in placement.nodes.items()}


# --------------------------------------------------------------------------
# Changes


class RemoveContainer(PClass):
    """Remove a container from the configuration (its datasets stay)."""

    name = field(type=str, mandatory=True)

    def describe(self) -> str:
        """What the change does, for the user."""
        return f"removed application {self.name}"

    def run(self, client: IFlockerAPIV1Client) -> Deferred[Any]:
        """Ask the REST API to make the change."""
        return client.delete_container(self.name)


class CreateDataset(PClass):
    """Create an application's dataset on its node, named after it."""

    application = field(type=str, mandatory=True)
    dataset_id = field(type=UUID, mandatory=True)
    node_uuid = field(type=UUID, mandatory=True)
    maximum_size = field(type=(int, type(None)), initial=None)

    def describe(self) -> str:
        """What the change does, for the user."""
        return f"created dataset {self.dataset_id} for {self.application}"

    def run(self, client: IFlockerAPIV1Client) -> Deferred[Any]:
        """Ask the REST API to make the change."""
        return client.create_dataset(
            primary=self.node_uuid,
            maximum_size=self.maximum_size,
            dataset_id=self.dataset_id,
            metadata={"name": self.application},
        )


class ResizeDataset(PClass):
    """Give an application's dataset the maximum size the file asks for."""

    application = field(type=str, mandatory=True)
    dataset_id = field(type=UUID, mandatory=True)
    maximum_size = field(type=int, mandatory=True)

    def describe(self) -> str:
        """What the change does, for the user."""
        return (
            f"set the maximum size of {self.application}'s dataset to "
            f"{self.maximum_size} bytes"
        )

    def run(self, client: IFlockerAPIV1Client) -> Deferred[Any]:
        """Ask the REST API to make the change."""
        return client.update_dataset(self.dataset_id, maximum_size=self.maximum_size)


class MoveDataset(PClass):
    """Move an application's dataset (used by no container) to its new node."""

    application = field(type=str, mandatory=True)
    dataset_id = field(type=UUID, mandatory=True)
    node_uuid = field(type=UUID, mandatory=True)

    def describe(self) -> str:
        """What the change does, for the user."""
        return f"moved {self.application}'s dataset to node {self.node_uuid}"

    def run(self, client: IFlockerAPIV1Client) -> Deferred[Any]:
        """Ask the REST API to make the change."""
        return client.move_dataset(self.node_uuid, self.dataset_id)


class MoveContainer(PClass):
    """Move an application, with the datasets it mounts, to another node."""

    name = field(type=str, mandatory=True)
    node_uuid = field(type=UUID, mandatory=True)

    def describe(self) -> str:
        """What the change does, for the user."""
        return f"moved application {self.name} to node {self.node_uuid}"

    def run(self, client: IFlockerAPIV1Client) -> Deferred[Any]:
        """Ask the REST API to make the change."""
        return client.move_container(self.name, self.node_uuid)


#: The fields of a container that an update changes (all but its volumes).
UPDATABLE = (
    "image",
    "ports",
    "environment",
    "restart_policy",
    "links",
    "cpu_shares",
    "memory_limit",
    "swappiness",
    "command_line",
    "health",
    "replicas",
)


class UpdateContainer(PClass):
    """
    Give an application its new specification, as its next revision (and
    move it, with its dataset, if ``node_uuid`` is set).

    :ivar container: the container as the files describe it.
    :ivar fields: the fields that change (of `UPDATABLE`), in that order.
    :ivar node_uuid: the node it moves to, or ``None`` if it stays.
    """

    container = field(type=Container, mandatory=True)
    fields = pvector_field(str)
    node_uuid = field(type=(UUID, type(None)), initial=None)

    def describe(self) -> str:
        """What the change does, for the user (``replicas: N`` for a new count)."""
        fields = [
            f"replicas: {self.container.replicas}" if f == "replicas" else f
            for f in self.fields
        ]
        what = f"updated application {self.container.name} ({', '.join(fields)})"
        if self.node_uuid is not None:
            what += f" and moved it to node {self.node_uuid}"
        return what

    def run(self, client: IFlockerAPIV1Client) -> Deferred[Any]:
        """Ask the REST API to make the change, in one request."""
        changes: dict[str, Any] = {f: getattr(self.container, f) for f in self.fields}
        if self.node_uuid is not None:
            changes["node_uuid"] = self.node_uuid
        return client.update_container(self.container.name, **changes)


class AddContainer(PClass):
    """Add an application's container to the configuration."""

    container = field(type=Container, mandatory=True)

    def describe(self) -> str:
        """What the change does, for the user (and how many instances, if several)."""
        what = (
            f"deployed application {self.container.name} on node "
            f"{self.container.node_uuid}"
        )
        if self.container.replicas > 1:
            what += f" ({self.container.replicas} instances)"
        return what

    def run(self, client: IFlockerAPIV1Client) -> Deferred[Any]:
        """Ask the REST API to make the change."""
        return client.create_container(self.container)


def _normalized(container: Container) -> Container:
    """
    A container's specification (without its revision and update history)
    with its ports, volumes and links in the API's order.
    """
    return container.specification().set(
        ports=sorted(container.ports, key=lambda p: (p.external, p.internal)),
        volumes=sorted(
            container.volumes, key=lambda v: (v.mountpoint, str(v.dataset_id))
        ),
        links=sorted(container.links, key=lambda x: x.alias),
    )


def _find_dataset(
    name: str, existing: Container | None, cluster: ClusterConfiguration
) -> Dataset | None:
    """
    The application's dataset: the one its container mounts, else the live
    one named after it (more than one is refused), else none.
    """
    if existing is not None:
        for volume in existing.volumes:
            dataset = cluster.datasets.get(volume.dataset_id)
            if dataset is not None and not dataset.deleted:
                return dataset
    named = sorted(
        (
            d
            for d in cluster.datasets.values()
            if not d.deleted and d.metadata.get("name") == name
        ),
        key=lambda d: str(d.dataset_id),
    )
    if len(named) > 1:
        raise ConfigurationError(
            f"cluster: {len(named)} datasets are named {name!r} "
            f"({', '.join(str(d.dataset_id) for d in named)}): delete or "
            "rename all but one"
        )
    return named[0] if named else None


def calculate_changes(
    applications: Mapping[str, Application],
    nodes: Mapping[str, UUID],
    cluster: ClusterConfiguration,
    new_dataset_id: Callable[[], UUID],
) -> list[Any]:
    """
    The changes that make the cluster's configuration run ``applications``
    on ``nodes`` (application name → node UUID), and nothing else.

    :param new_dataset_id: chooses the id of each dataset to create.
    :raise ConfigurationError: a dataset is ambiguous, claimed by two
        applications, or held by a lease where it must move away.
    """
    current = {c.name: _normalized(c) for c in cluster.containers}
    leases = {lease.dataset_id: lease for lease in cluster.leases}
    removals: list[Any] = [
        RemoveContainer(name=name) for name in sorted(current) if name not in nodes
    ]
    data: list[Any] = []
    moves: list[Any] = []
    updates: list[Any] = []
    additions: list[Any] = []
    claimed: dict[UUID, str] = {}
    for name in sorted(nodes):
        app, node = applications[name], nodes[name]
        existing = current.get(name)
        volumes = []
        dataset = None
        if app.volume is not None:
            dataset = _find_dataset(name, existing, cluster)
            if dataset is None:
                dataset_id = new_dataset_id()
                data.append(
                    CreateDataset(
                        application=name,
                        dataset_id=dataset_id,
                        node_uuid=node,
                        maximum_size=app.volume.maximum_size,
                    )
                )
            else:
                dataset_id = dataset.dataset_id
                other = claimed.get(dataset_id)
                if other is not None:
                    raise ConfigurationError(
                        f"cluster: {other!r} and {name!r} would both use dataset "
                        f"{dataset_id}"
                    )
                _check_lease(name, dataset_id, node, dataset.primary, leases)
                size = app.volume.maximum_size
                if size is not None and size != dataset.maximum_size:
                    data.append(
                        ResizeDataset(
                            application=name, dataset_id=dataset_id, maximum_size=size
                        )
                    )
            claimed[dataset_id] = name
            volumes = [
                MountedDataset(dataset_id=dataset_id, mountpoint=app.volume.mountpoint)
            ]
        desired = Container(
            node_uuid=node,
            name=name,
            image=app.image,
            ports=app.ports,
            environment=app.environment,
            restart_policy=app.restart_policy,
            volumes=volumes,
            links=app.links,
            cpu_shares=app.cpu_shares,
            memory_limit=app.memory_limit,
            health=app.health,
            replicas=app.replicas,
        )
        if existing == desired:
            continue
        if existing is not None and existing.set(node_uuid=node) == desired:
            moves.append(MoveContainer(name=name, node_uuid=node))
            continue
        if existing is not None and existing.volumes == desired.volumes:
            updates.append(
                UpdateContainer(
                    container=desired,
                    fields=[
                        f for f in UPDATABLE if getattr(existing, f) != getattr(desired, f)
                    ],
                    node_uuid=None if existing.node_uuid == node else node,
                )
            )
            continue
        if existing is not None:
            removals.append(RemoveContainer(name=name))
        if dataset is not None and dataset.primary != node:
            data.append(
                MoveDataset(application=name, dataset_id=dataset_id, node_uuid=node)
            )
        additions.append(AddContainer(container=desired))
    return removals + data + moves + updates + additions


def _check_lease(
    name: str,
    dataset_id: UUID,
    node: UUID,
    primary: UUID,
    leases: Mapping[UUID, Lease],
) -> None:
    """Refuse to move a dataset that a lease keeps on its node."""
    lease = leases.get(dataset_id)
    if primary != node and lease is not None and lease.node_uuid != node:
        raise ConfigurationError(
            f"cluster: {name!r} cannot move: its dataset {dataset_id} is leased "
            f"on node {lease.node_uuid} (release the lease first)"
        )
