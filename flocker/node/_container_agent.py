"""The container agent: one object owning a node's container convergence.

`ContainerAgent` builds and holds the parts of ``flocker-container-agent``
— the deployer, the convergence loop, its own connection to the control
service and its own `Fence` — and joins them with methods, as
`DatasetAgent` does for datasets: a pushed configuration brings the fence
down before the loop converges to it; the fence going up or down pokes the
loop, so that the containers of automatically failed-over datasets stop at
once (see ``containers``).

``flocker.node.script`` only builds the runtime and router and one of these.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attr
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred

from flocker.ca import TLSFiles
from flocker.control import AgentAMPClient, Deployment, DeploymentState, NodeState
from flocker.route import IRouter
from flocker.runtime import IContainerRuntime

from ._answering import AnsweringWatch
from ._dataset_agent import LoopService, report_to
from ._fence import DEFAULT_FENCE_AFTER, Fence, keepalive_interval
from ._loop import ConvergenceLoop
from .containers import ContainerDeployer


@attr.s(eq=False)
class ContainerAgent:
    """
    A node's container agent: its parts, and the policies that join them.

    :ivar reactor: The reactor everything runs on.
    :ivar node_uuid: This node's UUID (from its certificate).
    :ivar address: This node's address: ports are published on it.
    :ivar runtime: The node's container runtime.
    :ivar router: Forwards this node's connections to applications elsewhere.
    :ivar tls: The node's certificate, key and cluster CA.
    :ivar control_host: The control service's address.
    :ivar control_port: The control service's agent port.
    :ivar fence_after: Seconds without a word from the control service
        before the agent fences itself.
    :ivar answering: Times how long moved applications were unavailable.
    :ivar listening: Reads the ports listened on at the node's address.
    """

    reactor: Any = attr.ib()
    node_uuid: str = attr.ib()
    address: str = attr.ib()
    runtime: IContainerRuntime = attr.ib()
    router: IRouter = attr.ib()
    tls: TLSFiles = attr.ib()
    control_host: str = attr.ib()
    control_port: int = attr.ib()
    fence_after: float = attr.ib(default=DEFAULT_FENCE_AFTER)
    answering: AnsweringWatch | None = attr.ib(default=None)
    listening: Callable[[], Deferred[frozenset[int]]] | None = attr.ib(default=None)
    #: The node's era (``_era``) reported in its state, or ``None``.
    era: str | None = attr.ib(default=None)

    fence: Fence = attr.ib(init=False)
    deployer: ContainerDeployer = attr.ib(init=False)
    loop: ConvergenceLoop = attr.ib(init=False)
    client: AgentAMPClient = attr.ib(init=False)

    def __attrs_post_init__(self) -> None:
        """Build the parts; nothing runs until `service` is started."""
        self.fence = Fence(
            self.reactor,
            self.fence_after,
            "container",
            connected=lambda: self.client.is_connected,
            changed=self.poke_soon,
        )
        self.deployer = ContainerDeployer(
            self.node_uuid,
            self.address,
            self.runtime,
            self.router,
            answering=self.answering,
            poke=self.poke,
            listening=self.listening,
            fenced=lambda: self.fence.is_up,
            era=self.era,
        )
        self.loop = ConvergenceLoop(self.reactor, self.deployer, self.report)
        self.client = AgentAMPClient.for_control_service(
            self.reactor,
            self.control_host,
            self.control_port,
            self.tls,
            "container",
            self.cluster_updated,
            heard=self.fence.heard,
            bind_address=self.address,
            keepalive_interval=keepalive_interval(self.fence_after),
            fence_after=self.fence_after,
        )

    def service(self) -> MultiService:
        """The agent as a service: the fence, the control connection, the loop."""
        service = MultiService()
        self.fence.setServiceParent(service)
        self.client.setServiceParent(service)
        LoopService(self.loop).setServiceParent(service)
        return service

    def cluster_updated(self, configuration: Deployment, cluster_state: DeploymentState) -> None:
        """A pushed configuration: the fence comes down, then the loop converges to it."""
        self.fence.configuration_pushed()
        self.loop.cluster_updated(configuration, cluster_state)

    def report(self, state: NodeState) -> Deferred[None]:
        """Report the node's applications to the control service."""
        return report_to(self.client, state)

    def poke(self) -> None:
        """Have the loop look at the containers again (a creation ended)."""
        self.loop.poke()

    def poke_soon(self) -> None:
        """Have the loop look again on the next reactor turn (the fence moved)."""
        self.reactor.callLater(0, self.loop.poke)


__all__ = ["ContainerAgent"]
