"""
Environments as pure changes of the configuration.

`clone_environment` turns a group of applications (the *originals*) and the
snapshot the caller already took of each of their datasets into N copies:
for each copy every dataset is cloned from the snapshot (a new dataset on
the same node, `Dataset.origin` set) and every application is copied as
``<name>-<environment>-<copy>`` on the same node (so that copies named "1",
"2"… of different environments do not clash), its volumes on the clones, each
published port replaced by a free one (or the one asked for), and each link
that pointed at a port of another original rewired to that original's copy.
`reset_copy` re-clones a copy's datasets from the snapshot and points its
applications at the fresh clones (the old clones are deleted);
`delete_copy` and `delete_environment` remove what the copies added.

"Free" ports are counted up from :data:`FIRST_FREE_PORT` and are those
no application in the configuration publishes and no node reports busy
(``NodeState.busy_ports``: other programs listen on them at the node's
address — another cluster on the same machine, a user's own service).  A
busy port is skipped whichever node reports it, not only on the node the
copy runs on, because every node's router listens on every published port
to forward it.  A port the caller asks for is refused if the copy's own
node reports it busy (`PortBusy`): the container could not publish it
there; a node that has not reported its ports yet hides nothing.

A port can still be taken after it was chosen (a program binds it before
the copy's container starts).  The copy's node then reports the conflict
(``NodeState.port_conflicts``) and `move_blocked_ports` gives the copy's
application another free port, rewiring the links of the copy's other
applications that pointed at the old one.  Only environment copies are
moved: their ports were Flocker's choice (or a request's), while the ports
of a user's own application are the user's to change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import NamedTuple
from uuid import uuid4

from ._checks import (
    ApplicationAlreadyExists,
    DatasetDeleted,
    EnvironmentAlreadyExists,
    InvalidSnapshotName,
    ModelError,
    PortBusy,
    RollbackDiscardsNeeded,
    SnapshotHasClones,
    UnknownApplication,
    UnknownEnvironment,
    is_snapshot_name,
    is_valid_name,
)
from ._environments import Environment, EnvironmentCopy
from ._model import (
    Application,
    AttachedVolume,
    Dataset,
    Deployment,
    Link,
    Origin,
    Port,
)
from ._state import DeploymentState

#: Ports for copies are chosen from here up.
FIRST_FREE_PORT = 20000

#: A copy's ports: original application → original external port → new one.
PortChoices = Mapping[str, Mapping[int, int]]

#: Node UUID → the TCP ports other programs listen on there.
BusyPorts = Mapping[str, Iterable[int]]

__all__ = [
    "FIRST_FREE_PORT",
    "BusyPorts",
    "busy_ports_of",
    "check_snapshot_name",
    "clone_environment",
    "copy_name",
    "delete_copy",
    "delete_environment",
    "environment_datasets",
    "move_blocked_ports",
    "PortMove",
    "refuse_destroying_cloned_snapshot",
    "refuse_rollback_past_needed",
    "reset_copy",
]


def check_snapshot_name(name: str) -> str:
    """
    ``name``, if it is a snapshot name a user may give.

    :raise InvalidSnapshotName: it is not (``flocker``-prefixed names are
        the control service's own).
    """
    if not is_snapshot_name(name):
        raise InvalidSnapshotName(name)
    return name


def refuse_destroying_cloned_snapshot(
    deployment: Deployment, dataset_id: str, name: str
) -> None:
    """
    Refuse to destroy a snapshot a configured (not deleted) clone is made from.

    :raise SnapshotHasClones: one is.
    """
    for dataset, _ in deployment.all_datasets():
        origin = dataset.origin
        if (
            not dataset.deleted
            and origin is not None
            and (origin.dataset_id, origin.snapshot) == (dataset_id, name)
        ):
            raise SnapshotHasClones(dataset_id, name, dataset.dataset_id)


def refuse_rollback_past_needed(
    deployment: Deployment, dataset_id: str, snapshot: str, reported: list[str]
) -> None:
    """
    Refuse a rollback that would discard a later snapshot something needs:
    an environment was cloned from it, or a configured clone is made from it.

    :param reported: the dataset's snapshots, oldest first, as its primary
        last reported them (a rollback to one not among them is not refused
        here).
    :raise RollbackDiscardsNeeded: it would.
    """
    if snapshot not in reported:
        return
    later = set(reported[reported.index(snapshot) + 1 :])
    needed = {e.snapshot: f"environment {e.name!r}" for e in deployment.environments.values()}
    for dataset, _ in deployment.all_datasets():
        origin = dataset.origin
        if origin is not None and origin.dataset_id == dataset_id and not dataset.deleted:
            needed.setdefault(origin.snapshot, f"clone {dataset.dataset_id}")
    for name in sorted(later & set(needed)):
        raise RollbackDiscardsNeeded(snapshot, name, needed[name])


def copy_name(original: str, environment: str, copy: str) -> str:
    """The name of ``original``'s application in copy ``copy`` of ``environment``."""
    return f"{original}-{environment}-{copy}"


def environment_datasets(deployment: Deployment, originals: Iterable[str]) -> list[str]:
    """
    The ids of the datasets the original applications use, in order.

    :raise UnknownApplication: an original does not exist.
    :raise DatasetDeleted: one of their datasets is deleted.
    """
    found: list[str] = []
    for name in originals:
        application, _ = deployment.get_application(name)
        for volume in sorted(application.volumes, key=lambda v: v.mountpoint):
            dataset, _ = deployment.get_dataset(volume.dataset_id)
            if dataset.deleted:
                raise DatasetDeleted(dataset.dataset_id)
            if volume.dataset_id not in found:
                found.append(volume.dataset_id)
    return found


def _published(deployment: Deployment) -> set[int]:
    return {
        port.external_port
        for application, _ in deployment.all_applications()
        for port in application.ports
    }


def busy_ports_of(state: DeploymentState) -> dict[str, frozenset[int]]:
    """
    Node UUID → busy ports, from a `DeploymentState` (nodes that did not
    report them are left out).
    """
    return {
        uuid: frozenset(node.busy_ports)
        for uuid, node in state.nodes.items()
        if node.busy_ports is not None
    }


def _clone_datasets(
    deployment: Deployment,
    environment: str,
    copy: str,
    snapshot: str,
    originals: Iterable[str],
    new_id: Callable[[], str],
) -> tuple[Deployment, dict[str, str]]:
    """Clone every original dataset for ``copy``; (deployment, old → new id)."""
    clones: dict[str, str] = {}
    for dataset_id in originals:
        source, _ = deployment.get_dataset(dataset_id)
        name = source.metadata.get("name", dataset_id[:8])
        clone = Dataset(
            dataset_id=new_id(),
            metadata={
                **dict(source.metadata),
                "name": f"{name}-{environment}-{copy}",
                "flocker-environment": environment,
                "flocker-copy": copy,
            },
            maximum_size=source.maximum_size,
        )
        deployment = deployment.clone_dataset(
            clone, Origin(dataset_id=dataset_id, snapshot=snapshot)
        )
        clones[dataset_id] = clone.dataset_id
    return deployment, clones


def _copy_application(
    original: Application,
    name: str,
    ports: Mapping[int, int],
    links: Mapping[int, int],
    clones: Mapping[str, str],
) -> Application:
    """
    ``original`` renamed, on its clones, with its own ports remapped
    (``ports``) and its links rewired (``links``: the group's external
    ports → the copy's).  The copy has the original's health check and
    ``replicas`` (it runs as many instances), but not its update history:
    it is a new application, at revision 0, with nothing to roll back to.
    """
    return original.specification().set(
        revision=0,
        name=name,
        ports=[
            Port(internal_port=p.internal_port, external_port=ports[p.external_port])
            for p in original.ports
        ],
        links=[
            Link(
                alias=link.alias,
                local_port=link.local_port,
                remote_port=links.get(link.remote_port, link.remote_port),
            )
            for link in original.links
        ],
        volumes=[
            AttachedVolume(dataset_id=clones[v.dataset_id], mountpoint=v.mountpoint)
            for v in original.volumes
        ],
    )


def _with_previous(
    application: Application, change: Callable[[Application], Application]
) -> Application:
    """
    ``application`` changed by ``change``, and so is the previous
    specification it may be rolled back to: a rollback returns to the
    specification the user last had, on the copy's current clones and
    ports, not to clones that were deleted or a port that was taken.
    """
    changed = change(application)
    if application.previous is None:
        return changed
    return changed.set(previous=change(application.previous))


def _rewired(application: Application, remap: Mapping[int, int]) -> Application:
    """``application`` with its links to the moved ports (``remap``) rewired."""
    return application.set(
        links=[
            link.set(remote_port=remap.get(link.remote_port, link.remote_port))
            for link in application.links
        ]
    )


def _remapped(application: Application, ports: Mapping[int, int]) -> Application:
    """``application`` publishing the external ports ``ports`` moves instead."""
    return application.set(
        ports=[
            Port(
                internal_port=p.internal_port,
                external_port=ports.get(p.external_port, p.external_port),
            )
            for p in application.ports
        ]
    )


def _on_clones(application: Application, clones: Mapping[str, str]) -> Application:
    """``application`` mounting the ``clones`` (old id → new) of its datasets."""
    return application.set(
        volumes=[
            AttachedVolume(
                dataset_id=clones.get(v.dataset_id, v.dataset_id),
                mountpoint=v.mountpoint,
            )
            for v in application.volumes
        ]
    )


def clone_environment(
    deployment: Deployment,
    name: str,
    originals: list[str],
    copies: list[str],
    snapshot: str,
    ports: Mapping[str, PortChoices] | None = None,
    new_id: Callable[[], str] = lambda: str(uuid4()),
    busy: BusyPorts | None = None,
) -> Deployment:
    """
    Add the environment ``name``: ``copies`` of the ``originals``.

    :param snapshot: the snapshot, taken already, of each original dataset.
    :param ports: copy → original application → original external port →
        the external port to use; unlisted ports are chosen free.
    :param busy: node UUID → ports other programs listen on there (see
        the module docstring); chosen ports avoid them all.
    :raise PortBusy: a port asked for is busy on the copy's node.
    :raise EnvironmentAlreadyExists: ``name`` is taken.
    :raise UnknownApplication: an original does not exist.
    :raise ApplicationAlreadyExists: a copy's application name is taken.
    :raise ModelError: a bad copy name, an empty group, a port asked for
        twice or already published, a port for an unknown application.
    """
    if name in deployment.environments:
        raise EnvironmentAlreadyExists(name)
    if not originals:
        raise ModelError("an environment needs at least one application")
    if not copies or len(set(copies)) != len(copies):
        raise ModelError("an environment needs one or more distinctly named copies")
    ports = ports or {}
    for copy in ports:
        if copy not in copies:
            raise ModelError(f"ports given for {copy!r}, which is not one of the copies")
    datasets = environment_datasets(deployment, originals)
    group = {n: deployment.get_application(n) for n in originals}
    busy = {uuid: frozenset(found) for uuid, found in (busy or {}).items()}
    taken = _published(deployment)
    avoided = taken.union(*busy.values())
    next_free = FIRST_FREE_PORT
    environment = Environment(name=name, snapshot=snapshot, applications=originals)
    for copy in copies:
        if not is_valid_name(copy) or not all(
            is_valid_name(copy_name(original, name, copy)) for original in originals
        ):
            raise ModelError(f"{copy!r} is not a valid copy name")
        chosen = ports.get(copy, {})
        for app_name in chosen:
            if app_name not in group:
                raise ModelError(f"ports given for {app_name!r}, which is not in the group")
        # Each original's ports are its own (two originals on different
        # nodes may publish the same one); links follow the first by name,
        # as routing does.
        mapping: dict[str, dict[int, int]] = {}
        links: dict[int, int] = {}
        for app_name, (application, node_uuid) in group.items():
            wanted = chosen.get(app_name, {})
            mapping[app_name] = {}
            for port in sorted(application.ports, key=lambda p: p.external_port):
                new = wanted.get(port.external_port)
                if new is None:
                    while next_free in avoided:
                        next_free += 1
                    new = next_free
                elif new in taken:
                    raise ModelError(f"port {new} for copy {copy!r} is already published")
                elif new in busy.get(node_uuid, ()):
                    raise PortBusy(new, node_uuid, copy_name(app_name, name, copy))
                taken.add(new)
                avoided.add(new)
                mapping[app_name][port.external_port] = new
        for app_name in sorted(mapping):
            for external, new in mapping[app_name].items():
                links.setdefault(external, new)
        deployment, clones = _clone_datasets(deployment, name, copy, snapshot, datasets, new_id)
        names = {}
        for app_name, (application, node_uuid) in group.items():
            new_name = copy_name(app_name, name, copy)
            try:
                deployment.get_application(new_name)
            except UnknownApplication:
                pass
            else:
                raise ApplicationAlreadyExists(new_name)
            deployment = deployment.add_application(
                _copy_application(application, new_name, mapping[app_name], links, clones),
                node_uuid,
            )
            names[app_name] = new_name
        environment = environment.set(
            copies=environment.copies.set(
                copy, EnvironmentCopy(name=copy, applications=names, datasets=clones)
            )
        )
    return deployment.set(
        environments=deployment.environments.set(name, environment)
    )


class PortMove(NamedTuple):
    """One port of an environment copy's application moved off a taken one."""

    application: str
    node_uuid: str
    old_port: int
    new_port: int


def _free_from(avoided: set[int], start: int = FIRST_FREE_PORT) -> int:
    """The first port from ``start`` up that is not in ``avoided``."""
    port = start
    while port in avoided:
        port += 1
    if port > 65535:
        raise ModelError("no free port is left for an environment copy")
    return port


def move_blocked_ports(
    deployment: Deployment,
    state: DeploymentState,
    allowed: Callable[[str], bool] = lambda application: True,
) -> tuple[Deployment, list[PortMove]]:
    """
    Move environment copies' applications off the ports their nodes report
    they could not publish.

    For each copy application whose node reports a conflict on ports it
    still publishes, each such port is replaced by a free one (not
    published, not busy on any node, not the conflicting one) and the
    copy's other applications' links to it follow.  Returns the new
    configuration (``deployment`` itself if nothing moved) and the moves.

    :param allowed: whether an application may be moved now (the caller's
        limit on how often); a refused one is left as it is.
    """
    busy = busy_ports_of(state)
    avoided = _published(deployment).union(*busy.values())
    moves: list[PortMove] = []
    for env_name in sorted(deployment.environments):
        copies = deployment.environments[env_name].copies
        for copy in (copies[c] for c in sorted(copies)):
            remap: dict[int, int] = {}
            for app_name in sorted(copy.applications.values()):
                try:
                    application, node_uuid = deployment.get_application(app_name)
                except UnknownApplication:
                    continue
                reported = (state.get_node(node_uuid).port_conflicts or {}).get(app_name)
                published = {p.external_port for p in application.ports}
                blocked = sorted(set(reported or ()) & published)
                if not blocked or not allowed(app_name):
                    continue
                mapping = {}
                for old in blocked:
                    avoided.add(old)
                    new = _free_from(avoided)
                    avoided.add(new)
                    mapping[old] = new
                    remap.setdefault(old, new)
                    moves.append(PortMove(app_name, node_uuid, old, new))
                moved = _with_previous(application, partial(_remapped, ports=mapping))
                deployment = deployment.replace_application(moved, node_uuid)
            if not remap:
                continue
            for app_name in sorted(copy.applications.values()):
                try:
                    application, node_uuid = deployment.get_application(app_name)
                except UnknownApplication:
                    continue
                rewired = _with_previous(application, partial(_rewired, remap=remap))
                if rewired != application:
                    deployment = deployment.replace_application(rewired, node_uuid)
    return deployment, moves


def _get_copy(deployment: Deployment, name: str, copy: str) -> tuple[Environment, EnvironmentCopy]:
    environment = deployment.environments.get(name)
    if environment is None:
        raise UnknownEnvironment(name)
    found = environment.copies.get(copy)
    if found is None:
        raise UnknownEnvironment(f"{name}/{copy}")
    return environment, found


def reset_copy(
    deployment: Deployment,
    name: str,
    copy: str,
    new_id: Callable[[], str] = lambda: str(uuid4()),
) -> Deployment:
    """
    Give copy ``copy`` of ``name`` fresh clones of the environment's snapshot.

    Its applications are pointed at the new clones (the container agent
    replaces their containers) and the old clones are deleted.

    :raise UnknownEnvironment: no such environment or copy.
    """
    environment, found = _get_copy(deployment, name, copy)
    deployment, clones = _clone_datasets(
        deployment, name, copy, environment.snapshot, list(found.datasets), new_id
    )
    renamed = {old: clones[original] for original, old in found.datasets.items()}
    for app_name in found.applications.values():
        try:
            application, node_uuid = deployment.get_application(app_name)
        except UnknownApplication:
            continue
        moved = _with_previous(application, partial(_on_clones, clones=renamed))
        deployment = deployment.replace_application(moved, node_uuid)
    for old in found.datasets.values():
        deployment = _delete_if_present(deployment, old)
    environment = environment.set(
        copies=environment.copies.set(copy, found.set(datasets=clones))
    )
    return deployment.set(environments=deployment.environments.set(name, environment))


def _delete_if_present(deployment: Deployment, dataset_id: str) -> Deployment:
    try:
        return deployment.delete_dataset(dataset_id)
    except ModelError as error:
        if isinstance(error, KeyError):  # already gone
            return deployment
        raise


def delete_copy(deployment: Deployment, name: str, copy: str) -> Deployment:
    """
    Remove copy ``copy`` of ``name``: its applications, then its clones.

    :raise UnknownEnvironment: no such environment or copy.
    """
    environment, found = _get_copy(deployment, name, copy)
    for app_name in found.applications.values():
        try:
            deployment = deployment.remove_application(app_name)
        except UnknownApplication:
            pass
    for dataset_id in found.datasets.values():
        deployment = _delete_if_present(deployment, dataset_id)
    environment = environment.set(copies=environment.copies.remove(copy))
    return deployment.set(environments=deployment.environments.set(name, environment))


def delete_environment(deployment: Deployment, name: str) -> Deployment:
    """
    Remove the environment ``name`` and every copy of it.

    :raise UnknownEnvironment: no such environment.
    """
    environment = deployment.environments.get(name)
    if environment is None:
        raise UnknownEnvironment(name)
    for copy in environment.copies:
        deployment = delete_copy(deployment, name, copy)
    return deployment.set(environments=deployment.environments.remove(name))
