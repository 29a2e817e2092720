"""Tests for flocker.control._model: invariants and pure change methods."""

from collections.abc import Iterable
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyrsistent import InvariantException, PTypeError

from flocker.control import (
    Application,
    ApplicationAlreadyExists,
    AttachedVolume,
    Dataset,
    DatasetAlreadyExists,
    DatasetDeleted,
    DatasetInUse,
    DatasetLeased,
    DatasetState,
    Deployment,
    DeploymentState,
    Lease,
    LeaseError,
    Leases,
    Link,
    Manifestation,
    Node,
    NodeState,
    Port,
    RestartOnFailure,
    UnknownApplication,
    UnknownDataset,
    cleanup_deleted,
    is_uuid,
    is_valid_name,
)
from flocker.control.strategies import (
    dataset_ids,
    datasets,
    deployments,
    node_states,
    node_uuids,
)

from ._examples import (
    DATASET_FREE,
    DATASET_LOGS,
    DATASET_OLD,
    DATASET_PG,
    EXAMPLE_DEPLOYMENT,
    FREE,
    NODE_A,
    NODE_B,
    PG,
)

NODE_C = "33333333-3333-4333-8333-333333333333"


def new_id() -> str:
    return str(uuid4())


# -- field checks -----------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "",
        "not-a-uuid",
        "AAAAAAAA-0000-4000-8000-000000000001",
        "aaaaaaaa000040008000000000000001",
        7,
        None,
    ],
)
def test_bad_uuids(value: object) -> None:
    """Only canonical lowercase dashed UUID strings are UUIDs for the model."""
    assert not is_uuid(value)
    with pytest.raises((InvariantException, PTypeError)):
        Dataset(dataset_id=value)


def test_good_uuid() -> None:
    """A canonical UUID string is accepted."""
    assert is_uuid(DATASET_PG)


@pytest.mark.parametrize("name", ["", "-x", ".x", "a b", "a/b", "é", "x" * 129, 3])
def test_bad_names(name: object) -> None:
    """Application names must be Docker-valid."""
    assert not is_valid_name(name)
    with pytest.raises((InvariantException, PTypeError)):
        Application(name=name, image="busybox")


@pytest.mark.parametrize("name", ["a", "A.b_c-d", "0", "x" * 128])
def test_good_names(name: str) -> None:
    """Docker-valid names are accepted."""
    assert Application(name=name, image="busybox").name == name


@pytest.mark.parametrize("size", [0, -1, True, 1.5])
def test_bad_maximum_size(size: object) -> None:
    """Maximum sizes are positive integers (booleans and floats are refused)."""
    with pytest.raises((InvariantException, PTypeError)):
        Dataset(dataset_id=DATASET_PG, maximum_size=size)


@pytest.mark.parametrize("port", [0, 65536, -5])
def test_bad_ports(port: int) -> None:
    """Port numbers are between 1 and 65535."""
    with pytest.raises(InvariantException):
        Port(internal_port=port, external_port=80)
    with pytest.raises(InvariantException):
        Link(alias="db", local_port=80, remote_port=port)


@pytest.mark.parametrize("image", ["", "has space", "tab\there"])
def test_bad_images(image: str) -> None:
    """Image references are non-empty and contain no whitespace."""
    with pytest.raises(InvariantException):
        Application(name="x", image=image)


def test_relative_mountpoint() -> None:
    """Mountpoints must be absolute paths."""
    with pytest.raises(InvariantException):
        AttachedVolume(dataset_id=DATASET_PG, mountpoint="data")


def test_duplicate_mountpoints() -> None:
    """An application cannot mount two datasets at one mountpoint."""
    with pytest.raises(InvariantException):
        Application(
            name="x",
            image="busybox",
            volumes=[
                AttachedVolume(dataset_id=DATASET_PG, mountpoint="/data"),
                AttachedVolume(dataset_id=DATASET_LOGS, mountpoint="/data"),
            ],
        )


def test_duplicate_link_aliases() -> None:
    """Link aliases within one application are distinct."""
    with pytest.raises(InvariantException):
        Application(
            name="x",
            image="busybox",
            links=[
                Link(alias="db", local_port=1, remote_port=2),
                Link(alias="db", local_port=3, remote_port=4),
            ],
        )


def test_command_line_must_be_strings() -> None:
    """A command line is a list of strings."""
    with pytest.raises(InvariantException):
        Application(name="x", image="busybox", command_line=["ok", 3])


@pytest.mark.parametrize("swappiness", [None, 0, 60, 100])
def test_swappiness_accepted(swappiness: int | None) -> None:
    """An application's swappiness is unset or an integer from 0 to 100."""
    app = Application(name="x", image="busybox", swappiness=swappiness)
    assert app.swappiness == swappiness


@pytest.mark.parametrize("swappiness", [-1, 101, True])
def test_swappiness_out_of_range(swappiness: int) -> None:
    """Swappiness outside 0–100, or a boolean, is refused."""
    with pytest.raises(InvariantException):
        Application(name="x", image="busybox", swappiness=swappiness)


@pytest.mark.parametrize("swappiness", ["50", 50.0])
def test_swappiness_not_integer(swappiness: object) -> None:
    """Swappiness that is not an integer is refused."""
    with pytest.raises(PTypeError):
        Application(name="x", image="busybox", swappiness=swappiness)


def test_restart_retry_count_positive() -> None:
    """On-failure restart counts are positive."""
    with pytest.raises(InvariantException):
        RestartOnFailure(maximum_retry_count=0)


# -- node and deployment invariants -----------------------------------------


def test_unique_external_ports_per_node() -> None:
    """Two applications on one node cannot publish the same external port."""
    a = Application(
        name="a", image="i", ports=[Port(internal_port=1, external_port=80)]
    )
    b = Application(
        name="b", image="i", ports=[Port(internal_port=2, external_port=80)]
    )
    with pytest.raises(InvariantException):
        Node(uuid=NODE_A, applications={"a": a, "b": b})


def test_same_external_port_on_two_nodes() -> None:
    """Two nodes may each publish the same external port."""
    a = Application(
        name="a", image="i", ports=[Port(internal_port=1, external_port=80)]
    )
    b = a.set(name="b")
    d = Deployment().add_application(a, NODE_A).add_application(b, NODE_B)
    assert len(list(d.all_applications())) == 2


def test_volume_must_be_primary_on_node() -> None:
    """An application's volumes must be live primary manifestations on its node."""
    app = Application(
        name="a",
        image="i",
        volumes=[AttachedVolume(dataset_id=DATASET_PG, mountpoint="/d")],
    )
    with pytest.raises(InvariantException):
        Node(uuid=NODE_A, applications={"a": app})
    with pytest.raises(InvariantException):
        Node(
            uuid=NODE_A,
            applications={"a": app},
            manifestations={DATASET_PG: Manifestation(dataset=PG, primary=False)},
        )
    with pytest.raises(InvariantException):
        Node(
            uuid=NODE_A,
            applications={"a": app},
            manifestations={DATASET_PG: Manifestation(dataset=PG.set(deleted=True))},
        )


def test_dataset_used_by_one_application() -> None:
    """Two applications cannot mount the same dataset."""
    vol = [AttachedVolume(dataset_id=DATASET_PG, mountpoint="/d")]
    with pytest.raises(InvariantException):
        Node(
            uuid=NODE_A,
            applications={
                "a": Application(name="a", image="i", volumes=vol),
                "b": Application(name="b", image="i", volumes=vol),
            },
            manifestations={DATASET_PG: Manifestation(dataset=PG)},
        )


def test_keys_match_values() -> None:
    """Maps are keyed by the ids and names of their values."""
    with pytest.raises(InvariantException):
        Node(uuid=NODE_A, manifestations={DATASET_LOGS: Manifestation(dataset=PG)})
    with pytest.raises(InvariantException):
        Node(uuid=NODE_A, applications={"b": Application(name="a", image="i")})
    with pytest.raises(InvariantException):
        Deployment(nodes={NODE_B: Node(uuid=NODE_A)})
    with pytest.raises(InvariantException):
        Leases(leases={DATASET_LOGS: Lease(dataset_id=DATASET_PG, node_uuid=NODE_A)})


def test_two_primaries_refused() -> None:
    """A dataset cannot have a primary on two nodes."""
    with pytest.raises(InvariantException):
        Deployment(
            nodes={
                NODE_A: Node(
                    uuid=NODE_A, manifestations={DATASET_PG: Manifestation(dataset=PG)}
                ),
                NODE_B: Node(
                    uuid=NODE_B, manifestations={DATASET_PG: Manifestation(dataset=PG)}
                ),
            }
        )


def test_no_primary_refused() -> None:
    """A dataset that only has replicas is refused."""
    with pytest.raises(InvariantException):
        Deployment(
            nodes={
                NODE_A: Node(
                    uuid=NODE_A,
                    manifestations={
                        DATASET_PG: Manifestation(dataset=PG, primary=False)
                    },
                ),
            }
        )


def test_copies_must_agree() -> None:
    """Every manifestation of a dataset carries the same Dataset value."""
    with pytest.raises(InvariantException):
        Deployment(
            nodes={
                NODE_A: Node(
                    uuid=NODE_A, manifestations={DATASET_PG: Manifestation(dataset=PG)}
                ),
                NODE_B: Node(
                    uuid=NODE_B,
                    manifestations={
                        DATASET_PG: Manifestation(
                            dataset=PG.set(maximum_size=1), primary=False
                        )
                    },
                ),
            }
        )


def test_application_name_unique_in_cluster() -> None:
    """An application name is used on at most one node."""
    app = Application(name="a", image="i")
    with pytest.raises(InvariantException):
        Deployment(
            nodes={
                NODE_A: Node(uuid=NODE_A, applications={"a": app}),
                NODE_B: Node(uuid=NODE_B, applications={"a": app}),
            }
        )
    with pytest.raises(ApplicationAlreadyExists):
        Deployment().add_application(app, NODE_A).add_application(app, NODE_B)


@given(deployments())
def test_generated_deployments_have_one_primary(deployment: Deployment) -> None:
    """Every generated deployment lists each dataset once, with its primary."""
    listed = [d.dataset_id for d, _ in deployment.all_datasets()]
    assert len(listed) == len(set(listed))
    for dataset, primary in deployment.all_datasets():
        assert deployment.get_dataset(dataset.dataset_id) == (dataset, primary)


# -- dataset changes ----------------------------------------------------------


@given(datasets(deleted=False), node_uuids)
def test_add_then_get(dataset: Dataset, node: str) -> None:
    """An added dataset is found with its primary node."""
    d = Deployment().add_dataset(dataset, node)
    assert d.get_dataset(dataset.dataset_id) == (dataset, node)
    assert list(d.all_datasets()) == [(dataset, node)]


def test_add_existing_refused() -> None:
    """Adding a dataset whose id is taken (even by a deleted one) is refused."""
    with pytest.raises(DatasetAlreadyExists):
        EXAMPLE_DEPLOYMENT.add_dataset(Dataset(dataset_id=DATASET_PG), NODE_B)
    with pytest.raises(DatasetAlreadyExists):
        EXAMPLE_DEPLOYMENT.add_dataset(Dataset(dataset_id=DATASET_OLD), NODE_B)


@given(dataset_ids)
def test_unknown_dataset(dataset_id: str) -> None:
    """Operations on unknown datasets raise UnknownDataset, a KeyError."""
    d = Deployment()
    for op in (
        lambda: d.get_dataset(dataset_id),
        lambda: d.move_dataset(dataset_id, NODE_A),
        lambda: d.update_dataset(dataset_id, metadata={}),
        lambda: d.delete_dataset(dataset_id),
    ):
        with pytest.raises(UnknownDataset) as e:
            op()
        assert isinstance(e.value, KeyError)
        assert dataset_id in str(e.value)


def test_move_dataset() -> None:
    """
    Moving a dataset makes the new node its only primary; the old primary
    keeps a replica until the move is over.
    """
    d = Deployment().add_dataset(PG, NODE_A).move_dataset(DATASET_PG, NODE_B)
    assert d.get_dataset(DATASET_PG) == (PG, NODE_B)
    assert not d.nodes[NODE_A].manifestations[DATASET_PG].primary


def test_move_to_same_node_is_noop() -> None:
    """Moving a dataset to its primary changes nothing."""
    assert EXAMPLE_DEPLOYMENT.move_dataset(DATASET_PG, NODE_A) is EXAMPLE_DEPLOYMENT


def test_move_promotes_replica() -> None:
    """Moving to a node with a replica promotes that replica."""
    d = EXAMPLE_DEPLOYMENT.set(leases=Leases()).move_dataset(DATASET_FREE, NODE_A)
    assert d.get_dataset(DATASET_FREE) == (FREE, NODE_A)
    assert d.nodes[NODE_A].manifestations[DATASET_FREE].primary
    assert not d.nodes[NODE_B].manifestations[DATASET_FREE].primary


def test_move_used_dataset_refused() -> None:
    """A dataset mounted by an application cannot move without it."""
    with pytest.raises(DatasetInUse) as e:
        EXAMPLE_DEPLOYMENT.move_dataset(DATASET_LOGS, NODE_B)
    assert "postgres" in str(e.value)


def test_move_leased_dataset_refused() -> None:
    """A dataset leased to its primary node cannot move away."""
    with pytest.raises(DatasetLeased):
        EXAMPLE_DEPLOYMENT.move_dataset(DATASET_FREE, NODE_A)


def test_move_deleted_dataset_refused() -> None:
    """A deleted dataset cannot be moved."""
    with pytest.raises(DatasetDeleted):
        EXAMPLE_DEPLOYMENT.move_dataset(DATASET_OLD, NODE_A)


def test_update_dataset() -> None:
    """Metadata and maximum size can be replaced, separately or together."""
    d = Deployment().add_dataset(PG, NODE_A)
    d2 = d.update_dataset(DATASET_PG, metadata={"name": "new"})
    assert d2.get_dataset(DATASET_PG)[0] == PG.set(metadata={"name": "new"})
    d3 = d.update_dataset(DATASET_PG, maximum_size=None)
    assert d3.get_dataset(DATASET_PG)[0].maximum_size is None
    assert d3.get_dataset(DATASET_PG)[0].metadata == PG.metadata


def test_update_changes_replicas_too() -> None:
    """Updating a dataset changes every copy of it."""
    d = EXAMPLE_DEPLOYMENT.update_dataset(DATASET_FREE, maximum_size=1024)
    assert d.nodes[NODE_A].manifestations[DATASET_FREE].dataset.maximum_size == 1024


def test_update_bad_size_refused() -> None:
    """An invalid new size raises and leaves the deployment as it was."""
    with pytest.raises(InvariantException):
        EXAMPLE_DEPLOYMENT.update_dataset(DATASET_PG, maximum_size=0)


def test_update_deleted_refused() -> None:
    """A deleted dataset cannot be updated."""
    with pytest.raises(DatasetDeleted):
        EXAMPLE_DEPLOYMENT.update_dataset(DATASET_OLD, metadata={})


def test_delete_dataset() -> None:
    """Deleting marks every copy deleted; deleting again changes nothing."""
    d = Deployment().add_dataset(PG, NODE_A).delete_dataset(DATASET_PG)
    assert d.get_dataset(DATASET_PG) == (PG.set(deleted=True), NODE_A)
    assert d.delete_dataset(DATASET_PG) is d


def test_delete_used_or_leased_refused() -> None:
    """A dataset that is mounted or leased cannot be deleted."""
    with pytest.raises(DatasetInUse):
        EXAMPLE_DEPLOYMENT.delete_dataset(DATASET_LOGS)
    with pytest.raises(DatasetLeased):
        EXAMPLE_DEPLOYMENT.delete_dataset(DATASET_FREE)


# -- applications ---------------------------------------------------------


def test_move_application_takes_datasets() -> None:
    """Moving an application moves the datasets it mounts with it."""
    d = EXAMPLE_DEPLOYMENT.set(leases=Leases()).move_application("postgres", NODE_C)
    assert d.get_application("postgres")[1] == NODE_C
    assert d.get_dataset(DATASET_PG)[1] == NODE_C
    assert d.get_dataset(DATASET_LOGS)[1] == NODE_C


def test_move_application_leased_refused() -> None:
    """An application whose dataset is leased where it is cannot move."""
    with pytest.raises(DatasetLeased):
        EXAMPLE_DEPLOYMENT.move_application("postgres", NODE_B)


def test_remove_application() -> None:
    """Removing an application leaves its datasets in place."""
    d = EXAMPLE_DEPLOYMENT.remove_application("postgres")
    with pytest.raises(UnknownApplication):
        d.get_application("postgres")
    assert d.get_dataset(DATASET_PG)[1] == NODE_A


def test_unknown_application() -> None:
    """Unknown application names raise UnknownApplication."""
    with pytest.raises(UnknownApplication):
        Deployment().remove_application("x")
    with pytest.raises(UnknownApplication):
        Deployment().move_application("x", NODE_A)


# -- leases -----------------------------------------------------------------


def test_lease_acquire_and_renew() -> None:
    """A node acquires a free lease and can renew its own."""
    leases = Leases().acquire(100.0, DATASET_PG, NODE_A, expires=10)
    assert leases.get(DATASET_PG) == Lease(
        dataset_id=DATASET_PG, node_uuid=NODE_A, expiration=110.0
    )
    leases = leases.acquire(105.0, DATASET_PG, NODE_A)
    assert leases.leases[DATASET_PG].expiration is None


def test_lease_conflict() -> None:
    """A lease held by another node cannot be acquired until it lapses."""
    leases = Leases().acquire(100.0, DATASET_PG, NODE_A, expires=10)
    with pytest.raises(LeaseError):
        leases.acquire(105.0, DATASET_PG, NODE_B)
    assert (
        leases.acquire(110.0, DATASET_PG, NODE_B).leases[DATASET_PG].node_uuid == NODE_B
    )


def test_lease_release() -> None:
    """Releasing needs the lease to exist and, if named, the holder to match."""
    leases = Leases().acquire(0.0, DATASET_PG, NODE_A)
    with pytest.raises(LeaseError):
        leases.release(DATASET_PG, NODE_B)
    with pytest.raises(LeaseError):
        leases.release(DATASET_LOGS)
    assert len(leases.release(DATASET_PG, NODE_A)) == 0


def test_lease_expire() -> None:
    """Expiry drops only lapsed leases."""
    leases = (
        Leases()
        .acquire(0.0, DATASET_PG, NODE_A, expires=5)
        .acquire(0.0, DATASET_LOGS, NODE_A)
    )
    assert [x.dataset_id for x in leases.expire(5.0)] == [DATASET_LOGS]
    assert leases.expire(4.0) is leases


# -- state ------------------------------------------------------------------


@given(node_states(), node_states())
def test_update_node_merges_halves(first: NodeState, second: NodeState) -> None:
    """A report's known fields win; unknown ones keep the earlier report's."""
    second = second.set(uuid=first.uuid, era=first.era)
    merged = (
        DeploymentState().update_node(first).update_node(second).get_node(first.uuid)
    )
    for name in ("hostname", "applications", "datasets"):
        expected = getattr(second, name)
        if expected is None:
            expected = getattr(first, name)
        assert getattr(merged, name) == expected


def test_update_node_new_era_forgets() -> None:
    """A report from a new era (a reboot) replaces everything known before."""
    old = NodeState(uuid=NODE_A, era=new_id(), applications={}, datasets={})
    new = NodeState(uuid=NODE_A, era=new_id(), datasets={})
    merged = DeploymentState().update_node(old).update_node(new).get_node(NODE_A)
    assert merged == new


def test_update_node_unchanged_is_the_same_state() -> None:
    """A report that changes nothing leaves the very same state (no new one)."""
    report = NodeState(uuid=NODE_A, hostname="10.0.0.1", applications={}, datasets={})
    state = DeploymentState().update_node(report)
    assert state.update_node(report) is state
    assert state.update_node(NodeState(uuid=NODE_A, datasets={})) is state
    assert state.update_node(report.set(hostname="10.0.0.2")) is not state


def test_remove_node_state() -> None:
    """Removing a node forgets its state; removing an unknown one is a no-op."""
    s = DeploymentState().update_node(NodeState(uuid=NODE_A))
    assert s.remove_node(NODE_A) == DeploymentState()
    assert s.remove_node(NODE_B) is s
    assert DeploymentState().get_node(NODE_B) == NodeState(uuid=NODE_B)


def test_node_state_rejects_wrong_values() -> None:
    """NodeState maps must hold the right types keyed by their ids."""
    with pytest.raises((TypeError, PTypeError, InvariantException)):
        NodeState(uuid=NODE_A, datasets={DATASET_PG: "nope"})
    with pytest.raises(InvariantException):
        NodeState(
            uuid=NODE_A, datasets={DATASET_PG: DatasetState(dataset_id=DATASET_LOGS)}
        )
    with pytest.raises(InvariantException):
        NodeState(uuid=NODE_A, era="yesterday")
    with pytest.raises(InvariantException):
        DatasetState(dataset_id=DATASET_PG, size=-1)


def _holding(node: str, *ids: str, seen: Iterable[str] | None = ()) -> NodeState:
    """A node's report: the datasets it holds, the deletions its agent saw."""
    return NodeState(
        uuid=node,
        datasets={i: DatasetState(dataset_id=i) for i in ids},
        deletions_seen=seen,
    )


def test_cleanup_deleted_removes_gone_dataset() -> None:
    """A deleted dataset no node reports any more is dropped."""
    state = (
        DeploymentState()
        .update_node(_holding(NODE_A, seen=[DATASET_OLD]))
        .update_node(_holding(NODE_B, seen=[DATASET_OLD]))
    )
    d = cleanup_deleted(EXAMPLE_DEPLOYMENT, state)
    with pytest.raises(UnknownDataset):
        d.get_dataset(DATASET_OLD)
    assert d.get_dataset(DATASET_PG) == EXAMPLE_DEPLOYMENT.get_dataset(DATASET_PG)


def test_cleanup_deleted_keeps_held_dataset() -> None:
    """A deleted dataset some node still holds is kept."""
    state = (
        DeploymentState()
        .update_node(_holding(NODE_A, DATASET_OLD))
        .update_node(_holding(NODE_B))
    )
    assert cleanup_deleted(EXAMPLE_DEPLOYMENT, state) == EXAMPLE_DEPLOYMENT


def test_cleanup_deleted_keeps_until_its_nodes_saw_the_deletion() -> None:
    """
    A deleted dataset no node holds is kept while a node it is configured
    on reported from a pass that did not see it deleted (that pass may be
    creating it), or from an agent that does not say.
    """
    seen: list[str] | None
    for seen in ([], None):
        state = (
            DeploymentState()
            .update_node(_holding(NODE_A, seen=seen))
            .update_node(_holding(NODE_B, seen=seen))
        )
        assert cleanup_deleted(EXAMPLE_DEPLOYMENT, state) == EXAMPLE_DEPLOYMENT


def test_cleanup_deleted_keeps_when_unknown() -> None:
    """A deleted dataset whose node has not reported its datasets is kept."""
    state = DeploymentState().update_node(NodeState(uuid=NODE_B, applications={}))
    assert cleanup_deleted(EXAMPLE_DEPLOYMENT, state) == EXAMPLE_DEPLOYMENT
    assert cleanup_deleted(EXAMPLE_DEPLOYMENT, DeploymentState()) == EXAMPLE_DEPLOYMENT


def test_cleanup_deleted_with_replicas_and_lease() -> None:
    """All copies and the lease of a gone deleted dataset are dropped together."""
    d = (
        Deployment()
        .add_dataset(PG, NODE_A)
        .update_node(
            Node(
                uuid=NODE_B,
                manifestations={DATASET_PG: Manifestation(dataset=PG, primary=False)},
            )
        )
        .delete_dataset(DATASET_PG)
    )
    d = d.set(
        leases=Leases(
            leases={DATASET_PG: Lease(dataset_id=DATASET_PG, node_uuid=NODE_A)}
        )
    )
    state = (
        DeploymentState()
        .update_node(_holding(NODE_A, seen=[DATASET_PG]))
        .update_node(_holding(NODE_B, seen=[DATASET_PG]))
    )
    assert cleanup_deleted(d, state) == Deployment()


@given(deployments(), st.data())
def test_cleanup_deleted_only_drops_deleted(deployment: Deployment, data: st.DataObject) -> None:
    """Cleanup never touches live datasets, whatever the state says."""
    deleted = [x[0].dataset_id for x in deployment.all_datasets() if x[0].deleted]
    state = DeploymentState(
        nodes={u: _holding(u, seen=deleted) for u in deployment.nodes}
    )
    cleaned = cleanup_deleted(deployment, state)
    assert [x for x in deployment.all_datasets() if not x[0].deleted] == list(
        cleaned.all_datasets()
    )


@given(deployments(), st.data())
def test_move_any_dataset(deployment: Deployment, data: st.DataObject) -> None:
    """Moving any dataset either succeeds, touching nothing else, or says why not."""
    placed = list(deployment.all_datasets())
    if not placed:
        return
    dataset, source = data.draw(st.sampled_from(placed))
    uuids = sorted(deployment.nodes)
    target = data.draw(st.sampled_from(uuids) | node_uuids)
    lease = deployment.leases.get(dataset.dataset_id)
    try:
        moved = deployment.move_dataset(dataset.dataset_id, target)
    except DatasetDeleted:
        assert dataset.deleted
        return
    except DatasetInUse:
        assert deployment.nodes[source].application_using(dataset.dataset_id)
        return
    except DatasetLeased:
        assert lease is not None and lease.node_uuid == source
        return
    assert moved.get_dataset(dataset.dataset_id) == (dataset, target)
    others = [x for x in moved.all_datasets() if x[0] != dataset]
    assert others == [x for x in deployment.all_datasets() if x[0] != dataset]
    assert list(moved.all_applications()) == list(deployment.all_applications())


@given(deployments(), st.data())
def test_update_any_dataset(deployment: Deployment, data: st.DataObject) -> None:
    """Updating a live dataset's size changes only that, on every copy."""
    live = [d for d, _ in deployment.all_datasets() if not d.deleted]
    if not live:
        return
    dataset = data.draw(st.sampled_from(live))
    size = data.draw(st.none() | st.integers(1, 2**40))
    updated = deployment.update_dataset(dataset.dataset_id, maximum_size=size)
    expected = dataset.set(maximum_size=size)
    for node in updated.nodes.values():
        m = node.manifestations.get(dataset.dataset_id)
        assert m is None or m.dataset == expected


def test_state_all_datasets_and_era() -> None:
    """Reported datasets are listed with their nodes; nodes are found by era."""
    era = new_id()
    state = (
        DeploymentState()
        .update_node(_holding(NODE_B, DATASET_PG).set(era=era))
        .update_node(_holding(NODE_A, DATASET_PG, DATASET_LOGS))
        .update_node(NodeState(uuid=NODE_C))
    )
    assert [(d.dataset_id, u) for d, u in state.all_datasets()] == [
        (DATASET_PG, NODE_A),
        (DATASET_PG, NODE_B),
        (DATASET_LOGS, NODE_A),
    ]
    found = state.node_by_era(era)
    assert found is not None and found.uuid == NODE_B
    assert state.node_by_era(new_id()) is None


@pytest.mark.parametrize("value", [float("inf"), float("nan"), -float("inf")])
def test_times_are_finite(value: float) -> None:
    """Lease expirations and snapshot times are finite numbers."""
    from flocker.control import Snapshot

    with pytest.raises(InvariantException):
        Lease(dataset_id=DATASET_PG, node_uuid=NODE_A, expiration=value)
    with pytest.raises(InvariantException):
        Snapshot(name="s", created=value)
