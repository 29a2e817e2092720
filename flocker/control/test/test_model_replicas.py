"""Tests for the model's standing replicas, epochs and failover (flocker.control._model)."""

from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyrsistent import InvariantException

from flocker.control import (
    Application,
    AttachedVolume,
    Dataset,
    DatasetDeleted,
    DatasetState,
    Deployment,
    DeploymentState,
    DuplicateReplicas,
    Manifestation,
    NodeState,
    NotAReplica,
    PrimaryAsReplica,
    Replication,
    TooManyReplicas,
    UnknownDataset,
    cleanup_deleted,
    cleanup_moved,
)
from flocker.control.strategies import deployments

A, B, C, D, E, F = (str(uuid4()) for _ in range(6))
DS = str(uuid4())
DS2 = str(uuid4())
ALONE = str(uuid4())


def replicated(*replicas: str, primary: str = A) -> Deployment:
    """A deployment with dataset DS on ``primary`` and standing replicas on ``replicas``."""
    return (
        Deployment()
        .add_dataset(Dataset(dataset_id=DS), primary)
        .set_replicas(DS, list(replicas))
    )


def with_app() -> Deployment:
    """DS and DS2 on A, both mounted by the application "db", both replicated to B."""
    deployment = (
        Deployment()
        .add_dataset(Dataset(dataset_id=DS), A)
        .add_dataset(Dataset(dataset_id=DS2), A)
        .set_replicas(DS, [B])
        .set_replicas(DS2, [B])
    )
    app = Application(
        name="db",
        image="postgres:16",
        volumes=[
            AttachedVolume(dataset_id=DS, mountpoint="/data"),
            AttachedVolume(dataset_id=DS2, mountpoint="/logs"),
        ],
    )
    return deployment.add_application(app, A)


# --------------------------------------------------------------------------
# values


def test_replication_defaults() -> None:
    """Replication is continuous and manual unless asked otherwise."""
    assert Replication() == Replication(interval_seconds=0, failover="manual")
    assert Dataset(dataset_id=DS).replication == Replication()
    assert Dataset(dataset_id=DS).epoch == 0


@pytest.mark.parametrize(
    "fields",
    [{"interval_seconds": -1}, {"failover": "sometimes"}, {"interval_seconds": True}],
)
def test_replication_rejects_bad_values(fields: dict[str, object]) -> None:
    """A negative interval or an unknown failover mode cannot be built."""
    with pytest.raises((InvariantException, TypeError)):
        Replication(**fields)


def test_epoch_is_never_negative() -> None:
    """A dataset's epoch is a non-negative integer."""
    with pytest.raises(InvariantException):
        Dataset(dataset_id=DS, epoch=-1)


def test_primary_is_never_standing() -> None:
    """A manifestation cannot be both the primary and a standing replica."""
    with pytest.raises(InvariantException):
        Manifestation(dataset=Dataset(dataset_id=DS), primary=True, standing=True)


# --------------------------------------------------------------------------
# set_replicas / replicas_of


def test_set_replicas_adds_standing_manifestations() -> None:
    """The listed nodes hold standing (non-primary) manifestations; replicas_of sorts them."""
    deployment = replicated(C, B)
    assert deployment.replicas_of(DS) == sorted([B, C])
    for node in (B, C):
        m = deployment.nodes[node].manifestations[DS]
        assert (m.primary, m.standing) == (False, True)
    assert deployment.get_dataset(DS)[1] == A


def test_replicas_of_dataset_without_replicas() -> None:
    """A dataset with no standing replicas (or an unknown one) has an empty list."""
    assert replicated().replicas_of(DS) == []
    assert replicated().replicas_of(ALONE) == []


def test_set_replicas_removes_dropped_nodes() -> None:
    """A node left out of the new set loses its manifestation (and empty nodes go)."""
    deployment = replicated(B, C).set_replicas(DS, [C])
    assert deployment.replicas_of(DS) == [C]
    assert B not in deployment.nodes


def test_set_replicas_keeps_other_things_on_dropped_nodes() -> None:
    """A dropped replica's node keeps its other datasets."""
    deployment = replicated(B).add_dataset(Dataset(dataset_id=DS2), B)
    deployment = deployment.set_replicas(DS, [])
    assert set(deployment.nodes[B].manifestations) == {DS2}


def test_set_replicas_turns_transient_copy_standing() -> None:
    """A node holding a copy a move left behind keeps it, now as a standing replica."""
    moved = replicated().move_dataset(DS, B)
    assert moved.nodes[A].manifestations[DS].standing is False
    deployment = moved.set_replicas(DS, [A])
    assert deployment.nodes[A].manifestations[DS].standing is True
    assert deployment.replicas_of(DS) == [A]


def test_set_replicas_changes_replication_everywhere() -> None:
    """New replication settings reach every copy of the dataset."""
    settings = Replication(interval_seconds=30, failover="automatic")
    deployment = replicated(B).set_replicas(DS, [B, C], replication=settings)
    for node in (A, B, C):
        assert deployment.nodes[node].manifestations[DS].dataset.replication == settings


def test_set_replicas_keeps_replication_by_default() -> None:
    """Without new settings, the dataset's replication stays as it was."""
    settings = Replication(interval_seconds=30)
    deployment = replicated().set_replicas(DS, [B], replication=settings)
    assert deployment.set_replicas(DS, [C]).get_dataset(DS)[0].replication == settings


def test_set_replicas_refuses_primary() -> None:
    """The primary's node cannot also be a standing replica."""
    with pytest.raises(PrimaryAsReplica) as e:
        replicated().set_replicas(DS, [B, A])
    assert A in str(e.value) and "primary" in str(e.value)


def test_set_replicas_refuses_duplicates() -> None:
    """A node listed twice is refused, naming it."""
    with pytest.raises(DuplicateReplicas) as e:
        replicated().set_replicas(DS, [B, C, B])
    assert B in str(e.value)


def test_set_replicas_refuses_more_than_four() -> None:
    """At most four standing replicas."""
    deployment = replicated(B, C, D, E)
    with pytest.raises(TooManyReplicas) as e:
        deployment.set_replicas(DS, [B, C, D, E, F])
    assert "at most 4" in str(e.value)


def test_set_replicas_refuses_deleted_and_unknown() -> None:
    """A deleted dataset cannot get replicas; an unknown one is unknown."""
    deleted = replicated().delete_dataset(DS)
    with pytest.raises(DatasetDeleted):
        deleted.set_replicas(DS, [B])
    with pytest.raises(UnknownDataset):
        deleted.set_replicas(ALONE, [B])


# --------------------------------------------------------------------------
# moves


def test_move_to_replica_swaps() -> None:
    """A move to a standing replica makes the old primary a standing replica."""
    deployment = replicated(B, C).move_dataset(DS, B)
    assert deployment.get_dataset(DS)[1] == B
    assert deployment.replicas_of(DS) == sorted([A, C])
    assert deployment.get_dataset(DS)[0].epoch == 0


def test_move_elsewhere_keeps_replicas() -> None:
    """A move to a node without a replica leaves a transient copy and the replicas."""
    deployment = replicated(B).move_dataset(DS, C)
    assert deployment.get_dataset(DS)[1] == C
    assert deployment.replicas_of(DS) == [B]
    old = deployment.nodes[A].manifestations[DS]
    assert (old.primary, old.standing) == (False, False)


def test_move_application_to_replica_swaps() -> None:
    """Moving an application to a node with replicas of its datasets swaps each."""
    deployment = with_app().move_application("db", B)
    assert deployment.get_application("db")[1] == B
    assert deployment.replicas_of(DS) == [A]
    assert deployment.replicas_of(DS2) == [A]


# --------------------------------------------------------------------------
# failover


def test_failover_promotes_replica() -> None:
    """The target becomes primary at the next epoch; the old primary leaves."""
    deployment, failed = replicated(B, C).failover_dataset(DS, B)
    assert failed == [DS]
    dataset, primary = deployment.get_dataset(DS)
    assert (primary, dataset.epoch) == (B, 1)
    assert deployment.nodes[B].manifestations[DS].standing is False
    assert A not in deployment.nodes
    assert deployment.replicas_of(DS) == [C]
    assert deployment.nodes[C].manifestations[DS].dataset.epoch == 1


def test_failover_twice_counts_epochs() -> None:
    """Every failover adds one to the epoch."""
    deployment, _ = replicated(B, C).failover_dataset(DS, B)
    deployment, _ = deployment.failover_dataset(DS, C)
    assert deployment.get_dataset(DS)[0].epoch == 2


def test_failover_moves_application_and_its_datasets() -> None:
    """Every dataset of the application fails over with it, and it moves."""
    deployment, failed = with_app().failover_dataset(DS2, B)
    assert failed == sorted([DS, DS2])
    assert deployment.get_application("db")[1] == B
    for dataset_id in (DS, DS2):
        dataset, primary = deployment.get_dataset(dataset_id)
        assert (primary, dataset.epoch) == (B, 1)
        assert deployment.replicas_of(dataset_id) == []
    assert A not in deployment.nodes


def test_failover_needs_replica_of_every_dataset() -> None:
    """If the target lacks a replica of one of the application's datasets, nothing changes."""
    deployment = with_app().set_replicas(DS2, [C])
    with pytest.raises(NotAReplica) as e:
        deployment.failover_dataset(DS, B)
    assert DS2 in str(e.value) and B in str(e.value)


def test_failover_to_node_without_replica_refused() -> None:
    """A node holding no standing replica (or a transient copy, or the primary) is refused."""
    deployment = replicated(B)
    for target in (C, A):
        with pytest.raises(NotAReplica):
            deployment.failover_dataset(DS, target)
    moved = replicated().move_dataset(DS, B)
    with pytest.raises(NotAReplica):
        moved.failover_dataset(DS, A)


def test_failover_refuses_deleted_and_unknown() -> None:
    """A deleted dataset does not fail over; an unknown one is unknown."""
    with pytest.raises(DatasetDeleted):
        replicated(B).delete_dataset(DS).failover_dataset(DS, B)
    with pytest.raises(UnknownDataset):
        replicated(B).failover_dataset(ALONE, B)


def test_failover_releases_old_primary_leases() -> None:
    """Leases the old primary held on the failed-over datasets are released."""
    deployment = replicated(B)
    deployment = deployment.set(
        leases=deployment.leases.acquire(0.0, DS, A).acquire(0.0, ALONE, A)
    )
    after, _ = deployment.failover_dataset(DS, B)
    assert after.leases.get(DS) is None
    assert after.leases.get(ALONE) is not None


def test_failover_keeps_other_nodes_leases() -> None:
    """A lease another node holds stays."""
    deployment = replicated(B, C)
    deployment = deployment.set(leases=deployment.leases.acquire(0.0, DS, C))
    after, _ = deployment.failover_dataset(DS, B)
    lease = after.leases.get(DS)
    assert lease is not None and lease.node_uuid == C


@given(deployments(), st.data())
def test_failover_any_replica(deployment: Deployment, data: st.DataObject) -> None:
    """Failing over to any standing replica keeps the model's invariants and bumps epochs."""
    replicas = [
        (dataset.dataset_id, uuid)
        for dataset, _ in deployment.all_datasets()
        if not dataset.deleted
        for uuid in deployment.replicas_of(dataset.dataset_id)
    ]
    if not replicas:
        return
    dataset_id, target = data.draw(st.sampled_from(replicas))
    try:
        after, failed = deployment.failover_dataset(dataset_id, target)
    except (NotAReplica, InvariantException):
        return
    for member in failed:
        dataset, primary = after.get_dataset(member)
        assert primary == target
        assert dataset.epoch == deployment.get_dataset(member)[0].epoch + 1


# --------------------------------------------------------------------------
# cleanup


def test_cleanup_moved_keeps_standing_replicas() -> None:
    """A standing replica is never dropped, even when its node reports no copy."""
    deployment = replicated(B)
    state = (
        DeploymentState()
        .update_node(
            NodeState(uuid=A, datasets={DS: DatasetState(dataset_id=DS, path="/m")})
        )
        .update_node(NodeState(uuid=B, datasets={}))
    )
    assert cleanup_moved(deployment, state) is deployment


def test_cleanup_deleted_drops_replicated_dataset() -> None:
    """A deleted dataset goes once neither its primary nor its replicas have it."""
    deployment = replicated(B).delete_dataset(DS)
    state = DeploymentState().update_node(
        NodeState(uuid=A, datasets={}, deletions_seen=[DS])
    )
    assert cleanup_deleted(deployment, state) is deployment
    state = state.update_node(NodeState(uuid=B, datasets={}, deletions_seen=[DS]))
    assert cleanup_deleted(deployment, state).nodes == {}
