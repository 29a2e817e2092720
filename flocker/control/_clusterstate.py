"""The control service's picture of the cluster: node reports, merged and expired.

`ClusterStateService` holds the `DeploymentState` built from what agents
report.  Each report is merged (`DeploymentState.update_node`: a dataset
agent's report leaves the container half alone and vice versa).  A node that
has not reported for `ClusterStateService.expiration` seconds is forgotten, so
its state becomes unknown rather than stale; so is the container half of a
node whose container agent alone went silent that long (its instances must
not keep their places and health while its dataset agent still reports).  The AMP server feeds it; the
REST API reads it; subscribers hear of every change.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
from eliot import write_traceback
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall

from ._logging import (
    CONTAINER_STATE_EXPIRED,
    NODE_STATE_EXPIRED,
    NODE_STATE_UPDATED,
    SUBSCRIBER_FAILED,
)
from ._state import (
    CONTAINER_HALF,
    DeploymentState,
    NodeState,
)

__all__ = ["DEFAULT_STATE_EXPIRATION", "ClusterStateService"]

#: Seconds of silence after which a node's reported state is forgotten.
DEFAULT_STATE_EXPIRATION = 120.0

#: Called with the new `DeploymentState` after every change.
StateSubscriber = Callable[[DeploymentState], None]

#: Called with (state, agent kind) for every report an agent made to this
#: control service itself (not for reports other instances shared).
ReportListener = Callable[[NodeState, "str | None"], None]

#: Called with (node UUID, agent kind, time) whenever one of this control
#: service's own agent connections is heard from.
HeardListener = Callable[[str, str, float], None]


@attrs.define
class ClusterStateService:
    """
    The last reported state of every node, forgetting nodes that went silent.

    :ivar clock: provides the time and schedules expiry checks.
    :ivar expiration: seconds of silence before a node's state is dropped.
    """

    clock: IReactorTime
    expiration: float = DEFAULT_STATE_EXPIRATION
    _state: DeploymentState = attrs.field(factory=DeploymentState, init=False)
    _last_seen: dict[str, float] = attrs.field(factory=dict, init=False)
    _last_heard: dict[tuple[str, str], float] = attrs.field(factory=dict, init=False)
    _subscribers: list[StateSubscriber] = attrs.field(factory=list, init=False)
    _report_listeners: list[ReportListener] = attrs.field(factory=list, init=False)
    _heard_listeners: list[HeardListener] = attrs.field(factory=list, init=False)
    _expirer: LoopingCall | None = attrs.field(default=None, init=False)

    def as_deployment_state(self) -> DeploymentState:
        """The current cluster state."""
        return self._state

    def update_node_state(self, state: NodeState, agent_kind: str | None = None) -> None:
        """
        Merge one node's report, made to this control service by its agent
        of ``agent_kind``, and note when it was heard from.  Report
        listeners (`listen`) hear of it.
        """
        self.apply_shared_state(state)
        for listener in list(self._report_listeners):
            _call_safely(listener, state, agent_kind)

    def apply_shared_state(self, state: NodeState) -> None:
        """
        Merge one node's report that another control instance received
        (report listeners are not told: it is not this instance's own).
        """
        self._last_seen[state.uuid] = self.clock.seconds()
        new = self._state.update_node(state)
        NODE_STATE_UPDATED.log(node_uuid=state.uuid)
        self._set(new)

    def touch(self, node_uuid: str, agent_kind: str | None = None) -> None:
        """
        Note that a node is alive (a keep-alive, a report) without changing
        its state; ``agent_kind`` (``"dataset"`` or ``"container"``) says
        which of its agents was heard from, for `last_heard`.  Heard
        listeners (`listen`) hear of it.
        """
        now = self.clock.seconds()
        self.heard_at(node_uuid, agent_kind, now)
        if agent_kind is not None:
            for listener in list(self._heard_listeners):
                _call_safely(listener, node_uuid, agent_kind, now)

    def heard_at(self, node_uuid: str, agent_kind: str | None, when: float) -> None:
        """
        Note that a node's agent was heard from at ``when`` (by this or
        another control instance); an older time than already known
        changes nothing.
        """
        if agent_kind is not None:
            key = (node_uuid, agent_kind)
            self._last_heard[key] = max(when, self._last_heard.get(key, when))
        if node_uuid in self._state.nodes:
            self._last_seen[node_uuid] = max(
                when, self._last_seen.get(node_uuid, when)
            )

    def listen(
        self,
        reports: ReportListener | None = None,
        heard: HeardListener | None = None,
    ) -> Callable[[], None]:
        """
        Hear of every report (``reports(state, agent_kind)``) and every
        sign of life (``heard(node_uuid, agent_kind, time)``) that this
        control service's own agents send, e.g. to share them with other
        control instances.

        :return: a function that stops listening.
        """
        if reports is not None:
            self._report_listeners.append(reports)
        if heard is not None:
            self._heard_listeners.append(heard)

        def stop() -> None:
            if reports is not None:
                self._report_listeners.remove(reports)
            if heard is not None:
                self._heard_listeners.remove(heard)

        return stop

    def last_heard(self, node_uuid: str, agent_kind: str = "dataset") -> float | None:
        """
        When a node's agent of this kind last sent anything (a report or a
        keep-alive), or ``None`` if never since the control service started.
        Unlike the state, this survives the node's expiry: it is what a
        failover asks to know how long a primary has been silent.
        """
        return self._last_heard.get((node_uuid, agent_kind))

    def remove_node(self, node_uuid: str) -> None:
        """Forget a node's state now."""
        self._last_seen.pop(node_uuid, None)
        self._set(self._state.remove_node(node_uuid))

    def expire(self) -> list[str]:
        """
        Forget every node silent for longer than `expiration`.

        :return: the UUIDs of the nodes forgotten.
        """
        now = self.clock.seconds()
        silent = sorted(
            uuid
            for uuid, seen in self._last_seen.items()
            if now - seen >= self.expiration
        )
        state = self._state
        for uuid in silent:
            del self._last_seen[uuid]
            state = state.remove_node(uuid)
            NODE_STATE_EXPIRED.log(node_uuid=uuid)
        for uuid, node in sorted(state.nodes.items()):
            heard = self._last_heard.get((uuid, "container"))
            if heard is None or now - heard < self.expiration:
                continue
            if all(getattr(node, name) is None for name in CONTAINER_HALF):
                continue
            state = state.forget_containers(uuid)
            CONTAINER_STATE_EXPIRED.log(node_uuid=uuid)
        self._set(state)
        return silent

    def start_expiring(self, interval: float | None = None) -> None:
        """Check for silent nodes every ``interval`` seconds (default: expiration / 4)."""
        if self._expirer is not None:
            return
        self._expirer = LoopingCall(self.expire)
        self._expirer.clock = self.clock
        self._expirer.start(interval or self.expiration / 4, now=False)

    def stop_expiring(self) -> None:
        """Stop checking for silent nodes."""
        if self._expirer is not None:
            self._expirer.stop()
            self._expirer = None

    def subscribe(self, subscriber: StateSubscriber) -> Callable[[], None]:
        """Call ``subscriber(state)`` after every change; returns an unsubscriber."""
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    def _set(self, state: DeploymentState) -> None:
        if state is self._state or state == self._state:
            return
        self._state = state
        for subscriber in list(self._subscribers):
            _call_safely(subscriber, state)


def _call_safely(f: Callable[..., object], *args: object) -> None:
    """Call a subscriber or listener; log (never raise) what it raises."""
    try:
        f(*args)
    except Exception as e:
        SUBSCRIBER_FAILED.log(reason=repr(e))
        write_traceback()
