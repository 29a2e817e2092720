"""Hypothesis strategies for the values of flocker.runtime.

Every value drawn satisfies the classes' invariants, so property tests of
any package can build arbitrary container specs (``from
flocker.runtime.strategies import container_specs``).
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from ._interface import (
    CPU_SHARES_RANGE,
    MINIMUM_MEMORY_LIMIT,
    SWAPPINESS_RANGE,
    ContainerSpec,
    ContainerState,
    PublishedPort,
    RestartAlways,
    RestartNever,
    RestartOnFailure,
    VolumeBind,
)

__all__ = [
    "container_names",
    "container_specs",
    "container_states",
    "paths",
    "published_ports",
    "restart_policies",
    "volume_binds",
]

_NAME_TAIL = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"

#: Valid application names.
container_names = st.builds(
    lambda head, tail: head + tail,
    st.sampled_from(_NAME_TAIL[:62]),
    st.text(alphabet=_NAME_TAIL, max_size=20),
)

_segment = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-.", min_size=1, max_size=8
).filter(lambda s: s not in (".", ".."))

#: Absolute paths without ':'.
paths = st.lists(_segment, min_size=1, max_size=4).map(lambda p: "/" + "/".join(p))

#: Published ports on loopback or every address, fixed or ephemeral (0).
published_ports = st.builds(
    PublishedPort,
    internal_port=st.integers(1, 65535),
    external_port=st.one_of(st.just(0), st.integers(1, 65535)),
    host_ip=st.sampled_from(["0.0.0.0", "127.0.0.1", "127.0.0.11", "127.0.0.12"]),
    protocol=st.sampled_from(["tcp", "udp"]),
)

#: Bind mounts.
volume_binds = st.builds(
    VolumeBind, host_path=paths, container_path=paths, read_only=st.booleans()
)

#: Every kind of restart policy.
restart_policies = st.one_of(
    st.just(RestartNever()),
    st.just(RestartAlways()),
    st.builds(
        RestartOnFailure,
        maximum_retry_count=st.one_of(st.none(), st.integers(1, 100)),
    ),
)


def _distinct_ports(ports: list[PublishedPort]) -> list[PublishedPort]:
    kept: list[PublishedPort] = []
    for port in ports:
        if not any(port.clashes_with(other) for other in kept):
            kept.append(port)
    return kept


def _build(**fields: Any) -> ContainerSpec:
    return ContainerSpec(**fields)


#: Container specs using any combination of fields.
container_specs = st.builds(
    _build,
    name=container_names,
    image=st.sampled_from(["flocker-test/busybox:1", "flocker-test/counter:1", "x"]),
    command=st.one_of(
        st.none(),
        st.lists(
            st.text(alphabet=st.characters(blacklist_characters="\0")),
            min_size=1,
            max_size=4,
        ),
    ),
    environment=st.dictionaries(
        st.text(
            alphabet=st.characters(blacklist_characters="=\0"), min_size=1, max_size=10
        ),
        st.text(alphabet=st.characters(blacklist_characters="\0"), max_size=10),
        max_size=4,
    ),
    ports=st.lists(published_ports, max_size=4).map(_distinct_ports),
    volumes=st.lists(volume_binds, max_size=3, unique_by=lambda v: v.container_path),
    restart_policy=restart_policies,
    cpu_shares=st.one_of(st.none(), st.integers(*CPU_SHARES_RANGE)),
    memory_limit=st.one_of(st.none(), st.integers(MINIMUM_MEMORY_LIMIT, 2**40)),
    swappiness=st.one_of(st.none(), st.integers(*SWAPPINESS_RANGE)),
)

#: Container states as runtimes report them (only running ones publish ports).
container_states = st.one_of(
    st.builds(
        ContainerState,
        running=st.just(True),
        started_at=st.floats(0, 2e9),
        restart_count=st.integers(0, 100),
        ports=st.dictionaries(st.integers(1, 65535), st.integers(1, 65535), max_size=4),
    ),
    st.builds(
        ContainerState,
        running=st.just(False),
        exit_code=st.one_of(st.none(), st.integers(0, 255)),
        started_at=st.one_of(st.none(), st.floats(0, 2e9)),
        restart_count=st.integers(0, 100),
    ),
)
