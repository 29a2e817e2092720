"""The interface of a node's router, and the checks on what it is given."""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Any

from pyrsistent import PMap, pmap
from twisted.internet.defer import Deferred
from zope.interface import Interface

from ._model import Route

__all__ = ["IRouter", "InvalidRoutes", "check_routes"]


class InvalidRoutes(ValueError):
    """``set_routes`` was given something that is not a map of port → `Route`."""


class IRouter(Interface):
    """
    Forwards connections on a node's address to wherever applications run.

    One router serves one node (one address).  For each external port it is
    given a `Route` for, it accepts connections on ``<its address>:<port>``
    and forwards each, both ways, to the route's target.  The container
    agent calls `set_routes` after every convergence pass with the routes
    from `flocker.route.routes_for_node`.

    The contract with the container agent: a port Docker publishes on this
    node's address (an application running here) must not be given a
    route, since the router would then compete with Docker for it.
    `routes_for_node` leaves such ports out.
    """

    def set_routes(routes: PMap[int, Route]) -> Deferred[None]:
        """
        Make ``routes`` the router's whole set of routes (not an addition).

        Idempotent and diff-based: a port no longer in ``routes`` stops
        listening (connections already forwarded carry on until either end
        closes them); a port whose target changed sends new connections to
        the new target at once, while its listener stays as it is; unchanged
        ports are not touched at all.

        Failing to listen on a port (it is in use) neither fails the call
        nor affects other ports: it is logged and tried again later, until it
        works or the port is no longer routed.

        :param routes: external port → `Route` whose ``external_port`` is
            that key.
        :return: a Deferred firing with ``None`` once the ports no longer
            routed have stopped listening and the new ones have been tried;
            it fails with `InvalidRoutes` (changing nothing) if ``routes``
            is not such a map.
        """

    def routes() -> PMap[int, Route]:
        """The routes last given to `set_routes` (empty at first)."""

    def listening() -> Set[int]:
        """
        The external ports actually accepting connections now.

        A routed port that could not be listened on yet (it is being tried
        again) or whose router is not running is missing from it.
        """


def check_routes(routes: Any) -> PMap[int, Route]:
    """
    ``routes`` as a `PMap` of port → `Route`, checked.

    :raise InvalidRoutes: it is not a mapping, a key is not a port number,
        a value is not a `Route`, or a route is keyed by another port.
    """
    if not isinstance(routes, Mapping):
        raise InvalidRoutes(f"routes must be a mapping, not {type(routes).__name__}")
    for port, route in routes.items():
        if not isinstance(route, Route):
            raise InvalidRoutes(f"the route for {port!r} is not a Route: {route!r}")
        if type(port) is not int or port != route.external_port:
            raise InvalidRoutes(
                f"the route for port {route.external_port} is keyed by {port!r}"
            )
    return pmap(routes)
