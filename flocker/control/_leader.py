"""One leader among the control instances for the cluster's singleton duties.

Every control instance serves the REST API and its agents, but some work must
be done by one instance at a time: automatic failover decisions, cleaning up
deleted datasets and finished moves, moving environment copies off taken
ports, dropping expired leases.  Those duties run as children of a
`Leadership` service, started only while this instance is the leader.

Leadership is an etcd key (``<prefix>leader``) created only if absent, bound
to an etcd lease of ``ttl`` seconds that the leader keeps alive.  When the
leader dies, etcd deletes the key as its lease expires and another instance
creates it.  A leader that cannot renew its lease stops its duties at
``last renewal sent + ttl - safety``: etcd expires the lease no earlier than
``ttl`` after it *received* that renewal, so the old leader has always stopped
before any other instance can become leader.

With the embedded file store there is one instance, always the leader:
`build_duties` with `AlwaysLeader`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import attrs
from eliot import MessageType, write_traceback
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall

from ._logging import INSTANCE, REASON

__all__ = [
    "LEADER_ELECTED",
    "LEADER_LOST",
    "AlwaysLeader",
    "LeaseStore",
    "Leadership",
]


#: This instance became the leader and started the singleton duties.
LEADER_ELECTED = MessageType(
    "flocker:control:leader:elected",
    [INSTANCE],
    "This control instance holds the leadership key and runs the cluster's "
    "singleton duties (failover decisions, clean-up).",
)

#: This instance stopped being the leader and stopped its duties.
LEADER_LOST = MessageType(
    "flocker:control:leader:lost",
    [INSTANCE, REASON],
    "This control instance stopped running the singleton duties: it could not "
    "renew its leadership lease in time, or it is stopping.",
)

#: A leadership round failed (etcd unreachable, for instance); it is retried.
LEADER_ROUND_FAILED = MessageType(
    "flocker:control:leader:round_failed",
    [INSTANCE, REASON],
    "Trying to become or stay the leader failed; the next round tries again.",
)


class LeaseStore(Protocol):
    """
    What `Leadership` needs of etcd: leases, kept alive, and a key created
    only if absent (`flocker.control._etcd.EtcdClient` provides it).
    """

    def grant_lease(self, ttl: int) -> Deferred[int]:
        """A new lease of ``ttl`` seconds; fires with its id."""
        ...

    def keep_alive(self, lease_id: int) -> Deferred[int]:
        """Renew a lease once; fires with its remaining TTL (0: it expired)."""
        ...

    def revoke_lease(self, lease_id: int) -> Deferred[None]:
        """Revoke a lease, deleting its keys."""
        ...

    def create(self, key: str, value: bytes, lease: int | None = None) -> Deferred[bool]:
        """Write ``key`` only if it does not exist; fires with whether it did."""
        ...


@attrs.define(eq=False)
class AlwaysLeader(Service):
    """
    The leadership of a control service that is the only one (file store):
    its duties run as long as it runs.
    """

    duties: MultiService

    @property
    def is_leader(self) -> bool:
        """Always, while running."""
        return bool(self.running)

    def startService(self) -> None:  # noqa: N802
        """Start the duties."""
        Service.startService(self)
        self.duties.startService()

    def stopService(self) -> Deferred[None] | None:  # noqa: N802
        """Stop the duties."""
        Service.stopService(self)
        return maybeDeferred(self.duties.stopService)


@attrs.define(eq=False)
class Leadership(Service):
    """
    Hold (or wait for) the leadership key in etcd; run ``duties`` only while held.

    :ivar clock: the time and the scheduler.
    :ivar client: the `flocker.control._etcd.EtcdClient` (a `LeaseStore`).
    :ivar instance_id: this control instance's identifier (the key's value).
    :ivar duties: the services to run only while leader.
    :ivar key: the leadership key.
    :ivar ttl: the leadership lease's time to live, in seconds.
    :ivar interval: seconds between rounds (renewal, or trying to take it).
    :ivar safety: seconds before the lease could expire at which a leader that
        could not renew stops its duties.
    """

    clock: IReactorTime
    client: LeaseStore
    instance_id: str
    duties: MultiService
    key: str = "/flocker/leader"
    ttl: int = 4
    interval: float = 1.0
    safety: float = 0.5
    _lease: int | None = attrs.field(default=None, init=False)
    _leader: bool = attrs.field(default=False, init=False)
    _deadline: IDelayedCall | None = attrs.field(default=None, init=False)
    _loop: LoopingCall | None = attrs.field(default=None, init=False)
    _round: Deferred[None] | None = attrs.field(default=None, init=False)
    _listeners: list[Callable[[bool], None]] = attrs.field(factory=list, init=False)

    @property
    def is_leader(self) -> bool:
        """Whether this instance runs the singleton duties now."""
        return self._leader

    def on_change(self, listener: Callable[[bool], None]) -> None:
        """Call ``listener(is_leader)`` whenever leadership is won or lost."""
        self._listeners.append(listener)

    def startService(self) -> None:  # noqa: N802
        """Try to become the leader now and every ``interval`` seconds."""
        Service.startService(self)
        self._loop = LoopingCall(self._tick)
        self._loop.clock = self.clock
        self._loop.start(self.interval, now=True)

    def stopService(self) -> Deferred[None]:  # noqa: N802
        """
        Stop trying; if leader, stop the duties and give the key up at once
        (revoking the lease deletes it), so another instance takes over
        without waiting for the lease to expire.
        """
        Service.stopService(self)
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

        async def stop() -> None:
            if self._round is not None:
                try:
                    await self._round
                except Exception:
                    pass
            await self._lose("the control service is stopping")
            lease, self._lease = self._lease, None
            if lease is not None:
                try:
                    await self.client.revoke_lease(lease)
                except Exception as e:
                    LEADER_ROUND_FAILED.log(
                        instance=self.instance_id,
                        reason=f"could not give the leadership up: {e}",
                    )

        return Deferred.fromCoroutine(stop())

    def _tick(self) -> None:
        if self._round is not None:
            return  # the previous round is still waiting for etcd
        self._round = Deferred.fromCoroutine(self._one_round())

        def done(result: object) -> None:
            self._round = None

        self._round.addBoth(done)

    async def _one_round(self) -> None:
        try:
            await self._renew_or_take()
        except Exception as e:
            LEADER_ROUND_FAILED.log(instance=self.instance_id, reason=str(e) or repr(e))

    async def _renew_or_take(self) -> None:
        sent = self.clock.seconds()
        lease = self._lease
        if lease is None:
            lease = self._lease = await self.client.grant_lease(self.ttl)
            remaining: float = self.ttl
        else:
            remaining = await self.client.keep_alive(lease)
        if self._lease != lease or not self.running:
            return  # it expired (or we stopped) while waiting for etcd
        if not remaining or remaining <= 0:
            self._lease = None
            await self._lose("the leadership lease expired")
            return
        if not self._leader:
            if not await self.client.create(
                self.key, self.instance_id.encode("utf-8"), lease=lease
            ):
                return
            self._leader = True
            LEADER_ELECTED.log(instance=self.instance_id)
            self._schedule_deadline(sent + remaining - self.safety)
            self._start_duties()
            return
        self._schedule_deadline(sent + remaining - self.safety)

    def _schedule_deadline(self, at: float) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        delay = max(0.0, at - self.clock.seconds())
        self._deadline = self.clock.callLater(delay, self._expired)

    def _expired(self) -> None:
        self._deadline = None
        # The lease may be gone in etcd by now: start afresh with a new one.
        self._lease = None
        Deferred.fromCoroutine(
            self._lose("the leadership lease could not be renewed in time")
        )

    def _start_duties(self) -> None:
        try:
            self.duties.startService()
        except Exception:
            write_traceback()
        self._tell(True)

    async def _lose(self, reason: str) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None
        if not self._leader:
            return
        self._leader = False
        LEADER_LOST.log(instance=self.instance_id, reason=reason)
        self._tell(False)
        try:
            await maybeDeferred(self.duties.stopService)
        except Exception:
            write_traceback()

    def _tell(self, leader: bool) -> None:
        for listener in list(self._listeners):
            try:
                listener(leader)
            except Exception:
                write_traceback()
