"""Routes as values, and which routes a node needs for a deployment.

A `Route` says "connections to this external port go to one of these
targets" (a `Target` is a host and port); a route with no targets holds
its connections until it has some.  `routes_for_node` is the pure
calculation the container agent runs after each convergence pass to know
what its node's router should forward.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pyrsistent import InvariantException, PClass, PMap, field, pmap, pvector_field

from flocker.control import Deployment, DeploymentState

__all__ = ["DEFAULT_HOLD_TIMEOUT", "Route", "Routes", "Target", "routes_for_node"]

#: Seconds a connection to a port with no (reachable) target is held.
DEFAULT_HOLD_TIMEOUT = 30.0


def _port_invariant(port: int) -> tuple[bool, str]:
    return (0 < port < 65536, f"not a TCP port: {port!r}")


def _host_invariant(host: str) -> tuple[bool, str]:
    return (
        bool(host) and not any(c.isspace() or c == "\0" for c in host),
        f"not a host: {host!r}",
    )


def _seconds(value: Any) -> Any:
    """An int number of seconds as a float; anything else as it is (to be checked)."""
    return float(value) if type(value) is int else value


class Target(PClass):
    """
    Where a routed connection may go: ``host:port``.

    :ivar host: an address (IPv4 or IPv6) or host name.
    :ivar port: the TCP port there.
    """

    host = field(type=str, mandatory=True, invariant=_host_invariant)
    port = field(type=int, mandatory=True, invariant=_port_invariant)

    @property
    def address(self) -> str:
        """The target as ``host:port``."""
        return f"{self.host}:{self.port}"


class Route(PClass):
    """
    Forward connections on ``external_port`` to one of ``targets``.

    With several targets each new connection goes to the one with the
    fewest connections open through the router; with none, connections
    are accepted and held (see `flocker.route.IRouter`) for up to
    ``hold_timeout`` seconds until the route has a target.

    ``Route(external_port=p, target_host=h, target_port=q)`` is accepted
    too, as the route with the one target ``Target(host=h, port=q)``.

    :ivar external_port: the port the router listens on, at its node's address.
    :ivar targets: where connections go, in the order ties between equally
        loaded targets are broken; no target appears twice.
    :ivar hold_timeout: the most seconds a connection waits, held, for a
        reachable target before it is closed (0: closed at once).
    """

    external_port = field(type=int, mandatory=True, invariant=_port_invariant)
    targets = pvector_field(Target)
    hold_timeout = field(
        type=float,
        factory=_seconds,
        initial=DEFAULT_HOLD_TIMEOUT,
        invariant=lambda t: (
            math.isfinite(t) and t >= 0,
            f"not a number of seconds: {t!r}",
        ),
    )

    def __invariant__(self) -> tuple[bool, str]:
        """No target appears twice."""
        return (
            len(set(self.targets)) == len(self.targets),
            f"a target appears twice in {[t.address for t in self.targets]}",
        )

    def __new__(cls, **kwargs: Any) -> Route:
        """Build the route, turning ``target_host``/``target_port`` into one target."""
        if "target_host" in kwargs or "target_port" in kwargs:
            missing = tuple(
                f"Route.{name}"
                for name in ("target_host", "target_port")
                if name not in kwargs
            )
            if missing:
                raise InvariantException((), missing, "Field invariant failed")
            if "targets" in kwargs:
                raise TypeError("give either targets or target_host and target_port")
            kwargs["targets"] = [
                Target(host=kwargs.pop("target_host"), port=kwargs.pop("target_port"))
            ]
        route: Route = super().__new__(cls, **kwargs)
        return route


#: What a router is given: external port → the `Route` for it.
Routes = PMap  # PMap[int, Route]


def routes_for_node(
    node_uuid: str,
    configuration: Deployment,
    cluster_state: DeploymentState,
    addresses: Mapping[str, str],
) -> PMap[int, Route]:
    """
    The routes the router on ``node_uuid`` needs: external port → `Route`.

    Every external port of every configured application goes to the node
    running it, on that port (Docker publishes it on the node's address),
    except where the port belongs to this node:

    * applications configured for ``node_uuid`` get no route, even while
      they still run elsewhere during a move, so that Docker can publish
      their ports here when the container agent starts them;
    * applications reported running on ``node_uuid`` (even if configured
      elsewhere: the old end of a move) get no route, since Docker already
      publishes their ports on this node's address.  Their ports are not
      routed for any other application either.

    "The node running it" is the configured node when it reports the
    application running, otherwise another node reporting it running (the
    lowest UUID, e.g. the old node mid-move).  An application that no node
    reports running — between the old container stopping and the new one
    starting during a move — gets no route: a client's connection is then
    refused at once and its retry reaches the new container as soon as it
    runs, instead of being accepted and held while Docker is still setting
    up the new container's network.  Its address comes from ``addresses``,
    falling back to the hostname the node reported; an application whose
    node has no known address gets no route.  Should two applications on
    different nodes publish the same external port, the first by name gets
    it.

    :param node_uuid: the node the routes are for.
    :param configuration: the desired configuration.
    :param cluster_state: what the nodes last reported.
    :param addresses: node UUID → the address its router and Docker use.
    """
    reporters: dict[str, list[str]] = {}
    local_ports: set[int] = set()
    for uuid, state in sorted(cluster_state.nodes.items()):
        for name, app in (state.applications or {}).items():
            reporters.setdefault(name, []).append(uuid)
            if uuid == node_uuid:
                local_ports.update(p.external_port for p in app.ports)
    for app in configuration.get_node(node_uuid).applications.values():
        local_ports.update(p.external_port for p in app.ports)

    routes: dict[int, Route] = {}
    for app, configured in configuration.all_applications():
        running = reporters.get(app.name, [])
        if configured == node_uuid or node_uuid in running or not running:
            continue
        if configured in running:
            target = configured
        else:
            target = running[0]
        host = addresses.get(target) or cluster_state.get_node(target).hostname
        if not host:
            continue
        for port in sorted(p.external_port for p in app.ports):
            if port in local_ports or port in routes:
                continue
            routes[port] = Route(
                external_port=port, targets=[Target(host=host, port=port)]
            )
    return pmap(routes)
