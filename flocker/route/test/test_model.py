"""Tests for `Route` and `routes_for_node`."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyrsistent import InvariantException, pmap

from flocker.control import (
    Application,
    ApplicationHealth,
    Deployment,
    DeploymentState,
    Node,
    NodeState,
    Port,
)
from flocker.control.strategies import deployments

from .. import DEFAULT_HOLD_TIMEOUT, Route, Target, routes_for_node

N1 = "11111111-1111-1111-1111-111111111111"
N2 = "22222222-2222-2222-2222-222222222222"
N3 = "33333333-3333-3333-3333-333333333333"
ADDRESSES = {N1: "127.0.0.11", N2: "127.0.0.12", N3: "127.0.0.13"}


def app(name: str, *external: int) -> Application:
    """An application publishing ``external`` ports (internal port 80 + i)."""
    return Application(
        name=name,
        image="flocker-test/busybox",
        ports=[
            Port(internal_port=80 + i, external_port=p) for i, p in enumerate(external)
        ],
    )


def deployment(**placement: Any) -> Deployment:
    """A deployment: node UUID → list of applications."""
    return Deployment(
        nodes={
            uuid: Node(uuid=uuid, applications={a.name: a for a in apps})
            for uuid, apps in placement.items()
        }
    )


def running(**placement: Any) -> DeploymentState:
    """
    A state in which each node UUID reports those applications running
    and healthy, at revision 0, each internal port published on the node
    at 40000 + its internal port (modulo 20000).
    """
    return DeploymentState(
        nodes={
            uuid: NodeState(
                uuid=uuid,
                applications={a.name: a for a in apps},
                health={a.name: healthy(a) for a in apps},
            )
            for uuid, apps in placement.items()
        }
    )


def healthy(
    application: Application, status: str = "healthy", revision: int | None = 0
) -> ApplicationHealth:
    """A report of the application's instance, its ports published at 40000 + internal."""
    return ApplicationHealth(
        application=application.name,
        status=status,
        revision=revision,
        ports={p.internal_port: p.internal_port % 20000 + 40000 for p in application.ports},
    )


def reported(**placement: Any) -> DeploymentState:
    """A state: node UUID → list of `ApplicationHealth` it reports."""
    return DeploymentState(
        nodes={
            uuid: NodeState(uuid=uuid, health={h.application: h for h in healths})
            for uuid, healths in placement.items()
        }
    )


def to(port: int, *targets: tuple[str, int]) -> Route:
    """A route from ``port`` to ``targets`` (none: held)."""
    return Route(
        external_port=port, targets=[Target(host=h, port=p) for h, p in targets]
    )


def r(port: int, host: str) -> Route:
    """A route from ``port`` to the same port on ``host``."""
    return Route(external_port=port, targets=[Target(host=host, port=port)])


class TestRoute:
    """`Route` and `Target` values."""

    def test_address(self) -> None:
        """A target's ``address`` is ``host:port``."""
        assert Target(host="h", port=2).address == "h:2"

    def test_one_target_shorthand(self) -> None:
        """``target_host`` and ``target_port`` make a route with that one target."""
        route = Route(external_port=1, target_host="h", target_port=2)
        assert route == Route(external_port=1, targets=[Target(host="h", port=2)])
        assert route.hold_timeout == DEFAULT_HOLD_TIMEOUT

    def test_several_targets(self) -> None:
        """A route keeps its targets in the order given."""
        targets = [Target(host="b", port=1), Target(host="a", port=1)]
        assert list(Route(external_port=1, targets=targets).targets) == targets

    def test_hold_route(self) -> None:
        """A route without targets (one that holds) is a route."""
        route = Route(external_port=8080)
        assert list(route.targets) == []
        assert route.hold_timeout == 30.0

    def test_hold_timeout(self) -> None:
        """The hold timeout may be given in whole or fractional seconds, or 0."""
        assert Route(external_port=1, hold_timeout=5).hold_timeout == 5.0
        assert Route(external_port=1, hold_timeout=0.25).hold_timeout == 0.25
        assert Route(external_port=1, hold_timeout=0).hold_timeout == 0.0

    def test_set_keeps_shape(self) -> None:
        """Evolving a route (``set``) keeps its targets."""
        route = Route(external_port=1, target_host="h", target_port=2)
        assert route.set(hold_timeout=1.0).targets == route.targets

    @pytest.mark.parametrize(
        "fields",
        [
            {"external_port": 0, "target_host": "h", "target_port": 1},
            {"external_port": 65536, "target_host": "h", "target_port": 1},
            {"external_port": 1, "target_host": "h", "target_port": -1},
            {"external_port": 1, "target_host": "", "target_port": 1},
            {"external_port": 1, "target_host": "a b", "target_port": 1},
            {"external_port": 1, "target_host": "a\0", "target_port": 1},
            {"external_port": 1, "targets": [Target(host="h", port=1)] * 2},
            {"external_port": 1, "hold_timeout": -1},
            {"external_port": 1, "hold_timeout": float("nan")},
            {"external_port": 1, "hold_timeout": float("inf")},
        ],
        ids=[
            "port-0",
            "port-65536",
            "negative-target-port",
            "empty-host",
            "blank-host",
            "nul-host",
            "duplicate-target",
            "negative-hold",
            "nan-hold",
            "infinite-hold",
        ],
    )
    def test_invalid(self, fields: dict[str, Any]) -> None:
        """Bad ports, hosts and hold timeouts, and repeated targets, are refused."""
        with pytest.raises(InvariantException):
            Route(**fields)

    @pytest.mark.parametrize(
        "fields",
        [
            {"host": "", "port": 1},
            {"host": "h", "port": 0},
            {"host": "h\n", "port": 1},
            {"port": 1},
        ],
        ids=["empty-host", "port-0", "newline-host", "no-host"],
    )
    def test_invalid_target(self, fields: dict[str, Any]) -> None:
        """A target needs a host without blanks and a TCP port."""
        with pytest.raises(InvariantException):
            Target(**fields)

    def test_mandatory(self) -> None:
        """The shorthand needs both halves of its target; the port is always needed."""
        with pytest.raises(InvariantException):
            Route(external_port=1, target_port=1)
        with pytest.raises(InvariantException):
            Route(external_port=1, target_host="h")
        with pytest.raises(InvariantException):
            Route(targets=[])

    def test_shorthand_or_targets(self) -> None:
        """Giving both the shorthand and ``targets`` is refused."""
        with pytest.raises(TypeError):
            Route(
                external_port=1,
                target_host="h",
                target_port=1,
                targets=[Target(host="h", port=1)],
            )

    @pytest.mark.parametrize(
        "fields",
        [
            {"external_port": "80", "target_host": "h", "target_port": 80},
            {"external_port": 80, "hold_timeout": "30"},
            {"external_port": 80, "hold_timeout": True},
            {"external_port": 80, "targets": [("h", 80)]},
        ],
        ids=["str-port", "str-hold", "bool-hold", "tuple-target"],
    )
    def test_types(self, fields: dict[str, Any]) -> None:
        """Values of the wrong type (a port as a string, a tuple as a target) are refused."""
        with pytest.raises(TypeError):
            Route(**fields)


WEB = app("web", 8080, 8443)
DB = app("db", 5432)

# (description, deployment, state, expected routes on N1)
CASES = [
    ("empty", Deployment(), DeploymentState(), {}),
    (
        "each port goes to the port its healthy instance is published on",
        deployment(**{N2: [WEB], N3: [DB]}),
        running(**{N2: [WEB], N3: [DB]}),
        {
            8080: to(8080, ("127.0.0.12", 40080)),
            8443: to(8443, ("127.0.0.12", 40081)),
            5432: to(5432, ("127.0.0.13", 40080)),
        },
    ),
    (
        "the node's own applications are routed too (the router owns the port)",
        deployment(**{N1: [WEB]}),
        running(**{N1: [WEB]}),
        {8080: to(8080, ("127.0.0.11", 40080)), 8443: to(8443, ("127.0.0.11", 40081))},
    ),
    (
        "no healthy instance anywhere: held",
        deployment(**{N2: [DB]}),
        reported(**{N2: [healthy(DB, "starting")], N3: [healthy(DB, "unhealthy")]}),
        {5432: to(5432)},
    ),
    (
        "nothing reported (not started yet): held",
        deployment(**{N2: [DB]}),
        DeploymentState(),
        {5432: to(5432)},
    ),
    (
        "mid-move: the old node's healthy instance serves while the new one starts",
        deployment(**{N3: [DB]}),
        reported(**{N2: [healthy(DB, revision=None)], N3: [healthy(DB, "starting")]}),
        {5432: to(5432, ("127.0.0.12", 40080))},
    ),
    (
        "every healthy instance serves, whatever its revision",
        deployment(**{N3: [DB]}),
        reported(**{N2: [healthy(DB, revision=None)], N3: [healthy(DB)]}),
        {5432: to(5432, ("127.0.0.12", 40080), ("127.0.0.13", 40080))},
    ),
    (
        "a stopping instance gets no new connection",
        deployment(**{N3: [DB]}),
        reported(**{N2: [healthy(DB, "stopping")], N3: [healthy(DB)]}),
        {5432: to(5432, ("127.0.0.13", 40080))},
    ),
    (
        "an older revision on the configured node serves while no current one is healthy",
        deployment(**{N2: [DB.set(revision=2)]}),
        reported(**{N2: [healthy(DB, revision=1)]}),
        {5432: to(5432, ("127.0.0.12", 40080))},
    ),
    (
        "an instance not publishing the port is no target for it",
        deployment(**{N2: [DB]}),
        reported(**{N2: [healthy(DB).set(ports={})]}),
        {5432: to(5432)},
    ),
    (
        "two applications on one port: the first by name",
        deployment(**{N2: [app("b", 8080)], N3: [app("a", 8080)]}),
        running(**{N2: [app("b", 8080)], N3: [app("a", 8080)]}),
        {8080: to(8080, ("127.0.0.13", 40080))},
    ),
    (
        "an application without ports has no route",
        deployment(**{N2: [app("quiet")]}),
        running(**{N2: [app("quiet")]}),
        {},
    ),
]


@pytest.mark.parametrize(
    "configuration,state,expected",
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_routes_for_node(
    configuration: Deployment, state: DeploymentState, expected: dict[int, Route]
) -> None:
    """Each table case gives the expected routes for node 1."""
    assert routes_for_node(N1, configuration, state, ADDRESSES) == pmap(expected)


def test_every_node_gets_the_same_routes() -> None:
    """The routes do not depend on the node they are for."""
    configuration = deployment(**{N1: [WEB], N2: [DB]})
    state = running(**{N1: [WEB], N2: [DB]})
    assert (
        routes_for_node(N1, configuration, state, ADDRESSES)
        == routes_for_node(N2, configuration, state, ADDRESSES)
        == routes_for_node(N3, configuration, state, ADDRESSES)
    )


def test_hostname_fallback() -> None:
    """A node missing from ``addresses`` is reached at the hostname it reported."""
    state = DeploymentState(
        nodes={N2: NodeState(uuid=N2, hostname="node2.example", health={"db": healthy(DB)})}
    )
    routes = routes_for_node(N1, deployment(**{N2: [DB]}), state, {})
    assert routes == pmap({5432: to(5432, ("node2.example", 40080))})


def test_unknown_address() -> None:
    """An instance on a node with no known address is no target."""
    routes = routes_for_node(
        N1,
        deployment(**{N2: [app("web", 80)], N3: [app("db", 81)]}),
        running(**{N2: [app("web", 80)], N3: [app("db", 81)]}),
        {N3: "127.0.0.13"},
    )
    assert routes == pmap({80: to(80), 81: to(81, ("127.0.0.13", 40080))})


@st.composite
def situations(draw: Any) -> tuple[str, Deployment, DeploymentState, dict[str, str]]:
    """A node, a deployment, some nodes reporting some applications' health, addresses."""
    configuration = draw(deployments(max_nodes=4))
    uuids = sorted(configuration.nodes)
    node_uuid = draw(st.sampled_from(uuids) if uuids else st.uuids().map(str))
    reports: dict[str, dict[str, ApplicationHealth]] = {u: {} for u in uuids}
    for application, _ in configuration.all_applications():
        for u in draw(st.lists(st.sampled_from(uuids), max_size=2, unique=True)):
            status = draw(st.sampled_from(["starting", "healthy", "unhealthy"]))
            revision = draw(st.sampled_from([None, application.revision]))
            reports[u][application.name] = healthy(application, status, revision)
    state = DeploymentState(
        nodes={u: NodeState(uuid=u, health=health) for u, health in reports.items()}
    )
    addresses = {u: f"127.0.1.{i + 1}" for i, u in enumerate(uuids)}
    return node_uuid, configuration, state, addresses


@given(situations())
def test_routes_property(
    situation: tuple[str, Deployment, DeploymentState, dict[str, str]],
) -> None:
    """
    Every external port of every configured application is routed, and
    each target is a node reporting an application publishing that port
    healthy, at the port its instance is published on there.
    """
    node_uuid, configuration, state, addresses = situation
    routes = routes_for_node(node_uuid, configuration, state, addresses)
    external = {
        p.external_port for a, _ in configuration.all_applications() for p in a.ports
    }
    assert set(routes) == external
    by_address = {v: k for k, v in addresses.items()}
    for port, route in routes.items():
        assert route.external_port == port
        for target in route.targets:
            node = state.get_node(by_address[target.host])
            assert any(
                h.status == "healthy" and target.port in h.ports.values()
                for h in (node.health or {}).values()
            )


def test_the_same_address_and_port_reported_twice_is_one_target() -> None:
    """
    Two nodes reporting an instance at the same address and port (a node
    reinstalled under a new UUID while its old state lingers) give one
    target, not a route that cannot be built.
    """
    state = reported(**{N2: [healthy(DB)], N3: [healthy(DB)]})
    routes = routes_for_node(N1, deployment(**{N2: [DB]}), state, {N2: "10.0.0.9", N3: "10.0.0.9"})
    assert routes == pmap({5432: to(5432, ("10.0.0.9", 40080))})
