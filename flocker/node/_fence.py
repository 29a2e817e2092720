"""Self-fencing: an agent cut from the control service stops exposing data.

A dataset that fails over automatically may be promoted on another node
once the control service has not heard from this one for its
``failover_after``.  So that two nodes never write it at once, each agent
fences itself first: a `Fence` watches everything that comes from the
control service (any AMP box: pushes, answers to keep-alives and reports,
the handshake) and goes *up* after ``fence_after`` seconds of silence —
always shorter than the control service's ``failover_after``.  While it is
up the dataset agent stops exposing the datasets `fence_applies` to (role
``fenced``: not mounted for applications, read-only) and the container
agent stops their applications.  It goes *down* on the first
configuration pushed after that: the configuration decides again (the same
epoch exposes the copy again, a newer one makes it diverged).

Agents send keep-alives every `keepalive_interval` (a quarter of
``fence_after``), so a healthy connection is never silent for long enough.

States::

    down ──silent for fence_after──► up
      ▲                               │
      └──────configuration pushed─────┘
"""

from __future__ import annotations

import enum
from collections.abc import Callable

import attr
from twisted.application.service import Service
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from flocker.control import Deployment
from flocker.control._protocol import KEEPALIVE_INTERVAL

from ._logging import FENCE_DOWN, FENCE_UP

#: The agent.yml ``fence-after`` default (seconds).
DEFAULT_FENCE_AFTER = 10.0


def keepalive_interval(fence_after: float) -> float:
    """How often an agent sends keep-alives so a healthy connection never fences."""
    return min(KEEPALIVE_INTERVAL, fence_after / 4)


def fence_applies(configuration: Deployment, dataset_id: str) -> bool:
    """
    Whether a fenced node stops exposing a dataset: one that fails over
    automatically and has a standing replica to fail over to.  A dataset
    failed over by hand only is kept served: nobody promotes another copy
    behind the node's back.
    """
    try:
        dataset, _ = configuration.get_dataset(dataset_id)
    except KeyError:
        return False
    return dataset.replication.failover == "automatic" and bool(
        configuration.replicas_of(dataset_id)
    )


class FenceState(enum.Enum):
    """Whether the agent fenced itself."""

    DOWN = "down"
    UP = "up"


@attr.s(eq=False)
class Fence(Service):
    """
    Goes up after ``fence_after`` seconds without a word from the control
    service; down on the next pushed configuration (see the module
    docstring).  Runs while started as a service.

    :ivar clock: Measures the silence.
    :ivar fence_after: Seconds of silence before the fence goes up.
    :ivar agent: ``"dataset"`` or ``"container"`` (for the log).
    :ivar connected: Whether a connection to the control service is open
        (for the log: a connection may be open and silent).
    :ivar changed: Called after the fence went up or down (the agent pokes
        its convergence loop, so it acts at once).
    """

    clock: IReactorTime = attr.ib()
    fence_after: float = attr.ib(default=DEFAULT_FENCE_AFTER)
    agent: str = attr.ib(default="dataset")
    connected: Callable[[], bool] = attr.ib(default=lambda: False)
    changed: Callable[[], object] = attr.ib(default=lambda: None)

    state: FenceState = attr.ib(default=FenceState.DOWN, init=False)
    _last_heard: float = attr.ib(default=0.0, init=False)
    _up_since: float = attr.ib(default=0.0, init=False)
    _timer: IDelayedCall | None = attr.ib(default=None, init=False)

    @property
    def is_up(self) -> bool:
        """Whether the agent is fenced now."""
        return self.state is FenceState.UP

    def heard(self) -> None:
        """Something came from the control service."""
        self._last_heard = self.clock.seconds()

    def configuration_pushed(self) -> None:
        """The control service pushed a configuration: a fence that is up goes down."""
        self.heard()
        if self.state is FenceState.DOWN:
            return
        self.state = FenceState.DOWN
        FENCE_DOWN.log(agent=self.agent, fenced_for=self._last_heard - self._up_since)
        self._schedule()
        self.changed()

    def startService(self) -> None:  # noqa: N802 (Twisted's name)
        """Start measuring silence from now (nothing was heard yet)."""
        super().startService()  # type: ignore[no-untyped-call]  # Twisted's
        self.heard()
        self._schedule()

    def stopService(self) -> None:  # noqa: N802
        """Stop the timer; the state stays as it is."""
        super().stopService()  # type: ignore[no-untyped-call]  # Twisted's
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _schedule(self) -> None:
        """Look again when the silence would have lasted ``fence_after``."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        delay = max(0.0, self._last_heard + self.fence_after - self.clock.seconds())
        self._timer = self.clock.callLater(delay, self._check)

    def _check(self) -> None:
        """Up if silent long enough; else wait for the rest of the time."""
        self._timer = None
        silent = self.clock.seconds() - self._last_heard
        if silent < self.fence_after:
            self._schedule()
            return
        self.state = FenceState.UP
        self._up_since = self.clock.seconds()
        FENCE_UP.log(
            agent=self.agent,
            silent=silent,
            fence_after=self.fence_after,
            connected=bool(self.connected()),
        )
        self.changed()


__all__ = [
    "DEFAULT_FENCE_AFTER",
    "Fence",
    "FenceState",
    "fence_applies",
    "keepalive_interval",
]
