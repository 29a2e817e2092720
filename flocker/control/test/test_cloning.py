"""Tests for ``flocker.control._cloning``: environments as configuration changes."""

from collections.abc import Callable, Mapping
from itertools import count

import pytest

from flocker.control import (
    Application,
    ApplicationAlreadyExists,
    AttachedVolume,
    Dataset,
    Deployment,
    DeploymentState,
    EnvironmentAlreadyExists,
    HealthCheck,
    Link,
    ModelError,
    NodeState,
    Origin,
    Port,
    PortBusy,
    UnknownEnvironment,
)
from flocker.control._cloning import (
    FIRST_FREE_PORT,
    PortMove,
    busy_ports_of,
    clone_environment,
    delete_copy,
    delete_environment,
    move_blocked_ports,
    reset_copy,
)

N1 = "11111111-1111-1111-1111-111111111111"
N2 = "22222222-2222-2222-2222-222222222222"
DB = "aaaaaaaa-0000-0000-0000-000000000001"
SEARCH = "aaaaaaaa-0000-0000-0000-000000000002"
SNAP = "flocker-env-staging-1"


def ids(prefix: str = "bbbbbbbb") -> Callable[[], str]:
    """Predictable new dataset ids."""
    numbers = count(1)
    return lambda: f"{prefix}-0000-0000-0000-{next(numbers):012d}"


def staging() -> Deployment:
    """web (no data) on N1 linked to db (N1) and search (N2), each with a dataset."""
    d = Deployment()
    d = d.add_dataset(Dataset(dataset_id=DB, metadata={"name": "pg"}), N1)
    d = d.add_dataset(Dataset(dataset_id=SEARCH, maximum_size=2**30), N2)
    d = d.add_application(
        Application(
            name="db", image="postgres",
            ports=[Port(internal_port=5432, external_port=5432)],
            volumes=[AttachedVolume(dataset_id=DB, mountpoint="/var/lib/pg")],
        ),
        N1,
    )
    d = d.add_application(
        Application(
            name="search", image="es",
            ports=[Port(internal_port=9200, external_port=9200)],
            volumes=[AttachedVolume(dataset_id=SEARCH, mountpoint="/data")],
        ),
        N2,
    )
    return d.add_application(
        Application(
            name="web", image="web",
            ports=[Port(internal_port=80, external_port=8080)],
            links=[
                Link(alias="db", local_port=5432, remote_port=5432),
                Link(alias="search", local_port=9200, remote_port=9200),
                Link(alias="mail", local_port=25, remote_port=2525),
            ],
        ),
        N1,
    )


def cloned(
    copies: tuple[str, ...] = ("alice", "bob"),
    ports: Mapping[str, Mapping[str, Mapping[int, int]]] | None = None,
) -> Deployment:
    """The staging group cloned into ``copies``."""
    return clone_environment(
        staging(), "staging", ["web", "db", "search"], list(copies), SNAP, ports, ids()
    )


def test_copies_get_clones_ports_and_rewired_links() -> None:
    """
    Each copy's applications run on their originals' nodes, on clones of
    their datasets, on free ports, with links to the group rewired to the
    copy's own applications and other links left alone.
    """
    d = cloned()
    env = d.environments["staging"]
    assert set(env.copies) == {"alice", "bob"}
    alice = env.copies["alice"]
    assert dict(alice.applications) == {"web": "web-staging-alice", "db": "db-staging-alice", "search": "search-staging-alice"}
    db, node = d.get_application("db-staging-alice")
    assert node == N1
    [volume] = db.volumes
    clone, clone_node = d.get_dataset(volume.dataset_id)
    assert clone_node == N1
    assert clone.origin == Origin(dataset_id=DB, snapshot=SNAP)
    assert clone.metadata["name"] == "pg-staging-alice"
    assert d.get_dataset(alice.datasets[SEARCH])[0].maximum_size == 2**30
    assert d.get_application("search-staging-alice")[1] == N2
    web, _ = d.get_application("web-staging-alice")
    ports = {p.external_port for p in web.ports}
    assert ports.isdisjoint({8080, 5432, 9200}) and min(ports) >= FIRST_FREE_PORT
    links = {link.alias: link.remote_port for link in web.links}
    [db_port] = [p.external_port for p in db.ports]
    assert links["db"] == db_port and links["mail"] == 2525
    published = [p.external_port for a, _ in d.all_applications() for p in a.ports]
    assert len(published) == len(set(published))


def test_ports_given() -> None:
    """A copy's port asked for is used; one already published is refused."""
    d = cloned(ports={"alice": {"web": {8080: 18080}}})
    assert {p.external_port for p in d.get_application("web-staging-alice")[0].ports} == {18080}
    with pytest.raises(ModelError, match="already published"):
        cloned(ports={"alice": {"web": {8080: 9200}}})
    with pytest.raises(ModelError, match="not in the group"):
        cloned(ports={"alice": {"nope": {1: 2}}})
    with pytest.raises(ModelError, match="not one of the copies"):
        cloned(ports={"carol": {"web": {8080: 18080}}})


def test_chosen_ports_skip_busy_ports_on_every_node() -> None:
    """
    Chosen ports skip the ports nodes report busy: those of the copy's own
    node (its container could not publish them) and those of other nodes
    (their routers could not forward them).
    """
    busy = {N1: [FIRST_FREE_PORT, FIRST_FREE_PORT + 2], N2: [FIRST_FREE_PORT + 1]}
    d = clone_environment(
        staging(), "staging", ["web", "db", "search"], ["alice"], SNAP, None, ids(), busy=busy
    )
    ports = sorted(
        p.external_port
        for name in ("web", "db", "search")
        for p in d.get_application(f"{name}-staging-alice")[0].ports
    )
    assert ports == [FIRST_FREE_PORT + 3, FIRST_FREE_PORT + 4, FIRST_FREE_PORT + 5]


def test_port_asked_for_busy_on_the_copys_node_refused() -> None:
    """
    A port asked for that the copy's node reports busy is refused with
    `PortBusy`, naming the port, the node and the copy's application; one
    busy only on another node is accepted (the container can run).
    """
    with pytest.raises(PortBusy) as raised:
        clone_environment(
            staging(), "staging", ["web"], ["alice"], SNAP,
            {"alice": {"web": {8080: 18080}}}, ids(), busy={N1: [18080]},
        )
    assert (raised.value.port, raised.value.node_uuid) == (18080, N1)
    assert "web-staging-alice" in str(raised.value)
    d = clone_environment(
        staging(), "staging", ["web"], ["alice"], SNAP,
        {"alice": {"web": {8080: 18080}}}, ids(), busy={N2: [18080]},
    )
    assert [p.external_port for p in d.get_application("web-staging-alice")[0].ports] == [18080]


def test_busy_ports_of_nodes_that_reported_them() -> None:
    """Only nodes whose container agent reported busy ports are listed."""
    state = (
        DeploymentState()
        .update_node(NodeState(uuid=N1, applications={}, busy_ports=[22]))
        .update_node(NodeState(uuid=N2, datasets={}))
    )
    assert busy_ports_of(state) == {N1: frozenset({22})}


def test_bad_requests_change_nothing() -> None:
    """Unknown originals, taken names, bad copy names and no copies are refused."""
    d = cloned()
    with pytest.raises(EnvironmentAlreadyExists):
        clone_environment(d, "staging", ["web"], ["x"], SNAP)
    with pytest.raises(KeyError):
        clone_environment(staging(), "s", ["nope"], ["x"], SNAP)
    with pytest.raises(ApplicationAlreadyExists):
        clone_environment(d.remove_application("web-staging-alice").add_application(
            d.get_application("web-staging-alice")[0].set(name="web-other-alice"), N1
        ), "other", ["web"], ["alice"], SNAP)
    with pytest.raises(ModelError):
        clone_environment(staging(), "s", ["web"], ["no spaces"], SNAP)
    with pytest.raises(ModelError):
        clone_environment(staging(), "s", ["web"], [], SNAP)
    with pytest.raises(ModelError):
        clone_environment(staging(), "s", [], ["x"], SNAP)


def test_reset_reclones_and_deletes_old_clones() -> None:
    """A reset copy's applications use fresh clones; the old ones are deleted."""
    d = cloned()
    old = d.environments["staging"].copies["alice"].datasets[DB]
    d = reset_copy(d, "staging", "alice", new_id=ids("cccccccc"))
    new = d.environments["staging"].copies["alice"].datasets[DB]
    assert new != old
    assert d.get_dataset(old)[0].deleted
    assert d.get_dataset(new)[0].origin == Origin(dataset_id=DB, snapshot=SNAP)
    [volume] = d.get_application("db-staging-alice")[0].volumes
    assert volume.dataset_id == new
    # bob is untouched
    bob = d.environments["staging"].copies["bob"]
    assert not d.get_dataset(bob.datasets[DB])[0].deleted


def test_delete_copy_and_environment() -> None:
    """Deleting a copy removes its applications and deletes its clones; then all."""
    d = cloned()
    alice = d.environments["staging"].copies["alice"]
    d = delete_copy(d, "staging", "alice")
    assert "alice" not in d.environments["staging"].copies
    assert all(d.get_dataset(i)[0].deleted for i in alice.datasets.values())
    with pytest.raises(KeyError):
        d.get_application("web-staging-alice")
    d = delete_environment(d, "staging")
    assert "staging" not in d.environments
    assert {a.name for a, _ in d.all_applications()} == {"web", "db", "search"}
    with pytest.raises(UnknownEnvironment):
        delete_environment(d, "staging")
    with pytest.raises(UnknownEnvironment):
        reset_copy(cloned(), "staging", "carol")


def test_originals_publishing_the_same_port_on_different_nodes() -> None:
    """
    Two originals on different nodes may publish the same external port:
    each copy gets its own port, and the one asked for is used.
    """
    web = Application(name="web", image="i", ports=[Port(internal_port=80, external_port=8080)])
    api = Application(name="api", image="i", ports=[Port(internal_port=80, external_port=8080)])
    deployment = Deployment().add_application(web, N1).add_application(api, N2)
    d = clone_environment(
        deployment, "s", ["web", "api"], ["1"], SNAP, ports={"1": {"web": {8080: 21000}}}
    )
    assert [p.external_port for p in d.get_application("web-s-1")[0].ports] == [21000]
    [api_port] = [p.external_port for p in d.get_application("api-s-1")[0].ports]
    assert api_port not in (21000, 8080)


def test_blocked_copy_moves_to_a_free_port_and_links_follow() -> None:
    """
    A copy's application whose node reports its port taken gets a free
    port (not published, not busy anywhere), its copy's links to it follow,
    and other copies and the originals are untouched.
    """
    d = cloned()
    db, _ = d.get_application("db-staging-alice")
    [old] = [p.external_port for p in db.ports]
    published = {p.external_port for a, _ in d.all_applications() for p in a.ports}
    busy_next = max(published) + 1
    state = (
        DeploymentState()
        .update_node(NodeState(
            uuid=N1, applications={}, busy_ports=[old, busy_next],
            port_conflicts={"db-staging-alice": [old]},
        ))
    )
    moved, moves = move_blocked_ports(d, state)
    [move] = moves
    assert move == PortMove("db-staging-alice", N1, old, move.new_port)
    assert move.new_port not in published | {busy_next} and move.new_port >= FIRST_FREE_PORT
    assert [p.external_port for p in moved.get_application("db-staging-alice")[0].ports] == [move.new_port]
    web, _ = moved.get_application("web-staging-alice")
    assert {link.alias: link.remote_port for link in web.links}["db"] == move.new_port
    assert moved.get_application("web-staging-bob") == d.get_application("web-staging-bob")
    assert moved.get_application("db") == d.get_application("db")


def test_nothing_moves_without_a_conflict_on_a_published_port() -> None:
    """
    No report, a report on a port the copy no longer publishes, a report
    about an application that is not a copy, or a refusal by ``allowed``
    leave the configuration itself.
    """
    d = cloned()
    assert move_blocked_ports(d, DeploymentState()) == (d, [])
    stale = DeploymentState().update_node(
        NodeState(uuid=N1, port_conflicts={"db-staging-alice": [1], "db": [5432]})
    )
    assert move_blocked_ports(d, stale) == (d, [])
    [old] = [p.external_port for p in d.get_application("db-staging-alice")[0].ports]
    blocked = DeploymentState().update_node(
        NodeState(uuid=N1, port_conflicts={"db-staging-alice": [old]})
    )
    assert move_blocked_ports(d, blocked, lambda name: False) == (d, [])


# -- health checks and update history ----------------------------------------


def _updated_db(d: Deployment) -> Deployment:
    """``db`` updated to a new image with a TCP health check of its own."""
    db, _ = d.get_application("db")
    return d.update_application(
        db.set(image="postgres:17", health=HealthCheck(kind="tcp", port=5432))
    )


def test_copy_has_the_health_check_but_no_update_history() -> None:
    """
    An updated original's copy has the original's health check and image,
    but starts at revision 0 with nothing to roll back to and no update
    waiting to be healthy.
    """
    d = clone_environment(
        _updated_db(staging()), "staging", ["db"], ["alice"], SNAP, None, ids()
    )
    original, _ = d.get_application("db")
    assert (original.revision, original.updating) == (1, True)
    copy, _ = d.get_application("db-staging-alice")
    assert copy.health == HealthCheck(kind="tcp", port=5432)
    assert copy.image == "postgres:17"
    assert (copy.revision, copy.previous, copy.updating, copy.update_failed) == (
        0,
        None,
        False,
        None,
    )


def test_reset_points_the_previous_specification_at_the_fresh_clones() -> None:
    """
    Resetting a copy whose application was updated since points both its
    specification and the previous one it may be rolled back to at the
    fresh clones: a rollback never brings back a deleted clone.
    """
    d = cloned()
    copy, _ = d.get_application("db-staging-alice")
    d = d.update_application(copy.set(image="pg:2"))
    d = reset_copy(d, "staging", "alice", new_id=ids("cccccccc"))
    new = d.environments["staging"].copies["alice"].datasets[DB]
    db, _ = d.get_application("db-staging-alice")
    assert db.previous is not None
    assert [v.dataset_id for v in db.volumes] == [new]
    assert [v.dataset_id for v in db.previous.volumes] == [new]
    rolled_back, _ = d.rollback_application("db-staging-alice").get_application(
        "db-staging-alice"
    )
    assert [v.dataset_id for v in rolled_back.volumes] == [new]


def test_blocked_port_moves_in_the_previous_specification_too() -> None:
    """
    A blocked copy moved to a free port keeps the move in the previous
    specification it may be rolled back to, and so do the links to it.
    """
    d = cloned()
    for name in ("db-staging-alice", "web-staging-alice"):
        app, _ = d.get_application(name)
        d = d.update_application(app.set(image=app.image + ":2"))
    db, _ = d.get_application("db-staging-alice")
    [old] = [p.external_port for p in db.ports]
    state = DeploymentState().update_node(
        NodeState(uuid=N1, applications={}, port_conflicts={"db-staging-alice": [old]})
    )
    moved, [move] = move_blocked_ports(d, state)
    db, _ = moved.get_application("db-staging-alice")
    assert db.previous is not None
    assert [p.external_port for p in db.previous.ports] == [move.new_port]
    web, _ = moved.get_application("web-staging-alice")
    assert web.previous is not None
    links = {link.alias: link.remote_port for link in web.previous.links}
    assert links["db"] == move.new_port


def test_copy_keeps_the_replicas_of_its_original() -> None:
    """
    A copy of an application running several instances runs as many (on
    its own ports), also when its copy is reset; the original is unchanged.
    """
    d = staging()
    web, _ = d.get_application("web")
    d = d.update_application(web.set(replicas=3))
    d = clone_environment(d, "staging", ["web", "db"], ["alice"], SNAP, None, ids())
    copy, node = d.get_application("web-staging-alice")
    assert (copy.replicas, copy.revision, copy.previous, node) == (3, 0, None, N1)
    assert d.get_application("db-staging-alice")[0].replicas == 1
    d = reset_copy(d, "staging", "alice", new_id=ids("cccccccc"))
    assert d.get_application("web-staging-alice")[0].replicas == 3
    assert d.get_application("web")[0].replicas == 3
