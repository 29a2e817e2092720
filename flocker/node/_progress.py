"""What a node's convergence passes achieve, for the state it reports.

A node that stops converging must say so: the API otherwise keeps showing
what it last reported, as if all were well.  `ConvergenceProgress` watches
each pass of the convergence loop and adds to the node's report:

* ``last_converged``: the wall-clock time the last fully successful pass
  ended.  While all goes well it is refreshed in reports at most every
  `CONVERGED_REFRESH` seconds (a pass every second must not mean a report
  every second); a pass that succeeds after failures refreshes it at once.
* ``failing_changes``: each single change (never a ``sequentially`` or
  ``in_parallel`` combination) that failed in the latest pass, by dataset
  and change, with a one-line reason, when its run of consecutive failed
  passes began and how many passes it has failed in.  A discovery (or a
  calculation) that failed is a failing change of no dataset.  A change
  that did not fail in the latest pass (it succeeded, or was not tried)
  is no longer listed.

Failures are logged when the set of failing changes changes, not at every
retry (each change's own eliot action logs every try).
"""

from __future__ import annotations

from typing import Any, Never

import attr
from eliot import Field, MessageType
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from flocker.control import ChangeFailure, NodeState, is_uuid

from ._deploy import D, StateChange, run_state_change

#: Seconds between refreshes of a reported ``last_converged`` while all
#: goes well.
CONVERGED_REFRESH = 30.0

#: The longest reason reported (the rest is cut, marked with an ellipsis).
REASON_LENGTH = 300

#: The change name of a failed discovery of local state.
DISCOVER = "flocker:node:discover"

#: The change name of a failed calculation, or of a pass that failed
#: outside any single change.
CONVERGE = "flocker:node:converge"

CONVERGENCE_FAILING = MessageType(
    "flocker:node:convergence:failing",
    [
        Field.for_types("failing", [list], "[dataset id or null, change, reason, count]."),
        Field.for_types("last_converged", [float, type(None)], "The last good pass's end."),
    ],
    "The changes failing in the latest convergence pass are not those of the "
    "pass before (a change started or stopped failing).",
)


def one_line(reason: Failure | BaseException) -> str:
    """The error's type and text on one line, at most `REASON_LENGTH` long."""
    error = reason.value if isinstance(reason, Failure) else reason
    text = " ".join(f"{type(error).__name__}: {error}".split())
    if len(text) > REASON_LENGTH:
        text = text[: REASON_LENGTH - 1] + "…"
    return text


def _dataset_of(change: StateChange[Never]) -> str | None:
    """The dataset a single change is for, if it names one."""
    dataset_id = getattr(change, "dataset_id", None)
    return dataset_id if isinstance(dataset_id, str) and is_uuid(dataset_id) else None


_Key = tuple[str | None, str]


@attr.s(eq=False)
class ConvergenceProgress:
    """
    The outcome of a loop's passes: the last good one, the failing changes.

    :ivar clock: Gives the wall-clock time (a real reactor's ``seconds``).
    :ivar last_converged: When the last fully successful pass ended.
    :ivar failing: (dataset id, change) → its `ChangeFailure`, for the
        changes that failed in the latest pass.
    :ivar deletions_seen: The datasets the last finished pass's
        configuration marked deleted on this node (``None`` before any).
    """

    clock: IReactorTime = attr.ib()
    last_converged: float | None = attr.ib(default=None, init=False)
    failing: dict[_Key, ChangeFailure] = attr.ib(factory=dict, init=False)
    deletions_seen: frozenset[str] | None = attr.ib(default=None, init=False)
    _reported_converged: float | None = attr.ib(default=None, init=False)
    _reported_failing: bool = attr.ib(default=False, init=False)

    def run(
        self,
        change: StateChange[D],
        deployer: D,
        deleted: frozenset[str] = frozenset(),
    ) -> Deferred[None]:
        """
        Run a pass's plan, then record which of its single changes failed
        (the pass succeeded if none did) and that the pass saw ``deleted``
        (the ids of the datasets its configuration marks deleted on this
        node) deleted.  The outcome is the plan's.
        """
        failed: list[tuple[_Key, Failure]] = []

        def observe(single: StateChange[Never], reason: Failure) -> None:
            failed.append(((_dataset_of(single), single.action_type), reason))

        def ended(result: Any) -> Any:
            if isinstance(result, Failure) and not failed:
                failed.append(((None, CONVERGE), result))
            self._end_pass(failed)
            self.deletions_seen = deleted
            return result

        return run_state_change(change, deployer, observe).addBoth(ended)

    def pass_failed(self, change: str, reason: Failure) -> None:
        """A pass failed before running any change (``DISCOVER``, ``CONVERGE``)."""
        self._end_pass([((None, change), reason)])

    def _end_pass(self, failed: list[tuple[_Key, Failure]]) -> None:
        now = float(self.clock.seconds())
        failing: dict[_Key, ChangeFailure] = {}
        for key, reason in failed:
            if key in failing:  # one entry per dataset and change
                continue
            before = self.failing.get(key)
            failing[key] = ChangeFailure(
                dataset_id=key[0],
                change=key[1],
                reason=one_line(reason),
                since=now if before is None else before.since,
                count=1 if before is None else before.count + 1,
            )
        if set(failing) != set(self.failing):
            CONVERGENCE_FAILING.log(
                failing=[[k[0], k[1], f.reason, f.count] for k, f in sorted_items(failing)],
                last_converged=self.last_converged,
            )
        self.failing = failing
        if not failed:
            self.last_converged = now

    def annotate(self, state: NodeState) -> NodeState:
        """
        ``state`` with the last good pass's time, the failing changes and
        the deletions the last finished pass saw.
        """
        last = self.last_converged
        if last is not None and (
            self._reported_converged is None
            or self._reported_failing
            or last - self._reported_converged >= CONVERGED_REFRESH
        ):
            self._reported_converged = last
        self._reported_failing = bool(self.failing)
        return state.set(
            last_converged=self._reported_converged,
            failing_changes=[f for _, f in sorted_items(self.failing)],
            deletions_seen=self.deletions_seen,
        )


def sorted_items(failing: dict[_Key, ChangeFailure]) -> list[tuple[_Key, ChangeFailure]]:
    """The failing changes by dataset (those of no dataset first), then change."""
    return sorted(failing.items(), key=lambda item: (item[0][0] or "", item[0][1]))


__all__ = [
    "CONVERGED_REFRESH",
    "CONVERGENCE_FAILING",
    "ConvergenceProgress",
    "one_line",
]
