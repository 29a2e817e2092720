"""
Tests for ``flocker.node._health``: the container agent's health probes.

The state machine (start period, retries, recovery, replaced instances,
scheduling) runs on a `Clock` with a probe the test answers; the network
probes (HTTP and TCP) run on the real reactor against real servers on
127.0.0.1.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from eliot import MemoryLogger
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock, deferLater
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from flocker.control import ApplicationHealth, HealthCheck
from flocker.node._health import NOT_RUNNING, HealthProbes, Instance, NetworkProbe

HTTP = HealthCheck(kind="http", port=80, path="/healthz", start_period=10.0)
TCP = HealthCheck(kind="tcp", port=5432, interval=2.0, retries=2, start_period=0.0)
HOST = "127.0.0.9"


def instance(
    check: HealthCheck | None = HTTP,
    key: str = "web-1",
    revision: int | None = 3,
    running: bool = True,
) -> Instance:
    """An instance of ``web`` published on port 8080 of ``HOST``."""
    return Instance(
        check=check,
        host=HOST,
        port=None if check is None else 8080,
        revision=revision,
        running=running,
        key=key,
    )


class AnsweredProbe:
    """A probe the test answers: each call waits for `answer`."""

    def __init__(self) -> None:
        self.calls: list[tuple[HealthCheck, str, int]] = []
        self.pending: list[Deferred[str | None]] = []
        self.cancelled = 0

    def __call__(self, check: HealthCheck, host: str, port: int) -> Deferred[str | None]:
        """Note the call; the answer comes from `answer`."""
        self.calls.append((check, host, port))

        def cancel(probing: Deferred[str | None]) -> None:
            self.cancelled += 1
            self.pending.remove(probing)

        probing: Deferred[str | None] = Deferred(cancel)
        self.pending.append(probing)
        return probing

    def answer(self, reason: str | None) -> None:
        """Answer the oldest probe: ``None`` passed, else what it saw."""
        self.pending.pop(0).callback(reason)


class Changes:
    """Counts the calls of the probes' ``changed``."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        """One more."""
        self.count += 1


def probes(clock: Clock, probe: Any) -> tuple[HealthProbes, Changes]:
    """Health probes on ``clock`` with ``probe``, and their change counter."""
    changes = Changes()
    return HealthProbes(clock, probe, changes), changes


def web(health: HealthProbes) -> ApplicationHealth:
    """The health of ``web``."""
    return health.states()["web"]


def probe_once(clock: Clock, probe: AnsweredProbe, reason: str | None, interval: float) -> None:
    """Let the next probe start, ``interval`` seconds on, and answer it."""
    clock.advance(interval)
    probe.answer(reason)


# -- the state machine, on a Clock -------------------------------------------


def test_new_instance_starts_and_is_probed_next_turn() -> None:
    """
    A new instance is *starting* since the moment it is seen, of its
    revision; the first probe runs on the next reactor turn, at the
    instance's host and published port.
    """
    clock, probe = Clock(), AnsweredProbe()
    clock.advance(1000)
    health, changes = probes(clock, probe)
    health.observe({"web": instance()})
    assert health.states() == {
        "web": ApplicationHealth(application="web", status="starting", revision=3, since=1000.0)
    }
    assert probe.calls == []
    clock.advance(0)
    assert probe.calls == [(HTTP, HOST, 8080)]
    assert changes.count == 0


def test_success_makes_healthy() -> None:
    """A passing probe makes a starting instance healthy, and says so once."""
    clock, probe = Clock(), AnsweredProbe()
    health, changes = probes(clock, probe)
    health.observe({"web": instance()})
    clock.advance(0)
    clock.advance(0.5)
    probe.answer(None)
    assert web(health) == ApplicationHealth(
        application="web", status="healthy", revision=3, since=0.5
    )
    assert changes.count == 1
    for _ in range(5):
        probe_once(clock, probe, None, HTTP.interval)
    assert web(health).since == 0.5
    assert changes.count == 1


def test_failures_in_start_period_do_not_count() -> None:
    """
    Probes begun within the start period fail without counting, even when
    they end after it: the instance stays *starting* with what the last
    one saw.
    """
    clock, probe = Clock(), AnsweredProbe()
    health, changes = probes(clock, probe)
    health.observe({"web": instance()})
    clock.advance(0)
    probe.answer("HTTP 503")
    clock.advance(5.0)  # the second probe begins at 5 s...
    clock.advance(7.0)
    probe.answer("connection refused")  # ...and fails at 12 s
    assert web(health).status == "starting"
    assert web(health).failures == 0
    assert web(health).reason == "connection refused"
    clock.advance(0)  # the third begins at once, after the start period
    probe.answer("HTTP 503")
    assert web(health).failures == 1
    assert web(health).reason == "HTTP 503"
    assert changes.count == 0


def test_retries_failures_after_start_period_make_unhealthy() -> None:
    """
    After the start period, ``retries`` failures in a row make the
    instance unhealthy, at the moment of the last one, counted.
    """
    clock, probe = Clock(), AnsweredProbe()
    health, changes = probes(clock, probe)
    health.observe({"web": instance()})
    clock.advance(0)
    probe.answer("HTTP 503")
    probe_once(clock, probe, "HTTP 503", 5.0)
    probe_once(clock, probe, "HTTP 503", 5.0)  # begun at 10 s: counts
    probe_once(clock, probe, "HTTP 503", 5.0)
    assert web(health).status == "starting"
    assert web(health).failures == 2
    assert changes.count == 0
    probe_once(clock, probe, "HTTP 500", 5.0)
    assert web(health) == ApplicationHealth(
        application="web",
        status="unhealthy",
        revision=3,
        reason="HTTP 500",
        failures=3,
        since=20.0,
    )
    assert changes.count == 1
    probe_once(clock, probe, "HTTP 500", 5.0)
    assert web(health).failures == 4
    assert web(health).since == 20.0
    assert changes.count == 1


def test_healthy_tolerates_fewer_than_retries_failures() -> None:
    """
    A healthy instance stays healthy through fewer than ``retries``
    failures in a row; a success starts the count again.
    """
    clock, probe = Clock(), AnsweredProbe()
    health, changes = probes(clock, probe)
    health.observe({"web": instance(check=TCP)})
    clock.advance(0)
    probe.answer(None)
    probe_once(clock, probe, "timed out after 2.0 s", 2.0)
    assert web(health).status == "healthy"
    assert web(health).failures == 1
    assert web(health).reason == "timed out after 2.0 s"
    probe_once(clock, probe, None, 2.0)
    probe_once(clock, probe, "connection refused", 2.0)
    assert web(health).status == "healthy"
    assert changes.count == 1
    probe_once(clock, probe, "connection refused", 2.0)
    assert web(health).status == "unhealthy"
    assert changes.count == 2


def test_unhealthy_recovers_on_success() -> None:
    """A success makes an unhealthy instance healthy again, failures forgotten."""
    clock, probe = Clock(), AnsweredProbe()
    health, changes = probes(clock, probe)
    health.observe({"web": instance(check=TCP)})
    clock.advance(0)
    probe.answer("connection refused")
    probe_once(clock, probe, "connection refused", 2.0)
    assert web(health).status == "unhealthy"
    probe_once(clock, probe, None, 2.0)
    assert web(health) == ApplicationHealth(
        application="web", status="healthy", revision=3, since=4.0
    )
    assert changes.count == 2


def test_replaced_instance_starts_over() -> None:
    """
    Another container of the application (a new key) starts over at
    *starting*, with its own start period; the old one's probe running
    then is cancelled and its answer does not count.
    """
    clock, probe = Clock(), AnsweredProbe()
    health, changes = probes(clock, probe)
    health.observe({"web": instance(check=TCP)})
    clock.advance(0)
    probe.answer(None)
    clock.advance(2.0)
    assert len(probe.pending) == 1
    health.observe({"web": instance(check=TCP.set(start_period=5.0), key="web-2", revision=4)})
    assert probe.cancelled == 1
    assert web(health) == ApplicationHealth(
        application="web", status="starting", revision=4, since=2.0
    )
    clock.advance(0)
    probe.answer("connection refused")
    probe_once(clock, probe, "connection refused", 2.0)
    assert web(health).status == "starting"  # within the new start period
    assert changes.count == 1


def test_check_change_keeps_the_status_and_probes_with_the_new_check_at_once() -> None:
    """
    A different check for the same container (an update of the check
    alone) keeps the instance's status, so it stays routed to, and the
    next probe, with the new check, runs at once.
    """
    clock, probe = Clock(), AnsweredProbe()
    health, _ = probes(clock, probe)
    health.observe({"web": instance(check=TCP)})
    clock.advance(0)
    probe.answer(None)
    clock.advance(1.0)
    health.observe({"web": instance(check=HTTP, revision=4)})
    assert web(health).status == "healthy"
    assert web(health).revision == 4
    clock.advance(0)
    assert probe.calls[-1] == (HTTP, HOST, 8080)


def test_an_older_instance_keeps_the_check_it_was_started_with() -> None:
    """
    An instance that stopped being the configured one (no revision) is
    probed with the check it had, not the new configuration's.
    """
    clock, probe = Clock(), AnsweredProbe()
    health, _ = probes(clock, probe)
    health.observe({"web": instance(check=TCP)})
    clock.advance(0)
    probe.answer(None)
    health.observe({"web": instance(check=HTTP, revision=None)})
    clock.advance(TCP.interval)
    assert probe.calls[-1] == (TCP, HOST, 8080)
    assert web(health).status == "healthy"


def test_revision_alone_changes_only_the_report() -> None:
    """
    The same container checked the same way but of another revision
    (it became, or stopped being, the configured one) keeps its status
    and its schedule; only the revision reported changes.
    """
    clock, probe = Clock(), AnsweredProbe()
    health, changes = probes(clock, probe)
    health.observe({"web": instance(check=TCP, revision=None)})
    clock.advance(0)
    probe.answer(None)
    health.observe({"web": instance(check=TCP, revision=7)})
    assert web(health) == ApplicationHealth(
        application="web", status="healthy", revision=7, since=0.0
    )
    assert len(probe.calls) == 1
    clock.advance(2.0)
    assert len(probe.calls) == 2
    assert changes.count == 1


def test_not_running_fails_without_probing() -> None:
    """
    A container that does not run fails its probes with "container is
    not running", without a connection; after its start period it
    becomes unhealthy.
    """
    clock, probe = Clock(), AnsweredProbe()
    health, changes = probes(clock, probe)
    health.observe({"web": instance(running=False)})
    clock.advance(0)
    assert web(health).reason == NOT_RUNNING
    assert web(health).status == "starting"
    clock.pump([5.0] * 4)  # 5, 10 (counts), 15, 20 s
    assert probe.calls == []
    assert web(health).status == "unhealthy"
    assert web(health).failures == 3
    assert changes.count == 1


def test_crashed_container_is_probed_again_once_running() -> None:
    """
    A running instance seen stopped fails its next probes; seen running
    again, it is probed over the network again.
    """
    clock, probe = Clock(), AnsweredProbe()
    health, _ = probes(clock, probe)
    health.observe({"web": instance(check=TCP)})
    clock.advance(0)
    probe.answer(None)
    health.observe({"web": instance(check=TCP, running=False)})
    clock.pump([2.0, 2.0])
    assert web(health).status == "unhealthy"
    assert web(health).reason == NOT_RUNNING
    health.observe({"web": instance(check=TCP)})
    clock.advance(2.0)
    assert len(probe.calls) == 2
    probe.answer(None)
    assert web(health).status == "healthy"


def test_no_check_is_healthy_while_running() -> None:
    """
    An instance without a check is healthy while it runs, never probed
    over the network; stopped, it fails at the default interval.
    """
    clock, probe = Clock(), AnsweredProbe()
    health, changes = probes(clock, probe)
    health.observe({"quiet": instance(check=None)})
    clock.advance(0)
    assert health.states()["quiet"].status == "healthy"
    assert changes.count == 1
    clock.advance(60)
    health.observe({"quiet": instance(check=None, running=False)})
    clock.pump([5.0, 5.0, 5.0])
    assert health.states()["quiet"].status == "unhealthy"
    assert health.states()["quiet"].reason == NOT_RUNNING
    assert probe.calls == []


def test_dropped_names_stop_being_probed() -> None:
    """
    An application no longer given is forgotten: its running probe is
    cancelled (its answer ignored) and none is scheduled any more.
    """
    clock, probe = Clock(), AnsweredProbe()
    health, changes = probes(clock, probe)
    health.observe({"web": instance(), "db": instance(check=TCP, key="db-1")})
    clock.advance(0)
    assert len(probe.calls) == 2
    health.observe({"db": instance(check=TCP, key="db-1")})
    assert probe.cancelled == 1
    assert set(health.states()) == {"db"}
    probe.answer(None)  # db's: web's was cancelled
    clock.pump([5.0] * 10)
    assert [c[0] for c in probe.calls].count(HTTP) == 1
    assert changes.count == 1  # db became healthy; web's end is no change


def test_dropped_with_timer_pending_is_not_probed() -> None:
    """An application dropped between probes is never probed again."""
    clock, probe = Clock(), AnsweredProbe()
    health, _ = probes(clock, probe)
    health.observe({"web": instance()})
    health.observe({})
    clock.pump([0.0, 5.0, 5.0])
    assert probe.calls == []
    assert clock.getDelayedCalls() == []


def test_probes_never_overlap() -> None:
    """
    The next probe starts one interval after the previous one started,
    or at once after it ended if it took longer: never while it runs.
    """
    clock, probe = Clock(), AnsweredProbe()
    health, _ = probes(clock, probe)
    health.observe({"web": instance()})
    clock.advance(0)
    clock.pump([5.0] * 6)
    assert len(probe.calls) == 1
    probe.answer(None)
    clock.advance(0)
    assert len(probe.calls) == 2
    clock.advance(1.0)
    probe.answer(None)
    clock.advance(3.9)
    assert len(probe.calls) == 2
    clock.advance(0.1)
    assert len(probe.calls) == 3


def test_changed_only_on_status_change() -> None:
    """
    ``changed`` is called for each change of status, never for probes
    that leave it as it was.
    """
    clock, probe = Clock(), AnsweredProbe()
    health, changes = probes(clock, probe)
    health.observe({"web": instance(check=TCP)})
    clock.advance(0)
    answers = [None, None, "x", None, "x", "x", "x", "x", None, None]
    statuses = []
    for answer in answers:
        probe.answer(answer)
        statuses.append(web(health).status)
        clock.advance(2.0)
    assert statuses == [
        "healthy", "healthy", "healthy", "healthy", "healthy",
        "unhealthy", "unhealthy", "unhealthy", "healthy", "healthy",
    ]
    assert changes.count == 3


def test_reported_is_told_each_status_change_with_the_health_before_and_after() -> None:
    """
    ``reported`` is called, before ``changed``, with the instance's name and
    its health before and after each change of status (found healthy,
    unhealthy, drained), never for a new instance nor for probes that
    leave the status as it was.
    """
    clock, probe = Clock(), AnsweredProbe()
    told: list[tuple[str, ApplicationHealth, ApplicationHealth, int]] = []
    changes = Changes()
    health = HealthProbes(
        clock, probe, changes, lambda *args: told.append((*args, changes.count))
    )
    health.observe({"web": instance(check=TCP)})
    assert told == []
    starting = web(health)
    clock.advance(0)
    probe.answer(None)
    healthy = web(health)
    assert told == [("web", starting, healthy, 0)] and changes.count == 1
    for answer in [None, "x"]:
        clock.advance(2.0)
        probe.answer(answer)
    assert len(told) == 1  # one failure of two retries: still healthy
    clock.advance(2.0)
    probe.answer("x")
    unhealthy = web(health)
    assert told[1:] == [("web", healthy.set(failures=1, reason="x"), unhealthy, 1)]
    health.drain("web")
    assert told[2:] == [("web", unhealthy, web(health), 2)]
    assert web(health).status == "stopping"


def test_failing_probe_counts_as_failure() -> None:
    """A probe that fails with an exception counts as a failed probe, described."""
    clock = Clock()

    def broken(check: HealthCheck, host: str, port: int) -> Deferred[str | None]:
        raise OSError("no such device")

    health, _ = probes(clock, broken)
    health.observe({"web": instance(check=TCP)})
    clock.pump([0.0, 2.0])
    assert web(health).status == "unhealthy"
    assert web(health).reason == "OSError: no such device"


def test_status_changes_are_logged(eliot_logger: MemoryLogger) -> None:
    """
    Each status change — a new instance starting included — logs one
    ``flocker:node:container:health`` message; probes that change no
    status log nothing.
    """
    clock = Clock()
    answers = iter([None, None, "HTTP 503", "HTTP 503", None])
    health, _ = probes(clock, lambda check, host, port: succeed(next(answers)))
    health.observe({"web": instance(check=TCP)})
    clock.pump([0.0, 2.0, 2.0, 2.0, 2.0])
    logged = [
        (m["name"], m["status"], m["revision"], m["reason"])
        for m in eliot_logger.messages
        if m.get("message_type") == "flocker:node:container:health"
    ]
    assert logged == [
        ("web", "starting", 3, None),
        ("web", "healthy", 3, None),
        ("web", "unhealthy", 3, "HTTP 503"),
        ("web", "healthy", 3, None),
    ]


def test_stopping_cancels_every_probe() -> None:
    """Stopping the service cancels the probes and forgets the instances."""
    clock, probe = Clock(), AnsweredProbe()
    health, _ = probes(clock, probe)
    health.startService()
    health.observe({"web": instance(), "db": instance(check=TCP, key="db-1")})
    clock.advance(0)
    health.observe({"web": instance(), "db": instance(check=TCP, key="db-1", running=False)})
    health.stopService()
    assert probe.cancelled == 2
    assert health.states() == {}
    assert clock.getDelayedCalls() == []


def test_instance_with_check_needs_port() -> None:
    """An instance to probe over the network says on which port."""
    with pytest.raises(ValueError, match="port"):
        Instance(check=TCP, host=HOST, port=None, revision=0, running=True, key="k")


# -- the network probes, on the real reactor ---------------------------------


class _Status(Resource):
    """Answers ``/status/N`` with status N and a body, ``/redirect`` with a 302."""

    isLeaf = True

    def render_GET(self, request: Any) -> bytes:  # noqa: N802 (Twisted's name)
        """The status the path names."""
        path = request.path.decode()
        if path == "/redirect":
            request.redirect(b"/status/200")
            return b""
        request.setResponseCode(int(path.rsplit("/", 1)[1]))
        return b"x" * 100_000


class _Record(Resource):
    """Answers 200, noting the URIs asked for."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted's
        self.uris: list[bytes] = []

    def render_GET(self, request: Any) -> bytes:  # noqa: N802 (Twisted's name)
        """Note the URI."""
        self.uris.append(request.uri)
        return b"ok"


class _Silent(Resource):
    """
    Accepts requests and never answers them (or, ``streaming``, answers
    200 and never ends the body); notes when their connections are lost.
    """

    isLeaf = True

    def __init__(self, streaming: bool = False) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted's
        self.streaming = streaming
        self.lost: list[Deferred[None]] = []

    def render_GET(self, request: Any) -> Any:  # noqa: N802 (Twisted's name)
        """Never answer, or never end."""
        lost: Deferred[None] = Deferred()
        request.notifyFinish().addErrback(lambda _: lost.callback(None))
        self.lost.append(lost)
        if self.streaming:
            request.write(b"partial")
        return NOT_DONE_YET


class _HangUp(Protocol):
    """Closes each connection without a word."""

    def connectionMade(self) -> None:  # noqa: N802 (Twisted's name)
        """Hang up."""
        assert self.transport is not None
        self.transport.loseConnection()


def free_port() -> int:
    """A TCP port nothing listens on (for now) on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def listen() -> Iterator[Any]:
    """Listens on 127.0.0.1 with a factory; returns the port number."""
    ports: list[Any] = []

    def start(factory: Any) -> int:
        port: Any = reactor.listenTCP(0, factory, interface="127.0.0.1")
        ports.append(port)
        number: int = port.getHost().port
        return number

    yield start
    for port in ports:
        pytest_twisted.blockon(port.stopListening())


def http(path: str, timeout: float = 2.0) -> HealthCheck:
    """An HTTP check of ``path``."""
    return HealthCheck(kind="http", port=80, path=path, timeout=timeout)


def network() -> NetworkProbe:
    """The agent's probe, on the real reactor."""
    return NetworkProbe(reactor)


@pytest.mark.functional
@pytest_twisted.ensureDeferred
async def test_http_success_statuses(listen: Any) -> None:
    """An HTTP probe passes on a 2xx status, and a 3xx one (not followed)."""
    port = listen(Site(_Status()))
    assert await network()(http("/status/200"), "127.0.0.1", port) is None
    assert await network()(http("/status/204"), "127.0.0.1", port) is None
    assert await network()(http("/redirect"), "127.0.0.1", port) is None


@pytest.mark.functional
@pytest_twisted.ensureDeferred
async def test_http_error_statuses(listen: Any) -> None:
    """An HTTP probe answered with a 4xx or 5xx status fails with that status."""
    port = listen(Site(_Status()))
    assert await network()(http("/status/503"), "127.0.0.1", port) == "HTTP 503"
    assert await network()(http("/status/404"), "127.0.0.1", port) == "HTTP 404"


@pytest.mark.functional
@pytest_twisted.ensureDeferred
async def test_http_path_sent_escaped(listen: Any) -> None:
    """An HTTP probe asks for its path, non-ASCII characters escaped (UTF-8)."""
    record = _Record()
    port = listen(Site(record))
    assert await network()(http("/ready?deep=1"), "127.0.0.1", port) is None
    assert await network()(http("/caf\u00e9"), "127.0.0.1", port) is None
    assert record.uris == [b"/ready?deep=1", b"/caf%C3%A9"]


@pytest.mark.functional
@pytest_twisted.ensureDeferred
async def test_http_refused() -> None:
    """An HTTP probe of a port nothing listens on fails: connection refused."""
    assert await network()(http("/"), "127.0.0.1", free_port()) == "connection refused"


@pytest.mark.functional
@pytest_twisted.ensureDeferred
async def test_http_timeout(listen: Any) -> None:
    """
    An HTTP probe of a server that accepts and never answers fails after
    the check's timeout, and its connection is closed.
    """
    silent = _Silent()
    port = listen(Site(silent))
    started = time.monotonic()
    reason = await network()(http("/", timeout=0.3), "127.0.0.1", port)
    assert reason == "timed out after 0.3 s"
    assert 0.25 <= time.monotonic() - started < 2.0
    [lost] = silent.lost
    await lost.addTimeout(2.0, reactor)


@pytest.mark.functional
@pytest_twisted.ensureDeferred
async def test_http_endless_body_times_out(listen: Any) -> None:
    """
    An HTTP probe answered 200 with a body that never ends fails after the
    timeout (the answer is read to its end), and its connection is closed.
    """
    streaming = _Silent(streaming=True)
    port = listen(Site(streaming))
    reason = await network()(http("/", timeout=0.3), "127.0.0.1", port)
    assert reason == "timed out after 0.3 s"
    [lost] = streaming.lost
    await lost.addTimeout(2.0, reactor)


@pytest.mark.functional
@pytest_twisted.ensureDeferred
async def test_http_hang_up(listen: Any) -> None:
    """An HTTP probe of a server that hangs up without answering fails, said so."""
    port = listen(Factory.forProtocol(_HangUp))
    reason = await network()(http("/"), "127.0.0.1", port)
    assert reason == "connection closed without an HTTP response"


@pytest.mark.functional
@pytest_twisted.ensureDeferred
async def test_tcp_probe(listen: Any) -> None:
    """
    A TCP probe passes when a connection is accepted (and hangs up), and
    fails with "connection refused" when nothing listens.
    """
    port = listen(Factory.forProtocol(Protocol))
    assert await network()(TCP, "127.0.0.1", port) is None
    assert await network()(TCP, "127.0.0.1", free_port()) == "connection refused"


async def _until(health: HealthProbes, status: str, limit: float = 5.0) -> float:
    """Wait for ``web``'s status; the seconds it took."""
    started = time.monotonic()
    while web(health).status != status:
        assert time.monotonic() - started < limit, web(health)
        await deferLater(reactor, 0.02, lambda: None)
    return time.monotonic() - started


@pytest.mark.functional
@pytest_twisted.ensureDeferred
async def test_probes_over_the_network(listen: Any) -> None:
    """
    On the real reactor, an instance answering 200 becomes healthy; one
    answering 503 stays starting through its start period, then becomes
    unhealthy after ``retries`` failures.
    """
    port = listen(Site(_Status()))
    changes = Changes()
    health = HealthProbes(reactor, network(), changes)
    quick = HealthCheck(kind="http", port=80, path="/status/200", interval=0.05, timeout=1.0)
    health.observe({"web": Instance(quick, "127.0.0.1", port, 0, True, "ok")})
    await _until(health, "healthy")
    failing = quick.set(path="/status/503", start_period=0.4, retries=3)
    replaced = time.monotonic()
    health.observe({"web": Instance(failing, "127.0.0.1", port, 1, True, "bad")})
    await deferLater(reactor, 0.2, lambda: None)
    assert web(health).status == "starting"
    assert web(health).reason == "HTTP 503"
    assert web(health).failures == 0
    await _until(health, "unhealthy")
    # The third counted failure began an interval after the second,
    # which began two after the first, in the start period's end.
    assert time.monotonic() - replaced >= 0.4 + 2 * 0.05 - 0.02
    assert web(health).failures == 3
    assert web(health).revision == 1
    assert changes.count == 2
    health.stopService()


def test_starting_instance_is_probed_often_until_its_start_period_ends() -> None:
    """
    While an instance is starting within its start period, a failed probe
    is followed by the next after `STARTING_INTERVAL` rather than the
    check's interval (connections wait for it to be found healthy); once
    healthy, or past the start period, probes run at the interval.
    """
    from flocker.node._health import STARTING_INTERVAL

    clock, probe = Clock(), AnsweredProbe()
    health, _ = probes(clock, probe)
    health.observe({"web": instance()})
    clock.advance(0)
    probe.answer("connection refused")
    clock.advance(STARTING_INTERVAL)
    assert len(probe.calls) == 2
    probe.answer(None)
    assert web(health).status == "healthy"
    clock.advance(HTTP.interval - 0.001)
    assert len(probe.calls) == 2
    clock.advance(0.001)
    assert len(probe.calls) == 3

    late, late_probe = Clock(), AnsweredProbe()
    slow, _ = probes(late, late_probe)
    slow.observe({"web": instance()})
    late.advance(0)
    late_probe.answer("connection refused")
    while late.seconds() < HTTP.start_period:
        late.advance(STARTING_INTERVAL)
        late_probe.answer("connection refused")
    calls = len(late_probe.calls)
    late.advance(HTTP.interval - 0.01)
    assert len(late_probe.calls) == calls
    late.advance(0.02)
    assert len(late_probe.calls) == calls + 1


def test_draining_instance_is_stopping_unprobed_and_pokes_until_its_grace_ends() -> None:
    """
    A drained instance is reported *stopping* at once (a status change:
    logged, ``changed`` called), is probed no more (a probe in flight is
    cancelled and does not count), and ``changed`` is called after
    `DRAIN_SETTLE` seconds, then every `DRAIN_POLL_FIRST` seconds at
    first, less often later (every `DRAIN_POLL` seconds at most) until
    its grace is over; the same instance
    observed again stays stopping, and `resume` starts it over.
    """
    from flocker.node._health import (
        DRAIN_GRACE,
        DRAIN_POLL,
        DRAIN_POLL_FIRST,
        DRAIN_SETTLE,
    )

    clock, probe = Clock(), AnsweredProbe()
    health, changes = probes(clock, probe)
    health.observe({"web": instance()})
    clock.advance(0)
    probe.answer(None)
    clock.advance(HTTP.interval)
    assert len(probe.pending) == 1
    before = changes.count
    health.drain("web")
    assert web(health).status == "stopping" and probe.cancelled == 1
    assert changes.count == before + 1
    health.observe({"web": instance()})
    assert web(health).status == "stopping"
    calls = len(probe.calls)
    clock.advance(DRAIN_SETTLE)
    assert changes.count == before + 2
    clock.advance(DRAIN_POLL_FIRST)
    assert changes.count == before + 3  # soon after the settle: polled often
    ticks = int(DRAIN_GRACE / DRAIN_POLL)
    for _ in range(ticks + 5):
        clock.advance(DRAIN_POLL)
    assert len(probe.calls) == calls
    # Every DRAIN_POLL at most once the drain is long; a few more early on.
    assert before + 1 + ticks - 1 <= changes.count <= before + 1 + ticks + 10
    settled = changes.count
    clock.advance(DRAIN_POLL * 10)
    assert changes.count == settled  # the grace is over: no more pokes
    health.resume("web")
    assert web(health).status == "starting"
    clock.advance(0)
    assert len(probe.calls) == calls + 1


def test_a_stopped_draining_instance_pokes_the_agent_no_more() -> None:
    """
    Once a draining instance no longer runs (halted, its container still
    there until removed), the agent is no longer poked to see whether it
    drained: there is nothing left to wait for.
    """
    from flocker.node._health import DRAIN_POLL, DRAIN_SETTLE

    clock, probe = Clock(), AnsweredProbe()
    health, changes = probes(clock, probe)
    health.observe({"web": instance()})
    clock.advance(0)
    probe.answer(None)
    health.drain("web")
    clock.advance(DRAIN_SETTLE)
    health.observe({"web": instance(running=False)})
    before = changes.count
    for _ in range(20):
        clock.advance(DRAIN_POLL)
    assert changes.count <= before + 1  # at most the poll already scheduled
