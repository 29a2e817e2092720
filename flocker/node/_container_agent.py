"""The container agent: one object owning a node's container convergence.

`ContainerAgent` builds and holds the parts of ``flocker-container-agent``
— the deployer, the convergence loop, its own connection to the control
service and its own `Fence` — and joins them with methods, as
`DatasetAgent` does for datasets: a pushed configuration brings the fence
down before the loop converges to it; the fence going up or down pokes the
loop, so that the containers of automatically failed-over datasets stop at
once (see ``containers``).  Given a health probe, the agent probes its
applications' instances (``_health``) and an instance's status changing
pokes the loop, so that the node reports it at once.

``flocker.node.script`` only builds the runtime and router and one of these.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import attr
from eliot import write_failure
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from flocker.ca import TLSFiles
from flocker.control import (
    AgentAMPClient,
    ApplicationHealth,
    Deployment,
    DeploymentState,
    NodeState,
    instance_base,
)
from flocker.route import IRouter, routes_for_node
from flocker.runtime import IContainerRuntime, RegistryCredentials

from ._agent_core import ControlledAgent
from ._answering import AnsweringWatch
from ._control_connection import ControlAddress, control_addresses_tuple
from ._fence import DEFAULT_FENCE_AFTER, Fence
from ._health import HealthProbes, Probe
from ._loop import ConvergenceLoop
from ._pulls import ImagePulls
from ._pushed_routes import PushedRoutes
from .containers import ContainerDeployer, ContainerLocalState


@attr.s(eq=False)
class ContainerAgent(ControlledAgent):
    """
    A node's container agent: its parts, and the policies that join them.

    :ivar reactor: The reactor everything runs on.
    :ivar node_uuid: This node's UUID (from its certificate).
    :ivar address: This node's address: ports are published on it.
    :ivar runtime: The node's container runtime.
    :ivar router: Forwards this node's connections to applications elsewhere.
    :ivar tls: The node's certificate, key and cluster CA.
    :ivar control: The control service instances' agent addresses.
    :ivar fence_after: Seconds without a word from the control service
        before the agent fences itself.
    :ivar answering: Times how long moved applications were unavailable.
    :ivar listening: Reads the ports listened on at the node's address.
    """

    kind = "container"

    reactor: IReactorTime = attr.ib()
    node_uuid: str = attr.ib()
    address: str = attr.ib()
    runtime: IContainerRuntime = attr.ib()
    router: IRouter = attr.ib()
    tls: TLSFiles = attr.ib()
    control: tuple[ControlAddress, ...] = attr.ib(converter=control_addresses_tuple)
    fence_after: float = attr.ib(default=DEFAULT_FENCE_AFTER)
    answering: AnsweringWatch | None = attr.ib(default=None)
    listening: Callable[[], Deferred[frozenset[int]]] | None = attr.ib(default=None)
    #: The node's era (``_era``) reported in its state, or ``None``.
    era: str | None = attr.ib(default=None)
    #: Registry (``host[:port]``) → credentials to pull its images with.
    registries: Mapping[str, RegistryCredentials] = attr.ib(factory=dict)
    #: Probes one application instance (``_health.NetworkProbe``), or
    #: ``None``: no health probes, the node's health is reported unknown.
    health_probe: Probe | None = attr.ib(default=None)

    fence: Fence = attr.ib(init=False)
    #: The router as the passes see it: never set back to older routes.
    routing: PushedRoutes = attr.ib(init=False)
    health: HealthProbes | None = attr.ib(init=False)
    deployer: ContainerDeployer = attr.ib(init=False)
    loop: ConvergenceLoop[ContainerLocalState] = attr.ib(init=False)
    client: AgentAMPClient = attr.ib(init=False)

    def __attrs_post_init__(self) -> None:
        """Build the parts; nothing runs until `service` is started."""
        self.fence = self._make_fence()
        self.routing = PushedRoutes(self.router)
        self.health = (
            None
            if self.health_probe is None
            else HealthProbes(self.reactor, self.health_probe, self.poke, self._health_changed)
        )
        self.deployer = ContainerDeployer(
            self.node_uuid,
            self.address,
            self.runtime,
            self.routing,
            answering=self.answering,
            poke=self.poke,
            halted=self._halted,
            listening=self.listening,
            fenced=lambda: self.fence.is_up,
            era=self.era,
            pulls=ImagePulls(self.runtime, self.reactor, self.registries, self.poke),
            health=self.health,
            clock=self.reactor,
        )
        self.loop = ConvergenceLoop(self.reactor, self.deployer, self.report)
        self.client = self._make_client()

    def cluster_updated(
        self, configuration: Deployment, cluster_state: DeploymentState
    ) -> None:
        """
        A pushed configuration and cluster state: the router's routes follow
        at once (they depend on nothing else, so an instance found healthy
        or stopping on any node is routed to, or not, without waiting for a
        convergence pass and its discovery), then the loop converges to it.
        """
        super().cluster_updated(configuration, cluster_state)
        routes = routes_for_node(self.node_uuid, configuration, cluster_state, {})
        self.routing.push(routes).addErrback(write_failure)

    def service(self) -> MultiService:
        """
        The agent as a service: the fence, the health probes (stopped
        after the loop, they cancel every probe), the control connection,
        the loop.
        """
        return self._services(*([] if self.health is None else [self.health]))

    def poke(self) -> None:
        """
        Have the loop look at the containers again (a creation or pull
        ended, an instance's health status changed).
        """
        self.loop.poke()

    def _health_changed(
        self, name: str, before: ApplicationHealth, after: ApplicationHealth
    ) -> None:
        """
        An instance's status changed (it is found healthy, or drains): the
        routers hear it at once, from a report of the last state sent with
        the new status.  Only if that report showed the instance as it was
        just before (same status, since, revision): then it is this very
        container, and the ports it showed are this container's.  Otherwise
        (an instance replaced since, say by an update in place, whose ports
        the last report does not show yet) the next pass reports it.
        """

        def change(last: NodeState) -> NodeState | None:
            health = last.health
            shown = None if health is None else health.get(name)
            if shown is None or _status_of(shown) != _status_of(before):
                return None
            assert health is not None
            return last.set(health=health.set(name, after.set(ports=shown.ports)))

        self.report_at_once(change)

    def _halted(self, name: str) -> None:
        """
        A container is halted here: its application, if it has volumes (so
        runs as this one instance), is reported no longer running at once,
        so that the node's dataset agent hands its data on without waiting
        for a pass's discovery.  An application without volumes may have
        other instances here: the next pass reports it.
        """
        base = instance_base(name)

        def change(last: NodeState) -> NodeState | None:
            running = last.applications
            if running is None or base not in running or not running[base].volumes:
                return None
            return last.set(applications=running.remove(base))

        self.report_at_once(change)


def _status_of(health: ApplicationHealth) -> tuple[str, float, int | None]:
    """What tells one status of one instance from another: status, since, revision."""
    return (health.status, health.since, health.revision)


__all__ = ["ContainerAgent"]
