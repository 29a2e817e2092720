"""The in-memory runtime passes the IContainerRuntime contract, and its test controls work."""

from __future__ import annotations

import uuid
from typing import Any

from pyrsistent import pset
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from .. import (
    ContainerSpec,
    MemoryEngine,
    MemoryRuntime,
    RestartAlways,
    RestartNever,
    RestartOnFailure,
    UnknownContainer,
    memory_runtimes,
)
from ..testtools import LONG_RUNNING, make_icontainerruntime_tests, memory_harness

_Contract: Any = make_icontainerruntime_tests(memory_harness)


class TestMemoryRuntime(_Contract):  # type: ignore[misc]  # made at runtime
    """MemoryRuntime against the contract."""


IMAGE = "flocker-test/busybox:1"


def _runtime(clock: Clock | None = None) -> MemoryRuntime:
    return MemoryRuntime(str(uuid.uuid4()), MemoryEngine(images={IMAGE}), clock)


def _spec(policy: Any) -> ContainerSpec:
    return ContainerSpec(
        name="app", image=IMAGE, command=LONG_RUNNING, restart_policy=policy
    )


class MemoryExitTests(SynchronousTestCase):
    """MemoryRuntime.exit applies the restart policy as Docker does."""

    def test_never(self) -> None:
        """With RestartNever the container stays exited with the code."""
        runtime = _runtime()
        runtime.create(_spec(RestartNever()))
        runtime.exit("app", 7)
        state = self.successResultOf(runtime.inspect("app"))
        self.assertEqual((state.running, state.exit_code), (False, 7))

    def test_always(self) -> None:
        """With RestartAlways even a clean exit restarts, counting restarts."""
        clock = Clock()
        runtime = _runtime(clock)
        runtime.create(_spec(RestartAlways()))
        clock.advance(5)
        runtime.exit("app", 0)
        runtime.exit("app", 1)
        state = self.successResultOf(runtime.inspect("app"))
        self.assertEqual(
            (state.running, state.restart_count, state.started_at), (True, 2, 5.0)
        )

    def test_on_failure_limit(self) -> None:
        """RestartOnFailure restarts failures up to its limit, then stays exited."""
        runtime = _runtime()
        runtime.create(_spec(RestartOnFailure(maximum_retry_count=2)))
        runtime.exit("app", 3)
        runtime.exit("app", 3)
        self.assertTrue(self.successResultOf(runtime.inspect("app")).running)
        runtime.exit("app", 3)
        state = self.successResultOf(runtime.inspect("app"))
        self.assertEqual(
            (state.running, state.exit_code, state.restart_count), (False, 3, 2)
        )

    def test_on_failure_clean_exit(self) -> None:
        """RestartOnFailure does not restart a container that exits 0."""
        runtime = _runtime()
        runtime.create(_spec(RestartOnFailure()))
        runtime.exit("app", 0)
        self.assertFalse(self.successResultOf(runtime.inspect("app")).running)

    def test_exit_not_running(self) -> None:
        """Exiting a stopped container is a test error (ValueError)."""
        runtime = _runtime()
        runtime.create(_spec(RestartNever()))
        runtime.stop("app")
        self.assertRaises(ValueError, runtime.exit, "app", 1)
        self.assertRaises(UnknownContainer, runtime.exit, "other", 1)

    def test_deferreds_fired(self) -> None:
        """Every Deferred the fake returns has already fired."""
        runtime = _runtime()
        self.successResultOf(runtime.create(_spec(RestartNever())))
        self.assertEqual(
            self.successResultOf(runtime.list_containers()),
            pset([_spec(RestartNever())]),
        )
        self.failureResultOf(runtime.inspect("missing"), UnknownContainer)

    def test_memory_runtimes(self) -> None:
        """memory_runtimes makes nodes sharing one engine and its images."""
        one, two = memory_runtimes([str(uuid.uuid4()), str(uuid.uuid4())], [IMAGE])
        self.assertIs(one.engine, two.engine)
        self.assertTrue(self.successResultOf(two.image_exists(IMAGE)))


def test_logged(eliot_logger: Any) -> None:
    """Each operation is an eliot action flocker:runtime:<verb>."""
    runtime = _runtime()
    runtime.create(_spec(RestartNever()))
    runtime.stop("app")
    runtime.remove("app")
    types = [m.get("action_type") for m in eliot_logger.messages]
    for verb in ("create", "stop", "remove"):
        assert f"flocker:runtime:{verb}" in types
