"""The control plane's singleton duties, run by the leader alone.

`build_duties` gathers what must run on exactly one control instance: the
automatic failover decisions, the clean-up of deleted datasets and finished
moves, the moving of environment copies off taken ports, the removal of
expired leases from the configuration and the confirmation or rollback of
application updates from their nodes' health reports
(`flocker.control._updates`).  `flocker.control._leader` runs them while
this instance leads; `flocker.control.rest_service.create_api_service`
runs the clean-up and the port moves itself when asked to (``duties``), for
a control service without leader election and for tests.
"""

from __future__ import annotations

from typing import Any

import attrs
from eliot import Field, MessageType, write_traceback
from eliot.twisted import DeferredContext
from twisted.application.service import MultiService, Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall

from ._cloning import PortMove, move_blocked_ports
from ._clusterstate import ClusterStateService
from ._failover import AutomaticFailover
from ._logging import COPY_PORT_MOVED, COPY_PORT_MOVES_EXHAUSTED, MOVE_COPY_PORTS
from ._model import Deployment
from ._persistence import ConfigurationService, StoredConfiguration
from ._state import DeploymentState, cleanup_configuration
from ._updates import AutomaticRollback
from ._watching import WatchingDuty

__all__ = [
    "MAXIMUM_PORT_MOVES",
    "CopyPortMover",
    "DeletedDatasetCleaner",
    "LeaseExpirer",
    "build_duties",
]

_COUNT = Field.for_types("count", [int], "How many.")

#: Expired leases were removed from the configuration.
LEASES_EXPIRED = MessageType(
    "flocker:control:leases:expired",
    [_COUNT],
    "Leases whose expiry time passed were removed from the configuration.",
)


@attrs.define(eq=False)
class DeletedDatasetCleaner(WatchingDuty):
    """
    Remove deleted datasets once no node has them, and the replicas that
    finished moves leave behind.

    On every cluster state change and every configuration change it applies
    `cleanup_configuration` (through `ConfigurationService.change`, so durably),
    at most one change in flight at a time.
    """

    def _needed(self) -> bool:
        try:
            deployment: Deployment = self.configuration_service.deployment
        except RuntimeError:
            # Not loaded yet: the first change after loading triggers a check.
            return False
        state: DeploymentState = self.cluster_state_service.as_deployment_state()
        # cleanup_configuration returns its argument itself when nothing is to go.
        return cleanup_configuration(deployment, state) is not deployment

    def check(self) -> None:
        """Clean up now if anything needs it (coalescing overlapping calls)."""
        if self._running:
            self._again = True
            return
        if not self._needed():
            return
        self._running = True
        self._again = False

        def change(deployment: Deployment) -> Deployment:
            return cleanup_configuration(
                deployment, self.cluster_state_service.as_deployment_state()
            )

        def done(result: object) -> None:
            self._running = False
            if self._again:
                self.check()

        def failed(failure: Any) -> None:
            write_traceback(exc_info=(failure.type, failure.value, failure.tb))

        d = self.configuration_service.change(change)
        d.addErrback(failed)
        d.addBoth(done)


#: How often the control service moves one copy's application to new ports
#: (per run of the control service) before leaving it to the user.
MAXIMUM_PORT_MOVES = 3


@attrs.define(eq=False)
class CopyPortMover(WatchingDuty):
    """
    Move environment copies off ports their nodes report taken.

    A port chosen for a copy may be bound by another program before the
    copy's container starts; the container agent then reports the conflict
    and, on that cluster state change, this gives the copy's application
    free ports (`move_blocked_ports`, through `ConfigurationService.change`,
    so durably), logged as a ``flocker:control:environment:move_ports``
    action with one ``port_moved`` message, with its reason, per port.  An
    application is moved at most `MAXIMUM_PORT_MOVES` times by one control
    service; after that it is left (and that is logged once), so a node
    whose reports are wrong cannot make the configuration churn for ever.
    """

    maximum_moves: int = MAXIMUM_PORT_MOVES
    _moves: dict[str, int] = attrs.field(factory=dict, init=False)
    _exhausted: set[str] = attrs.field(factory=set, init=False)

    #: Only cluster state changes (a node reporting a taken port) call `check`.
    watch_configuration = False
    check_when_started = False

    def _allowed(self, application: str) -> bool:
        """Whether ``application`` may be moved again."""
        return self._moves.get(application, 0) < self.maximum_moves

    def _log_exhausted(self, deployment: Deployment, state: DeploymentState) -> None:
        """Log, once each, the blocked copies that may not be moved again."""
        _, blocked = move_blocked_ports(deployment, state)
        for move in blocked:
            if self._allowed(move.application) or move.application in self._exhausted:
                continue
            self._exhausted.add(move.application)
            COPY_PORT_MOVES_EXHAUSTED.log(
                application=move.application,
                node_uuid=move.node_uuid,
                reason=f"port {move.old_port} is still taken on the node after "
                f"{self.maximum_moves} moves",
            )

    def check(self) -> None:
        """Move what needs moving now (coalescing overlapping calls)."""
        if self._running:
            self._again = True
            return
        try:
            deployment: Deployment = self.configuration_service.deployment
        except RuntimeError:
            return  # not loaded yet; the next state change checks again
        state: DeploymentState = self.cluster_state_service.as_deployment_state()
        _, moves = move_blocked_ports(deployment, state, self._allowed)
        if not moves:
            self._log_exhausted(deployment, state)
            return
        self._running = True
        self._again = False
        done_moves: list[PortMove] = []

        def change(current: Deployment) -> Deployment:
            moved, made = move_blocked_ports(
                current, self.cluster_state_service.as_deployment_state(), self._allowed
            )
            done_moves[:] = made
            return moved

        action = MOVE_COPY_PORTS()
        with action.context():
            changed = DeferredContext(self.configuration_service.change(change))

            def logged(stored: StoredConfiguration) -> None:
                for move in done_moves:
                    self._moves[move.application] = self._moves.get(move.application, 0) + 1
                    COPY_PORT_MOVED.log(
                        application=move.application,
                        node_uuid=move.node_uuid,
                        old_port=move.old_port,
                        new_port=move.new_port,
                        reason=f"node {move.node_uuid} reports port {move.old_port} "
                        "taken by another program: the container cannot publish it",
                    )
                action.add_success_fields(generation=stored.generation)

            changed.addCallback(logged)
            changed.addActionFinish()
        d = changed.result

        def failed(failure: Any) -> None:
            write_traceback(exc_info=(failure.type, failure.value, failure.tb))

        def finished(result: object) -> None:
            self._running = False
            if self._again:
                self.check()

        d.addErrback(failed)
        d.addBoth(finished)


@attrs.define(eq=False)
class LeaseExpirer(Service):
    """
    Remove lapsed leases from the configuration every ``interval`` seconds.

    Every reader already treats a lapsed lease as gone (``Leases.expire``);
    this keeps the stored configuration (and ``GET /v1/configuration/leases``
    of every instance) free of them too.
    """

    clock: IReactorTime
    configuration_service: ConfigurationService
    interval: float = 5.0
    _loop: LoopingCall | None = attrs.field(default=None, init=False)
    _busy: bool = attrs.field(default=False, init=False)

    def startService(self) -> None:  # noqa: N802
        """Check now and every ``interval`` seconds."""
        Service.startService(self)
        self._loop = LoopingCall(self.check)
        self._loop.clock = self.clock
        self._loop.start(self.interval, now=True)

    def stopService(self) -> None:  # noqa: N802
        """Stop checking."""
        Service.stopService(self)
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def check(self) -> None:
        """Remove the leases lapsed by now, if any, as one configuration change."""
        if self._busy:
            return
        try:
            deployment: Deployment = self.configuration_service.deployment
        except RuntimeError:
            return  # not loaded yet
        now = self.clock.seconds()
        if deployment.leases.expire(now) is deployment.leases:
            return
        self._busy = True
        removed: list[int] = []

        def change(current: Deployment) -> Deployment:
            leases = current.leases.expire(now)
            removed[:] = [len(current.leases) - len(leases)]
            return current.set(leases=leases)

        def logged(stored: StoredConfiguration) -> None:
            if removed and removed[0]:
                LEASES_EXPIRED.log(count=removed[0])

        def failed(failure: Any) -> None:
            write_traceback(exc_info=(failure.type, failure.value, failure.tb))

        def done(result: object) -> None:
            self._busy = False

        d = self.configuration_service.change(change)
        d.addCallbacks(logged, failed)
        d.addBoth(done)


def build_duties(
    clock: IReactorTime,
    configuration_service: ConfigurationService,
    cluster_state_service: ClusterStateService,
    failover_after: float,
) -> MultiService:
    """
    The singleton duties as one service (children named ``"failover"``,
    ``"cleaner"``, ``"port-mover"``, ``"lease-expirer"`` and ``"rollback"``),
    not started.
    """
    duties = MultiService()
    failover = AutomaticFailover(
        clock, configuration_service, cluster_state_service, failover_after
    )
    failover.setName("failover")
    failover.setServiceParent(duties)
    cleaner = DeletedDatasetCleaner(configuration_service, cluster_state_service)
    cleaner.setName("cleaner")
    cleaner.setServiceParent(duties)
    mover = CopyPortMover(configuration_service, cluster_state_service)
    mover.setName("port-mover")
    mover.setServiceParent(duties)
    expirer = LeaseExpirer(clock, configuration_service)
    expirer.setName("lease-expirer")
    expirer.setServiceParent(duties)
    rollback = AutomaticRollback(configuration_service, cluster_state_service)
    rollback.setName("rollback")
    rollback.setServiceParent(duties)
    return duties
