"""Tests for self-fencing: the fence itself, over the agent protocol, in the
dataset calculator and in the container calculator (Clock, in-memory
backends and runtimes).
"""

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict, Unpack

import pytest
from eliot import MemoryLogger
from eliot.testing import LoggedMessage
from twisted.internet.task import Clock

from flocker.common import ConfigurationError
from flocker.control import (
    AgentAMPClient,
    Application,
    AttachedVolume,
    ClusterStateService,
    ConfigurationService,
    Dataset,
    DatasetState,
    Deployment,
    DeploymentState,
    MemoryConfigurationStore,
    NodeState,
    Replication,
)
from flocker.control._protocol import ControlAMPService
from flocker.control.test.test_protocol import (
    EXPIRATION,
    NODE_A,
    Control,
    connect,
    identify,
)
from flocker.node import NoOp, changes_of, run_state_change
from flocker.node._agentconfig import load_agent_config
from flocker.node._control_connection import ControlAddress
from flocker.node._dataset_changes import (
    DivergeDataset,
    FenceDataset,
    RejoinAsReplica,
    UnfenceDataset,
)
from flocker.node._fence import Fence, fence_applies, keepalive_interval
from flocker.node._logging import FENCE_DOWN, FENCE_UP
from flocker.node._roles import DIVERGED, FENCED, HANDOFF, PRIMARY, REPLICA, FileRoles
from flocker.node.containers import (
    ContainerChange,
    ContainerDeployer,
    FenceApplication,
    RestartApplication,
    container_spec,
)
from flocker.node.datasets import DatasetDeployer, DatasetMover
from flocker.node.test.test_datasets import DS, HOSTS, A, B, C, Cluster, plan, result
from flocker.node.test.test_replication import snapshots
from flocker.runtime import memory_runtimes

if TYPE_CHECKING:
    from flocker.node._dataset_agent import DatasetAgent

FENCE_AFTER = 10.0


def automatic(
    primary: str = A, replicas: Sequence[str] = (B,), failover: str = "automatic"
) -> Deployment:
    """DS on ``primary`` with standing replicas that fail over ``failover``."""
    deployment = Deployment().add_dataset(Dataset(dataset_id=DS), primary)
    return deployment.set_replicas(
        DS, list(replicas), replication=Replication(failover=failover)
    )


class FenceableCluster(Cluster):
    """A `Cluster` whose nodes in ``fenced`` have fenced themselves."""

    def __init__(self, nodes: tuple[str, ...] = (A, B, C)) -> None:
        super().__init__(nodes)
        self.fenced: set[str] = set()
        for node, deployer in self.deployers.items():
            deployer.fenced = partial(self.fenced.__contains__, node)


def make_agent(tmp_path: Path) -> "DatasetAgent":
    """A dataset agent of a two-node cluster (see ``test_dataset_agent``)."""
    from twisted.internet.testing import MemoryReactorClock

    from flocker.ca import load_tls_files
    from flocker.ca.testtools import make_test_cluster_credentials
    from flocker.node._dataset_agent import DatasetAgent
    from flocker.node._roles import MemoryRoles
    from flocker.volume.memory import MemoryVolumeBackend

    credentials = make_test_cluster_credentials(tmp_path, nodes=2)
    return DatasetAgent(
        MemoryReactorClock(),
        str(credentials.node_uuids[0]),
        "127.0.0.11",
        MemoryVolumeBackend(),
        MemoryRoles(),
        load_tls_files(credentials.node_directories[0], "node"),
        [ControlAddress(host="127.0.0.1", port=4524)],
        4525,
    )


def fenceable_cluster(configuration: Deployment) -> FenceableCluster:
    """
    A cluster converged to ``configuration``, A's deployer fenced while
    ``cluster.fenced`` holds A.
    """
    cluster = FenceableCluster()
    cluster.converge(configuration)
    cluster.backends[A].write_file(DS, "data", b"before the fence")
    return cluster


def reported(cluster: Cluster, node: str) -> tuple[str | None, str, int]:
    """The (path, role, epoch) ``node`` reports for DS."""
    copy = cluster.state.get_node(node).datasets[DS]
    return copy.path, copy.role, copy.epoch


# -- the fence ---------------------------------------------------------------


class FenceCallbacks(TypedDict, total=False):
    """The callbacks a test may give a `Fence`."""

    connected: Callable[[], bool]
    changed: Callable[[], object]


def started_fence(clock: Clock, **kwargs: Unpack[FenceCallbacks]) -> Fence:
    """A started fence on ``clock``."""
    fence = Fence(clock, FENCE_AFTER, **kwargs)
    fence.startService()
    return fence


def test_the_fence_goes_up_after_fence_after_seconds_of_silence(
    eliot_logger: MemoryLogger,
) -> None:
    """
    Silent for fence-after seconds, the fence goes up and says why: how
    long it heard nothing, and whether a connection was open.
    """
    clock = Clock()
    changes: list[int] = []
    fence = started_fence(clock, connected=lambda: True, changed=lambda: changes.append(1))
    clock.advance(FENCE_AFTER - 0.1)
    assert not fence.is_up
    clock.advance(0.1)
    assert fence.is_up
    assert changes == [1]
    (message,) = LoggedMessage.of_type(eliot_logger.messages, FENCE_UP)
    assert message.message["silent"] == FENCE_AFTER
    assert message.message["connected"] is True
    assert message.message["agent"] == "dataset"


def test_keepalives_every_quarter_keep_the_fence_down() -> None:
    """Something heard every fence-after/4 never lets the fence go up."""
    clock = Clock()
    fence = started_fence(clock)
    interval = keepalive_interval(FENCE_AFTER)
    assert interval == FENCE_AFTER / 4
    for _ in range(100):
        clock.advance(interval)
        fence.heard()
    assert not fence.is_up


def test_the_fence_measures_silence_from_the_last_word() -> None:
    """The fence goes up fence-after seconds after the last word, not the first."""
    clock = Clock()
    fence = started_fence(clock)
    clock.advance(7)
    fence.heard()
    clock.advance(9.9)
    assert not fence.is_up
    clock.advance(0.1)
    assert fence.is_up


def test_only_a_pushed_configuration_brings_the_fence_down(eliot_logger: MemoryLogger) -> None:
    """
    Once up, the fence stays up when keep-alives are answered again; the
    first configuration pushed brings it down, and silence raises it again.
    """
    clock = Clock()
    fence = started_fence(clock)
    clock.advance(FENCE_AFTER)
    fence.heard()
    assert fence.is_up
    clock.advance(3)
    fence.configuration_pushed()
    assert not fence.is_up
    (down,) = LoggedMessage.of_type(eliot_logger.messages, FENCE_DOWN)
    assert down.message["fenced_for"] == 3
    clock.advance(FENCE_AFTER)
    assert fence.is_up


def test_every_box_from_the_control_service_is_heard() -> None:
    """
    Over the agent protocol, the handshake, pushes and answers to the
    agent's keep-alives all count: while the connection works, a fence on
    the client never goes up; when the control service falls silent (its
    answers stop arriving) it does, and a new connection's push brings it
    down.
    """
    clock = Clock()
    configuration = ConfigurationService(MemoryConfigurationStore())
    configuration.load()
    state = ClusterStateService(clock, expiration=EXPIRATION)
    service = ControlAMPService(clock, configuration, state, identify=identify)
    service.startService()
    control = Control(clock, configuration, state, service)
    holder: dict[str, Fence] = {}

    def pushed(configuration: Deployment, state: DeploymentState) -> None:
        holder["fence"].configuration_pushed()

    client = AgentAMPClient(
        clock,
        None,  # type: ignore[arg-type]
        "dataset",
        pushed,
        keepalive_interval=keepalive_interval(FENCE_AFTER),
        heard=lambda: holder["fence"].heard(),
    )
    holder["fence"] = started_fence(clock, connected=lambda: client.is_connected)
    agent = connect(control, NODE_A, client=client)
    for _ in range(40):  # 100 seconds of a quiet, healthy connection
        clock.advance(keepalive_interval(FENCE_AFTER))
        agent.pump.flush()
    assert not holder["fence"].is_up
    for _ in range(4):  # nothing arrives any more
        clock.advance(keepalive_interval(FENCE_AFTER))
    assert holder["fence"].is_up
    agent.pump.flush()  # the unanswered keep-alive dropped the connection
    connect(control, NODE_A, client=client)
    assert not holder["fence"].is_up


# -- agent.yml -----------------------------------------------------------------

AGENT_YML = """
version: 1
control-service: {hostname: 127.0.0.1}
node: {address: 127.0.0.11}
dataset: {backend: directory, root: /data}
"""


def test_fence_after_defaults_to_ten_seconds(tmp_path: Path) -> None:
    """Without fence-after in agent.yml, agents fence after 10 seconds."""
    path = tmp_path / "agent.yml"
    path.write_text(AGENT_YML)
    assert load_agent_config(str(path)).fence_after == 10.0
    path.write_text(AGENT_YML + "fence-after: 2.5\n")
    assert load_agent_config(str(path)).fence_after == 2.5


@pytest.mark.parametrize("value", ["0", "-1", "soon", "true"])
def test_fence_after_must_be_a_positive_number(tmp_path: Path, value: str) -> None:
    """A fence-after that is not a positive number is refused, naming the key."""
    path = tmp_path / "agent.yml"
    path.write_text(AGENT_YML + f"fence-after: {value}\n")
    with pytest.raises(ConfigurationError) as raised:
        load_agent_config(str(path))
    assert "fence-after" in str(raised.value)


# -- the dataset agent ---------------------------------------------------------


def test_only_automatic_failover_with_a_standing_replica_is_fenced() -> None:
    """The fence applies to automatic failover with a replica to fail over to."""
    assert fence_applies(automatic(), DS)
    assert not fence_applies(automatic(failover="manual"), DS)
    assert not fence_applies(automatic(replicas=()), DS)
    assert not fence_applies(Deployment(), DS)


def test_a_fenced_primary_stops_exposing_its_dataset() -> None:
    """
    While fenced, the primary of an automatically failed-over dataset
    records it fenced: no mount path reported, role fenced, read-only.
    """
    configuration = automatic()
    cluster = fenceable_cluster(configuration)
    cluster.fenced.add(A)
    assert plan(cluster, A, configuration) == FenceDataset(dataset_id=DS, epoch=0)
    cluster.converge_node(A, configuration)
    assert cluster.roles[A].get(DS) == FENCED
    assert reported(cluster, A) == (None, "fenced", 0)
    with pytest.raises(OSError):
        cluster.backends[A].write_file(DS, "data", b"while fenced")
    assert plan(cluster, A, configuration) == NoOp()


def test_a_manually_failed_over_dataset_keeps_being_served() -> None:
    """A dataset that only a user fails over stays exposed while fenced."""
    configuration = automatic(failover="manual")
    cluster = fenceable_cluster(configuration)
    cluster.fenced.add(A)
    cluster.converge(configuration)
    assert cluster.roles[A].get(DS) == PRIMARY
    assert reported(cluster, A)[0] is not None
    cluster.backends[A].write_file(DS, "data", b"still served")


def test_the_same_epoch_exposes_the_copy_again() -> None:
    """
    When the fence comes down with a configuration that still names this
    node primary at the same epoch, the copy is exposed and writable again.
    """
    configuration = automatic()
    cluster = fenceable_cluster(configuration)
    cluster.fenced.add(A)
    cluster.converge_node(A, configuration)
    cluster.fenced.clear()
    assert plan(cluster, A, configuration) == UnfenceDataset(dataset_id=DS, expose=True)
    cluster.converge_node(A, configuration)
    assert cluster.roles[A].get(DS) == PRIMARY
    assert reported(cluster, A)[1:] == ("primary", 0)
    assert reported(cluster, A)[0] is not None
    cluster.backends[A].write_file(DS, "data", b"after the fence")


def test_a_newer_epoch_makes_the_fenced_copy_diverged() -> None:
    """
    A failover while the node was cut off (a newer epoch, another primary)
    makes the fenced copy diverged when the fence comes down: never exposed.
    """
    configuration = automatic()
    cluster = fenceable_cluster(configuration)
    cluster.fenced.add(A)
    cluster.converge_node(A, configuration)
    failed_over, _ = configuration.failover_dataset(DS, B)
    cluster.fenced.clear()
    assert plan(cluster, A, failed_over) == DivergeDataset(
        dataset_id=DS, epoch=0, configured_epoch=1
    )
    cluster.converge_node(A, failed_over)
    assert cluster.roles[A].get(DS) == DIVERGED
    assert reported(cluster, A) == (None, "diverged", 0)


def test_a_fenced_copy_moved_away_meanwhile_is_handed_off_not_exposed() -> None:
    """
    A move asked for while the node was fenced (same epoch) goes on
    without exposing the copy again: it becomes a hand-off.
    """
    configuration = automatic(replicas=(B, C))
    cluster = fenceable_cluster(configuration)
    cluster.fenced.add(A)
    cluster.converge_node(A, configuration)
    moved = configuration.move_dataset(DS, C)
    cluster.fenced.clear()
    assert plan(cluster, A, moved) == UnfenceDataset(dataset_id=DS, expose=False)
    cluster.converge_node(A, moved)
    assert cluster.roles[A].get(DS) == HANDOFF
    cluster.converge(moved)
    assert cluster.roles[C].get(DS) == PRIMARY
    assert cluster.backends[C].read_files(DS) == {"data": b"before the fence"}


def test_an_agent_restarted_while_fenced_stays_fenced(tmp_path: Path) -> None:
    """
    The fenced role is durable: an agent restarted while fenced reports
    the copy fenced (not exposed) until a configuration arrives, which
    then exposes it again at the same epoch.
    """
    configuration = automatic()
    cluster = Cluster(nodes=(A, B))
    roles = FileRoles(str(tmp_path / "dataset-roles.json"))
    cluster.roles[A] = roles
    fenced: list[bool] = []
    cluster.deployers[A] = DatasetDeployer(
        A,
        HOSTS[A],
        cluster.backends[A],
        roles,
        DatasetMover(cluster.backends[A], roles, cluster._sender(A)),
        fenced=lambda: bool(fenced),
    )
    cluster.converge(configuration)
    fenced.append(True)
    cluster.converge_node(A, configuration)  # fenced
    assert roles.get(DS) == FENCED
    restarted = FileRoles(str(tmp_path / "dataset-roles.json"))
    deployer = DatasetDeployer(
        A,
        HOSTS[A],
        cluster.backends[A],
        restarted,
        DatasetMover(cluster.backends[A], restarted, cluster._sender(A)),
    )
    local = result(deployer.discover_state(cluster.state))
    copy = local.shared_state_changes().datasets[DS]
    assert (copy.path, copy.role) == (None, "fenced")
    change = deployer.calculate_changes(configuration, cluster.state, local)
    assert change == UnfenceDataset(dataset_id=DS, expose=True)
    result(run_state_change(change, deployer))
    assert restarted.get(DS) == PRIMARY


def test_streams_into_a_fenced_copy_are_refused(tmp_path: Path) -> None:
    """The transfer receiver turns away every stream into a fenced copy."""
    from flocker.node.test.test_dataset_agent import header

    agent = make_agent(tmp_path)
    agent.roles.set(DS, FENCED)
    refused = agent.refuse(header())
    assert refused is not None
    assert "fenced" in refused
    assert not agent.replace(header().set(base=None))


def test_a_fenced_node_that_failed_over_rejoins_after_the_fence() -> None:
    """
    An automatic failover keeps the old primary as a standing replica:
    once its fence comes down with that configuration, its copy diverges,
    then rejoins as the new primary's replica with its writes set aside.
    """
    configuration = automatic(replicas=(B,))
    cluster = fenceable_cluster(configuration)
    cluster.converge(configuration)  # B has A's writes
    newest = snapshots(cluster, B)[-1]
    cluster.fenced.add(A)
    cluster.backends[A].write_file(DS, "data", b"A's last, never replicated")
    cluster.converge_node(A, configuration)
    failed_over, _ = configuration.failover_dataset(
        DS, B, snapshots={DS: newest}, keep_source=True
    )
    cluster.converge_node(B, failed_over)  # promoted
    cluster.fenced.clear()
    assert isinstance(cluster.converge_node(A, failed_over), DivergeDataset)
    assert cluster.converge_node(A, failed_over) == RejoinAsReplica(
        dataset_id=DS, epoch=0, configured_epoch=1, base=newest
    )
    assert (cluster.roles[A].get(DS), cluster.roles[A].epoch(DS)) == (REPLICA, 1)
    (kept,) = result(cluster.backends[A].list_set_aside(DS))
    assert cluster.backends[A].read_set_aside(DS, kept.name) == {
        "data": b"A's last, never replicated"
    }


# -- the container agent --------------------------------------------------------

APP = Application(
    name="db", image="flocker-test/busybox:1",
    volumes=[AttachedVolume(dataset_id=DS, mountpoint="/data")],
)


def test_a_fenced_container_agent_stops_and_then_restarts_the_application() -> None:
    """
    While fenced, the container of an application using an automatically
    failed-over dataset is stopped, not removed; when the fence comes down
    and the configuration still places it here, it runs again.
    """
    (runtime,) = memory_runtimes([A], images=[APP.image])
    fenced: list[bool] = []
    deployer = ContainerDeployer(A, HOSTS[A], runtime, fenced=lambda: bool(fenced))
    configuration = automatic().add_application(APP, A)
    state = DeploymentState().update_node(
        NodeState(uuid=A, hostname=HOSTS[A], datasets={DS: DatasetState(dataset_id=DS, path="/p")})
    )

    def converge() -> ContainerChange:
        local = result(deployer.discover_state(state))
        change = deployer.calculate_changes(configuration, state, local)
        result(run_state_change(change, deployer))
        return change

    converge()
    assert result(runtime.list_states())["db"].running
    fenced.append(True)
    assert converge() == FenceApplication(name="db")
    states = result(runtime.list_states())
    assert "db" in states and not states["db"].running
    assert converge() == NoOp()
    fenced.clear()
    assert converge() == RestartApplication(name="db")
    assert result(runtime.list_states())["db"].running
    assert container_spec(APP, HOSTS[A], {DS: "/p"}) in result(runtime.list_containers())


def test_a_fenced_container_agent_keeps_manually_failed_over_applications() -> None:
    """An application whose dataset fails over only by hand keeps running."""
    (runtime,) = memory_runtimes([A], images=[APP.image])
    deployer = ContainerDeployer(A, HOSTS[A], runtime, fenced=lambda: True)
    configuration = automatic(failover="manual").add_application(APP, A)
    state = DeploymentState().update_node(
        NodeState(uuid=A, hostname=HOSTS[A], datasets={DS: DatasetState(dataset_id=DS, path="/p")})
    )
    for _ in range(2):
        local = result(deployer.discover_state(state))
        change = deployer.calculate_changes(configuration, state, local)
        assert not any(isinstance(c, FenceApplication) for c in changes_of(change))
        result(run_state_change(change, deployer))
    assert result(runtime.list_states())["db"].running


def test_the_container_agent_wires_its_own_fence(tmp_path: Path) -> None:
    """
    The container agent's fence hears its own connection and comes down
    with the configurations pushed to it, before its loop converges.
    """
    from twisted.internet.testing import MemoryReactorClock

    from flocker.ca import load_tls_files
    from flocker.ca.testtools import make_test_cluster_credentials
    from flocker.node._container_agent import ContainerAgent
    from flocker.route import MemoryRouter

    credentials = make_test_cluster_credentials(tmp_path, nodes=1)
    (runtime,) = memory_runtimes([A], images=[APP.image])
    reactor = MemoryReactorClock()
    agent = ContainerAgent(
        reactor, A, HOSTS[A], runtime, MemoryRouter(),
        load_tls_files(credentials.node_directories[0], "node"),
        [ControlAddress(host="127.0.0.1", port=4524)], fence_after=4.0,
    )
    assert agent.client.heard == agent.fence.heard
    assert agent.client.keepalive_interval == 1.0
    agent.fence.startService()
    reactor.advance(4.0)
    assert agent.fence.is_up
    assert agent.deployer.fenced()
    agent.cluster_updated(Deployment(), DeploymentState())
    assert not agent.fence.is_up
    assert agent.loop.configuration == Deployment()
