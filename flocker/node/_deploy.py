"""The convergence framework: discover, calculate changes, run them.

An agent converges its node in three steps:

1. ``Deployer.discover_state`` asks the real world (ZFS, Docker) what the
   node has now, giving an ``ILocalState``;
2. ``Deployer.calculate_changes(configuration, cluster_state, local_state)``
   is **pure**: it returns an ``IStateChange`` value saying what to do, and
   tests compare such values with ``==``;
3. ``run_state_change(change, deployer)`` runs it, each change inside an
   eliot action named after it.

Each agent's changes need that agent's own deployer (a dataset change its
``DatasetDeployer``'s backend and roles, a container change its
``ContainerDeployer``'s runtime): a plan is a ``StateChange[D]``, runnable
with a ``D``, and a ``Deployer`` calculates plans runnable with itself.  The
zope interfaces ``IStateChange`` and ``ILocalState`` are the contracts each
provider declares and the tests verify; ``IStateChange`` cannot say which
deployer its ``run`` takes, the ``StateChange`` protocol does.

Changes compose: ``sequentially`` runs its changes one after another and
stops at the first failure; ``in_parallel`` runs them all at once, lets each
finish, and fails if any failed — so one broken dataset never blocks the
others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Generic, Never, Protocol, Self, TypeVar, cast

from eliot import start_action
from eliot.twisted import DeferredContext
from pyrsistent import PClass, PVector, pvector_field
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.python.failure import Failure
from zope.interface import Attribute, Interface, implementer

from flocker.control import Deployment, DeploymentState, NodeState


class IStateChange(Interface):
    """
    One step that brings a node's local state towards its configuration.

    Providers are immutable values (``PClass``) so plans compare with ``==``.
    """

    action_type: str = Attribute(
        "The eliot action type of this change, e.g. 'flocker:node:create_dataset'."
    )

    def log_fields() -> dict[str, Any]:
        """The fields logged on the change's eliot action (JSON values)."""

    def run(deployer: Never) -> Deferred[None]:
        """
        Make the change.

        :param deployer: The deployer that calculated it, giving access to
            the node's backend, runtime and clock.  Which deployer that is
            depends on the agent: the interface accepts none statically
            (``Never``), a provider's ``run`` names its own and the
            ``StateChange`` protocol carries it.
        :return: A ``Deferred`` firing when the change is complete, or
            failing if it could not be made (the next convergence retries).
        """


class ILocalState(Interface):
    """What ``Deployer.discover_state`` found on the node."""

    def shared_state_changes() -> NodeState:
        """The part of the state to report to the control service."""


#: The deployer a change runs with (a change runnable with any deployer,
#: like ``NoOp``, is a ``StateChange[object]``).
DeployerT_contra = TypeVar("DeployerT_contra", contravariant=True)
D = TypeVar("D")
#: What a deployer's discovery finds and its calculation reads.
LocalStateT = TypeVar("LocalStateT", bound=ILocalState)


class StateChange(Protocol[DeployerT_contra]):
    """
    The static view of an ``IStateChange`` provider that runs with a
    ``DeployerT_contra``.
    """

    @property
    def action_type(self) -> str:
        """The eliot action type of this change."""
        ...

    def log_fields(self) -> dict[str, Any]:
        """The fields logged on the change's eliot action (JSON values)."""
        ...

    def run(self, deployer: DeployerT_contra) -> Deferred[None]:
        """Make the change (see ``IStateChange.run``)."""
        ...


class Deployer(Protocol[LocalStateT]):
    """
    Discovers one kind of local state (a ``LocalStateT``) and calculates
    changes to it, which run with this deployer.
    """

    @property
    def node_uuid(self) -> str:
        """The UUID of the node this deployer manages."""
        ...

    @property
    def hostname(self) -> str:
        """The node's address, reported to the control service."""
        ...

    def discover_state(self, cluster_state: DeploymentState) -> Deferred[LocalStateT]:
        """Find out what the node has now."""
        ...

    def calculate_changes(
        self,
        configuration: Deployment,
        cluster_state: DeploymentState,
        local_state: LocalStateT,
    ) -> StateChange[Self]:
        """
        Decide what to do (pure: no I/O, the same inputs give an equal plan).

        :param configuration: The cluster's desired configuration.
        :param cluster_state: What every node last reported.
        :param local_state: What ``discover_state`` just found here.
        """
        ...


#: Told of each leaf change (not a combination) that failed, with why.
FailureObserver = Callable[["StateChange[Never]", Failure], None]


def run_state_change(
    change: StateChange[D],
    deployer: D,
    on_failure: FailureObserver | None = None,
) -> Deferred[None]:
    """
    Run ``change`` inside an eliot action named after it.

    :param on_failure: Called with each single change of the plan (never a
        ``sequentially`` or ``in_parallel`` combination) that fails, and
        its ``Failure``; the outcome is the same with or without it.
    :return: A ``Deferred`` with the change's outcome; an exception raised
        synchronously by ``run`` becomes a failed ``Deferred``.
    """
    action = start_action(action_type=change.action_type, **change.log_fields())
    with action.context():
        if isinstance(change, _Sequentially | _InParallel):
            running = change.run_observed(deployer, on_failure)
        else:
            running = maybeDeferred(change.run, deployer)
            if on_failure is not None:
                observe = on_failure

                def failed(reason: Failure) -> Failure:
                    observe(change, reason)
                    return reason

                running.addErrback(failed)
        finished: Deferred[None] = DeferredContext(running).addActionFinish()
        return finished


@implementer(IStateChange)
class NoOp(PClass):
    """Nothing to do: the node already matches its configuration."""

    action_type = "flocker:node:noop"

    def log_fields(self) -> dict[str, Any]:
        """No fields."""
        return {}

    def run(self, deployer: object) -> Deferred[None]:
        """Do nothing."""
        return succeed(None)


@implementer(IStateChange)
class _Sequentially(PClass, Generic[D]):
    """Changes run one after another; the first failure stops the rest."""

    #: (pyrsistent checks no protocol: the item type is the plan's.)
    changes = cast("PVector[StateChange[D]]", pvector_field(object))
    action_type = "flocker:node:sequentially"

    def log_fields(self) -> dict[str, Any]:
        """How many changes there are."""
        return {"count": len(self.changes)}

    def run(self, deployer: D) -> Deferred[None]:
        """Run each change after the previous one succeeded."""
        return self.run_observed(deployer, None)

    def run_observed(
        self, deployer: D, on_failure: FailureObserver | None
    ) -> Deferred[None]:
        """`run`, telling ``on_failure`` of each single change that fails."""

        async def run_all() -> None:
            for change in self.changes:
                await run_state_change(change, deployer, on_failure)

        return Deferred.fromCoroutine(run_all())


class ChangesFailed(Exception):
    """Some of the changes run ``in_parallel`` failed.

    :ivar failures: The ``Failure`` of each change that failed.
    """

    def __init__(self, failures: list[Failure]) -> None:
        """Record the failures."""
        self.failures = failures
        messages = "; ".join(str(f.value) for f in failures)
        super().__init__(f"{len(failures)} change(s) failed: {messages}")


@implementer(IStateChange)
class _InParallel(PClass, Generic[D]):
    """Changes run at once; each finishes whatever the others do."""

    #: (pyrsistent checks no protocol: the item type is the plan's.)
    changes = cast("PVector[StateChange[D]]", pvector_field(object))
    action_type = "flocker:node:in_parallel"

    def log_fields(self) -> dict[str, Any]:
        """How many changes there are."""
        return {"count": len(self.changes)}

    def run(self, deployer: D) -> Deferred[None]:
        """Run every change; fail with ``ChangesFailed`` if any failed."""
        return self.run_observed(deployer, None)

    def run_observed(
        self, deployer: D, on_failure: FailureObserver | None
    ) -> Deferred[None]:
        """`run`, telling ``on_failure`` of each single change that fails."""
        results = DeferredList(
            [run_state_change(change, deployer, on_failure) for change in self.changes],
            consumeErrors=True,
        )

        def check(outcomes: list[tuple[bool, Any]]) -> None:
            failures = [value for ok, value in outcomes if not ok]
            if failures:
                raise ChangesFailed(failures)

        return results.addCallback(check)


def _flatten(
    changes: Iterable[StateChange[D]],
    kind: type[_Sequentially[Any]] | type[_InParallel[Any]],
) -> list[StateChange[D]]:
    """Drop no-ops and splice in nested changes of the same kind."""
    flat: list[StateChange[D]] = []
    for change in changes:
        if isinstance(change, NoOp):
            continue
        if isinstance(change, kind):
            flat.extend(change.changes)
        else:
            flat.append(change)
    return flat


def sequentially(changes: Iterable[StateChange[D]]) -> StateChange[D]:
    """
    Combine ``changes`` to run in order, stopping at the first failure.

    No-ops are dropped and nested ``sequentially`` are flattened, so plans
    compare equal however they were built; nothing left gives ``NoOp()``
    and a single change is returned as it is.
    """
    flat = _flatten(changes, _Sequentially)
    if not flat:
        return NoOp()
    if len(flat) == 1:
        return flat[0]
    return _Sequentially(changes=flat)


def in_parallel(changes: Iterable[StateChange[D]]) -> StateChange[D]:
    """
    Combine ``changes`` to run at the same time, each to its own end.

    Like :func:`sequentially`, no-ops are dropped, nesting is flattened, and
    an empty or single-change combination is simplified.
    """
    flat = _flatten(changes, _InParallel)
    if not flat:
        return NoOp()
    if len(flat) == 1:
        return flat[0]
    return _InParallel(changes=flat)


def changes_of(change: StateChange[D]) -> list[StateChange[D]]:
    """Every leaf change of a (possibly combined) plan, in order."""
    if isinstance(change, _Sequentially | _InParallel):
        return [leaf for child in change.changes for leaf in changes_of(child)]
    if isinstance(change, NoOp):
        return []
    return [change]


__all__ = [
    "ChangesFailed",
    "Deployer",
    "FailureObserver",
    "ILocalState",
    "IStateChange",
    "NoOp",
    "changes_of",
    "in_parallel",
    "run_state_change",
    "sequentially",
    "StateChange",
]

