"""
The container agent's health probes: is each application's instance ready?

The container deployer hands `HealthProbes` the instances it found on the
node (`Instance`: the application's `HealthCheck`, where its checked port
is published, which configured revision the container runs, whether it
runs) at every convergence pass, and reports `HealthProbes.states` as the
node's ``health``.  Each instance is probed on its own schedule, on the
reactor, never blocking and never overlapping its previous probe:

* an ``http`` check GETs ``http://host:port/path`` and is healthy when the
  answer is a 2xx or 3xx status, read to its end, within the timeout;
  a ``tcp`` check connects within the timeout and hangs up;
* an instance is *starting* until a probe succeeds, then *healthy*;
* failures of probes begun in the instance's first ``start_period``
  seconds (since the agent first saw it) do not count; after that,
  ``retries`` failures in a row make it *unhealthy*; a success makes it
  *healthy* again;
* a container that is not running fails its probe ("container is not
  running") without any connection, so that a new revision that keeps
  crashing becomes unhealthy once its start period is over;
* an application without a check (it publishes no port) is healthy while
  its container runs, and probed for that at the default interval;
* another container (a replaced instance: a new `Instance.key`) starts
  over at *starting*; the same container keeps its status when its
  revision or its check changes (an update of the check alone is probed
  with the new check at once, and never takes a serving instance out of
  its routes), and an older instance (of no revision) keeps the check it
  was started with.

The first probe of an instance runs on the next reactor turn, then one
``interval`` after the start of the previous one (at once after it, if it
took longer); while the instance is *starting* in its start period, every
`STARTING_INTERVAL` seconds at most, since connections to it are held
until it is found healthy.  When an application's status changes, a
``flocker:node:container:health`` message is logged and ``changed`` (the
agent's poke) is called, so that the new status is reported at once;
otherwise probes only update what the next report carries (the failures
in a row, the last failure's reason).
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Hashable, Mapping
from typing import Any
from urllib.parse import quote

import attr
from pyrsistent import PMap, pmap
from twisted.application.service import Service
from twisted.internet import error as net
from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import (
    Agent,
    HTTPConnectionPool,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse

from flocker.common import TCPTimeReactor
from flocker.control import ApplicationHealth, HealthCheck

from ._logging import HEALTH_CHANGED

__all__ = [
    "DRAIN_GRACE",
    "DRAIN_POLL",
    "DRAIN_POLL_FIRST",
    "DRAIN_SETTLE",
    "NOT_RUNNING",
    "STARTING_INTERVAL",
    "HealthProbes",
    "Instance",
    "NetworkProbe",
    "Probe",
]

#: The reason a probe of a container that does not run fails with.
NOT_RUNNING = "container is not running"

#: A probe: checks ``host:port`` as the `HealthCheck` says; fires with
#: ``None`` when it passed, else with what it saw (``"HTTP 503"``,
#: ``"connection refused"``…).
Probe = Callable[[HealthCheck, str, int], Deferred[str | None]]

#: The timing of an instance without a check: `HealthCheck`'s defaults.
_DEFAULT_TIMING = HealthCheck(kind="tcp", port=1)


#: Seconds between probes of an instance that is still starting, at most.
STARTING_INTERVAL = 0.05

#: Seconds a stopping instance is given, at least, for every router to
#: hear that it is stopping (none sends it a new connection after that;
#: those already open are waited for as its container counts them).  The
#: agent also waits for the cluster state to echo its *stopping* report,
#: which the control service pushes to every router at once, so this only
#: covers the pushes arriving a little apart.
DRAIN_SETTLE = 0.03

#: Seconds between pokes of the agent after `DRAIN_SETTLE`, while an
#: instance's open connections finish, to see whether it is done: half
#: the time it has drained so far, at least `DRAIN_POLL_FIRST` (most
#: requests in flight end within a few tens of milliseconds, and the
#: clients of a moving application wait for the poll that sees it) and
#: at most `DRAIN_POLL`.
DRAIN_POLL_FIRST = 0.02
DRAIN_POLL = 0.1

#: Seconds a stopping instance's open connections are given to finish (its
#: grace period) before it is stopped all the same.
DRAIN_GRACE = 10.0


def _port_for(instance: Instance, attribute: Any, port: int | None) -> None:
    if instance.check is not None and port is None:
        raise ValueError("an instance with a health check has the port it is probed on")


@attr.s(frozen=True)
class Instance:
    """
    An application's container on the node, as the health probes see it.

    :ivar check: How it is probed, or ``None``: running is ready.
    :ivar host: The node's address, where its ports are published.
    :ivar port: The external port, on ``host``, of the internal port the
        check probes (``None`` without a check).
    :ivar revision: The configured revision the container runs, or ``None``
        when it is not the configured one (an older instance).
    :ivar running: Whether the container runs.
    :ivar key: Tells this container from one that replaces it (its spec):
        a new key starts the probes over at *starting*.
    """

    check: HealthCheck | None = attr.ib()
    host: str = attr.ib()
    port: int | None = attr.ib(validator=_port_for)
    revision: int | None = attr.ib()
    running: bool = attr.ib()
    key: Hashable = attr.ib()


@attr.s(eq=False)
class _Watch:
    """One instance's probes: what it is, what was found, what is due."""

    name: str = attr.ib()
    instance: Instance = attr.ib()
    #: When the agent first saw the instance (its start period begins).
    first_seen: float = attr.ib()
    health: ApplicationHealth = attr.ib()
    #: The next probe, while none runs.
    timer: IDelayedCall | None = attr.ib(default=None)
    #: The running probe.
    probing: Deferred[str | None] | None = attr.ib(default=None)
    #: Pokes the agent while the instance drains (``stopping``).
    draining: IDelayedCall | None = attr.ib(default=None)

    @property
    def timing(self) -> HealthCheck:
        """Whence the interval, retries and start period come."""
        return self.instance.check or _DEFAULT_TIMING

    def cancel(self) -> None:
        """Stop probing: cancel the due probe, or the one running."""
        for timer in (self.timer, self.draining):
            if timer is not None and timer.active():
                timer.cancel()
        self.timer = self.draining = None
        probing, self.probing = self.probing, None
        if probing is not None:
            probing.cancel()


def _log(health: ApplicationHealth) -> None:
    HEALTH_CHANGED.log(
        name=health.application,
        status=health.status,
        revision=health.revision,
        reason=health.reason,
    )


@attr.s(eq=False)
class HealthProbes(Service):
    """
    The node's health probes: one schedule per application instance.

    A service only so that stopping the agent cancels the probes.

    :ivar clock: Schedules the probes and dates the statuses (wall clock).
    :ivar probe: Checks one instance (`NetworkProbe` in the agent).
    :ivar changed: Called when an application's status changed.
    :ivar reported: Called first, when an instance's status changed, with
        its name and its health before and after (the agent reports the
        change at once, if its last report showed the health before).
    """

    clock: IReactorTime = attr.ib()
    probe: Probe = attr.ib()
    changed: Callable[[], None] = attr.ib(default=lambda: None)
    reported: Callable[[str, ApplicationHealth, ApplicationHealth], None] = attr.ib(
        default=lambda name, before, after: None
    )
    _watches: dict[str, _Watch] = attr.ib(factory=dict, init=False)

    def observe(self, instances: Mapping[str, Instance]) -> None:
        """
        The instances to watch now, by application name: a new one (or one
        replaced by another key) starts at *starting*; the names not given
        any more stop being probed and are forgotten.
        """
        for name in set(self._watches) - set(instances):
            self._watches.pop(name).cancel()
        for name, instance in instances.items():
            watch = self._watches.get(name)
            if watch is not None and watch.instance.key == instance.key:
                # The same container: its status stands.  An older instance
                # (no revision: the configuration wants another container)
                # keeps the check it was started with; the configured one
                # is probed with its new check from the next probe on.
                if instance.revision is None:
                    instance = attr.evolve(
                        instance, check=watch.instance.check, port=watch.instance.port
                    )
                if instance.check != watch.instance.check and watch.timer is not None:
                    watch.timer.cancel()  # probe with the new check at once
                    watch.timer = self.clock.callLater(0, self._probe, watch)
                watch.instance = instance
                if watch.health.revision != instance.revision:
                    watch.health = watch.health.set(revision=instance.revision)
                continue
            if watch is not None:
                del self._watches[name]  # before its probe is cancelled
                watch.cancel()
            now = float(self.clock.seconds())
            watch = _Watch(
                name=name,
                instance=instance,
                first_seen=now,
                health=ApplicationHealth(
                    application=name, status="starting", revision=instance.revision, since=now
                ),
            )
            self._watches[name] = watch
            _log(watch.health)
            watch.timer = self.clock.callLater(0, self._probe, watch)

    def drain(self, name: str) -> None:
        """
        The application's instance here is about to be stopped: probe it no
        more and report it *stopping*, so that the routers send it no new
        connection, until it is replaced or `resume` is called.  Meanwhile
        ``changed`` is called after `DRAIN_SETTLE` seconds, then every
        `DRAIN_POLL_FIRST` to `DRAIN_POLL` seconds (for at most
        `DRAIN_GRACE`), so that the agent
        sees when it may stop it.
        """
        watch = self._watches.get(name)
        if watch is None or watch.health.status == "stopping":
            return
        now = float(self.clock.seconds())
        # Stopping first: a cancelled probe's outcome must not count.
        before, watch.health = watch.health, watch.health.set(status="stopping", since=now)
        watch.cancel()
        _log(watch.health)
        watch.draining = self.clock.callLater(DRAIN_SETTLE, self._drained_yet, watch)
        self.reported(name, before, watch.health)
        self.changed()

    def _drained_yet(self, watch: _Watch) -> None:
        """Poke the agent while an instance drains, until its grace is over."""
        watch.draining = None
        if not self._current(watch) or watch.health.status != "stopping":
            return
        if not watch.instance.running:
            return  # stopped (halted, its removal to come): nothing left to drain
        drained_for = float(self.clock.seconds()) - watch.health.since
        if drained_for < DRAIN_GRACE:
            poll = min(DRAIN_POLL, max(DRAIN_POLL_FIRST, drained_for / 2))
            watch.draining = self.clock.callLater(poll, self._drained_yet, watch)
        self.changed()

    def resume(self, name: str) -> None:
        """
        A stopping instance is wanted after all (a move was called off):
        probe it again, from *starting*.
        """
        watch = self._watches.get(name)
        if watch is None or watch.health.status != "stopping":
            return
        del self._watches[name]
        watch.cancel()
        self.observe({**{n: w.instance for n, w in self._watches.items()}, name: watch.instance})

    def states(self) -> PMap[str, ApplicationHealth]:
        """Application name → its instance's health, for those watched."""
        return pmap({name: watch.health for name, watch in self._watches.items()})

    def stopService(self) -> None:  # noqa: N802 (Twisted's name)
        """Cancel every probe and forget every instance."""
        super().stopService()  # type: ignore[no-untyped-call]  # Twisted's
        self.observe({})

    def _current(self, watch: _Watch) -> bool:
        """Whether ``watch`` is still the one of its application."""
        return self._watches.get(watch.name) is watch

    def _probe(self, watch: _Watch) -> None:
        """Probe an instance now; its outcome schedules the next probe."""
        watch.timer = None
        started = float(self.clock.seconds())
        instance = watch.instance
        if not instance.running:
            self._outcome(watch, started, NOT_RUNNING)
            return
        if instance.check is None:
            self._outcome(watch, started, None)
            return
        assert instance.port is not None
        probing: Deferred[str | None] = maybeDeferred(
            self.probe, instance.check, instance.host, instance.port
        )
        watch.probing = probing
        probing.addBoth(self._settled, watch, started)

    def _settled(self, result: str | None | Failure, watch: _Watch, started: float) -> None:
        """A probe ended: its outcome counts unless it was cancelled."""
        if not self._current(watch) or watch.health.status == "stopping":
            return  # the instance is not watched any more, or drains
        watch.probing = None
        reason: str | None = result if not isinstance(result, Failure) else None
        if isinstance(result, Failure):
            # Probes describe their failures; this one did not know how.
            reason = _describe(result.value, None) if result.value else "probe failed"
        self._outcome(watch, started, reason)

    def _outcome(self, watch: _Watch, started: float, reason: str | None) -> None:
        """One probe's outcome: the instance's new health; the next probe."""
        now = float(self.clock.seconds())
        timing = watch.timing
        before = watch.health
        if reason is None:
            after = before.set(status="healthy", failures=0, reason=None)
        elif started - watch.first_seen < timing.start_period:
            after = before.set(reason=reason)  # does not count yet
        else:
            failures = before.failures + 1
            status = "unhealthy" if failures >= timing.retries else before.status
            after = before.set(status=status, failures=failures, reason=reason)
        if after.status != before.status:
            after = after.set(since=now)
        watch.health = after
        interval = timing.interval
        if after.status == "starting" and now - watch.first_seen < timing.start_period:
            # Routing holds connections until the instance is healthy: say
            # so as soon as it is (failures count only at the interval).
            interval = min(interval, STARTING_INTERVAL)
        delay = max(0.0, interval - (now - started))
        watch.timer = self.clock.callLater(delay, self._probe, watch)
        if after.status != before.status:
            _log(after)
            self.reported(watch.name, before, after)
            self.changed()


class _Hangup(Protocol):
    """Hangs up as soon as the probe's connection is made."""

    def connectionMade(self) -> None:  # noqa: N802 (Twisted's name)
        """Connecting was the test: hang up."""
        assert self.transport is not None
        self.transport.loseConnection()


class _Discard(Protocol):
    """Reads a response's body to its end, keeping none of it."""

    def __init__(self) -> None:
        self.done: Deferred[None] = Deferred(self._abort)

    def _abort(self, _: Deferred[None]) -> None:
        """A timed-out probe: close the connection."""
        if self.transport is not None:
            self.transport.stopProducing()  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted's name)
        """Discard it."""

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        """The body ended (or the connection was lost: the status counts)."""
        if not self.done.called:
            self.done.callback(None)


_ERRNO_REASONS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset",
    errno.EHOSTUNREACH: "no route to host",
    errno.ENETUNREACH: "network unreachable",
}


def _describe(error: BaseException, timeout: float | None) -> str:
    """What a failed probe saw, in a few words."""
    if isinstance(error, net.ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, net.TimeoutError | CancelledError) and timeout is not None:
        return f"timed out after {timeout} s"
    if isinstance(error, net.NoRouteError):
        return "no route to host"
    if isinstance(error, ResponseNeverReceived | ResponseFailed):
        causes = [r.value for r in error.reasons]
        if any(isinstance(c, net.ConnectionDone | net.ConnectionLost) for c in causes):
            return "connection closed without an HTTP response"
        return "bad HTTP response: " + "; ".join(_describe(c, timeout) for c in causes)
    if isinstance(error, net.ConnectError) and isinstance(error.osError, int):
        known = _ERRNO_REASONS.get(error.osError)
        if known is not None:
            return known
    if isinstance(error, OSError) and error.errno in _ERRNO_REASONS:
        return _ERRNO_REASONS[error.errno]
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _within(
    reactor: TCPTimeReactor, timeout: float, probing: Deferred[str | None]
) -> Deferred[str | None]:
    """
    ``probing``, cancelled after ``timeout`` seconds: then it fires with
    "timed out after ``timeout`` s" whatever the cancelled probe saw.
    """
    timed_out = False

    def cancel() -> None:
        nonlocal timed_out
        timed_out = True
        probing.cancel()

    timer = reactor.callLater(timeout, cancel)

    def done(result: str | None | Failure) -> str | None | Failure:
        if timed_out:
            return f"timed out after {timeout} s"
        timer.cancel()
        return result

    return probing.addBoth(done)


@attr.s(frozen=True)
class NetworkProbe:
    """
    The agent's `Probe`: an HTTP GET or a TCP connect over the network.

    :ivar reactor: Connects, and times the probes out.
    """

    reactor: TCPTimeReactor = attr.ib()

    def __call__(self, check: HealthCheck, host: str, port: int) -> Deferred[str | None]:
        """Probe ``host:port`` as ``check`` says, within its timeout."""
        if check.kind == "http":
            probing = Deferred.fromCoroutine(self._http(check, host, port))
        else:
            probing = Deferred.fromCoroutine(self._tcp(check, host, port))
        return _within(self.reactor, check.timeout, probing)

    async def _tcp(self, check: HealthCheck, host: str, port: int) -> str | None:
        endpoint = TCP4ClientEndpoint(self.reactor, host, port, timeout=check.timeout)
        try:
            await endpoint.connect(Factory.forProtocol(_Hangup))
        except Exception as error:
            return _describe(error, check.timeout)
        return None

    async def _http(self, check: HealthCheck, host: str, port: int) -> str | None:
        agent = Agent(
            self.reactor,
            connectTimeout=check.timeout,
            pool=HTTPConnectionPool(self.reactor, persistent=False),
        )
        where = f"[{host}]" if ":" in host else host
        path = quote(check.path or "/", safe="/?#[]@!$&'()*+,;=:%~")  # UTF-8 escapes
        try:
            response: IResponse = await agent.request(
                b"GET",
                f"http://{where}:{port}{path}".encode("ascii"),
                Headers({b"User-Agent": [b"flocker-health-check"]}),
            )
            body = _Discard()
            response.deliverBody(body)
            await body.done
        except Exception as error:
            return _describe(error, check.timeout)
        if 200 <= response.code < 400:
            return None
        return f"HTTP {response.code}"
