"""The control plane's singleton duties, run by the leader alone.

`build_duties` gathers what must run on exactly one control instance: the
automatic failover decisions, the clean-up of deleted datasets and finished
moves, the moving of environment copies off taken ports and the removal of
expired leases from the configuration.  `flocker.control._leader` runs them
while this instance leads.
"""

from __future__ import annotations

from typing import Any

import attrs
from eliot import Field, MessageType, write_traceback
from twisted.application.service import MultiService, Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall

from ._failover import AutomaticFailover
from ._model import Deployment
from .httpapi import CopyPortMover, DeletedDatasetCleaner

__all__ = ["LeaseExpirer", "build_duties"]

_COUNT = Field.for_types("count", [int], "How many.")

#: Expired leases were removed from the configuration.
LEASES_EXPIRED = MessageType(
    "flocker:control:leases:expired",
    [_COUNT],
    "Leases whose expiry time passed were removed from the configuration.",
)


@attrs.define(eq=False)
class LeaseExpirer(Service):
    """
    Remove lapsed leases from the configuration every ``interval`` seconds.

    Every reader already treats a lapsed lease as gone (``Leases.expire``);
    this keeps the stored configuration (and ``GET /v1/configuration/leases``
    of every instance) free of them too.
    """

    clock: IReactorTime
    configuration_service: Any
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

        def logged(stored: Any) -> None:
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
    configuration_service: Any,
    cluster_state_service: Any,
    failover_after: float,
) -> MultiService:
    """
    The singleton duties as one service (children named ``"failover"``,
    ``"cleaner"``, ``"port-mover"`` and ``"lease-expirer"``), not started.
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
    return duties
