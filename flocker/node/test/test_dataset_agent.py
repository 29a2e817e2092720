"""Tests for the dataset agent's policies: which pushed streams it refuses
and what a stored stream changes (in memory, with real certificates).
"""

from pathlib import Path
from uuid import uuid4

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import MemoryReactorClock

from flocker.ca import load_tls_files
from flocker.ca.testtools import TestClusterCredentials, make_test_cluster_credentials
from flocker.control import (
    Application,
    ApplicationHealth,
    AttachedVolume,
    Dataset,
    DatasetState,
    Deployment,
    DeploymentState,
    NodeState,
)
from flocker.node._control_connection import ControlAddress
from flocker.node._dataset_agent import DatasetAgent, application_stopping, dataset_view
from flocker.node._dataset_changes import PushDataset
from flocker.node._roles import DIVERGED, PRIMARY, REPLICA, MemoryRoles
from flocker.node.test.test_datasets import DS, result
from flocker.volume._transfer_wire import TransferHeader
from flocker.volume.memory import MemoryVolumeBackend


@pytest.fixture
def credentials(tmp_path: Path) -> TestClusterCredentials:
    """The certificates of a two-node cluster."""
    return make_test_cluster_credentials(tmp_path, nodes=2)


@pytest.fixture
def other(credentials: TestClusterCredentials) -> str:
    """The other node's UUID."""
    return str(credentials.node_uuids[1])


@pytest.fixture
def agent(credentials: TestClusterCredentials) -> DatasetAgent:
    """A dataset agent of a two-node cluster, on an in-memory backend."""
    agent = DatasetAgent(
        MemoryReactorClock(),
        str(credentials.node_uuids[0]),
        "127.0.0.11",
        MemoryVolumeBackend(),
        MemoryRoles(),
        load_tls_files(credentials.node_directories[0], "node"),
        [ControlAddress(host="127.0.0.1", port=4524)],
        4525,
    )
    return agent


def header(final: bool = False, epoch: int = 0) -> TransferHeader:
    """A header of an incremental stream of DS."""
    return TransferHeader(
        dataset_id=DS, snapshot="s2", base="s1", stream_format="memory", final=final, epoch=epoch
    )


def test_streams_into_an_exposed_dataset_are_refused(agent: DatasetAgent) -> None:
    """A push into a dataset this node exposes would overwrite live data."""
    agent.roles.set(DS, PRIMARY)
    refused = agent.refuse(header())
    assert refused is not None
    assert "exposed on this node" in refused


def test_streams_into_a_diverged_copy_are_refused(agent: DatasetAgent) -> None:
    """A diverged copy is kept as it is, whoever sends."""
    agent.roles.set(DS, DIVERGED)
    refused = agent.refuse(header(epoch=5))
    assert refused is not None
    assert "diverged" in refused


def test_streams_of_a_superseded_epoch_are_refused(agent: DatasetAgent, other: str) -> None:
    """
    Once the configuration holds a newer epoch, a stream from the primary
    of an older one is refused; one of the current epoch is let in.
    """
    configuration = Deployment().add_dataset(Dataset(dataset_id=DS, epoch=2), other)
    agent.loop.configuration = configuration
    refused = agent.refuse(header(epoch=1))
    assert refused is not None
    assert "superseded" in refused
    assert agent.refuse(header(epoch=2)) is None


def test_a_replica_stream_is_recorded_at_its_epoch(agent: DatasetAgent) -> None:
    """A stored non-final stream leaves a replica at the stream's epoch."""
    agent.stored(header(epoch=3))
    assert (agent.roles.get(DS), agent.roles.epoch(DS)) == (REPLICA, 3)


def test_a_final_stream_exposes_the_dataset_writable(agent: DatasetAgent) -> None:
    """A stored final stream makes the received copy writable, then primary."""
    backend = agent.backend
    result(backend.create(DS))
    result(backend.set_read_only(DS, True))
    stored = agent.stored(header(final=True, epoch=1))
    assert stored is not None  # a final stream is recorded once it is writable
    result(stored)
    assert (agent.roles.get(DS), agent.roles.epoch(DS)) == (PRIMARY, 1)
    assert not result(backend.get(DS)).read_only


def test_a_final_stream_is_reported_exposed_at_once(agent: DatasetAgent) -> None:
    """
    Once a final stream made the copy writable, the node reports it
    exposed (its path) without waiting for a discovery, so that its
    container agent can start the applications on it; the report does not
    count as the last one (the next discovery reports everything again).
    """
    backend = agent.backend
    info = result(backend.create(DS))
    result(backend.set_read_only(DS, True))
    last = NodeState(
        uuid=agent.node_uuid,
        hostname=agent.address,
        datasets={DS: DatasetState(dataset_id=DS, path=None)},
    )
    agent.loop.last_sent = last
    reports: list[NodeState] = []

    def record(state: NodeState) -> Deferred[None]:
        reports.append(state)
        return succeed(None)

    agent.loop.report_state = record
    stored = agent.stored(header(final=True, epoch=1))
    assert stored is not None
    result(stored)
    [report] = reports
    assert report.datasets is not None and report.datasets[DS].path == info.path
    assert agent.loop.last_reported is None  # the next pass reports it all


def test_only_a_replica_is_replaced_by_a_full_stream(agent: DatasetAgent) -> None:
    """
    A full stream may replace a replica's copy (one that shares nothing
    with its primary any more); never a copy this node exposes or keeps as
    diverged.
    """
    full = header().set(base=None)
    assert agent.replace(full)
    agent.roles.set(DS, PRIMARY)
    assert not agent.replace(full)
    agent.roles.set(DS, DIVERGED)
    assert not agent.replace(full)


def test_a_stream_older_than_the_copys_own_epoch_is_refused(agent: DatasetAgent, other: str) -> None:
    """
    A replica already following the new primary at epoch 1 (it stored a
    stream of epoch 1) is not overwritten by a stream of epoch 0 from the
    superseded primary, even before this agent's configuration says epoch 1
    (the new primary's rounds can arrive before the configuration does).
    """
    agent.stored(header(epoch=1))
    assert (agent.roles.get(DS), agent.roles.epoch(DS)) == (REPLICA, 1)
    lagging = Deployment().add_dataset(Dataset(dataset_id=DS, epoch=0), other)
    agent.loop.configuration = lagging
    refused = agent.refuse(header(epoch=0))
    if refused is None:
        agent.stored(header(epoch=0))
    assert refused is not None
    assert agent.roles.epoch(DS) == 1


def test_an_application_is_stopping_while_an_instance_using_the_dataset_drains() -> None:
    """
    A dataset's application is stopping on a node when the node reports
    it running with the dataset and one of its instances *stopping*;
    not while its instances are healthy, nor for another application's
    draining instance.
    """
    node = str(uuid4())
    app = Application(
        name="db",
        image="postgres",
        volumes=[AttachedVolume(dataset_id=DS, mountpoint="/data")],
    )
    other = Application(name="web", image="nginx")

    def reporting(**health: str) -> DeploymentState:
        return DeploymentState().update_node(
            NodeState(
                uuid=node,
                hostname="192.0.2.1",
                applications={"db": app, "web": other},
                health={
                    name: ApplicationHealth(application=name, status=status)
                    for name, status in health.items()
                },
            )
        )

    assert application_stopping(node, DS, reporting(db="stopping"))
    assert not application_stopping(node, DS, reporting(db="healthy"))
    assert not application_stopping(node, DS, reporting(db="healthy", web="stopping"))
    assert not application_stopping(node, DS, DeploymentState())


def test_a_dataset_agent_depends_on_the_datasets_and_its_own_nodes_applications() -> None:
    """
    A dataset agent's view of a push changes with the configuration, with
    another node's datasets or address, and with this node's applications
    and their instances stopping here; not with another node's
    applications or health, nor with this node's instances found healthy
    or its own datasets (the echo of its report), nor with any node's
    busy ports or image pulls.
    """
    node, other = str(uuid4()), str(uuid4())
    app = Application(
        name="db", image="postgres", volumes=[AttachedVolume(dataset_id=DS, mountpoint="/data")]
    )

    def state(
        own: dict[str, str], elsewhere: dict[str, str], mounted: bool = True, **changes: object
    ) -> DeploymentState:
        def health(statuses: dict[str, str]) -> dict[str, ApplicationHealth]:
            return {n: ApplicationHealth(application=n, status=s) for n, s in statuses.items()}

        mine = NodeState(
            uuid=node,
            hostname="192.0.2.1",
            applications={"db": app} if own else {},
            health=health(own),
            datasets={DS: DatasetState(dataset_id=DS, path="/mnt/ds" if mounted else None)},
        )
        theirs = NodeState(
            uuid=other,
            hostname="192.0.2.2",
            applications={"db": app} if elsewhere else {},
            health=health(elsewhere),
            datasets={},
        ).set(**changes)
        return DeploymentState().update_node(mine).update_node(theirs)

    configuration = Deployment().add_dataset(Dataset(dataset_id=DS), node)
    before = dataset_view(node, configuration, state({"db": "starting"}, {}))
    same = [
        state({"db": "healthy"}, {}),
        state({"db": "starting"}, {"db": "healthy"}),
        state({"db": "starting"}, {}, busy_ports=[8080], image_pulls={}),
        state({"db": "starting"}, {}, mounted=False),
    ]
    for pushed in same:
        assert dataset_view(node, configuration, pushed) == before
    different = [
        (configuration, state({"db": "stopping"}, {})),
        (configuration, state({}, {})),
        (configuration, state({"db": "starting"}, {}, datasets={DS: DatasetState(dataset_id=DS)})),
        (configuration, state({"db": "starting"}, {}, hostname="192.0.2.3")),
        (configuration.add_dataset(Dataset(dataset_id=str(uuid4())), other), state({"db": "starting"}, {})),
    ]
    for pushed_configuration, pushed in different:
        assert dataset_view(node, pushed_configuration, pushed) != before


def test_the_agent_runs_no_pass_for_a_push_only_container_agents_act_on(
    agent: DatasetAgent, other: str
) -> None:
    """
    The agent's loop converges at once to a push that changes what it
    depends on, and only keeps one that changes another node's health.
    """
    configuration = Deployment().add_dataset(Dataset(dataset_id=DS), agent.node_uuid)

    def pushed(status: str) -> DeploymentState:
        return DeploymentState().update_node(
            NodeState(
                uuid=other,
                hostname="127.0.0.12",
                health={"web": ApplicationHealth(application="web", status=status)},
            )
        )

    agent.cluster_updated(configuration, pushed("starting"))
    passes = agent.loop.iterations
    agent.cluster_updated(configuration, pushed("healthy"))
    assert agent.loop.iterations == passes
    assert agent.loop.cluster_state == pushed("healthy")
    agent.cluster_updated(configuration, DeploymentState())
    assert agent.loop.iterations == passes + 1


def test_a_move_is_still_wanted_while_the_configuration_says_so(
    agent: DatasetAgent, other: str
) -> None:
    """
    A push is still wanted while the configuration held makes its
    destination the primary at its epoch; not once the dataset is
    configured elsewhere, at another epoch, or gone (or nothing is known).
    """
    push = PushDataset(dataset_id=DS, destination=other, host="192.0.2.2", epoch=2)
    assert not agent.still_wanted(push)
    agent.loop.configuration = Deployment().add_dataset(Dataset(dataset_id=DS, epoch=2), other)
    assert agent.still_wanted(push)
    assert not agent.still_wanted(push.set(epoch=3))
    agent.loop.configuration = Deployment().add_dataset(
        Dataset(dataset_id=DS, epoch=2), agent.node_uuid
    )
    assert not agent.still_wanted(push)
    agent.loop.configuration = Deployment()
    assert not agent.still_wanted(push)
