"""
The contract every `IRouter` passes, and helpers for tests of routers.

`make_irouter_tests` builds a pytest test class from a factory of running
routers whose ports are all free; each router (real and fake) subclasses it
in one line.  `fired` reads the result of a Deferred that has already fired.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from pyrsistent import pmap
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from ._interface import InvalidRoutes, IRouter
from ._model import DEFAULT_HOLD_TIMEOUT, Route, Target

T = TypeVar("T")

__all__ = ["fired", "make_irouter_tests", "route", "route_to"]


def fired(d: Deferred[T]) -> T:
    """The result of ``d``, which has fired; a failure is raised."""
    results: list[Any] = []
    d.addBoth(results.append)
    assert results, f"{d!r} has not fired"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]  # type: ignore[no-any-return]


def route(port: int, host: str = "127.0.0.21", target_port: int | None = None) -> Route:
    """A `Route` from ``port`` to ``host`` on ``target_port`` (``port`` by default)."""
    return Route(
        external_port=port,
        target_host=host,
        target_port=port if target_port is None else target_port,
    )


def route_to(
    port: int, *targets: tuple[str, int], hold_timeout: float = DEFAULT_HOLD_TIMEOUT
) -> Route:
    """
    A `Route` from ``port`` to each ``(host, port)`` of ``targets``, in order.

    With no targets, a route that holds its connections.
    """
    return Route(
        external_port=port,
        targets=[Target(host=host, port=p) for host, p in targets],
        hold_timeout=hold_timeout,
    )


def make_irouter_tests(factory: Callable[[], IRouter]) -> type:
    """
    A test class checking the `IRouter` contract.

    :param factory: makes a new running router; every port the tests route
        can be listened on.
    """

    class IRouterContract:
        """The behaviour every `IRouter` shares."""

        def test_interface(self) -> None:
            """The router provides `IRouter`."""
            assert verifyObject(IRouter, factory())

        def test_initially_empty(self) -> None:
            """A new router has no routes, listens nowhere, holds nothing."""
            router = factory()
            assert router.routes() == pmap()
            assert router.listening() == set()
            assert router.unavailable() == set()
            assert router.held() == pmap()
            assert router.connections() == pmap()

        def test_several_targets_and_hold(self) -> None:
            """Routes with several targets, or none (holding), listen too."""
            router = factory()
            routes = pmap(
                {
                    8080: route_to(8080, ("127.0.0.21", 80), ("127.0.0.22", 80)),
                    8081: route_to(8081, hold_timeout=2.5),
                }
            )
            fired(router.set_routes(routes))
            assert router.routes() == routes
            assert router.listening() == {8080, 8081}
            assert router.unavailable() == set()
            assert router.held() == pmap()

        def test_retarget_keeps_listening(self) -> None:
            """Taking a route's targets away, or giving it some, keeps its port."""
            router = factory()
            fired(router.set_routes(pmap({8080: route(8080)})))
            fired(router.set_routes(pmap({8080: route_to(8080)})))
            assert router.listening() == {8080}
            fired(router.set_routes(pmap({8080: route_to(8080, ("127.0.0.9", 1))})))
            assert router.routes() == pmap({8080: route_to(8080, ("127.0.0.9", 1))})
            assert router.listening() == {8080}

        def test_set_routes(self) -> None:
            """The routes given are the routes, and each port listens."""
            router = factory()
            routes = pmap({8080: route(8080), 5432: route(5432, "127.0.0.22")})
            assert fired(router.set_routes(routes)) is None
            assert router.routes() == routes
            assert router.listening() == {8080, 5432}

        def test_idempotent(self) -> None:
            """Giving the same routes again changes nothing."""
            router = factory()
            routes = pmap({8080: route(8080)})
            fired(router.set_routes(routes))
            fired(router.set_routes(routes))
            assert router.routes() == routes
            assert router.listening() == {8080}

        def test_replaces(self) -> None:
            """The routes given replace the old ones: missing ports stop listening."""
            router = factory()
            fired(router.set_routes(pmap({8080: route(8080), 8081: route(8081)})))
            routes = pmap({8081: route(8081, "127.0.0.23"), 8082: route(8082)})
            fired(router.set_routes(routes))
            assert router.routes() == routes
            assert router.listening() == {8081, 8082}

        def test_empty(self) -> None:
            """Empty routes stop every listener."""
            router = factory()
            fired(router.set_routes(pmap({8080: route(8080)})))
            fired(router.set_routes(pmap()))
            assert router.routes() == pmap()
            assert router.listening() == set()

        def test_plain_dict(self) -> None:
            """Any mapping of port → route is accepted, kept as a `PMap`."""
            router = factory()
            fired(router.set_routes({8080: route(8080)}))  # type: ignore[arg-type]
            assert router.routes() == pmap({8080: route(8080)})

        @pytest.mark.parametrize(
            "bad",
            [
                None,
                [route(8080)],
                {8081: route(8080)},
                {"8080": route(8080)},
                {True: route(1)},
                {8080: ("127.0.0.21", 8080)},
                {8080: Target(host="127.0.0.21", port=8080)},
                {8080: [route(8080)]},
            ],
            ids=[
                "none",
                "list",
                "wrong-key",
                "str-key",
                "bool-key",
                "tuple",
                "target",
                "list-of-routes",
            ],
        )
        def test_invalid(self, bad: Any) -> None:
            """Something other than port → `Route` fails and changes nothing."""
            router = factory()
            routes = pmap({8082: route(8082)})
            fired(router.set_routes(routes))
            with pytest.raises(InvalidRoutes):
                fired(router.set_routes(bad))
            assert router.routes() == routes
            assert router.listening() == {8082}

    return IRouterContract
