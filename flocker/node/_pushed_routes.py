"""
The router as the container agent's convergence passes see it.

The container agent gives its router the routes of every cluster state the
control service pushes as soon as it arrives (`PushedRoutes.push`), without
waiting for a pass.  A pass planned from an older state, still running when
a newer one arrived, would then set the older state's routes again (a
stopping instance routed to once more, until the next pass).  Its
`PushedRoutes.set_routes` gives the router the newest pushed routes
instead: routes never go back to an older cluster state.
"""

from __future__ import annotations

from collections.abc import Set

import attr
from pyrsistent import PMap
from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from flocker.route import IRouter, Route, Target


@implementer(IRouter)
@attr.s(eq=False)
class PushedRoutes:
    """
    An `IRouter` whose routes follow the newest cluster state pushed.

    :ivar router: the node's router.
    """

    router: IRouter = attr.ib()
    _pushed: PMap[int, Route] | None = attr.ib(default=None, init=False)

    def push(self, routes: PMap[int, Route]) -> Deferred[None]:
        """The routes of a newly pushed cluster state: the router's from now on."""
        self._pushed = routes
        if routes == self.router.routes():
            return succeed(None)
        return self.router.set_routes(routes)

    def set_routes(self, routes: PMap[int, Route]) -> Deferred[None]:
        """
        The routes a convergence pass planned: the newest pushed ones are
        set instead, once a state was pushed (see the module docstring).
        """
        return self.router.set_routes(routes if self._pushed is None else self._pushed)

    def routes(self) -> PMap[int, Route]:
        """See `IRouter.routes`."""
        return self.router.routes()

    def listening(self) -> Set[int]:
        """See `IRouter.listening`."""
        return self.router.listening()

    def unavailable(self) -> Set[int]:
        """See `IRouter.unavailable`."""
        return self.router.unavailable()

    def held(self) -> PMap[int, int]:
        """See `IRouter.held`."""
        return self.router.held()

    def connections(self) -> PMap[Target, int]:
        """See `IRouter.connections`."""
        return self.router.connections()


__all__ = ["PushedRoutes"]
