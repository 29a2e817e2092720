"""
Tests for clones and rollbacks in the dataset agent's calculator and the
container agent's hold on applications whose data is being rolled back.
"""

from uuid import uuid4

from flocker.control import (
    Application,
    AttachedVolume,
    Dataset,
    DatasetState,
    Deployment,
    DeploymentState,
    NodeState,
    Origin,
    RollbackRequest,
    cleanup_configuration,
)
from flocker.node import NoOp
from flocker.node._clones import CloneDataset, RollbackDataset
from flocker.node.containers import RemoveApplication, StartApplication
from flocker.node.test.test_containers import ADDRESS, IMAGE, Nodes
from flocker.node.test.test_containers import DS as DATA
from flocker.node.test.test_containers import A as NODE
from flocker.node.test.test_datasets import DS, A, Cluster, config_with, plan, result

CLONE = str(uuid4())
REQUEST = str(uuid4())


def with_snapshot(cluster: Cluster, name: str = "monday") -> Deployment:
    """Converge DS on A, write v1 and snapshot it as ``name``; the config."""
    configuration = config_with(A)
    cluster.converge(configuration)
    cluster.backends[A].write_file(DS, "data", b"v1")
    result(cluster.backends[A].snapshot(DS, name))
    return configuration


def test_clone_created_from_origin_snapshot() -> None:
    """A configured clone is made from its origin's snapshot, independent of it."""
    cluster = Cluster()
    configuration = with_snapshot(cluster)
    cluster.backends[A].write_file(DS, "data", b"v2")
    configuration = configuration.clone_dataset(
        Dataset(dataset_id=CLONE), Origin(dataset_id=DS, snapshot="monday")
    )
    assert plan(cluster, A, configuration) == CloneDataset(
        dataset_id=CLONE, origin=DS, snapshot="monday", maximum_size=None
    )
    cluster.converge(configuration)
    assert cluster.backends[A].read_files(CLONE) == {"data": b"v1"}
    cluster.backends[A].write_file(CLONE, "data", b"mine")
    assert cluster.backends[A].read_files(DS) == {"data": b"v2"}
    assert cluster.state.get_node(A).datasets[CLONE].path is not None


def test_clone_waits_for_snapshot() -> None:
    """A clone whose origin snapshot is not here (yet) is not created empty."""
    cluster = Cluster()
    configuration = with_snapshot(cluster).clone_dataset(
        Dataset(dataset_id=CLONE), Origin(dataset_id=DS, snapshot="tuesday")
    )
    assert plan(cluster, A, configuration) == NoOp()


def test_rollback_when_unused() -> None:
    """A pending rollback runs once the dataset is unused, and is reported done."""
    cluster = Cluster()
    configuration = with_snapshot(cluster)
    cluster.backends[A].write_file(DS, "data", b"v2")
    configuration = configuration.rollback_dataset(
        DS, RollbackRequest(snapshot="monday", request_id=REQUEST)
    )
    cluster.in_use.add((A, DS))
    assert plan(cluster, A, configuration) == NoOp()
    cluster.in_use.clear()
    assert plan(cluster, A, configuration) == RollbackDataset(
        dataset_id=DS, snapshot="monday", request_id=REQUEST
    )
    cluster.converge(configuration)
    assert cluster.backends[A].read_files(DS) == {"data": b"v1"}
    assert cluster.state.get_node(A).datasets[DS].rolled_back == REQUEST
    cleaned = cleanup_configuration(configuration, cluster.state)
    assert cleaned.get_dataset(DS)[0].rollback is None


def test_rollback_to_missing_snapshot_is_cleared() -> None:
    """A request for a snapshot the primary does not have is cleared, not kept."""
    cluster = Cluster()
    configuration = with_snapshot(cluster).rollback_dataset(
        DS, RollbackRequest(snapshot="gone", request_id=REQUEST)
    )
    cluster.converge(configuration)
    assert cleanup_configuration(configuration, cluster.state).get_dataset(DS)[0].rollback is None


def test_application_stopped_during_rollback() -> None:
    """
    The container agent removes an application while a rollback of its
    dataset is pending and starts it again once the primary reports it done.
    """
    app = Application(
        name="db", image=IMAGE, volumes=[AttachedVolume(dataset_id=DATA, mountpoint="/data")]
    )
    configuration = Deployment().add_dataset(Dataset(dataset_id=DATA), NODE).add_application(app, NODE)
    mounted = DatasetState(dataset_id=DATA, path="/mnt/ds")
    state = DeploymentState().update_node(
        NodeState(uuid=NODE, hostname=ADDRESS[NODE], datasets={DATA: mounted})
    )
    nodes = Nodes()
    nodes.converge(NODE, configuration, state)
    pending = configuration.rollback_dataset(
        DATA, RollbackRequest(snapshot="monday", request_id=REQUEST)
    )
    assert nodes.plan(NODE, pending, state) == RemoveApplication(
        name="db", background=True
    )
    nodes.converge(NODE, pending, state)
    done = state.update_node(
        NodeState(uuid=NODE, hostname=ADDRESS[NODE], datasets={DATA: mounted.set(rolled_back=REQUEST)})
    )
    assert isinstance(nodes.plan(NODE, pending, done), StartApplication)


def test_unneeded_environment_snapshot_destroyed() -> None:
    """
    An environment's snapshot is destroyed once neither an environment nor
    a configured clone (even a deleted one) needs it; others are kept.
    """
    import time

    from flocker.control import Environment
    from flocker.node._clones import ENVIRONMENT_SNAPSHOT_GRACE, DestroySnapshot

    cluster = Cluster()
    configuration = with_snapshot(cluster, "flocker-env-staging-1")
    result(cluster.backends[A].snapshot(DS, "monday"))
    # Just taken, and the environment not configured yet: kept.
    assert plan(cluster, A, configuration) == NoOp()
    cluster.deployers[A].now = lambda: time.time() + ENVIRONMENT_SNAPSHOT_GRACE + 1
    with_environment = configuration.set(
        environments={"staging": Environment(name="staging", snapshot="flocker-env-staging-1")}
    )
    assert plan(cluster, A, with_environment) == NoOp()
    with_clone = configuration.clone_dataset(
        Dataset(dataset_id=CLONE), Origin(dataset_id=DS, snapshot="flocker-env-staging-1")
    )
    cluster.converge(with_clone)
    from flocker.node import changes_of

    deleting = changes_of(plan(cluster, A, with_clone.delete_dataset(CLONE)))
    assert not [c for c in deleting if isinstance(c, DestroySnapshot)]
    cluster.converge(with_clone.delete_dataset(CLONE))
    assert plan(cluster, A, configuration) == DestroySnapshot(
        dataset_id=DS, snapshot="flocker-env-staging-1"
    )
    cluster.converge(configuration)
    assert [s.name for s in result(cluster.backends[A].list_snapshots(DS))] == ["monday"]
