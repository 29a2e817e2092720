"""Tests for an application's instances: ``replicas`` and `instance_nodes`."""

from __future__ import annotations

import pytest
from hypothesis import find, given
from hypothesis import strategies as st
from pyrsistent import InvariantException

from flocker.control import (
    MAXIMUM_INSTANCES,
    Application,
    AttachedVolume,
    instance_nodes,
)
from flocker.control.strategies import applications, deployments

DS = "11111111-2222-3333-4444-555555555555"
WEB = Application(name="web", image="flocker-test/busybox:1")


def test_one_instance_by_default() -> None:
    """An application runs once unless it asks for replicas."""
    assert WEB.replicas == 1
    assert instance_nodes(WEB, "b", ["a", "b", "c"]) == ["b"]


@pytest.mark.parametrize("replicas", [0, -1, MAXIMUM_INSTANCES + 1, True])
def test_replicas_out_of_range_refused(replicas: object) -> None:
    """Replicas are a whole number from 1 to `MAXIMUM_INSTANCES`."""
    with pytest.raises((InvariantException, TypeError)):
        WEB.set(replicas=replicas)


def test_replicas_with_volumes_refused_saying_why() -> None:
    """An application with volumes runs once: the error says why."""
    with pytest.raises(InvariantException) as info:
        WEB.set(
            replicas=2, volumes=[AttachedVolume(dataset_id=DS, mountpoint="/data")]
        )
    assert "replicas are for applications without volumes" in str(info.value)


def test_instances_follow_the_home_node_around_the_ring() -> None:
    """Instance 0 is on its node, the others on the nodes after it, wrapping."""
    web = WEB.set(replicas=3)
    assert instance_nodes(web, "c", ["a", "b", "c", "d"]) == ["c", "d", "a"]
    assert instance_nodes(web, "d", ["b", "a", "d", "c"]) == ["d", "a", "b"]


def test_fewer_nodes_than_replicas_places_one_per_node() -> None:
    """At most one instance per node: with too few nodes, some are not placed."""
    assert instance_nodes(WEB.set(replicas=5), "b", ["a", "b"]) == ["b", "a"]
    assert instance_nodes(WEB.set(replicas=2), "z", []) == ["z"]


@given(
    st.lists(st.sampled_from("abcdefgh"), unique=True),
    st.sampled_from("abcdefgh"),
    st.integers(1, 10),
)
def test_instances_property(nodes: list[str], home: str, replicas: int) -> None:
    """
    The home node runs instance 0; instances are on distinct known nodes
    (or home); as many as replicas allow and nodes exist.
    """
    placed = instance_nodes(WEB.set(replicas=replicas), home, nodes)
    assert placed[0] == home
    assert len(set(placed)) == len(placed)
    assert set(placed) <= set(nodes) | {home}
    assert len(placed) == min(replicas, len(set(nodes) | {home}))


def test_strategies_draw_several_instances() -> None:
    """
    The model strategies draw applications without volumes running several
    instances, whose previous specification may run several too, and
    deployments holding them.
    """
    scaled = find(applications(), lambda a: a.replicas > 1)
    assert not scaled.volumes
    previous = find(
        applications(),
        lambda a: a.previous is not None and a.previous.replicas > 1,
    )
    assert not previous.volumes
    deployment = find(
        deployments(),
        lambda d: any(a.replicas > 1 for a, _ in d.all_applications()),
    )
    assert all(
        a.replicas == 1 for a, _ in deployment.all_applications() if a.volumes
    )
