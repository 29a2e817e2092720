"""
Tests for ``flocker.node._container_agent``: how the container agent joins
its health probes to its deployer and its convergence loop.
"""

from pathlib import Path
from uuid import uuid4

from pyrsistent import PSet
from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import MemoryReactorClock

from flocker.ca import load_tls_files
from flocker.ca.testtools import make_test_cluster_credentials
from flocker.control import (
    Application,
    ApplicationHealth,
    AttachedVolume,
    Dataset,
    DatasetState,
    Deployment,
    DeploymentState,
    HealthCheck,
    NodeState,
    Port,
)
from flocker.node._container_agent import ContainerAgent
from flocker.node._control_connection import ControlAddress
from flocker.node._health import Probe
from flocker.route import MemoryRouter, Route, Target
from flocker.runtime import (
    ContainerSpec,
    ContainerState,
    IContainerRuntime,
    memory_runtimes,
)
from flocker.runtime.testtools import WrappedRuntime

NODE = "4a6a4bde-2b42-4a47-a6d4-8c11cc3a5e70"
ADDRESS = "127.0.0.11"
APP = Application(
    name="web",
    image="flocker-test/busybox:1",
    ports=[Port(internal_port=80, external_port=8080)],
)


class Answers:
    """A probe noting where it probed; it passes at once, or when told."""

    def __init__(self, held: bool = False) -> None:
        self.held = held
        self.calls: list[tuple[HealthCheck, str, int]] = []
        self.pending: list[Deferred[str | None]] = []

    def __call__(self, check: HealthCheck, host: str, port: int) -> Deferred[str | None]:
        """Pass, now or when `release` is called."""
        self.calls.append((check, host, port))
        if not self.held:
            return succeed(None)
        self.pending.append(Deferred())
        return self.pending[-1]

    def release(self) -> None:
        """The held probes pass."""
        while self.pending:
            self.pending.pop(0).callback(None)


def agent(tmp_path: Path, reactor: MemoryReactorClock, probe: Probe | None) -> ContainerAgent:
    """A container agent on a memory runtime, not connected to anything."""
    credentials = make_test_cluster_credentials(tmp_path, nodes=1)
    (runtime,) = memory_runtimes([NODE], images=[APP.image])
    return ContainerAgent(
        reactor,
        NODE,
        ADDRESS,
        runtime,
        MemoryRouter(),
        load_tls_files(credentials.node_directories[0], "node"),
        [ControlAddress(host="127.0.0.1", port=4524)],
        health_probe=probe,
    )


def reported(container_agent: ContainerAgent) -> NodeState:
    """The last state the agent's loop reported."""
    state = container_agent.loop.last_reported
    assert state is not None
    return state


def test_agent_reports_health_and_reports_changes_at_once(tmp_path: Path) -> None:
    """
    With a probe, the agent's deployer has health probes on the agent's
    reactor: the node reports a new instance starting, and its becoming
    healthy pokes the loop, which reports that at once.
    """
    reactor = MemoryReactorClock()
    probe = Answers(held=True)
    container_agent = agent(tmp_path, reactor, probe)
    assert container_agent.deployer.health is container_agent.health
    configuration = Deployment().add_application(APP, NODE)
    container_agent.cluster_updated(configuration, DeploymentState())
    reactor.advance(0)  # the container started in the background pokes the loop
    inspected: list[ContainerState] = []
    container_agent.deployer.runtime.inspect("web").addCallback(inspected.append)
    published = inspected[0].ports[80]
    assert probe.calls == [(HealthCheck(kind="tcp", port=80), ADDRESS, published)]
    health = reported(container_agent).health
    assert health is not None and health["web"].status == "starting"
    probe.release()  # the probe passes: the loop is poked, not left asleep
    reactor.advance(0)
    health = reported(container_agent).health
    assert health is not None and health["web"].status == "healthy"


def sent(container_agent: ContainerAgent) -> NodeState:
    """The last state the agent sent (a pass's report, or one sent at once)."""
    state = container_agent.loop.last_sent
    assert state is not None
    return state


class _HeldListing(WrappedRuntime):
    """A runtime whose listings wait for `release`: the pass listing is held."""

    def __init__(self, runtime: IContainerRuntime) -> None:
        super().__init__(runtime)
        self.held: list[Deferred[None]] = []

    def list_containers(self) -> Deferred[PSet[ContainerSpec]]:
        """List once released."""
        self.held.append(Deferred())
        return self.held[-1].addCallback(lambda _: self.runtime.list_containers())

    def release(self) -> None:
        """The held listings go on."""
        while self.held:
            self.held.pop(0).callback(None)


def hold_a_pass(container_agent: ContainerAgent) -> _HeldListing:
    """
    Start a pass that waits in its discovery until the returned runtime's
    `release`: meanwhile pokes start no other pass, so whatever is sent
    meanwhile was sent at once.
    """
    held = _HeldListing(container_agent.deployer.runtime)
    container_agent.deployer.runtime = held
    passes = container_agent.loop.iterations
    container_agent.poke()
    assert container_agent.loop.iterations == passes + 1 and held.held
    return held


def web_starting(tmp_path: Path) -> tuple[ContainerAgent, Answers]:
    """
    An agent whose first passes started ``web`` here and reported it
    starting, and its probe, held.
    """
    reactor = MemoryReactorClock()
    probe = Answers(held=True)
    container_agent = agent(tmp_path, reactor, probe)
    container_agent.cluster_updated(Deployment().add_application(APP, NODE), DeploymentState())
    reactor.advance(0)
    return container_agent, probe


def test_a_status_change_is_reported_at_once_with_the_ports_last_reported(
    tmp_path: Path,
) -> None:
    """
    An instance found healthy, then drained, is reported so at once, before
    any pass discovers it: the last state sent, with the new status and
    the ports that state showed for the instance.
    """
    container_agent, probe = web_starting(tmp_path)
    before = sent(container_agent)
    assert before.health is not None
    starting = before.health["web"]
    assert starting.status == "starting" and starting.ports
    held = hold_a_pass(container_agent)
    probe.release()
    health = sent(container_agent).health
    assert health is not None
    assert health["web"].status == "healthy" and health["web"].ports == starting.ports
    assert sent(container_agent) == before.set(health=health)
    assert container_agent.health is not None
    container_agent.health.drain("web")
    health = sent(container_agent).health
    assert health is not None and health["web"].status == "stopping"
    assert health["web"].ports == starting.ports
    held.release()
    health = sent(container_agent).health
    assert health is not None and health["web"].status == "stopping"


def test_a_status_change_of_an_instance_the_last_report_did_not_show_waits_for_a_pass(
    tmp_path: Path,
) -> None:
    """
    When the last state sent shows another instance of the application
    (an older container, replaced since: its own status, time and ports),
    the new instance's status is not reported at once with those ports:
    the pass the change pokes reports it, with its own.
    """
    container_agent, probe = web_starting(tmp_path)
    last = sent(container_agent)
    assert last.health is not None
    current = last.health["web"]
    older = ApplicationHealth(
        application="web", status="healthy", since=current.since - 60, ports={80: 40000}
    )
    held = hold_a_pass(container_agent)
    container_agent.loop.last_sent = last.set(health=last.health.set("web", older))
    probe.release()
    health = sent(container_agent).health
    assert health is not None and health["web"] == older
    held.release()  # the pass, and the one the change poked
    health = sent(container_agent).health
    assert health is not None and health["web"].status == "healthy"
    assert health["web"].ports == current.ports


def test_a_halted_instance_of_an_application_with_volumes_is_reported_stopped_at_once(
    tmp_path: Path,
) -> None:
    """
    The deployer's ``halted`` reports at once, before any pass, that an
    application with volumes (one instance: this one) no longer runs
    here, so that the node's dataset agent may hand its data on; an
    application without volumes (it may run other instances here) waits
    for the next pass.
    """
    reactor = MemoryReactorClock()
    container_agent = agent(tmp_path, reactor, None)
    dataset_id = str(uuid4())
    database = APP.set(
        name="db",
        ports=[Port(internal_port=5432, external_port=5432)],
        volumes=[AttachedVolume(dataset_id=dataset_id, mountpoint="/data")],
    )
    configuration = (
        Deployment()
        .add_dataset(Dataset(dataset_id=dataset_id), NODE)
        .add_application(database, NODE)
        .add_application(APP, NODE)
    )
    state = DeploymentState().update_node(
        NodeState(
            uuid=NODE,
            hostname=ADDRESS,
            datasets={dataset_id: DatasetState(dataset_id=dataset_id, path=str(tmp_path))},
        )
    )
    container_agent.cluster_updated(configuration, state)
    reactor.advance(0)
    before = sent(container_agent)
    assert set(before.applications or {}) == {"db", "web"}
    passes = container_agent.loop.iterations
    halted = container_agent.deployer.halted
    assert halted is not None
    halted("web")
    assert sent(container_agent) == before
    halted("db")
    assert sent(container_agent) == before.set(applications=before.applications.remove("db"))
    assert container_agent.loop.iterations == passes


def test_agent_without_probe_reports_health_unknown(tmp_path: Path) -> None:
    """Without a probe, the agent probes nothing and reports health unknown."""
    reactor = MemoryReactorClock()
    container_agent = agent(tmp_path, reactor, None)
    assert container_agent.health is None
    assert container_agent.deployer.health is None
    container_agent.cluster_updated(Deployment().add_application(APP, NODE), DeploymentState())
    reactor.advance(0)
    assert reported(container_agent).health is None


def test_stopping_the_agent_stops_the_probes(tmp_path: Path) -> None:
    """The agent's service includes its probes: stopping it cancels every probe."""
    reactor = MemoryReactorClock()
    container_agent = agent(tmp_path, reactor, Answers(held=True))
    service = container_agent.service()
    assert container_agent.health is not None
    assert container_agent.health in list(service)
    service.startService()
    container_agent.cluster_updated(Deployment().add_application(APP, NODE), DeploymentState())
    reactor.advance(0)
    assert set(container_agent.health.states()) == {"web"}
    service.stopService()
    reactor.advance(0)
    assert container_agent.health.states() == {}
    assert not container_agent.health.running


def test_pushed_state_sets_the_routes_at_once(tmp_path: Path) -> None:
    """
    A pushed cluster state in which another node reports an instance
    healthy sets the router's routes at once, before any convergence pass
    (a move's held connections go to the new instance without waiting for
    one); the same push again changes nothing.
    """
    reactor = MemoryReactorClock()
    container_agent = agent(tmp_path, reactor, None)
    router = container_agent.router
    assert isinstance(router, MemoryRouter)
    other = "5b7b5cef-3c53-4b58-b7e5-9d22dd4b6f81"
    configuration = Deployment().add_application(APP, other)
    state = DeploymentState().update_node(
        NodeState(
            uuid=other,
            hostname="127.0.0.12",
            health={
                "web": ApplicationHealth(application="web", status="healthy", ports={80: 49999})
            },
        )
    )
    container_agent.cluster_updated(configuration, state)
    [port] = [p.external_port for p in APP.ports]
    assert router.routes() == {
        port: Route(external_port=port, targets=[Target(host="127.0.0.12", port=49999)])
    }
    history = list(router.history)
    container_agent.cluster_updated(configuration, state)
    assert router.history == history
