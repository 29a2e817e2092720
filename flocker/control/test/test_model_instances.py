"""Tests for an application's instances: ``replicas``, `instance_placement` and `instance_nodes`."""

from __future__ import annotations

import pytest
from hypothesis import find, given
from hypothesis import strategies as st
from pyrsistent import InvariantException

from flocker.control import (
    MAXIMUM_INSTANCES,
    Application,
    AttachedVolume,
    Deployment,
    Node,
    Port,
    ReplicatedNameTooLong,
    instance_base,
    instance_nodes,
    instance_placement,
    is_valid_name,
)
from flocker.control.strategies import applications, deployments

DS = "11111111-2222-3333-4444-555555555555"
NODE = "aaaaaaaa-2222-3333-4444-555555555555"
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


def test_instance_nodes_are_distinct_in_first_instance_order() -> None:
    """`instance_nodes` names each node running an instance once, home first."""
    assert instance_nodes(WEB.set(replicas=5), "b", ["a", "b"]) == ["b", "a"]
    assert instance_nodes(WEB.set(replicas=2), "z", []) == ["z"]


def test_five_instances_on_three_nodes_double_up_in_ring_order() -> None:
    """
    5 instances on nodes A (home), B and C run on A, B, C, A, B: one per
    node first, then the extras round the same ring, named ``web..2``.
    """
    assert instance_placement(WEB.set(replicas=5), "a", ["c", "b", "a"]) == [
        ("a", "web"),
        ("b", "web"),
        ("c", "web"),
        ("a", "web..2"),
        ("b", "web..2"),
    ]


def test_placement_starts_at_home_and_wraps_round_the_ring() -> None:
    """Instance 0 is on the home node; the passes go round the sorted ring from there."""
    assert instance_placement(WEB.set(replicas=4), "c", ["a", "b", "c"]) == [
        ("c", "web"),
        ("a", "web"),
        ("b", "web"),
        ("c", "web..2"),
    ]


def test_four_instances_on_one_node_all_run_there() -> None:
    """On a single node every instance runs there, each under its own name."""
    assert instance_placement(WEB.set(replicas=4), "z", []) == [
        ("z", "web"),
        ("z", "web..2"),
        ("z", "web..3"),
        ("z", "web..4"),
    ]


def test_instance_base_names_the_application() -> None:
    """
    An instance name maps back to its application's name: only a trailing
    ``..`` and digits is stripped.
    """
    names = ("web", "web..2", "web..13", "a.b", "my..app", "my..app..2", "a...2", "web..2x")
    assert [instance_base(n) for n in names] == [
        "web",
        "web",
        "web",
        "a.b",
        "my..app",
        "my..app",
        "a.",
        "web..2x",
    ]


def test_instances_of_a_name_with_two_dots_map_back_to_it() -> None:
    """
    Every instance placed of an application whose name holds ``..`` maps
    back to that application, not to the part before the dots.
    """
    placed = instance_placement(WEB.set(name="my..app", replicas=5), "a", ["a", "b"])
    assert [name for _, name in placed] == [
        "my..app",
        "my..app",
        "my..app..2",
        "my..app..2",
        "my..app..3",
    ]
    assert {instance_base(name) for _, name in placed} == {"my..app"}


@pytest.mark.parametrize("name", ["web..2", "web..13", "my..app..2", "a...2", "w.2..0"])
def test_names_of_the_instance_form_refused_saying_why(name: str) -> None:
    """
    A name ending in ``..`` and digits is reserved for extra instances: no
    application is named so.
    """
    with pytest.raises(InvariantException) as info:
        Application(name=name, image="flocker-test/busybox:1")
    assert (
        "reserved for the extra instances Flocker runs of a replicated "
        "application on one node"
    ) in str(info.value)


@pytest.mark.parametrize("name", ["a.b.c", "my..app", "a..", "x...y", "web..2x", "web..2.3"])
def test_other_names_with_dots_allowed(name: str) -> None:
    """Names with dots, even two together, are valid unless they end in ``..`` and digits."""
    assert Application(name=name, image="flocker-test/busybox:1", replicas=3).name == name


#: A replicated application as an earlier release stored it: its name
#: leaves no room for ``..k``.
LEGACY = WEB.set(name="w" * 126, replicas=3)


def test_a_long_replicated_name_stored_by_an_earlier_release_is_a_valid_application() -> None:
    """
    An application running several instances under a name longer than 124
    characters (which earlier releases accepted) is a valid value, so the
    configurations and states holding it load.
    """
    assert (LEGACY.name, LEGACY.replicas) == ("w" * 126, 3)
    assert WEB.set(name="w" * 128, replicas=64).replicas == 64


def test_adding_a_long_replicated_name_is_refused_saying_why() -> None:
    """
    A new application running several instances has a name of at most 124
    characters, leaving room for its extra instances' ``..k`` within the
    128 characters of a container name; longer is refused, saying why, and
    so is a name of 128 characters and more than one instance.
    """
    for name in ("w" * 125, "w" * 128):
        with pytest.raises(ReplicatedNameTooLong) as info:
            Deployment().add_application(WEB.set(name=name, replicas=2), NODE)
        assert str(info.value) == (
            "a replicated application's name is at most 124 characters, so that "
            "the names of its extra instances on a node (wwwwwwww.....2) are valid too"
        )


def test_adding_a_124_character_replicated_name_or_a_long_single_one_is_accepted() -> None:
    """
    A name of 124 characters runs up to 64 instances; a longer one (up to
    128) runs one.
    """
    longest = WEB.set(name="w" * 124, replicas=64)
    single = WEB.set(name="x" * 128)
    deployment = Deployment().add_application(longest, NODE).add_application(single, NODE)
    assert [a for a, _ in deployment.all_applications()] == [longest, single]


def test_updating_to_more_instances_under_a_long_name_is_refused() -> None:
    """
    An update asking for more instances under a name longer than 124
    characters is refused: scaling up a long-named application, also one
    an earlier release stored with several; the configuration is unchanged.
    """
    single = WEB.set(name="x" * 125)
    deployment = Deployment().add_application(single, NODE)
    with pytest.raises(ReplicatedNameTooLong):
        deployment.update_application(single.set(replicas=2))
    with pytest.raises(ReplicatedNameTooLong):
        _stored(LEGACY).update_application(LEGACY.set(replicas=LEGACY.replicas + 1))


def test_a_long_replicated_application_stored_earlier_is_updated_like_any_other() -> None:
    """
    An application an earlier release stored with several instances under
    a long name takes a new image with its instances as they are, fewer
    instances, or one; the same specification again changes nothing.
    """
    stored = _stored(LEGACY)
    assert stored.update_application(LEGACY) == stored
    for update in (
        LEGACY.set(image="nginx"),
        LEGACY.set(replicas=2),
        LEGACY.set(replicas=1, image="nginx"),
    ):
        [(app, node)] = stored.update_application(update).all_applications()
        assert (app.replicas, app.image, app.revision, node) == (
            update.replicas,
            update.image,
            1,
            NODE,
        )


def test_replacing_a_long_replicated_application_stored_earlier_keeps_it() -> None:
    """
    Replacing an application by a new specification of itself (what the
    environments' port moves and resets do) does not check its name again:
    one an earlier release stored with several instances under a long name
    keeps them.
    """
    moved = LEGACY.set(ports=[Port(internal_port=80, external_port=8080)])
    replaced = _stored(LEGACY).replace_application(moved, NODE)
    assert list(replaced.all_applications()) == [(moved, NODE)]


def _stored(application: Application) -> Deployment:
    """
    A configuration holding ``application`` on `NODE` as it was stored,
    without the checks of a new application.
    """
    return Deployment().update_node(Node(uuid=NODE, applications={application.name: application}))


def test_a_long_replicated_name_runs_at_most_one_instance_per_node() -> None:
    """
    An application whose name leaves no room for ``..k`` is never placed
    as an extra instance: with replicas 3 on 2 nodes it runs 2 instances,
    one per node, under its own name; with as many nodes as replicas, all.
    """
    assert instance_placement(LEGACY, "b", ["a", "b"]) == [
        ("b", LEGACY.name),
        ("a", LEGACY.name),
    ]
    assert instance_nodes(LEGACY, "b", ["a", "b"]) == ["b", "a"]
    assert instance_placement(LEGACY, "a", ["a", "b", "c", "d"]) == [
        ("a", LEGACY.name),
        ("b", LEGACY.name),
        ("c", LEGACY.name),
    ]


def test_a_124_character_replicated_name_still_doubles_up() -> None:
    """
    A name of 124 characters leaves room for ``..k``: its extra instances
    double up as any other application's.
    """
    longest = WEB.set(name="w" * 124, replicas=3)
    assert instance_placement(longest, "a", ["a", "b"]) == [
        ("a", "w" * 124),
        ("b", "w" * 124),
        ("a", "w" * 124 + "..2"),
    ]


@given(
    st.integers(1, 128),
    st.lists(st.sampled_from("abcdefgh"), unique=True),
    st.sampled_from("abcdefgh"),
    st.integers(1, MAXIMUM_INSTANCES),
)
def test_every_placed_instance_name_is_valid(
    length: int, nodes: list[str], home: str, replicas: int
) -> None:
    """
    Whatever the length of an application's name, each instance placed has
    a valid container name of its application.
    """
    application = WEB.set(name="w" * length, replicas=replicas)
    placed = instance_placement(application, home, nodes)
    assert all(is_valid_name(name) for _, name in placed)
    assert all(instance_base(name) == application.name for _, name in placed)


@given(
    st.lists(st.sampled_from("abcdefgh"), unique=True),
    st.sampled_from("abcdefgh"),
    st.integers(1, 20),
)
def test_placement_property(nodes: list[str], home: str, replicas: int) -> None:
    """
    Every replica is placed; instance 0 on home under the application's
    name; instance names are distinct, each of the application; the nodes'
    counts differ by at most one, and a node's k-th instance is ``web..k``.
    """
    placed = instance_placement(WEB.set(replicas=replicas), home, nodes)
    assert len(placed) == replicas
    assert placed[0] == (home, "web")
    assert len(set(placed)) == len(placed)
    assert all(instance_base(name) == "web" for _, name in placed)
    counts: dict[str, int] = {}
    for node, name in placed:
        counts[node] = counts.get(node, 0) + 1
        assert name == ("web" if counts[node] == 1 else f"web..{counts[node]}")
    assert max(counts.values()) - min(counts.values()) <= 1
    assert len(counts) == min(replicas, len(set(nodes) | {home}))


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
