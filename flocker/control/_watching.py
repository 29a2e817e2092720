"""
`WatchingDuty`: the base of the control service's duties that look again
at every change of the configuration and of the cluster state.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred

from ._clusterstate import ClusterStateService
from ._persistence import ConfigurationService

__all__ = ["WatchingDuty"]


@attrs.define(eq=False)
class WatchingDuty(Service):
    """
    A duty that calls `check` on every cluster state change and every
    configuration change (or, with ``watch_configuration`` false, on cluster
    state changes only), and once when started (unless
    ``check_when_started`` is false).

    :ivar configuration_service: the loaded `ConfigurationService`.
    :ivar cluster_state_service: the `ClusterStateService`.
    :ivar watch_configuration: whether configuration changes call `check` too.
    """

    configuration_service: ConfigurationService
    cluster_state_service: ClusterStateService
    _unsubscribe: list[Callable[[], None]] = attrs.field(factory=list, init=False)
    #: A check's configuration change is in flight.
    _running: bool = attrs.field(default=False, init=False)
    #: A check was asked for meanwhile: check again once it is done.
    _again: bool = attrs.field(default=False, init=False)

    #: Whether configuration changes call `check` too.
    watch_configuration = True
    #: Whether starting calls `check`.
    check_when_started = True

    def startService(self) -> None:  # noqa: N802
        """Subscribe to the changes, and check once now."""
        Service.startService(self)
        self._unsubscribe = [self.cluster_state_service.subscribe(lambda state: self.check())]
        if self.watch_configuration:
            self._unsubscribe.append(
                self.configuration_service.subscribe(lambda g, d: self.check())
            )
        if self.check_when_started:
            self.check()

    def stopService(self) -> Deferred[None] | None:  # noqa: N802
        """Unsubscribe (a change being made finishes)."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        stopped: Deferred[None] | None = Service.stopService(self)
        return stopped

    def check(self) -> None:
        """Look at the configuration and the cluster state now."""
        raise NotImplementedError
