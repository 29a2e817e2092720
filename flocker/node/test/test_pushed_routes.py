"""Tests for `flocker.node._pushed_routes`."""

from __future__ import annotations

from pyrsistent import pmap

from flocker.node._pushed_routes import PushedRoutes
from flocker.route import MemoryRouter, Route, Target
from flocker.route.testtools import fired, make_irouter_tests

OLD = pmap({80: Route(external_port=80, targets=[Target(host="10.0.0.1", port=3000)])})
NEW = pmap({80: Route(external_port=80, targets=[Target(host="10.0.0.2", port=3001)])})


def _running() -> PushedRoutes:
    """A `PushedRoutes` over a memory router, nothing pushed yet."""
    return PushedRoutes(MemoryRouter())


class TestPushedRoutesContract(make_irouter_tests(_running)):  # type: ignore[misc]
    """Before any push, `PushedRoutes` is the router it wraps: the `IRouter` contract."""


def test_push_sets_the_routes_at_once() -> None:
    """The routes of a pushed cluster state are the router's at once."""
    routing = _running()
    fired(routing.push(NEW))
    assert routing.router.routes() == NEW
    fired(routing.push(NEW))  # the same again: nothing to do
    assert routing.routes() == NEW


def test_a_pass_planned_from_an_older_state_cannot_set_its_older_routes() -> None:
    """
    A convergence pass planned from a cluster state older than the newest
    pushed one asks for that state's routes: the newest pushed routes stay.
    """
    routing = _running()
    fired(routing.push(NEW))
    fired(routing.set_routes(OLD))
    assert routing.router.routes() == NEW


def test_before_any_push_a_pass_sets_its_routes() -> None:
    """With no state pushed yet (tests, a pass on its own), a pass's routes are set."""
    routing = _running()
    fired(routing.set_routes(OLD))
    assert routing.router.routes() == OLD
