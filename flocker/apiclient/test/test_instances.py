"""Tests for `flocker.apiclient.instance_placement`: the control service's placement, on `Container` values."""

from __future__ import annotations

from uuid import UUID

from hypothesis import given
from hypothesis import strategies as st

from flocker.apiclient import MAXIMUM_INSTANCES, Container, instance_placement
from flocker.control import Application
from flocker.control import instance_placement as control_placement

NODES = [UUID(int=n) for n in range(1, 6)]


def test_a_long_replicated_name_runs_at_most_one_instance_per_node() -> None:
    """
    A container whose name leaves no room for ``..k`` (126 characters,
    stored by an earlier release) runs one instance per node: replicas 3
    on 2 nodes are 2 instances under its own name.
    """
    container = Container(node_uuid=NODES[1], name="w" * 126, image="nginx", replicas=3)
    assert instance_placement(container, NODES[:2]) == [
        (NODES[1], "w" * 126),
        (NODES[0], "w" * 126),
    ]


@given(
    st.integers(1, 128),
    st.lists(st.sampled_from(NODES), min_size=1, unique=True),
    st.integers(1, MAXIMUM_INSTANCES),
)
def test_placement_is_the_control_services(length: int, nodes: list[UUID], replicas: int) -> None:
    """
    Whatever the length of its name, a container's instances are placed
    and named as the control service places its application's.
    """
    name = "w" * length
    container = Container(node_uuid=nodes[0], name=name, image="nginx", replicas=replicas)
    application = Application(name=name, image="nginx", replicas=replicas)
    expected = control_placement(application, str(nodes[0]), [str(n) for n in nodes])
    assert [(str(n), i) for n, i in instance_placement(container, nodes)] == expected
