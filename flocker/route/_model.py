"""Routes as values, and which routes a node needs for a deployment.

A `Route` says "connections to this external port go to that host and
port".  `routes_for_node` is the pure calculation the container agent runs
after each convergence pass to know what its node's router should forward.
"""

from __future__ import annotations

from collections.abc import Mapping

from pyrsistent import PClass, PMap, field, pmap

from flocker.control import Deployment, DeploymentState

__all__ = ["Route", "Routes", "routes_for_node"]


def _port_invariant(port: int) -> tuple[bool, str]:
    return (0 < port < 65536, f"not a TCP port: {port!r}")


class Route(PClass):
    """
    Forward connections on ``external_port`` to ``target_host:target_port``.

    :ivar external_port: the port the router listens on, at its node's address.
    :ivar target_host: the address (or host name) of the node running the
        application.
    :ivar target_port: the port there (the application's external port,
        which Docker publishes on that node's address).
    """

    external_port = field(type=int, mandatory=True, invariant=_port_invariant)
    target_host = field(
        type=str,
        mandatory=True,
        invariant=lambda h: (
            bool(h) and not any(c.isspace() or c == "\0" for c in h),
            f"not a host: {h!r}",
        ),
    )
    target_port = field(type=int, mandatory=True, invariant=_port_invariant)

    @property
    def target(self) -> str:
        """The target as ``host:port``."""
        return f"{self.target_host}:{self.target_port}"


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
            routes[port] = Route(external_port=port, target_host=host, target_port=port)
    return pmap(routes)
