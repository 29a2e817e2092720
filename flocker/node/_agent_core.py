"""What both agents of a node share: a fence, a control connection, a loop.

The dataset agent (`flocker.node._dataset_agent.DatasetAgent`) and the
container agent (`flocker.node._container_agent.ContainerAgent`) each own
a `Fence`, an `AgentAMPClient` connected from the node's address and a
`ConvergenceLoop`, joined the same way: a pushed configuration brings the
fence down before the loop converges to it, the fence moving pokes the
loop, and the loop reports through the client.  `ControlledAgent` is that
joining, once; each agent adds its own parts and handlers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from flocker.ca import TLSFiles
from flocker.control import (
    AgentAMPClient,
    Deployment,
    DeploymentState,
    NodeState,
    NotConnected,
)

from ._control_connection import ControlAddress, control_endpoint
from ._fence import Fence, keepalive_interval
from ._loop import ConvergenceLoop, report_failed


def report_to(client: AgentAMPClient, state: NodeState) -> Deferred[None]:
    """
    Report a node's state; while disconnected that is no error, since the
    client sends the latest state as soon as it is connected again.
    """

    def not_connected(failure: Any) -> None:
        failure.trap(NotConnected)

    return client.report_state(state).addErrback(not_connected)


class LoopService(Service):
    """Stops the convergence loop (waiting for its pass) when the agent stops."""

    def __init__(self, loop: ConvergenceLoop[Any]) -> None:
        self.loop = loop

    def stopService(self) -> Deferred[None]:  # noqa: N802 (Twisted's name)
        """Let the running pass end."""
        Service.stopService(self)
        return self.loop.stop()


class ControlledAgent:
    """
    The joining both agents share; a subclass (an attrs class) has the
    attributes ``reactor``, ``address``, ``tls``, ``control`` (the control
    service instances' addresses) and ``fence_after``, sets ``kind``, and
    builds ``fence``, ``loop`` and ``client`` with `_make_fence` and
    `_make_client`.
    """

    #: ``"dataset"`` or ``"container"``: what the agent tells the control service.
    kind: str
    reactor: IReactorTime
    address: str
    tls: TLSFiles
    control: tuple[ControlAddress, ...]
    fence_after: float
    fence: Fence
    loop: ConvergenceLoop[Any]
    client: AgentAMPClient

    def _make_fence(self) -> Fence:
        """The agent's fence: it pokes the loop whenever it goes up or down."""
        return Fence(
            self.reactor,
            self.fence_after,
            self.kind,
            connected=lambda: self.client.is_connected,
            changed=self.poke_soon,
        )

    def _make_client(self, **handlers: Any) -> AgentAMPClient:
        """
        The connection to the control service, to one of its instances
        at a time (`RoundRobinEndpoint`), from the node's address, keeping
        the fence informed; ``handlers`` answer the control service's
        questions (the dataset agent's snapshots, transfers).
        """
        return AgentAMPClient(
            self.reactor,
            control_endpoint(
                self.reactor, self.control, self.tls, self.kind, self.address
            ),
            self.kind,
            self.cluster_updated,
            heard=self.fence.heard,
            keepalive_interval=keepalive_interval(self.fence_after),
            fence_after=self.fence_after,
            **handlers,
        )

    def _services(self, *middle: IService) -> MultiService:
        """The agent as a service: the fence, ``middle``, the connection, the loop."""
        service = MultiService()
        for part in (self.fence, *middle, self.client, LoopService(self.loop)):
            part.setServiceParent(service)
        return service

    def cluster_updated(
        self, configuration: Deployment, cluster_state: DeploymentState
    ) -> None:
        """A pushed configuration: the fence comes down, then the loop converges to it."""
        self.fence.configuration_pushed()
        self.loop.cluster_updated(configuration, cluster_state)

    def report(self, state: NodeState) -> Deferred[None]:
        """Report the node's state to the control service."""
        return report_to(self.client, state)

    def poke_soon(self) -> None:
        """Have the loop look again on the next reactor turn (the fence moved)."""
        self.reactor.callLater(0, self.loop.poke)

    def report_at_once(self, change: Callable[[NodeState], NodeState | None]) -> None:
        """
        Report the last state sent with ``change`` applied, without waiting
        for a pass's discovery (`ConvergenceLoop.report_change`); a report
        that does not get through is logged, and the next pass reports the
        whole state again.
        """
        reported = self.loop.report_change(change)
        if reported is not None:
            reported.addErrback(report_failed)


__all__ = ["ControlledAgent", "LoopService", "report_to"]
