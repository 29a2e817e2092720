"""The interface of a node's router, and the checks on what it is given."""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Any

from pyrsistent import PMap, pmap
from twisted.internet.defer import Deferred
from zope.interface import Interface

from ._model import Route, Target

__all__ = ["IRouter", "InvalidRoutes", "check_routes"]


class InvalidRoutes(ValueError):
    """``set_routes`` was given something that is not a map of port → `Route`."""


class IRouter(Interface):
    """
    Forwards connections on a node's address to wherever applications run.

    One router serves one node (one address).  For each external port it is
    given a `Route` for, it accepts connections on ``<its address>:<port>``
    and forwards each, both ways, to one of the route's targets.  The
    container agent calls `set_routes` after every convergence pass.

    **Several targets.**  A new connection goes to the target with the
    fewest connections open through this router at that moment (counting
    those still being connected); among equally loaded targets the router
    takes them in turn, starting after the one it chose last for that port,
    so equal targets share connections evenly.  If connecting to the chosen
    target fails (refused, timed out), the route's other targets are tried,
    each at most once, least loaded first; if all fail, the connection is
    held, as if the route had no target.

    **Holding.**  A connection to a port whose route has no target (or
    whose targets all failed) is accepted and held: the router forwards
    nothing yet, and buffers at most a little of what the client sends
    (after that the client is no longer read).  A held connection is

    * forwarded as soon as `set_routes` gives its port other, non-empty
      targets (each of them tried as above), with whatever the client sent
      meanwhile; a connection whose targets all failed has them tried
      again every half second or so, whether or not the route changes;
    * closed once it has been held for the route's ``hold_timeout`` in all
      (logged with the outcome ``held_too_long``);
    * closed when its port is no longer routed (``unrouted``) or the
      router stops (``router_stopped``);
    * closed when the client goes away or closes its side (``client_gone``),
      also while one of its targets is being tried again: a client that
      stopped waiting is never forwarded later, when it cannot hear the
      answer.  (A client never held has its half-close forwarded with the
      rest.)

    Changing a route's targets never disturbs connections already
    forwarded: they carry on until either end closes them.  Each connection
    is logged once, when it ends, with the target it went to, the targets
    that failed, how long it was held, its byte counts and its outcome.

    The contract with the container agent: a port Docker publishes on this
    node's address must not be given a route, since the router would then
    compete with Docker for it.
    """

    def set_routes(routes: PMap[int, Route]) -> Deferred[None]:
        """
        Make ``routes`` the router's whole set of routes (not an addition).

        Idempotent and diff-based: a port no longer in ``routes`` stops
        listening and closes the connections it holds (connections already
        forwarded carry on until either end closes them); a port whose
        route changed sends new connections by the new route at once, and
        forwards the connections it holds if it now has other, non-empty
        targets, while its listener stays as it is; unchanged ports are not
        touched at all.  A route with no targets listens too, to hold.

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

    def unavailable() -> Set[int]:
        """
        The routed ports the router tried to listen on and could not
        (something else holds them): they are being tried again.  A port
        not tried yet, because the router is not running, is not in it.
        """

    def held() -> PMap[int, int]:
        """External port → how many connections it holds now (only ports holding some)."""

    def connections() -> PMap[Target, int]:
        """
        Target → how many connections through this router are open to it
        now, or being connected to it (only targets with some).
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
