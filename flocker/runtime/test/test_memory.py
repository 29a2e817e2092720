"""The in-memory runtime passes the IContainerRuntime contract, and its test controls work."""

from __future__ import annotations

import uuid
from typing import Any

from pyrsistent import pset
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from .. import (
    FRESH_CONNECTION,
    ContainerSpec,
    MemoryEngine,
    MemoryRuntime,
    PortInUse,
    PublishedPort,
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


def _web(name: str, *ports: PublishedPort) -> ContainerSpec:
    """A long-running container called ``name`` publishing ``ports``."""
    return ContainerSpec(name=name, image=IMAGE, command=LONG_RUNNING, ports=ports)


def _ephemeral(internal_port: int = 80, host_ip: str = "127.0.0.11") -> PublishedPort:
    return PublishedPort(internal_port=internal_port, external_port=0, host_ip=host_ip)


class MemoryPortTests(SynchronousTestCase):
    """The fake engine chooses ephemeral ports from a counter, as Docker would."""

    def _ports(self, runtime: MemoryRuntime, name: str) -> dict[int, int]:
        return dict(self.successResultOf(runtime.inspect(name)).ports)

    def test_counter(self) -> None:
        """Ephemeral ports are handed out in turn from 49152, one per published port."""
        runtime = _runtime()
        runtime.create(_web("one", _ephemeral(80), _ephemeral(81)))
        runtime.create(_web("two", _ephemeral(80)))
        self.assertEqual(self._ports(runtime, "one"), {80: 49152, 81: 49153})
        self.assertEqual(self._ports(runtime, "two"), {80: 49154})

    def test_skips_ports_in_use(self) -> None:
        """
        A port a running container holds (at an overlapping address, on
        any node of the engine) is skipped; one held at another address is not.
        """
        one, two = memory_runtimes([str(uuid.uuid4()), str(uuid.uuid4())], [IMAGE])
        held = PublishedPort(internal_port=80, external_port=49152, host_ip="0.0.0.0")
        elsewhere = PublishedPort(
            internal_port=80, external_port=49154, host_ip="127.0.0.99"
        )
        one.create(_web("holder", held, elsewhere))
        two.create(_web("web", _ephemeral(80), _ephemeral(81)))
        self.assertEqual(self._ports(two, "web"), {80: 49153, 81: 49154})

    def test_new_ports_each_start(self) -> None:
        """
        A start, or a restart by the restart policy, chooses new ports; a
        stopped or exited container publishes none and frees its ports.
        """
        runtime = _runtime()
        runtime.create(_web("web", _ephemeral()).set(restart_policy=RestartAlways()))
        self.assertEqual(self._ports(runtime, "web"), {80: 49152})
        runtime.exit("web", 1)
        restarted = self.successResultOf(runtime.inspect("web"))
        self.assertEqual(
            (restarted.restart_count, dict(restarted.ports)), (1, {80: 49153})
        )
        runtime.stop("web")
        self.assertEqual(self._ports(runtime, "web"), {})
        runtime.start("web")
        self.assertEqual(self._ports(runtime, "web"), {80: 49154})
        freed = PublishedPort(
            internal_port=80, external_port=49153, host_ip="127.0.0.11"
        )
        runtime.create(_web("fixed", freed))
        self.assertTrue(self.successResultOf(runtime.inspect("fixed")).running)

    def test_exhausted(self) -> None:
        """
        With every ephemeral port held, a new container is refused with
        PortInUse and not kept; a removed container's port is free again.
        """
        runtime = MemoryRuntime(
            str(uuid.uuid4()),
            MemoryEngine(images={IMAGE}, ephemeral_ports=(50000, 50001)),
        )
        runtime.create(_web("one", _ephemeral()))
        runtime.create(_web("two", _ephemeral()))
        failure = self.failureResultOf(
            runtime.create(_web("three", _ephemeral())), PortInUse
        )
        self.assertEqual(failure.value.name, "three")
        self.assertEqual(
            self.successResultOf(runtime.list_containers()),
            pset([_web("one", _ephemeral()), _web("two", _ephemeral())]),
        )
        runtime.remove("one")
        runtime.create(_web("three", _ephemeral()))
        self.assertEqual(self._ports(runtime, "three"), {80: 50000})

    def test_start_without_a_free_port(self) -> None:
        """
        A stopped container cannot start while every ephemeral port is held
        (by another node's container here): PortInUse, and it stays stopped.
        """
        engine = MemoryEngine(images={IMAGE}, ephemeral_ports=(50000, 50000))
        runtime = MemoryRuntime(str(uuid.uuid4()), engine)
        other = MemoryRuntime(str(uuid.uuid4()), engine)
        runtime.create(_web("web", _ephemeral()))
        runtime.stop("web")
        other.create(_web("taker", _ephemeral()))
        self.failureResultOf(runtime.start("web"), PortInUse)
        state = self.successResultOf(runtime.inspect("web"))
        self.assertEqual((state.running, dict(state.ports)), (False, {}))
        self.assertEqual(self._ports(other, "taker"), {80: 50000})


def test_logged(eliot_logger: Any) -> None:
    """Each operation is an eliot action flocker:runtime:<verb>."""
    runtime = _runtime()
    runtime.create(_spec(RestartNever()))
    runtime.stop("app")
    runtime.remove("app")
    types = [m.get("action_type") for m in eliot_logger.messages]
    for verb in ("create", "stop", "remove"):
        assert f"flocker:runtime:{verb}" in types


def test_a_connection_closed_after_a_restart_closes_no_other() -> None:
    """
    A stop closes the fake's connections to a container; closing one of
    them afterwards, once the container runs again with a new connection,
    leaves the new one open.
    """
    runtime = MemoryRuntime(str(uuid.uuid4()), MemoryEngine(images={"flocker-test/busybox:1"}))
    _now(runtime.create(ContainerSpec(name="web", image="flocker-test/busybox:1")))
    old = runtime.open_connection("web")
    _now(runtime.stop("web"))
    assert _now(runtime.connections("web")) == 0
    _now(runtime.start("web"))
    runtime.open_connection("web")
    old()
    assert _now(runtime.connections("web")) == 1


def _now(deferred: Any) -> Any:
    """The result a fake runtime's Deferred already has."""
    results: list[Any] = []
    deferred.addBoth(results.append)
    [value] = results
    if isinstance(value, Exception) or hasattr(value, "raiseException"):
        value.raiseException()
    return value


def test_a_silent_connection_counts_while_fresh_by_the_runtimes_clock() -> None:
    """
    A silent connection counts until FRESH_CONNECTION seconds of the
    runtime's clock have passed since it was opened, then no longer; a
    request sent on it makes it count again until it is closed.
    """
    clock = Clock()
    runtime = _runtime(clock)
    _now(runtime.create(ContainerSpec(name="web", image=IMAGE)))
    request, close = runtime.open_silent_connection("web")
    assert _now(runtime.connections("web")) == 1
    clock.advance(FRESH_CONNECTION * 0.99)
    assert _now(runtime.connections("web")) == 1
    clock.advance(FRESH_CONNECTION * 0.01)
    assert _now(runtime.connections("web")) == 0
    request()
    clock.advance(FRESH_CONNECTION * 100)
    assert _now(runtime.connections("web")) == 1
    close()
    assert _now(runtime.connections("web")) == 0


def test_a_request_on_a_connection_closed_by_a_stop_opens_nothing() -> None:
    """
    Sending a request on a silent connection that a stop closed leaves it
    closed: once the container runs again it has no connection.
    """
    runtime = _runtime(Clock())
    _now(runtime.create(ContainerSpec(name="web", image=IMAGE)))
    request, _ = runtime.open_silent_connection("web")
    _now(runtime.stop("web"))
    _now(runtime.start("web"))
    request()
    assert _now(runtime.connections("web")) == 0
