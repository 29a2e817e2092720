"""
The part of `FakeFlockerClient` that updates and rolls back containers and
holds their reported health, with the rules of the control service's model
(`flocker.control.Deployment.update_application` and
``rollback_application``, `flocker.control.HealthCheck`):

* an update replaces the fields given; the same specification changes
  nothing; a changed one is the next ``revision``, keeps the one it
  replaced for a rollback, and is ``updating`` until its node reports it
  healthy at that revision;
* a node reporting the revision being updated ``unhealthy`` makes the
  control service roll the update back by itself (``update_failed`` says
  why); reporting it ``healthy`` ends the update (it can still be rolled
  back by hand);
* a rollback returns to the previous specification as the next revision,
  after which there is nothing to roll back to;
* a health check probes one of the container's published internal ports;
* a container runs 1 to `MAXIMUM_INSTANCES` instances (``replicas``), more
  than one only without volumes; the first runs on the container's node,
  the others one per node on the nodes after it in the order of their
  UUIDs, and instances beyond the number of nodes double up round the
  same ring (`instance_placement`, named ``name..k`` on their node, as the
  control service names them); the state lists the container once per
  instance, with the health its node reports for its instances (once for
  all of a node's instances while the node reports no health for them),
  and an update is confirmed once every such node reports it healthy;
* a container's name never ends in ``..`` and digits (reserved for
  those extra instances; ``my..app`` is a name like any other), and a
  container created or updated with several instances has a name of at
  most 124 characters (one an earlier release stored with a longer name
  runs at most one instance per node, `instance_placement`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from uuid import UUID

from twisted.internet.defer import Deferred

from ._instances import (
    INSTANCE_SEPARATOR,
    LONGEST_REPLICATED_NAME,
    instance_nodes,
    instance_placement,
)
from ._interface import (
    HEALTH_STATUSES,
    MAXIMUM_INSTANCES,
    UNCHANGED,
    BadRequest,
    Container,
    ContainerConflict,
    ContainerPort,
    ContainerState,
    HealthCheck,
    Link,
    NothingToRollBack,
    RestartPolicy,
    UnknownContainer,
)

__all__ = [
    "ONE_INSTANCE_WITH_VOLUMES",
    "FakeContainerUpdates",
    "check_health",
    "check_name",
    "check_replicas",
    "instance_nodes",
    "instance_placement",
]

#: Why a container with volumes runs once (the control service's words).
ONE_INSTANCE_WITH_VOLUMES = (
    "an application with volumes runs once: its data is on one node "
    "(replicas are for applications without volumes)"
)

#: The most seconds an interval, timeout or start period may be.
_MAXIMUM_SECONDS = 86400.0


def _seconds(what: str, value: float, zero: bool = False) -> None:
    low_ok = value >= 0 if zero else value > 0
    if not (math.isfinite(value) and low_ok and value <= _MAXIMUM_SECONDS):
        bound = "at least 0" if zero else "more than 0"
        raise BadRequest(
            400, f"health: {what} must be {bound} and at most 86400 seconds: {value!r}"
        )


def check_health(container: Container) -> None:
    """
    Refuse (`BadRequest`) a container whose health check is malformed or
    probes a port it does not publish, as the control service does.
    """
    health = container.health
    if health is None:
        return
    if not 0 < health.port < 65536:
        raise BadRequest(400, f"health: port {health.port} is not a port number")
    if health.kind == "http":
        path = health.path
        if path is None or not path.startswith("/") or any(c.isspace() for c in path):
            raise BadRequest(
                400, f"health: an http check needs a path starting with /: {path!r}"
            )
    elif health.path is not None:
        raise BadRequest(400, "health: a tcp check has no path")
    _seconds("interval", health.interval)
    _seconds("timeout", health.timeout)
    _seconds("start_period", health.start_period, zero=True)
    if not 1 <= health.retries <= 1000:
        raise BadRequest(400, f"health: retries must be from 1 to 1000: {health.retries}")
    if health.port not in {p.internal for p in container.ports}:
        raise BadRequest(
            400,
            f"the health check's port {health.port} is not one of the "
            "application's published internal ports",
        )


def _check_replicas_range(replicas: object) -> None:
    """Refuse (`BadRequest`) a number of instances that is not 1 to 64."""
    if (
        not isinstance(replicas, int)
        or isinstance(replicas, bool)
        or not 1 <= replicas <= MAXIMUM_INSTANCES
    ):
        raise BadRequest(
            400, f"replicas must be an integer from 1 to {MAXIMUM_INSTANCES}: {replicas!r}"
        )


#: Why a container's name may not end in ``..`` and digits (the control
#: service's words).
RESERVED_SEPARATOR = (
    "a name ending in '..' and digits (like web..2) is reserved for the extra "
    "instances Flocker runs of a replicated application on one node"
)

#: The end of an extra instance's name: ``..`` and its number.
_INSTANCE_SUFFIX = re.compile(r"\.\.[0-9]+\Z")


def check_name(container: Container) -> None:
    """
    Refuse (`BadRequest`) a container named like an extra instance (ending
    in ``..`` and digits: ``my..app`` is fine, ``web..2`` is not), or a
    replicated one whose name leaves no room for its extra instances'
    ``..k``, as the control service does.
    """
    if _INSTANCE_SUFFIX.search(container.name) is not None:
        raise BadRequest(400, f"{RESERVED_SEPARATOR}: {container.name!r}")
    if container.replicas > 1 and len(container.name) > LONGEST_REPLICATED_NAME:
        raise BadRequest(
            400,
            f"a replicated application's name is at most {LONGEST_REPLICATED_NAME} "
            "characters, so that the names of its extra instances on a node "
            f"({container.name[:8]}...{INSTANCE_SEPARATOR}{container.replicas}) are valid too",
        )


def check_replicas(container: Container) -> None:
    """
    Refuse (`BadRequest`) a container running a number of instances that
    is not 1 to `MAXIMUM_INSTANCES`, or more than one with volumes, as the
    control service does.
    """
    _check_replicas_range(container.replicas)
    if container.replicas > 1 and container.volumes:
        raise BadRequest(400, ONE_INSTANCE_WITH_VOLUMES)


def _check_updated_health(
    current: Container, new: Container, changes: Mapping[str, Any]
) -> None:
    """
    Refuse an update whose health check probes a port the new ports do not
    publish: `BadRequest` when the request gives both (it contradicts
    itself), else `ContainerConflict` (it contradicts the configuration).
    """
    health = new.health
    published = sorted({p.internal for p in new.ports})
    if health is None or health.port in published:
        return
    if "health" in changes and "ports" in changes:
        raise BadRequest(
            400,
            f"the health check's port {health.port} is not one of the internal "
            f"ports the request publishes {published}",
        )
    if "health" in changes:
        raise ContainerConflict(
            409,
            f"the health check's port {health.port} is not one of the internal "
            f"ports container {current.name!r} publishes {published}; give the "
            "ports too",
        )
    raise ContainerConflict(
        409,
        f"the new ports leave out internal port {health.port}, which the health "
        f"check of container {current.name!r} probes; give a new health check "
        "too (or null for the default one)",
    )


class FakeContainerUpdates:
    """
    `FakeFlockerClient`'s container updates, rollbacks and health reports;
    the state they use is `FakeFlockerClient`'s.
    """

    _containers: dict[str, Container]
    #: Container name → the specification its last update replaced.
    _previous: dict[str, Container]
    #: (container name, node) → (status, reason) that node last reported.
    _health: dict[tuple[str, UUID], tuple[str, str | None]]
    _state_containers: list[ContainerState]
    _write: Callable[..., Deferred[Any]]
    _move: Callable[[Container, UUID], Container]
    _check_ports: Callable[[Container, UUID], None]

    def report_health(
        self,
        name: str,
        status: str,
        reason: str | None = None,
        node_uuid: UUID | None = None,
    ) -> None:
        """
        Make a node running an instance of a container report its health
        at the container's current revision, as its container agent does:
        ``node_uuid``, or the container's own node.  An update waiting for
        it ends when the container's own node, and every other node running
        one of its instances, report it ``healthy``, and is rolled back by
        the control service when any instance's node reports it
        ``unhealthy``.

        :raise ValueError: an unknown status, or no node given for a
            container that is not configured.
        """
        if status not in HEALTH_STATUSES:
            raise ValueError(f"not a health status: {status!r}")
        container = self._containers.get(name)
        node = node_uuid
        if node is None:
            if container is None:
                raise ValueError(f"container {name!r} is not configured: name the node")
            node = container.node_uuid
        self._health[(name, node)] = (status, reason)
        self._state_containers = [
            s.set(health=status, health_reason=reason)
            if (s.container.name, s.container.node_uuid) == (name, node)
            else s
            for s in self._state_containers
        ]
        if container is None or not container.updating:
            return
        instances = {
            s.container.node_uuid for s in self._state_containers if s.container.name == name
        } | {container.node_uuid}
        if status == "healthy" and all(
            self._health.get((name, n), ("", None))[0] == "healthy" for n in instances
        ):
            self._containers[name] = container.set(updating=False)
        elif status == "unhealthy":
            seen = f": {reason}" if reason else ""
            why = f"revision {container.revision} of {name!r} was unhealthy{seen}"
            self._containers[name] = self._restored(container, why)

    def _instance_states(self, nodes: Iterable[UUID]) -> list[ContainerState]:
        """
        What the nodes report once they run what the configuration asks:
        each container once per instance placed on each node
        (`instance_placement`), with the health that node last reported
        for them; the container's ``replicas`` is not reported (1).
        """
        nodes = set(nodes)
        states = []
        for container in self._containers.values():
            for node, _ in instance_placement(container, nodes):
                status, reason = self._health.get((container.name, node), (None, None))
                states.append(
                    ContainerState(
                        container=container.set(node_uuid=node, replicas=1),
                        running=True,
                        health=status,
                        health_reason=reason,
                    )
                )
        return states

    def _listed_states(self) -> list[ContainerState]:
        """
        The containers' state as the control service lists it: one entry
        per instance on a node that reported their health, one for all of
        them on a node that reported none, by name and node.
        """
        listed = []
        once = set()
        for s in self._state_containers:
            key = (s.container.name, s.container.node_uuid)
            if key not in self._health:
                if key in once:
                    continue
                once.add(key)
            listed.append(s)
        return sorted(listed, key=lambda c: (c.container.name, str(c.container.node_uuid)))

    def _restored(self, container: Container, reason: str | None) -> Container:
        """The previous specification as the container's next revision."""
        previous = self._previous.pop(container.name)
        return previous.set(
            node_uuid=container.node_uuid,
            revision=container.revision + 1,
            updating=False,
            update_failed=reason,
            previous_image=None,
        )

    def update_container(
        self,
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
        """See `IFlockerAPIV1Client.update_container`."""
        given: dict[str, Any] = {
            "image": image,
            "environment": environment,
            "command_line": command_line,
            "ports": ports,
            "links": links,
            "cpu_shares": cpu_shares,
            "memory_limit": memory_limit,
            "swappiness": swappiness,
            "restart_policy": restart_policy,
            "health": health,
            "replicas": replicas,
        }
        changes = {k: v for k, v in given.items() if v is not UNCHANGED}
        if "command_line" in changes and changes["command_line"] is not None:
            changes["command_line"] = tuple(changes["command_line"])

        def change() -> Container:
            if not changes and node_uuid is UNCHANGED:
                raise BadRequest(400, "nothing to update: give at least one field")
            if "replicas" in changes:
                _check_replicas_range(changes["replicas"])
            container = self._containers.get(name)
            if container is None:
                raise UnknownContainer(404, f"unknown application {name!r}")
            try:
                new = container.specification().set(**changes)
            except (TypeError, ValueError) as e:
                raise BadRequest(400, str(e)) from None
            if new != container.specification():
                _check_updated_health(container, new, changes)
                check_health(new)
                check_replicas(new)
                check_name(new)
                self._check_ports(new, container.node_uuid)
                self._previous[name] = container.specification()
                container = new.set(
                    revision=container.revision + 1,
                    updating=True,
                    previous_image=container.image,
                )
            if node_uuid is not UNCHANGED:
                container = self._move(container, node_uuid)
            self._containers[name] = container
            return container

        return self._write(change, configuration_tag)

    def rollback_container(
        self, name: str, configuration_tag: str | None = None
    ) -> Deferred[Container]:
        """See `IFlockerAPIV1Client.rollback_container`."""

        def change() -> Container:
            container = self._containers.get(name)
            if container is None:
                raise UnknownContainer(404, f"unknown application {name!r}")
            if container.previous_image is None or name not in self._previous:
                raise NothingToRollBack(
                    409,
                    f"application {name!r} has no previous specification to roll back to",
                )
            rolled_back = self._restored(container, None)
            self._check_ports(rolled_back, rolled_back.node_uuid)
            self._containers[name] = rolled_back
            return rolled_back

        return self._write(change, configuration_tag)
