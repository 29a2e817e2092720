"""Unit tests for ``loop_until``, ``retry_failure`` and ``backoff``."""

from itertools import islice
from typing import NoReturn

from eliot import MemoryLogger
from eliot.testing import capture_logging
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from flocker.common import LoopExceeded, backoff, loop_until, retry_failure
from flocker.common._logging import RETRYING


class LoopUntilTests(SynchronousTestCase):
    """Tests for ``loop_until``."""

    def test_immediate(self) -> None:
        """A predicate that is true at once fires the result with its value."""
        d = loop_until(Clock(), lambda: "done")
        self.assertEqual(self.successResultOf(d), "done")

    def test_waits_between_calls(self) -> None:
        """The predicate is called again after each delay until it is true."""
        clock = Clock()
        results = iter([False, None, 7])
        d = loop_until(clock, lambda: next(results), steps=[1, 2, 3])
        self.assertNoResult(d)
        clock.advance(1)
        self.assertNoResult(d)
        clock.advance(2)
        self.assertEqual(self.successResultOf(d), 7)

    def test_deferred_predicate(self) -> None:
        """A predicate returning a Deferred is waited on."""
        d: Deferred[bool] = loop_until(Clock(), lambda: succeed(True))
        self.assertIs(self.successResultOf(d), True)

    def test_coroutine_predicate(self) -> None:
        """A predicate returning a coroutine is awaited."""

        async def ready() -> str:
            return "yes"

        d: Deferred[str] = loop_until(Clock(), ready)
        self.assertEqual(self.successResultOf(d), "yes")

    def test_exceeded(self) -> None:
        """When the steps run out, the result fails with LoopExceeded."""
        clock = Clock()
        d = loop_until(clock, lambda: False, steps=[1, 1])
        clock.pump([1, 1])
        self.failureResultOf(d, LoopExceeded)

    def test_default_polls_forever(self) -> None:
        """Without steps the predicate is polled every 0.1 s indefinitely."""
        clock = Clock()
        calls: list[int] = []

        def predicate() -> bool:
            calls.append(1)
            return len(calls) > 100

        d = loop_until(clock, predicate)
        clock.pump([0.1] * 100)
        self.assertEqual(self.successResultOf(d), True)

    def test_predicate_error(self) -> None:
        """An exception from the predicate fails the result at once."""
        d = loop_until(Clock(), lambda: 1 / 0)
        self.failureResultOf(d, ZeroDivisionError)


class RetryFailureTests(SynchronousTestCase):
    """Tests for ``retry_failure``."""

    def test_success(self) -> None:
        """A first-time success is the result."""
        self.assertEqual(self.successResultOf(retry_failure(Clock(), lambda: 3)), 3)

    @capture_logging(None)  # type: ignore[untyped-decorator]  # eliot is untyped
    def test_retries_expected(self, logger: MemoryLogger) -> None:
        """An expected failure is retried after the next delay, and logged."""
        clock = Clock()
        outcomes = iter([fail(OSError("busy")), succeed("ok")])
        d = retry_failure(clock, lambda: next(outcomes), expected=(OSError,))
        self.assertNoResult(d)
        clock.advance(0.1)
        self.assertEqual(self.successResultOf(d), "ok")
        [message] = [
            m for m in logger.messages if m["message_type"] == RETRYING.message_type
        ]
        self.assertEqual((message["attempt"], message["error"]), (1, "busy"))

    def test_unexpected_not_retried(self) -> None:
        """A failure of another type is passed on without retrying."""
        calls = []

        def broken() -> None:
            calls.append(1)
            raise KeyError("x")

        d = retry_failure(Clock(), broken, expected=(OSError,))
        self.failureResultOf(d, KeyError)
        self.assertEqual(len(calls), 1)

    def test_should_retry_refuses(self) -> None:
        """``should_retry`` returning false passes the failure on at once."""
        d = retry_failure(
            Clock(),
            lambda: fail(OSError("gone")),
            should_retry=lambda e: "busy" in str(e),
        )
        self.failureResultOf(d, OSError)

    def test_gives_up(self) -> None:
        """When the delays run out the last failure is passed on."""
        clock = Clock()
        errors = iter([ValueError(1), ValueError(2), ValueError(3)])

        def failing() -> NoReturn:
            raise next(errors)

        d: Deferred[None] = retry_failure(clock, failing, steps=[1, 1])
        clock.advance(1)
        clock.advance(1)
        self.assertEqual(str(self.failureResultOf(d, ValueError).value), "3")


class BackoffTests(SynchronousTestCase):
    """Tests for ``backoff``."""

    def test_grows_to_maximum(self) -> None:
        """Delays double from the initial value and stop at the maximum."""
        self.assertEqual(list(islice(backoff(1, 2, 5), 5)), [1, 2, 4, 5, 5])
