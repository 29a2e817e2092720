"""Unit tests for ``loop_until``, ``retry_failure`` and ``backoff``."""

from itertools import islice

from eliot.testing import capture_logging
from twisted.internet.defer import fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from flocker.common import LoopExceeded, backoff, loop_until, retry_failure
from flocker.common._logging import RETRYING


class LoopUntilTests(SynchronousTestCase):
    """Tests for ``loop_until``."""

    def test_immediate(self):
        """A predicate that is true at once fires the result with its value."""
        d = loop_until(Clock(), lambda: "done")
        self.assertEqual(self.successResultOf(d), "done")

    def test_waits_between_calls(self):
        """The predicate is called again after each delay until it is true."""
        clock = Clock()
        results = iter([False, None, 7])
        d = loop_until(clock, lambda: next(results), steps=[1, 2, 3])
        self.assertNoResult(d)
        clock.advance(1)
        self.assertNoResult(d)
        clock.advance(2)
        self.assertEqual(self.successResultOf(d), 7)

    def test_deferred_predicate(self):
        """A predicate returning a Deferred is waited on."""
        d = loop_until(Clock(), lambda: succeed(True))
        self.assertIs(self.successResultOf(d), True)

    def test_coroutine_predicate(self):
        """A predicate returning a coroutine is awaited."""

        async def ready():
            return "yes"

        self.assertEqual(self.successResultOf(loop_until(Clock(), ready)), "yes")

    def test_exceeded(self):
        """When the steps run out, the result fails with LoopExceeded."""
        clock = Clock()
        d = loop_until(clock, lambda: False, steps=[1, 1])
        clock.pump([1, 1])
        self.failureResultOf(d, LoopExceeded)

    def test_default_polls_forever(self):
        """Without steps the predicate is polled every 0.1 s indefinitely."""
        clock = Clock()
        calls = []
        d = loop_until(clock, lambda: calls.append(1) or len(calls) > 100)
        clock.pump([0.1] * 100)
        self.assertEqual(self.successResultOf(d), True)

    def test_predicate_error(self):
        """An exception from the predicate fails the result at once."""
        d = loop_until(Clock(), lambda: 1 / 0)
        self.failureResultOf(d, ZeroDivisionError)


class RetryFailureTests(SynchronousTestCase):
    """Tests for ``retry_failure``."""

    def test_success(self):
        """A first-time success is the result."""
        self.assertEqual(self.successResultOf(retry_failure(Clock(), lambda: 3)), 3)

    @capture_logging(None)
    def test_retries_expected(self, logger):
        """An expected failure is retried after the next delay, and logged."""
        clock = Clock()
        outcomes = iter([fail(OSError("busy")), succeed("ok")])
        d = retry_failure(clock, lambda: next(outcomes), expected=(OSError,))
        self.assertNoResult(d)
        clock.advance(0.1)
        self.assertEqual(self.successResultOf(d), "ok")
        [message] = [m for m in logger.messages if m["message_type"] == RETRYING.message_type]
        self.assertEqual((message["attempt"], message["error"]), (1, "busy"))

    def test_unexpected_not_retried(self):
        """A failure of another type is passed on without retrying."""
        calls = []

        def broken():
            calls.append(1)
            raise KeyError("x")

        d = retry_failure(Clock(), broken, expected=(OSError,))
        self.failureResultOf(d, KeyError)
        self.assertEqual(len(calls), 1)

    def test_should_retry_refuses(self):
        """``should_retry`` returning false passes the failure on at once."""
        d = retry_failure(
            Clock(),
            lambda: fail(OSError("gone")),
            should_retry=lambda e: "busy" in str(e),
        )
        self.failureResultOf(d, OSError)

    def test_gives_up(self):
        """When the delays run out the last failure is passed on."""
        clock = Clock()
        errors = iter([ValueError(1), ValueError(2), ValueError(3)])

        def failing():
            raise next(errors)

        d = retry_failure(clock, failing, steps=[1, 1])
        clock.advance(1)
        clock.advance(1)
        self.assertEqual(str(self.failureResultOf(d, ValueError).value), "3")


class BackoffTests(SynchronousTestCase):
    """Tests for ``backoff``."""

    def test_grows_to_maximum(self):
        """Delays double from the initial value and stop at the maximum."""
        self.assertEqual(
            list(islice(backoff(1, 2, 5), 5)), [1, 2, 4, 5, 5]
        )
