"""
The model's refusals that the REST API answers with their messages: adding
an application (`Deployment.add_application`, `Deployment.check_ports`),
the snapshot rules of `flocker.control._cloning` and the checks against the
cluster state (`DeploymentState.require_node`, …).
"""

import pytest

from flocker.control import (
    Application,
    AttachedVolume,
    Dataset,
    DatasetDeleted,
    DatasetInUse,
    DatasetState,
    DeploymentState,
    NodeState,
    Origin,
    Port,
    Snapshot,
)
from flocker.control._checks import (
    DivergedCopyOnTarget,
    InvalidSnapshotName,
    NoConsistentReplica,
    ReplicaNotReady,
    RollbackDiscardsNeeded,
    SnapshotHasClones,
    UnknownNode,
)
from flocker.control._cloning import (
    check_snapshot_name,
    refuse_destroying_cloned_snapshot,
    refuse_rollback_past_needed,
)
from flocker.control._environments import Environment
from flocker.control._model import DatasetElsewhere, PortsTaken

from ._examples import (
    DATASET_FREE,
    DATASET_OLD,
    DATASET_PG,
    EXAMPLE_DEPLOYMENT,
    NODE_A,
    NODE_B,
)

CLONE = "cccccccc-0000-4000-8000-00000000000c"
NODE_C = "33333333-3333-4333-8333-333333333333"


def _app(name: str, dataset_id: str | None = None, port: int | None = None) -> Application:
    return Application(
        name=name,
        image="i",
        volumes=[] if dataset_id is None else [AttachedVolume(dataset_id=dataset_id, mountpoint="/d")],
        ports=[] if port is None else [Port(internal_port=1, external_port=port)],
    )


def test_application_on_a_dataset_elsewhere_refused() -> None:
    """A volume whose dataset's primary is on another node is `DatasetElsewhere`."""
    with pytest.raises(DatasetElsewhere) as raised:
        EXAMPLE_DEPLOYMENT.add_application(_app("x", DATASET_FREE), NODE_A)
    assert str(raised.value) == (
        f"dataset {DATASET_FREE} is on node {NODE_B}, not {NODE_A}: move it first"
    )


def test_application_on_a_deleted_dataset_refused() -> None:
    """A volume whose dataset is deleted is `DatasetDeleted`."""
    with pytest.raises(DatasetDeleted):
        EXAMPLE_DEPLOYMENT.add_application(_app("x", DATASET_OLD), NODE_B)


def test_application_on_a_dataset_in_use_refused() -> None:
    """A volume another application on the node mounts is `DatasetInUse`."""
    with pytest.raises(DatasetInUse) as raised:
        EXAMPLE_DEPLOYMENT.add_application(_app("x", DATASET_PG), NODE_A)
    assert str(raised.value) == f"dataset {DATASET_PG} is used by application 'postgres'"


def test_application_on_taken_ports_refused() -> None:
    """An external port another application on the node publishes is `PortsTaken`."""
    with pytest.raises(PortsTaken) as raised:
        EXAMPLE_DEPLOYMENT.add_application(_app("x", port=15432), NODE_A)
    assert str(raised.value) == f"external port(s) 15432 already used on node {NODE_A}"
    EXAMPLE_DEPLOYMENT.check_ports(_app("x", port=15432), NODE_B)


def test_snapshot_names() -> None:
    """Users' snapshot names are checked; the control service's own are refused."""
    assert check_snapshot_name("before-upgrade") == "before-upgrade"
    with pytest.raises(InvalidSnapshotName) as raised:
        check_snapshot_name("flocker-env-x")
    assert "is not a snapshot name" in str(raised.value)


def _with_clone_of(snapshot: str):  # type: ignore[no-untyped-def]
    return EXAMPLE_DEPLOYMENT.clone_dataset(
        Dataset(dataset_id=CLONE), Origin(dataset_id=DATASET_PG, snapshot=snapshot)
    )


def test_cloned_snapshot_not_destroyed() -> None:
    """A snapshot a configured clone is made from is `SnapshotHasClones`."""
    deployment = _with_clone_of("s1")
    refuse_destroying_cloned_snapshot(deployment, DATASET_PG, "s2")
    with pytest.raises(SnapshotHasClones) as raised:
        refuse_destroying_cloned_snapshot(deployment, DATASET_PG, "s1")
    assert str(raised.value) == (
        f"snapshot 's1' of {DATASET_PG} has clones: dataset {CLONE} is made "
        "from it (delete it first)"
    )


def test_rollback_past_a_needed_snapshot_refused() -> None:
    """A rollback discarding a snapshot a clone or environment needs is refused."""
    deployment = _with_clone_of("s2")
    refuse_rollback_past_needed(deployment, DATASET_PG, "s2", ["s1", "s2", "s3"])
    refuse_rollback_past_needed(deployment, DATASET_PG, "s0", ["s1", "s2"])
    with pytest.raises(RollbackDiscardsNeeded) as raised:
        refuse_rollback_past_needed(deployment, DATASET_PG, "s1", ["s1", "s2", "s3"])
    assert str(raised.value) == (
        f"rolling back to 's1' would discard the later snapshot 's2', which "
        f"clone {CLONE} is made from"
    )
    with_environment = EXAMPLE_DEPLOYMENT.set(
        environments={"e": Environment(name="e", snapshot="s3", applications=["postgres"])}
    )
    with pytest.raises(RollbackDiscardsNeeded, match="environment 'e'"):
        refuse_rollback_past_needed(with_environment, DATASET_PG, "s1", ["s1", "s3"])


def test_unknown_node_refused() -> None:
    """A node with neither state nor configuration is `UnknownNode`, named as asked."""
    state = DeploymentState(nodes={NODE_C: NodeState(uuid=NODE_C)})
    state.require_node(EXAMPLE_DEPLOYMENT, NODE_A, "primary")
    state.require_node(EXAMPLE_DEPLOYMENT, NODE_C, "primary")
    with pytest.raises(UnknownNode) as raised:
        DeploymentState().require_node(EXAMPLE_DEPLOYMENT, NODE_C, "replica")
    assert str(raised.value).startswith(f"replica {NODE_C} is not a node of this cluster")


def test_move_to_a_diverged_copy_refused() -> None:
    """A target keeping a diverged copy of the dataset is `DivergedCopyOnTarget`."""
    state = DeploymentState(
        nodes={
            NODE_B: NodeState(
                uuid=NODE_B,
                datasets={
                    DATASET_PG: DatasetState(dataset_id=DATASET_PG, role="diverged", epoch=1)
                },
            )
        }
    )
    state.refuse_diverged_target([DATASET_PG], NODE_A)
    with pytest.raises(DivergedCopyOnTarget) as raised:
        state.refuse_diverged_target([DATASET_PG], NODE_B)
    assert str(raised.value).startswith(
        f"node {NODE_B} keeps a diverged copy of dataset {DATASET_PG} (epoch 1"
    )


def test_promotable_snapshot() -> None:
    """A replica is promoted from its newest snapshot; without one, or in another role, never."""
    def state_with(copy: DatasetState) -> DeploymentState:
        return DeploymentState(nodes={NODE_B: NodeState(uuid=NODE_B, datasets={DATASET_PG: copy})})

    newest = Snapshot(name="s2")
    replica = DatasetState(
        dataset_id=DATASET_PG, role="replica", snapshots=[Snapshot(name="s1"), newest]
    )
    assert state_with(replica).promotable_snapshot(NODE_B, DATASET_PG) == newest
    with pytest.raises(NoConsistentReplica):
        state_with(replica.set(snapshots=[])).promotable_snapshot(NODE_B, DATASET_PG)
    with pytest.raises(ReplicaNotReady, match="as diverged, not as a replica"):
        state_with(replica.set(role="diverged")).promotable_snapshot(NODE_B, DATASET_PG)
