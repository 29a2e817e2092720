"""
The lifecycle of a threaded TLS connection, as seen from the reactor thread:
its phases, the events that move it between them, and what each phase
allows.

A connection shakes hands (``HANDSHAKING``), is ``OPEN``, and ends one of
three ways:

* ``loseConnection``: it first waits for a registered producer to be
  unregistered (``AWAITING_PRODUCER``; writes still go), then its worker
  sends everything queued and TLS ``close_notify`` (``CLOSING``);
* ``abortConnection``: the worker drops what is queued and resets the
  connection (``ABORTING``);
* the worker ends by itself (the peer closed, or an error).

Once the worker is done, the protocol hears of it (``LOST``) after the bytes
it has yet to take, should it be paused (``ENDED``); a protocol that asks
to close meanwhile takes no more of them (``ENDED_DISCARDING``).

:data:`TRANSITIONS` is the whole machine.  An event a phase does not list
leaves it as it is: ``loseConnection`` twice, ``abortConnection`` after the
end, ``unregisterProducer`` with nothing waiting for it -- as with Twisted's
own transports, these are no-ops.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum, IntEnum


class Phase(Enum):
    """Where a connection is in its life."""

    #: The worker thread shakes hands; no protocol yet.
    HANDSHAKING = "handshaking"
    #: Bytes flow both ways.
    OPEN = "open"
    #: ``loseConnection`` was called with a producer registered: the
    #: connection closes once it is unregistered; writes still go.
    AWAITING_PRODUCER = "awaiting producer"
    #: The worker sends what is queued, then ``close_notify``, and waits
    #: (a while) for the peer's end.
    CLOSING = "closing"
    #: The worker drops what is queued and resets the connection.
    ABORTING = "aborting"
    #: The worker is done; bytes it read wait for a paused protocol, which
    #: hears of the end once it has taken them.
    ENDED = "ended"
    #: The worker is done and the protocol asked to close: the bytes still
    #: waiting are dropped the next time they would be delivered.
    ENDED_DISCARDING = "ended, discarding"
    #: The protocol has been told (or the handshake failed): nothing more.
    LOST = "lost"


class Event(Enum):
    """What happens to a connection."""

    #: The handshake finished and the peer's certificate passed the check.
    HANDSHAKE_DONE = "handshake done"
    #: The handshake failed (or was aborted): the worker is done.
    HANDSHAKE_FAILED = "handshake failed"
    #: ``loseConnection``.
    LOSE = "lose"
    #: No producer is registered (any longer).
    PRODUCER_GONE = "producer gone"
    #: ``abortConnection``.
    ABORT = "abort"
    #: The worker is done, and every byte it read has been delivered.
    WORKER_ENDED = "worker ended"
    #: The worker is done, and bytes it read wait for a paused protocol.
    WORKER_ENDED_HOLDING = "worker ended, bytes held"
    #: A delivery pass left no bytes waiting.
    INBOX_EMPTY = "inbox empty"
    #: A delivery pass left bytes waiting (the protocol paused again).
    INBOX_HELD = "inbox held"


_ = Phase
TRANSITIONS: Mapping[tuple[Phase, Event], Phase] = {
    (_.HANDSHAKING, Event.HANDSHAKE_DONE): _.OPEN,
    (_.HANDSHAKING, Event.HANDSHAKE_FAILED): _.LOST,
    (_.HANDSHAKING, Event.LOSE): _.AWAITING_PRODUCER,
    (_.HANDSHAKING, Event.ABORT): _.ABORTING,
    (_.OPEN, Event.LOSE): _.AWAITING_PRODUCER,
    (_.OPEN, Event.ABORT): _.ABORTING,
    (_.OPEN, Event.WORKER_ENDED): _.LOST,
    (_.OPEN, Event.WORKER_ENDED_HOLDING): _.ENDED,
    (_.AWAITING_PRODUCER, Event.PRODUCER_GONE): _.CLOSING,
    (_.AWAITING_PRODUCER, Event.ABORT): _.ABORTING,
    (_.AWAITING_PRODUCER, Event.HANDSHAKE_FAILED): _.LOST,
    (_.AWAITING_PRODUCER, Event.WORKER_ENDED): _.LOST,
    (_.AWAITING_PRODUCER, Event.WORKER_ENDED_HOLDING): _.LOST,
    (_.CLOSING, Event.ABORT): _.ABORTING,
    (_.CLOSING, Event.HANDSHAKE_FAILED): _.LOST,
    (_.CLOSING, Event.WORKER_ENDED): _.LOST,
    (_.CLOSING, Event.WORKER_ENDED_HOLDING): _.LOST,
    (_.ABORTING, Event.HANDSHAKE_FAILED): _.LOST,
    (_.ABORTING, Event.WORKER_ENDED): _.LOST,
    (_.ABORTING, Event.WORKER_ENDED_HOLDING): _.LOST,
    (_.ENDED, Event.LOSE): _.ENDED_DISCARDING,
    (_.ENDED, Event.ABORT): _.ENDED_DISCARDING,
    (_.ENDED, Event.INBOX_EMPTY): _.LOST,
    (_.ENDED_DISCARDING, Event.INBOX_EMPTY): _.LOST,
    (_.ENDED_DISCARDING, Event.INBOX_HELD): _.LOST,
}
del _

#: Phases in which ``write`` queues bytes (also after ``loseConnection``,
#: until the connection is closed, as with Twisted's own transports).
WRITABLE = frozenset(
    {Phase.HANDSHAKING, Phase.OPEN, Phase.AWAITING_PRODUCER, Phase.CLOSING}
)
#: Phases in which the transport is ``disconnecting``: the protocol asked to
#: close (or it is closed), and it is handed no more bytes.
DISCONNECTING = frozenset(
    {
        Phase.AWAITING_PRODUCER,
        Phase.CLOSING,
        Phase.ABORTING,
        Phase.ENDED_DISCARDING,
        Phase.LOST,
    }
)


def next_phase(phase: Phase, event: Event) -> Phase | None:
    """The phase ``event`` moves ``phase`` to, or ``None`` if it changes nothing."""
    return TRANSITIONS.get((phase, event))


class Request(IntEnum):
    """
    What the reactor thread asks of the worker thread, which looks at it
    under the transport's lock; a request only ever escalates.
    """

    #: Move bytes.
    NOTHING = 0
    #: Send what is queued, then ``close_notify``, then end.
    CLOSE = 1
    #: Drop everything and reset the connection.
    ABORT = 2


class WorkerStage(Enum):
    """Where the worker thread is in closing a connection it was asked to close."""

    #: Moving bytes both ways.
    PUMPING = "pumping"
    #: ``close_notify`` is queued: sending it, dropping what arrives.
    CLOSE_NOTIFY = "close_notify"
    #: ``close_notify`` is sent and the socket's write side shut: dropping
    #: what arrives until the peer's end (or ``CLOSE_GRACE`` passed).
    SHUT = "shut"
