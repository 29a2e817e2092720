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

from flocker.control import (
    ApplicationHealth,
    Deployment,
    DeploymentState,
    instance_base,
)

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


def _instances(
    name: str, cluster_state: DeploymentState, addresses: Mapping[str, str]
) -> list[tuple[str, ApplicationHealth, str]]:
    """
    The healthy instances of an application, by node UUID and then
    instance name (a node may run several: ``web``, ``web..2``): (node,
    the instance's reported health, the node's address); nodes without a
    known address are left out.
    """
    found = []
    for uuid, state in sorted(cluster_state.nodes.items()):
        host = addresses.get(uuid) or state.hostname
        if not host:
            continue
        for instance, health in sorted((state.health or {}).items()):
            if instance_base(instance) == name and health.status == "healthy":
                found.append((uuid, health, host))
    return found


def routes_for_node(
    node_uuid: str,
    configuration: Deployment,
    cluster_state: DeploymentState,
    addresses: Mapping[str, str],
) -> PMap[int, Route]:
    """
    The routes the router on ``node_uuid`` needs: external port → `Route`.

    The router owns every external port of every configured application,
    on every node, the application's own node included (Docker publishes
    containers on ports it chooses, reported in ``NodeState.health``).
    Each port goes to the application's healthy instances: a node
    reporting it ``healthy`` with the internal port published, at that
    node's address (from ``addresses``, falling back to the hostname the
    node reported) and the port Docker chose there.

    * Every healthy instance is a target, on every node, several on a node
      that runs several (each published on its own port), whatever
      revision it runs: while
      an update rolls over an application's instances, the old revision's
      keep serving beside the new one's until each is drained and
      replaced, so the application keeps its capacity (an instance about
      to stop reports itself ``stopping``, not healthy, and gets no new
      connection).
    * With none, the route has no target: the router holds new connections
      until one is healthy, instead of refusing them — a move or an update
      costs clients latency, not errors.

    Should two applications publish the same external port (on different
    nodes), the first by name gets it.

    :param node_uuid: the node the routes are for (every node gets the
        same routes).
    :param configuration: the desired configuration.
    :param cluster_state: what the nodes last reported.
    :param addresses: node UUID → the address its router and Docker use.
    """
    routes: dict[int, Route] = {}
    for app, _ in configuration.all_applications():
        instances = _instances(app.name, cluster_state, addresses)
        for port in sorted(app.ports, key=lambda p: (p.external_port, p.internal_port)):
            if port.external_port in routes:
                continue
            # Two nodes' reports may name the same address and port (a node
            # reinstalled under a new UUID while its old state lingers):
            # one target each.
            targets = list(
                dict.fromkeys(
                    Target(host=host, port=health.ports[port.internal_port])
                    for _, health, host in instances
                    if port.internal_port in health.ports
                )
            )
            routes[port.external_port] = Route(
                external_port=port.external_port, targets=targets
            )
    return pmap(routes)
