"""The convergence loop that drives an agent, as an Automat state machine.

An agent's loop sleeps until the control service pushes a configuration,
then iterates: discover local state, report it if it changed since the last
report, calculate changes, run them.  A pushed change wakes it at once; a
timer polls local state as a fallback.  A failed iteration is retried with
exponential backoff; a successful one that changed something is followed at
once by another, one that found nothing to do sleeps for the poll interval.
Iterations never overlap, so no two changes for one dataset are in flight.

States::

    idle ──cluster_updated──► converging ◄──wakeup── sleeping
      ▲                         │   ▲                   ▲
      └──────disconnected───────┤   └──cluster_updated──┤
                                └──iteration_done───────┘

An update that arrives while converging is kept and used by the next
iteration, which starts as soon as the current one ends.
"""

# Automat's MethodicalMachine and its state/input/output decorators are
# unannotated, so to mypy the machine's methods are untyped whatever their
# annotations say: this module alone may use those untyped decorators.
# mypy: disallow-untyped-decorators=False

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic

import attr
from automat import MethodicalMachine
from eliot.twisted import DeferredContext
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from flocker.control import Deployment, DeploymentState, NodeState

from ._deploy import Deployer, LocalStateT, NoOp, StateChange, run_state_change
from ._logging import CONVERGE_ITERATION, LOOP_SLEEP, REPORT_FAILED
from ._progress import CONVERGE, DISCOVER, ConvergenceProgress

#: How often a loop with nothing to do looks at local state again (seconds).
DEFAULT_POLL_INTERVAL = 1.0

#: The pause after a pass that changed something, before the next pass
#: (a pushed update starts one at once anyway).
AFTER_CHANGE = 0.05

#: Backoff after failed iterations: first delay, factor, and the longest.
BACKOFF = (0.1, 2.0, 10.0)

StateReporter = Callable[[NodeState], Deferred[Any] | None]


def report_failed(failure: Failure) -> None:
    """Log a state report that did not get through (the next pass reports again)."""
    REPORT_FAILED.log(reason=f"{type(failure.value).__name__}: {failure.value}")


def deleted_on(configuration: Deployment, node_uuid: str) -> frozenset[str]:
    """The ids of the datasets ``configuration`` marks deleted on a node."""
    node = configuration.nodes.get(node_uuid)
    if node is None:
        return frozenset()
    return frozenset(
        dataset_id
        for dataset_id, manifestation in node.manifestations.items()
        if manifestation.dataset.deleted
    )


@attr.s(eq=False)
class ConvergenceLoop(Generic[LocalStateT]):
    """
    Converge one node with one deployer, driven by pushed cluster updates.

    :ivar reactor: The clock for polling and backoff.
    :ivar deployer: Discovers state and calculates changes.
    :ivar report_state: Called with the node's ``NodeState`` whenever it
        differs from the last report that succeeded.
    :ivar poll_interval: Seconds between iterations when nothing changes.
    :ivar progress: Records each pass's outcome and adds the last good
        pass's time and the failing changes to every report (the dataset
        agent's loop); ``None``: reports carry only what discovery found.
    """

    _machine = MethodicalMachine()  # type: ignore[no-untyped-call]  # Automat's

    reactor: IReactorTime = attr.ib()
    deployer: Deployer[LocalStateT] = attr.ib()
    report_state: StateReporter = attr.ib()
    poll_interval: float = attr.ib(default=DEFAULT_POLL_INTERVAL)
    progress: ConvergenceProgress | None = attr.ib(default=None)
    #: What of a pushed configuration and cluster state the deployer's
    #: passes depend on; a push whose view equals that of the last pass
    #: begun is only kept (the next pass, poked or timed, uses it), not
    #: converged to at once.  ``None``: every push starts a pass.
    view: Callable[[Deployment, DeploymentState], object] | None = attr.ib(default=None)

    configuration: Deployment | None = attr.ib(default=None, init=False)
    cluster_state: DeploymentState | None = attr.ib(default=None, init=False)
    last_reported: NodeState | None = attr.ib(default=None, init=False)
    #: The last state sent (a pass's report, or a patch of it: `report_change`),
    #: acknowledged or not yet.
    last_sent: NodeState | None = attr.ib(default=None, init=False)
    #: The changes reported at once, numbered, that a pass whose discovery
    #: began before them may not see yet (see `report_change`).
    _changes: list[tuple[int, Callable[[NodeState], NodeState | None]]] = attr.ib(
        factory=list, init=False
    )
    _changes_sent: int = attr.ib(default=0, init=False)
    failures: int = attr.ib(default=0, init=False)
    iterations: int = attr.ib(default=0, init=False)
    _timer: IDelayedCall | None = attr.ib(default=None, init=False)
    _current: Deferred[None] | None = attr.ib(default=None, init=False)

    # -- states --------------------------------------------------------------

    @_machine.state(initial=True)
    def idle(self) -> None:
        """No configuration to converge to (never received, or disconnected)."""

    @_machine.state()
    def sleeping(self) -> None:
        """Waiting for the poll timer or a pushed update."""

    @_machine.state()
    def converging(self) -> None:
        """An iteration is running."""

    @_machine.state()
    def converging_then_stop(self) -> None:
        """An iteration is running; afterwards the loop goes idle."""

    # -- inputs --------------------------------------------------------------

    def cluster_updated(
        self, configuration: Deployment, cluster_state: DeploymentState
    ) -> None:
        """
        The control service pushed configuration and cluster state: a pass
        converges to it at once, unless nothing the passes depend on
        changed since the last pass began (see `view`).
        """
        if (
            self.view is not None
            and self._viewed is not None
            and self.view(configuration, cluster_state) == self._viewed
        ):
            self._kept(configuration, cluster_state)
        else:
            self._updated(configuration, cluster_state)

    @_machine.input()
    def _updated(self, configuration: Deployment, cluster_state: DeploymentState) -> None:
        """A push to converge to."""

    @_machine.input()
    def _kept(self, configuration: Deployment, cluster_state: DeploymentState) -> None:
        """A push that changes nothing the passes depend on: only kept."""

    @_machine.input()
    def wakeup(self) -> None:
        """The poll or backoff timer fired."""

    @_machine.input()
    def iteration_done(self) -> None:
        """The running iteration finished (successfully or not)."""

    @_machine.input()
    def disconnected(self) -> None:
        """The connection to the control service was lost."""

    @_machine.input()
    def poke(self) -> None:
        """Something local changed (e.g. a dataset arrived): look again soon."""

    # -- outputs -------------------------------------------------------------

    @_machine.output()
    def _store(self, configuration: Deployment, cluster_state: DeploymentState) -> None:
        self.configuration = configuration
        self.cluster_state = cluster_state

    @_machine.output()
    def _start_iteration(self) -> None:
        self._begin()

    @_machine.output()
    def _start_updated_iteration(
        self, configuration: Deployment, cluster_state: DeploymentState
    ) -> None:
        self._begin()

    @_machine.output()
    def _schedule(self) -> None:
        delay = self._next_delay()
        LOOP_SLEEP.log(delay=delay, failures=self.failures)
        self._timer = self.reactor.callLater(delay, self.wakeup)

    @_machine.output()
    def _mark_update(
        self, configuration: Deployment, cluster_state: DeploymentState
    ) -> None:
        self._updated_meanwhile = True

    @_machine.output()
    def _mark_poke(self) -> None:
        self._updated_meanwhile = True

    @_machine.output()
    def _cancel(self) -> None:
        self._cancel_timer()

    @_machine.output()
    def _forget_report(self) -> None:
        # After a reconnection the control service may have dropped this
        # node's state: report again whatever it was, and converge to the
        # first push whatever it says.
        self.last_reported = self.last_sent = None
        self._viewed = None

    idle.upon(_updated, enter=converging, outputs=[_store, _start_updated_iteration])
    idle.upon(_kept, enter=converging, outputs=[_store, _start_updated_iteration])
    idle.upon(disconnected, enter=idle, outputs=[])
    sleeping.upon(_updated, enter=converging, outputs=[_store, _start_updated_iteration])
    sleeping.upon(_kept, enter=sleeping, outputs=[_store])
    sleeping.upon(wakeup, enter=converging, outputs=[_start_iteration])
    sleeping.upon(disconnected, enter=idle, outputs=[_cancel, _forget_report])
    converging.upon(_updated, enter=converging, outputs=[_store, _mark_update])
    converging.upon(_kept, enter=converging, outputs=[_store])
    converging.upon(iteration_done, enter=sleeping, outputs=[_schedule])
    converging.upon(disconnected, enter=converging_then_stop, outputs=[_forget_report])
    converging_then_stop.upon(_updated, enter=converging, outputs=[_store, _mark_update])
    converging_then_stop.upon(_kept, enter=converging, outputs=[_store, _mark_update])
    converging_then_stop.upon(iteration_done, enter=idle, outputs=[])
    idle.upon(poke, enter=idle, outputs=[])
    sleeping.upon(poke, enter=converging, outputs=[_start_iteration])
    converging.upon(poke, enter=converging, outputs=[_mark_poke])
    converging_then_stop.upon(poke, enter=converging_then_stop, outputs=[])
    converging_then_stop.upon(disconnected, enter=converging_then_stop, outputs=[])

    # -- the iteration -------------------------------------------------------

    def _begin(self) -> None:
        """Start an iteration; ``iteration_done`` is fed when it ends."""
        self._cancel_timer()
        self._current = self._iterate()
        self._current.addBoth(lambda _: self.iteration_done())

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _next_delay(self) -> float:
        """
        Backoff after failures; at once if an update arrived during the
        pass; shortly after a change; else the poll interval.
        """
        updated, self._updated_meanwhile = self._updated_meanwhile, False
        if self.failures:
            initial, factor, maximum = BACKOFF
            return float(min(initial * factor ** (self.failures - 1), maximum))
        if updated:
            return 0.0
        if self._changed_something:
            return AFTER_CHANGE
        return self.poll_interval

    _changed_something = False
    _updated_meanwhile = False
    #: The `view` of what the last pass begun converged to (``None``: no
    #: pass since the loop last lost the control service).
    _viewed: object = None

    def _iterate(self) -> Deferred[None]:
        """One discover → report → calculate → run pass."""
        self.iterations += 1
        configuration, cluster_state = self.configuration, self.cluster_state
        assert configuration is not None and cluster_state is not None
        if self.view is not None:
            self._viewed = self.view(configuration, cluster_state)
        action = CONVERGE_ITERATION(iteration=self.iterations)

        progress = self.progress

        async def iterate() -> None:
            seen = self._changes_sent
            try:
                local_state = await self.deployer.discover_state(cluster_state)
            except Exception:
                if progress is not None:
                    progress.pass_failed(DISCOVER, Failure())
                raise
            state = self._with_later_changes(local_state.shared_state_changes(), seen)
            if progress is not None:
                state = progress.annotate(state)
            await self._report(state)
            try:
                change: StateChange[Deployer[LocalStateT]] = self.deployer.calculate_changes(
                    configuration, cluster_state, local_state
                )
            except Exception:
                if progress is not None:
                    progress.pass_failed(CONVERGE, Failure())
                raise
            self._changed_something = not isinstance(change, NoOp)
            if progress is not None:
                deleted = deleted_on(configuration, self.deployer.node_uuid)
                await progress.run(change, self.deployer, deleted)
            else:
                await run_state_change(change, self.deployer)

        def succeeded(result: None) -> None:
            self.failures = 0

        def failed(reason: Any) -> None:
            self.failures += 1
            self._changed_something = False

        with action.context():
            d = DeferredContext(Deferred.fromCoroutine(iterate()))
            d.addCallbacks(succeeded, lambda f: f)
            d.addActionFinish()
            result: Deferred[None] = d.result
        result.addErrback(failed)
        return result

    def _with_later_changes(self, state: NodeState, seen: int) -> NodeState:
        """
        ``state``, as discovered by a pass that began once ``seen`` changes
        had been reported at once, with those reported since applied (its
        discovery may have missed them: a report must never undo one).
        The earlier ones are forgotten: the discovery saw them.
        """
        self._changes = [(n, change) for n, change in self._changes if n > seen]
        for _, change in self._changes:
            state = change(state) or state
        return state

    async def _report(self, state: NodeState) -> None:
        """
        Report the state if it changed.  A report the control service
        refuses (or that fails otherwise) is logged and sent again by the
        next pass, but never stops this one: an agent acts on the
        configuration it holds — a newer epoch above all — whether or not
        its reports get through.
        """
        if state == self.last_reported and self.last_sent == state:
            return  # a patch sent since (`report_change`) is superseded at once
        self.last_sent = state
        try:
            await (self.report_state(state) or succeed(None))
        except Exception:
            report_failed(Failure())
            return
        self.last_reported = state

    # -- public --------------------------------------------------------------

    def report_change(
        self, change: Callable[[NodeState], NodeState | None]
    ) -> Deferred[Any] | None:
        """
        Report at once, without waiting for a pass's discovery, the last
        state sent with ``change`` applied (``change`` returns ``None`` when
        there is nothing to say; nothing is reported before a first pass).
        Built on what was last *sent*, acknowledged or not, so that it never
        reports an older state than one already on its way, and so that
        changes reported this way add up until the next pass reports the
        whole state again (they never count as its last report); a pass
        whose discovery began before the change applies it to what it
        reports (``change`` must describe what is already true locally).

        :return: The report's Deferred (its failure is the caller's), or
            ``None`` if nothing was reported.
        """
        last = self.last_sent
        if last is None:
            return None
        changed = change(last)
        if changed is None or changed == last:
            return None
        self._changes_sent += 1
        self._changes.append((self._changes_sent, change))
        self.last_sent = changed
        return self.report_state(changed)

    def stop(self) -> Deferred[None]:
        """Stop converging; fires when a running iteration has ended."""
        self.disconnected()
        self._cancel_timer()
        current = self._current
        if current is None or current.called:
            return succeed(None)
        done: Deferred[None] = Deferred()
        current.addBoth(lambda _: done.callback(None))
        return done
