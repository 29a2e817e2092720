"""
Tests for ``flocker.node._container_agent``: how the container agent joins
its health probes to its deployer and its convergence loop.
"""

from pathlib import Path

from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import MemoryReactorClock

from flocker.ca import load_tls_files
from flocker.ca.testtools import make_test_cluster_credentials
from flocker.control import (
    Application,
    ApplicationHealth,
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
from flocker.runtime import ContainerState, memory_runtimes

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
