"""
Tests for :mod:`flocker.transport._lifecycle`: the phases of a threaded TLS
connection and the events between them (a pure table; the connections
themselves are tested over real sockets in ``test_threaded_tls*``).
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from .._lifecycle import (
    DISCONNECTING,
    TRANSITIONS,
    WRITABLE,
    Event,
    Phase,
    Request,
    next_phase,
)


def run(events: Iterable[Event], phase: Phase = Phase.HANDSHAKING) -> Phase:
    """The phase ``events`` lead to from ``phase`` (ignored ones change nothing)."""
    for event in events:
        phase = next_phase(phase, event) or phase
    return phase


def reachable(start: Phase) -> set[Phase]:
    """Every phase some events lead to from ``start``."""
    seen = {start}
    frontier = [start]
    while frontier:
        phase = frontier.pop()
        for (source, _), target in TRANSITIONS.items():
            if source is phase and target not in seen:
                seen.add(target)
                frontier.append(target)
    return seen


def test_every_phase_is_reachable() -> None:
    """Every phase can be reached from the handshake."""
    assert reachable(Phase.HANDSHAKING) == set(Phase)


@pytest.mark.parametrize("phase", list(Phase))
def test_every_phase_ends_lost(phase: Phase) -> None:
    """From every phase the connection can still end (``LOST``)."""
    assert Phase.LOST in reachable(phase)


def test_lost_is_final() -> None:
    """No event leads out of ``LOST``."""
    assert [key for key in TRANSITIONS if key[0] is Phase.LOST] == []


def test_lose_waits_for_the_producer() -> None:
    """
    ``loseConnection`` with a producer registered closes only once it is
    unregistered; writes still go meanwhile.
    """
    waiting = run([Event.HANDSHAKE_DONE, Event.LOSE])
    assert waiting is Phase.AWAITING_PRODUCER
    assert waiting in WRITABLE and waiting in DISCONNECTING
    assert run([Event.PRODUCER_GONE], waiting) is Phase.CLOSING
    assert Phase.CLOSING in WRITABLE


def test_abort_wins_over_closing() -> None:
    """An abort while closing (or waiting for a producer) aborts."""
    for phase in (Phase.OPEN, Phase.AWAITING_PRODUCER, Phase.CLOSING):
        assert run([Event.ABORT], phase) is Phase.ABORTING
    assert run([Event.LOSE, Event.PRODUCER_GONE], Phase.ABORTING) is Phase.ABORTING
    assert Phase.ABORTING not in WRITABLE


def test_bytes_held_for_a_paused_protocol() -> None:
    """
    The worker's end reaches a protocol after the bytes it has yet to take;
    a protocol that asks to close meanwhile gets no more of them.
    """
    ended = run([Event.HANDSHAKE_DONE, Event.WORKER_ENDED_HOLDING])
    assert ended is Phase.ENDED and ended not in DISCONNECTING
    assert run([Event.INBOX_HELD], ended) is Phase.ENDED
    assert run([Event.INBOX_EMPTY], ended) is Phase.LOST
    for request in (Event.LOSE, Event.ABORT):
        discarding = run([request], ended)
        assert discarding is Phase.ENDED_DISCARDING and discarding in DISCONNECTING
        assert run([Event.INBOX_HELD], discarding) is Phase.LOST


def test_closing_ends_at_once_when_the_worker_ends() -> None:
    """
    A connection the protocol asked to close is lost as soon as its worker
    ends, whatever bytes were still held (they are not delivered).
    """
    for phase in (Phase.AWAITING_PRODUCER, Phase.CLOSING, Phase.ABORTING):
        for event in (Event.WORKER_ENDED, Event.WORKER_ENDED_HOLDING):
            assert run([event], phase) is Phase.LOST


def test_a_failed_handshake_is_lost() -> None:
    """A handshake that fails (or is aborted) ends the connection."""
    assert run([Event.HANDSHAKE_FAILED]) is Phase.LOST
    assert run([Event.ABORT, Event.HANDSHAKE_FAILED]) is Phase.LOST


def test_repeated_calls_change_nothing() -> None:
    """A second ``loseConnection`` or ``abortConnection`` is a no-op."""
    closing = run([Event.HANDSHAKE_DONE, Event.LOSE, Event.PRODUCER_GONE])
    assert run([Event.LOSE, Event.PRODUCER_GONE], closing) is Phase.CLOSING
    assert next_phase(Phase.ABORTING, Event.ABORT) is None
    assert next_phase(Phase.LOST, Event.ABORT) is None


def test_requests_escalate() -> None:
    """The worker is asked to abort over a close, never the other way."""
    assert max(Request.ABORT, Request.CLOSE) is Request.ABORT
    assert max(Request.CLOSE, Request.NOTHING) is Request.CLOSE
