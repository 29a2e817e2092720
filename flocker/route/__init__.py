"""
Routing: every node accepts every application's published ports.

A client (or a linked application) may connect to an application's external
port on any node; the node's router forwards the connection to the node
running the application, so nothing needs telling when the application
moves.  The container agent owns one `NodeRouter` per node and, after each
convergence pass, gives it `routes_for_node(...)`: routes for applications
running elsewhere only, since Docker already publishes the ports of local
applications on the node's address.

A `Route` may have several `Target`s (each connection goes to the least
loaded, and fails over to the others) or none: then the router accepts and
holds connections, for up to the route's ``hold_timeout``, until it is
given targets.  `MemoryRouter` is the fake; ``flocker.route.testtools`` has
the contract suite both pass.
"""

from ._interface import InvalidRoutes, IRouter, check_routes
from ._model import DEFAULT_HOLD_TIMEOUT, Route, Routes, Target, routes_for_node
from ._proxy import DEFAULT_CONNECT_TIMEOUT, NodeRouter
from .memory import MemoryRouter

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_HOLD_TIMEOUT",
    "IRouter",
    "InvalidRoutes",
    "MemoryRouter",
    "NodeRouter",
    "Route",
    "Routes",
    "Target",
    "check_routes",
    "routes_for_node",
]
