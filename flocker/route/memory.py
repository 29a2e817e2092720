"""An in-memory `IRouter` for other packages' unit tests (the container agent's)."""

from __future__ import annotations

from collections.abc import Set

from pyrsistent import PMap, pmap, pset
from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from ._interface import IRouter, check_routes
from ._model import Route, Target

__all__ = ["MemoryRouter"]


@implementer(IRouter)
class MemoryRouter:
    """
    A router that forwards nothing but remembers its routes.

    It accepts no connections, so it holds none and has none open.

    Every routed port counts as listening, except those in ``busy`` (ports
    a test pretends something else holds): they are "tried again" whenever
    ``busy`` changes and `set_routes` is called.

    :ivar history: every distinct set of routes given, oldest first.
    """

    def __init__(self) -> None:
        """A router with no routes."""
        self._routes: PMap[int, Route] = pmap()
        self.busy: set[int] = set()
        self.history: list[PMap[int, Route]] = []

    def set_routes(self, routes: PMap[int, Route]) -> Deferred[None]:
        """Replace the routes; see `IRouter.set_routes`."""
        try:
            new = check_routes(routes)
        except Exception as e:
            return fail(e)
        if new != self._routes:
            self.history.append(new)
        self._routes = new
        return succeed(None)

    def routes(self) -> PMap[int, Route]:
        """The routes last given."""
        return self._routes

    def listening(self) -> Set[int]:
        """Every routed port not in ``busy``."""
        return pset(p for p in self._routes if p not in self.busy)

    def unavailable(self) -> Set[int]:
        """The routed ports in ``busy``."""
        return pset(p for p in self._routes if p in self.busy)

    def held(self) -> PMap[int, int]:
        """Nothing: no connection is accepted, so none is held."""
        return pmap()

    def connections(self) -> PMap[Target, int]:
        """Nothing: no connection is forwarded."""
        return pmap()
