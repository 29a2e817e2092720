"""The runtime's values refuse bad input; names and port clashes follow Docker's rules."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import given
from pyrsistent import InvariantException, PTypeError, pset

from .. import (
    ContainerSpec,
    ContainerState,
    InvalidName,
    PublishedPort,
    RestartOnFailure,
    VolumeBind,
    container_name,
    is_valid_name,
)
from ..strategies import container_specs, container_states

_GOOD: dict[str, Any] = {"name": "app", "image": "flocker-test/busybox:1"}

BAD_FIELDS: list[dict[str, Any]] = [
    {"name": "bad name"},
    {"name": ""},
    {"name": "-dash-first"},
    {"name": "x" * 129},
    {"image": ""},
    {"image": "has space"},
    {"command": []},
    {"command": ["ok", "nul\0byte"]},
    {"environment": {"A=B": "x"}},
    {"environment": {"": "x"}},
    {"environment": {"A": "nul\0"}},
    {"cpu_shares": 1},
    {"cpu_shares": 262145},
    {"swappiness": -1},
    {"swappiness": 101},
    {"memory_limit": 1024},
    {"memory_limit": 0},
    {
        "volumes": [
            VolumeBind(host_path="/a", container_path="/x"),
            VolumeBind(host_path="/b", container_path="/x"),
        ]
    },
    {
        "ports": [
            PublishedPort(internal_port=1, external_port=9000),
            PublishedPort(internal_port=2, external_port=9000, host_ip="127.0.0.5"),
        ]
    },
    {"restart_policy": "always"},
    {"ports": [9000]},
]


@pytest.mark.parametrize("fields", BAD_FIELDS)
def test_bad_spec(fields: dict[str, Any]) -> None:
    """A spec breaking a rule cannot be built."""
    with pytest.raises((InvariantException, PTypeError, TypeError)):
        ContainerSpec(**{**_GOOD, **fields})


@pytest.mark.parametrize(
    "fields",
    [
        {"internal_port": 0, "external_port": 80},
        {"internal_port": 80, "external_port": 65536},
        {"internal_port": -1, "external_port": 80},
        {"internal_port": 80, "external_port": 80, "host_ip": "localhost"},
        {"internal_port": 80, "external_port": 80, "host_ip": "::1"},
        {"internal_port": 80, "external_port": 80, "protocol": "sctp"},
    ],
)
def test_bad_port(fields: dict[str, Any]) -> None:
    """Port numbers outside 1–65535, non-IPv4 addresses and odd protocols are refused."""
    with pytest.raises(InvariantException):
        PublishedPort(**fields)


def test_ephemeral_port() -> None:
    """External port 0 (the engine chooses) is allowed; below 0 is not."""
    assert PublishedPort(internal_port=80, external_port=0).external_port == 0
    with pytest.raises(InvariantException):
        PublishedPort(internal_port=80, external_port=-1)


def test_ephemeral_ports_clash_with_nothing() -> None:
    """
    Ephemeral ports clash with no port, so a spec may publish several
    at one address.
    """
    zero = PublishedPort(internal_port=80, external_port=0)
    other = PublishedPort(internal_port=81, external_port=0)
    assert not zero.clashes_with(other)
    assert not zero.clashes_with(zero)
    assert not other.clashes_with(PublishedPort(internal_port=1, external_port=80))
    spec = ContainerSpec(**_GOOD, ports=[zero, other])
    assert spec.ports == pset([zero, other])


@pytest.mark.parametrize(
    "fields",
    [
        {"running": True, "ports": {0: 80}},
        {"running": True, "ports": {80: 0}},
        {"running": True, "ports": {80: 65536}},
        {"running": False, "ports": {80: 8080}},
    ],
)
def test_bad_state_ports(fields: dict[str, Any]) -> None:
    """
    A state's ports are port numbers (0 is never reported: it is the
    engine's choice) and only a running container has them.
    """
    with pytest.raises(InvariantException):
        ContainerState(**fields)


def test_state_ports_by_default() -> None:
    """A state built without ports (as before they existed) has none."""
    assert ContainerState(running=True).ports == {}
    assert ContainerState(running=True) == ContainerState(running=True, ports={})


@given(container_states)
def test_states_valid(state: ContainerState) -> None:
    """The strategy's states rebuild equal to themselves."""
    names = ["running", "exit_code", "started_at", "restart_count", "ports"]
    assert ContainerState(**{k: getattr(state, k) for k in names}) == state


def test_bad_port_type() -> None:
    """A port number given as text is refused."""
    with pytest.raises(PTypeError):
        PublishedPort(internal_port="80", external_port=80)


@pytest.mark.parametrize("path", ["relative", "/with:colon", "", "/nul\0"])
def test_bad_bind(path: str) -> None:
    """Bind paths are absolute and contain no ':' (Docker's separator)."""
    with pytest.raises(InvariantException):
        VolumeBind(host_path=path, container_path="/data")
    with pytest.raises(InvariantException):
        VolumeBind(host_path="/data", container_path=path)


def test_bad_retry_count() -> None:
    """A retry limit is positive or None."""
    with pytest.raises(InvariantException):
        RestartOnFailure(maximum_retry_count=0)


@pytest.mark.parametrize(
    "a, b, clash",
    [
        (("127.0.0.11", 80, "tcp"), ("127.0.0.11", 80, "tcp"), True),
        (("127.0.0.11", 80, "tcp"), ("127.0.0.12", 80, "tcp"), False),
        (("0.0.0.0", 80, "tcp"), ("127.0.0.12", 80, "tcp"), True),
        (("127.0.0.11", 80, "tcp"), ("127.0.0.11", 80, "udp"), False),
        (("127.0.0.11", 80, "tcp"), ("127.0.0.11", 81, "tcp"), False),
    ],
)
def test_clashes_with(
    a: tuple[str, int, str], b: tuple[str, int, str], clash: bool
) -> None:
    """Ports clash on the same port and protocol at overlapping addresses."""

    def port(spec: tuple[str, int, str]) -> PublishedPort:
        host, number, protocol = spec
        return PublishedPort(
            internal_port=1, external_port=number, host_ip=host, protocol=protocol
        )

    assert port(a).clashes_with(port(b)) is clash
    assert port(b).clashes_with(port(a)) is clash


def test_container_name() -> None:
    """Engine names carry a prefix of the node's UUID and the application name."""
    node = "6f3b1c1e-0e4b-4c5c-9c1a-6b4b3d2e1f00"
    assert container_name(node, "pg") == "flocker--6f3b1c1e0e4b--pg"
    with pytest.raises(InvalidName):
        container_name(node, "no good")


def test_is_valid_name() -> None:
    """Names follow Docker's pattern, up to 128 characters."""
    assert is_valid_name("a")
    assert is_valid_name("A1_.-" + "x" * 123)
    assert not is_valid_name("x" * 129)
    assert not is_valid_name(None)
    assert not is_valid_name(".hidden")


@given(container_specs)
def test_specs_compare_by_value(spec: ContainerSpec) -> None:
    """A spec rebuilt from its fields is equal to it and has the same hash."""
    names = ["name", "image", "command", "environment", "ports", "volumes"]
    names += ["restart_policy", "cpu_shares", "memory_limit", "swappiness"]
    again = ContainerSpec(**{k: getattr(spec, k) for k in names})
    assert again == spec
    assert hash(again) == hash(spec)


def test_names_distinct_per_node() -> None:
    """Two nodes' containers of one application get different engine names."""
    one, two = str(uuid.uuid4()), str(uuid.uuid4())
    assert container_name(one, "app") != container_name(two, "app")
