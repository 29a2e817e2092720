"""
How long a moved application was unavailable, as its new node sees it.

The container agent of the node an application moves to notes the moment
the cluster state first shows the application running on no node at all
(the old node stopped it and reported so), and, once it has started the new
container, probes the port its lowest internal port is published on at
this node's address until a TCP connection succeeds.  It then logs one
``flocker:node:container:answering`` action with:

* ``unavailable_seconds`` — from the application running nowhere until it
  accepts connections here: the interruption of a move, measured on one
  clock (the old node's report reaches the control service and this node
  within a few milliseconds of the stop, so this is at most that much short);
* ``start_seconds`` — from the start of the new container until it answers.

Connections from the node itself to its published address reach the
container through Docker's NAT rules (for addresses outside 127.0.0.0/8),
so a successful connection means the application itself listens.  Probes
give up after :data:`PROBE_LIMIT` seconds, logging the action as failed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attr
from eliot import ActionType, Field, start_action
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater

from flocker.control import DeploymentState
from flocker.runtime import ContainerSpec

#: Seconds between probes of a starting application's port.
PROBE_INTERVAL = 0.02

#: Give up probing after this many seconds.
PROBE_LIMIT = 60.0

ANSWERING = ActionType(
    "flocker:node:container:answering",
    [
        Field.for_types("name", [str], "The application."),
        Field.for_types("port", [int], "The published port probed."),
    ],
    [
        Field.for_types(
            "unavailable_seconds",
            [float, type(None)],
            "From the application running on no node until it answers here "
            "(None when it did not move here).",
        ),
        Field.for_types("start_seconds", [float], "From container start until it answers."),
    ],
    "A started application accepts connections on its published port.",
)


class _Hangup(Protocol):
    """Closes the probe connection as soon as it is made."""

    def connectionMade(self) -> None:
        """Hang up at once: connecting was the test."""
        assert self.transport is not None
        self.transport.loseConnection()


@attr.s(eq=False)
class AnsweringWatch:
    """
    Notes when applications stop running anywhere, and times their restart.

    :ivar reactor: Connects the probes and keeps time.
    :ivar node_uuid: This node.
    :ivar address: This node's address, where Docker publishes ports.
    """

    reactor: IReactorTime = attr.ib()
    node_uuid: str = attr.ib()
    address: str = attr.ib()
    _elsewhere: set[str] = attr.ib(factory=set, init=False)
    _gone_at: dict[str, float] = attr.ib(factory=dict, init=False)

    def observe(self, wanted: set[str], cluster_state: DeploymentState) -> None:
        """
        Update what is known of the applications configured here.

        :param wanted: The names of the applications configured for this node.
        """
        running: dict[str, set[str]] = {}
        for uuid, node in cluster_state.nodes.items():
            for name in node.applications or {}:
                running.setdefault(name, set()).add(uuid)
        for name in wanted:
            where = running.get(name, set())
            if where - {self.node_uuid}:
                self._elsewhere.add(name)
                self._gone_at.pop(name, None)
            elif not where and name in self._elsewhere:
                self._gone_at.setdefault(name, self.reactor.seconds())
        for name in set(self._elsewhere) - wanted:
            self._elsewhere.discard(name)
            self._gone_at.pop(name, None)

    def started(self, spec: ContainerSpec, published: Mapping[int, int]) -> None:
        """
        The container for ``spec`` was just started: probe it in the
        background (nothing waits for the probe) and log when it answers.

        :param published: Internal port → the port of this node's address
            it is published on (``ContainerState.ports``); the lowest
            internal port is probed.
        """
        if not published:
            return
        port = published[min(published)]
        gone_at = self._gone_at.pop(spec.name, None)
        self._elsewhere.discard(spec.name)
        action = start_action(action_type=ANSWERING.action_type, name=spec.name, port=port)
        started_at = self.reactor.seconds()
        with action.context():
            probing = Deferred.fromCoroutine(self._probe(port))

        def answered(_: None) -> None:
            now = self.reactor.seconds()
            action.add_success_fields(
                unavailable_seconds=None if gone_at is None else round(now - gone_at, 3),
                start_seconds=round(now - started_at, 3),
            )
            action.finish()

        def gave_up(failure: Any) -> None:
            action.finish(failure.value)

        probing.addCallbacks(answered, gave_up)

    async def _probe(self, port: int) -> None:
        # A short timeout: a SYN lost while Docker wires the container up
        # would otherwise cost a whole 1 s retransmission.
        endpoint = TCP4ClientEndpoint(self.reactor, self.address, port, timeout=0.25)
        deadline = self.reactor.seconds() + PROBE_LIMIT
        while True:
            try:
                await endpoint.connect(Factory.forProtocol(_Hangup))
                return
            except Exception:
                if self.reactor.seconds() > deadline:
                    raise
            await deferLater(self.reactor, PROBE_INTERVAL, lambda: None)


__all__ = ["ANSWERING", "AnsweringWatch"]
