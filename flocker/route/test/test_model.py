"""Tests for `Route` and `routes_for_node`."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyrsistent import InvariantException, pmap

from flocker.control import (
    Application,
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
    """A state in which each node UUID reports those applications running."""
    return DeploymentState(
        nodes={
            uuid: NodeState(uuid=uuid, applications={a.name: a for a in apps})
            for uuid, apps in placement.items()
        }
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


# (description, deployment, state, expected routes on N1)
CASES = [
    ("empty", Deployment(), DeploymentState(), {}),
    (
        "others routed to their node",
        deployment(**{N2: [app("web", 8080, 8443)], N3: [app("db", 5432)]}),
        running(**{N2: [app("web", 8080, 8443)], N3: [app("db", 5432)]}),
        {
            8080: r(8080, "127.0.0.12"),
            8443: r(8443, "127.0.0.12"),
            5432: r(5432, "127.0.0.13"),
        },
    ),
    (
        "local applications are not routed",
        deployment(**{N1: [app("web", 8080)], N2: [app("db", 5432)]}),
        running(**{N1: [app("web", 8080)], N2: [app("db", 5432)]}),
        {5432: r(5432, "127.0.0.12")},
    ),
    (
        "configured here but still running elsewhere (new end of a move)",
        deployment(**{N1: [app("web", 8080)]}),
        running(**{N2: [app("web", 8080)]}),
        {},
    ),
    (
        "running here but configured elsewhere (old end of a move)",
        deployment(**{N2: [app("web", 8080)]}),
        running(**{N1: [app("web", 8080)]}),
        {},
    ),
    (
        "a third node follows where it still runs mid-move",
        deployment(**{N3: [app("web", 8080)]}),
        running(**{N2: [app("web", 8080)]}),
        {8080: r(8080, "127.0.0.12")},
    ),
    (
        "the configured node wins once it reports it",
        deployment(**{N3: [app("web", 8080)]}),
        running(**{N2: [app("web", 8080)], N3: [app("web", 8080)]}),
        {8080: r(8080, "127.0.0.13")},
    ),
    (
        "running nowhere (mid-move, or not started yet): no route",
        deployment(**{N2: [app("web", 8080)]}),
        running(**{N3: [app("db", 5432)]}),
        {},
    ),
    (
        "a port published here is not routed for another application",
        deployment(**{N1: [app("a", 8080)], N2: [app("b", 8080)]}),
        running(**{N2: [app("b", 8080)]}),
        {},
    ),
    (
        "a port running here (unconfigured) is not routed either",
        deployment(**{N2: [app("b", 8080)]}),
        running(**{N1: [app("old", 8080)], N2: [app("b", 8080)]}),
        {},
    ),
    (
        "two remote applications on one port: the first by name",
        deployment(**{N2: [app("b", 8080)], N3: [app("a", 8080)]}),
        running(**{N2: [app("b", 8080)], N3: [app("a", 8080)]}),
        {8080: r(8080, "127.0.0.13")},
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


def test_hostname_fallback() -> None:
    """A node missing from ``addresses`` is reached at the hostname it reported."""
    state = DeploymentState(
        nodes={N2: NodeState(uuid=N2, hostname="node2.example", applications={"web": app("web", 80)})}
    )
    routes = routes_for_node(N1, deployment(**{N2: [app("web", 80)]}), state, {})
    assert routes == pmap({80: r(80, "node2.example")})


def test_unknown_address() -> None:
    """An application on a node with no known address gets no route."""
    routes = routes_for_node(
        N1,
        deployment(**{N2: [app("web", 80)], N3: [app("db", 81)]}),
        running(**{N2: [app("web", 80)], N3: [app("db", 81)]}),
        {N3: "127.0.0.13"},
    )
    assert routes == pmap({81: r(81, "127.0.0.13")})


def test_unknown_node() -> None:
    """A node that is in neither configuration nor state routes everything."""
    stranger = "44444444-4444-4444-4444-444444444444"
    routes = routes_for_node(
        stranger, deployment(**{N1: [app("web", 80)]}), running(**{N1: [app("web", 80)]}), ADDRESSES
    )
    assert routes == pmap({80: r(80, "127.0.0.11")})


@st.composite
def situations(draw: Any) -> tuple[str, Deployment, DeploymentState, dict[str, str]]:
    """A node, a deployment, some nodes reporting some applications, addresses."""
    configuration = draw(deployments(max_nodes=4))
    uuids = sorted(configuration.nodes)
    node_uuid = draw(st.sampled_from(uuids) if uuids else st.uuids().map(str))
    reports: dict[str, dict[str, Application]] = {u: {} for u in uuids}
    for application, _ in configuration.all_applications():
        for u in draw(st.lists(st.sampled_from(uuids), max_size=2, unique=True)):
            reports[u][application.name] = application
    state = DeploymentState(
        nodes={u: NodeState(uuid=u, applications=apps) for u, apps in reports.items()}
    )
    addresses = {u: f"127.0.1.{i + 1}" for i, u in enumerate(uuids)}
    return node_uuid, configuration, state, addresses


@given(situations())
def test_routes_property(
    situation: tuple[str, Deployment, DeploymentState, dict[str, str]],
) -> None:
    """
    No route targets the node itself or a port published here, and every
    external port of every application running elsewhere is routed, to a
    node that runs (or is configured to run) an application publishing it.
    """
    node_uuid, configuration, state, addresses = situation
    routes = routes_for_node(node_uuid, configuration, state, addresses)
    here = addresses.get(node_uuid)
    local_ports = {
        p.external_port
        for a in configuration.get_node(node_uuid).applications.values()
        for p in a.ports
    } | {
        p.external_port
        for a in (state.get_node(node_uuid).applications or {}).values()
        for p in a.ports
    }
    by_address = {v: k for k, v in addresses.items()}
    for port, route in routes.items():
        [target_address] = route.targets
        assert route.external_port == port == target_address.port
        assert target_address.host != here
        assert port not in local_ports
        target = by_address[target_address.host]
        published = {
            p.external_port
            for a in list(configuration.get_node(target).applications.values())
            + list((state.get_node(target).applications or {}).values())
            for p in a.ports
        }
        assert port in published
    for application, configured in configuration.all_applications():
        running_here = application.name in (
            state.get_node(node_uuid).applications or {}
        )
        running_somewhere = any(
            application.name in (n.applications or {}) for n in state.nodes.values()
        )
        if configured == node_uuid or running_here or not running_somewhere:
            continue
        for p in application.ports:
            assert p.external_port in routes or p.external_port in local_ports
