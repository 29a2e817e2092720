"""Waiting and retrying on the reactor, with an injected clock.

``loop_until`` polls a condition; ``retry_failure`` calls an operation again
after failures that are expected to pass (zfs-fuse's "dataset is busy", a
connection refused while a daemon starts).  Both take the delays between
tries as an iterable, so callers choose constant, exponential or bounded
schedules and unit tests drive them with ``twisted.internet.task.Clock``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from itertools import repeat
from typing import TypeVar

from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater

from ._logging import RETRYING

T = TypeVar("T")


class LoopExceeded(Exception):
    """A condition did not become true before the delays ran out."""

    def __init__(self, predicate: object, last_result: object) -> None:
        """Record what was waited for and what it last returned."""
        self.predicate = predicate
        self.last_result = last_result
        super().__init__(f"{predicate!r} never became true (last: {last_result!r})")


def backoff(
    initial: float = 0.1, factor: float = 2.0, maximum: float = 30.0
) -> Iterator[float]:
    """
    Endless exponentially growing delays: ``initial``, ``initial * factor``…

    :param initial: The first delay in seconds.
    :param factor: What each delay is multiplied by for the next.
    :param maximum: No delay is longer than this.
    """
    delay = initial
    while True:
        yield min(delay, maximum)
        delay = min(delay * factor, maximum)


def loop_until(
    reactor: IReactorTime,
    predicate: Callable[[], T | Awaitable[T] | Deferred[T]],
    steps: Iterable[float] = (),
) -> Deferred[T]:
    """
    Call ``predicate`` until it returns a true value, waiting between calls.

    :param reactor: The clock to wait on.
    :param predicate: A callable returning a value, a ``Deferred`` or a
        coroutine; the loop ends when the result is true.
    :param steps: Delays in seconds between calls.  Empty (the default)
        means every 0.1 seconds forever.  When a finite iterable runs out
        the result fails with :class:`LoopExceeded`.

    :return: A ``Deferred`` firing with the first true result.  An exception
        from ``predicate`` fails it at once.
    """
    delays: Iterator[float] = iter(steps) if steps != () else repeat(0.1)

    async def loop() -> T:
        while True:
            result = await _call(predicate)
            if result:
                return result
            try:
                delay = next(delays)
            except StopIteration:
                raise LoopExceeded(predicate, result) from None
            await deferLater(reactor, delay, lambda: None)

    return ensureDeferred(loop())


def retry_failure(
    reactor: IReactorTime,
    function: Callable[[], T | Awaitable[T] | Deferred[T]],
    expected: tuple[type[BaseException], ...] = (Exception,),
    steps: Iterable[float] = (0.1, 0.2, 0.4, 0.8, 1.6),
    should_retry: Callable[[BaseException], bool] = lambda error: True,
) -> Deferred[T]:
    """
    Call ``function`` again after failures that are expected to pass.

    :param reactor: The clock to wait on.
    :param function: The operation; it may return a value, a ``Deferred``
        or a coroutine.
    :param expected: Exception types worth another try; any other failure
        is passed on at once.
    :param steps: The delays before each further try; when they run out
        the last failure is passed on.
    :param should_retry: A further test of an expected exception (e.g. that
        the standard error of a failed command says "busy").

    :return: A ``Deferred`` firing with the first success.  Each retry is
        logged as a ``flocker:common:retry:retrying`` message.
    """
    delays = iter(steps)

    async def attempt() -> T:
        tries = 0
        while True:
            tries += 1
            try:
                return await _call(function)
            except expected as error:
                if not should_retry(error):
                    raise
                delay = next(delays, None)
                if delay is None:
                    raise
                RETRYING.log(attempt=tries, error=str(error), delay=delay)
                await deferLater(reactor, delay, lambda: None)

    return ensureDeferred(attempt())


def _call(function: Callable[[], T | Awaitable[T] | Deferred[T]]) -> Deferred[T]:
    """Call ``function``; a Deferred of what it returns, a coroutine awaited."""
    result = function()
    if isinstance(result, Deferred):
        return result
    if isinstance(result, Awaitable):
        return ensureDeferred(result)  # type: ignore[arg-type]
    return succeed(result)
