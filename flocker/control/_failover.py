"""Automatic failover: promoting a replica when a primary's node goes silent.

Rules (`plan_failovers`, a pure calculation; `AutomaticFailover` applies it):

* Only datasets whose replication says ``failover: automatic`` are
  considered, never deleted ones, and only when *every* dataset of the
  group (`Deployment.failover_group`: those mounted by the application
  using it) fails over automatically: a group holding a manual dataset
  waits for the user.
* A primary is *silent* when its dataset agent has not been heard from
  (`ClusterStateService.last_heard`, reports and keep-alives alike) for
  ``failover_after`` seconds, measured from the later of the last time it
  was heard and the time this control service started: after a restart of
  the control service, agents get ``failover_after`` seconds to reconnect
  before anything fails over.  A node heard again before that (a flapping
  node) causes nothing.  ``failover_after`` exceeds the agents'
  ``fence_after`` plus a margin (checked by ``flocker-control`` at start),
  so a primary cut off from the control service has stopped exposing its
  copy before another is promoted.
* The target is a node that holds a standing replica of every dataset of
  the group, whose dataset agent was heard from within ``failover_after``
  (a dead node is never a target), and which reports each copy in role
  ``replica`` with at least one snapshot (the data it would start from).
* Among targets, the newest data wins.  Per dataset, one copy is newer than
  another when its snapshot list holds the other's newest snapshot and more
  after it (lineage: the replicas receive one primary's snapshots in
  order); copies not ordered so are compared by the time of their newest
  snapshot as reported (the agents report their own snapshots' times from
  the nanoseconds their names carry, `flocker.node._snapshot_names`), then
  by name.  For a group the node whose stalest dataset ranks best is
  chosen, then the best total, then the lowest node UUID, so the choice is
  deterministic.
* No target: nothing changes, and the reason is logged once per silence of
  the primary (``flocker:control:failover:waiting``).
* A failover is `Deployment.failover_dataset` with ``keep_source``: the
  epoch goes up, ``failover_snapshot`` records the target's newest
  snapshot, the application moves, and the old primary stays a standing
  replica so that it rejoins (setting its divergence aside) when it comes
  back.  The new primary is then the one whose silence counts.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import attrs
from eliot import write_traceback
from pyrsistent import PClass, field, pmap_field, pvector_field
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall

from ._clusterstate import ClusterStateService
from ._logging import AUTOMATIC_FAILOVER, FAILOVER_WAITING
from ._model import Deployment
from ._persistence import ConfigurationService
from ._state import DatasetState, DeploymentState

__all__ = [
    "AutomaticFailover",
    "Failover",
    "FailoverCalledOff",
    "FailoverPlan",
    "Waiting",
    "apply_failover",
    "plan_failovers",
]

#: When a node's dataset agent was last heard from (POSIX time), or None.
LastHeard = Callable[[str], "float | None"]


class Failover(PClass):
    """
    One failover to make: a group of datasets to promote on one node.

    :ivar dataset_id: the dataset whose primary went silent (the first of
        its group with automatic failover).
    :ivar datasets: every dataset of the group, sorted.
    :ivar source: the silent primary's node.
    :ivar target: the node whose replicas become the primaries.
    :ivar epoch: ``dataset_id``'s epoch after the failover.
    :ivar snapshots: dataset id → the newest snapshot the target reported
        (where the new primary's data starts).
    :ivar reason: why, in words.
    """

    dataset_id = field(type=str, mandatory=True)
    datasets = pvector_field(str)
    source = field(type=str, mandatory=True)
    target = field(type=str, mandatory=True)
    epoch = field(type=int, mandatory=True)
    snapshots = pmap_field(str, str)
    reason = field(type=str, mandatory=True)


class Waiting(PClass):
    """
    A group whose primary is silent but which cannot fail over now.

    :ivar dataset_id: the dataset whose primary went silent.
    :ivar datasets: every dataset of its group, sorted.
    :ivar primary: the silent primary's node.
    :ivar silent_since: when its silence began (the later of when it was
        last heard from and when the control service started): with the
        dataset and the primary, it names one silence.
    :ivar reason: why no replica can take over, in words.
    """

    dataset_id = field(type=str, mandatory=True)
    datasets = pvector_field(str)
    primary = field(type=str, mandatory=True)
    silent_since = field(type=float, mandatory=True, factory=float)
    reason = field(type=str, mandatory=True)

    @property
    def episode(self) -> tuple[str, str, float]:
        """What names this silence: dataset, primary and when it began."""
        return (self.dataset_id, self.primary, self.silent_since)


class FailoverPlan(PClass):
    """What `plan_failovers` decided: failovers to make, groups left waiting."""

    failovers = pvector_field(Failover)
    waiting = pvector_field(Waiting)


# -- choosing the newest replica ---------------------------------------------


def _compare_copies(a: DatasetState, b: DatasetState) -> int:
    """Negative when copy ``a`` holds newer data than ``b``, 0 when as new."""
    newest_a, newest_b = a.snapshots[-1], b.snapshots[-1]
    if newest_a.name == newest_b.name:
        return 0
    if newest_b.name in {s.name for s in a.snapshots}:
        return -1  # a holds b's newest and more
    if newest_a.name in {s.name for s in b.snapshots}:
        return 1
    key_a = (-1.0 if newest_a.created is None else newest_a.created, newest_a.name)
    key_b = (-1.0 if newest_b.created is None else newest_b.created, newest_b.name)
    return -1 if key_a > key_b else 1


def _ranks(copies: dict[str, DatasetState]) -> dict[str, int]:
    """Node → rank of its copy (0 newest; copies as new share a rank)."""
    def compare(x: tuple[str, DatasetState], y: tuple[str, DatasetState]) -> int:
        return _compare_copies(x[1], y[1])

    ordered = sorted(copies.items(), key=functools.cmp_to_key(compare))
    ranks: dict[str, int] = {}
    rank = 0
    for i, (node, copy) in enumerate(ordered):
        if i and _compare_copies(ordered[i - 1][1], copy) != 0:
            rank = i
        ranks[node] = rank
    return ranks


def _usable(copy: DatasetState | None) -> bool:
    """Whether a reported copy can become the primary."""
    return copy is not None and copy.role == "replica" and bool(copy.snapshots)


def _why_not(
    node: str,
    group: list[str],
    state: DeploymentState,
    now: float,
    last_heard: LastHeard,
    failover_after: float,
) -> str | None:
    """Why a node holding standing replicas of the group cannot take it over."""
    heard = last_heard(node)
    if heard is None:
        return f"node {node} has not been heard from since the control service started"
    if now - heard >= failover_after:
        return f"node {node} has been silent for {now - heard:.1f} s too"
    reported = state.get_node(node).datasets or {}
    for member in group:
        copy = reported.get(member)
        if copy is None:
            return f"node {node} reports no copy of dataset {member}"
        if copy.role != "replica":
            return f"node {node} reports its copy of dataset {member} as {copy.role}"
        if not copy.snapshots:
            return f"node {node} has reported no snapshot of dataset {member} yet"
    return None


def _silence(
    primary: str, now: float, last_heard: LastHeard, started: float
) -> tuple[float, str]:
    """When the primary's silence began, and the words for it."""
    heard = last_heard(primary)
    if heard is None or heard < started:
        since = started
        words = (
            f"the dataset agent of node {primary} has not been heard from since "
            f"the control service started {now - started:.1f} s ago"
        )
    else:
        since = heard
        words = (
            f"the dataset agent of node {primary} was last heard from "
            f"{now - heard:.1f} s ago"
        )
    return since, words


def _choose(
    configuration: Deployment,
    state: DeploymentState,
    group: list[str],
    now: float,
    last_heard: LastHeard,
    failover_after: float,
) -> str:
    """
    The node to fail the group over to.

    :raise _NoTarget: with why no node can take the group over.
    """
    members = {m: configuration.get_dataset(m)[0] for m in group}
    manual = [m for m, d in members.items() if d.replication.failover != "automatic"]
    deleted = [m for m, d in members.items() if d.deleted]
    if manual or deleted:
        what = "fails over only manually" if manual else "is deleted"
        raise _NoTarget(
            f"dataset {(manual or deleted)[0]}, used by the same application, "
            f"{what}: the application's datasets fail over together or not at all"
        )
    holders = sorted(
        uuid
        for uuid, node in configuration.nodes.items()
        if all(
            (m := node.manifestations.get(member)) is not None and m.standing
            for member in group
        )
    )
    if not holders:
        of = (
            f"every dataset of its application ({', '.join(group)})"
            if len(group) > 1
            else "it"
        )
        raise _NoTarget(f"no node holds a standing replica of {of}")
    reasons = {
        node: _why_not(node, group, state, now, last_heard, failover_after)
        for node in holders
    }
    eligible = [node for node in holders if reasons[node] is None]
    if not eligible:
        raise _NoTarget("; ".join(str(reasons[node]) for node in holders))
    ranks = {
        member: _ranks(
            {node: (state.get_node(node).datasets or {})[member] for node in eligible}
        )
        for member in group
    }
    return min(
        eligible,
        key=lambda node: (
            max(ranks[m][node] for m in group),
            sum(ranks[m][node] for m in group),
            node,
        ),
    )


class _NoTarget(Exception):
    """No node can take a group over now; the message says why."""


def plan_failovers(
    configuration: Deployment,
    cluster_state: DeploymentState,
    now: float,
    last_heard: LastHeard,
    failover_after: float,
    started: float,
) -> FailoverPlan:
    """
    The failovers to make now, and the groups that must wait (see the
    module's rules).

    :param last_heard: node UUID → when its dataset agent was last heard
        from, or ``None`` (`ClusterStateService.last_heard`).
    :param started: when the control service started.
    """
    failovers: list[Failover] = []
    waiting: list[Waiting] = []
    seen: set[tuple[str, ...]] = set()
    for dataset, primary in configuration.all_datasets():
        if dataset.deleted or dataset.replication.failover != "automatic":
            continue
        since, silent_words = _silence(primary, now, last_heard, started)
        if now - since < failover_after:
            continue
        group = configuration.failover_group(dataset.dataset_id)
        if tuple(group) in seen:
            continue
        seen.add(tuple(group))
        try:
            target = _choose(
                configuration, cluster_state, group, now, last_heard, failover_after
            )
        except _NoTarget as e:
            waiting.append(
                Waiting(
                    dataset_id=dataset.dataset_id,
                    datasets=group,
                    primary=primary,
                    silent_since=since,
                    reason=f"{silent_words}, but {e}",
                )
            )
            continue
        reported = cluster_state.get_node(target).datasets or {}
        snapshots = {m: reported[m].snapshots[-1].name for m in group}
        failovers.append(
            Failover(
                dataset_id=dataset.dataset_id,
                datasets=group,
                source=primary,
                target=target,
                epoch=dataset.epoch + 1,
                snapshots=snapshots,
                reason=(
                    f"{silent_words} (failover_after {failover_after:g} s); node "
                    f"{target} is live and holds the newest replica (snapshot "
                    f"{snapshots[dataset.dataset_id]})"
                ),
            )
        )
    return FailoverPlan(failovers=failovers, waiting=waiting)


class FailoverCalledOff(Exception):
    """A planned failover no longer applies to the current configuration."""


def apply_failover(configuration: Deployment, failover: Failover) -> Deployment:
    """
    Make ``failover`` in ``configuration``, keeping the old primary as a
    standing replica and recording ``failover_snapshot``.

    :raise FailoverCalledOff: the configuration changed since it was
        planned (another primary, another group, another epoch).
    """
    dataset, primary = configuration.get_dataset(failover.dataset_id)
    group = configuration.failover_group(failover.dataset_id)
    if (
        primary != failover.source
        or group != list(failover.datasets)
        or dataset.epoch + 1 != failover.epoch
    ):
        raise FailoverCalledOff(
            f"the configuration of dataset {failover.dataset_id} changed since "
            "the failover was planned"
        )
    result, _ = configuration.failover_dataset(
        failover.dataset_id,
        failover.target,
        snapshots=dict(failover.snapshots),
        keep_source=True,
    )
    return result


# -- the service -----------------------------------------------------------


@attrs.define(eq=False)
class AutomaticFailover(Service):
    """
    Fail datasets over by themselves when their primary goes silent.

    Every ``interval`` seconds (default: ``failover_after`` / 10, at most
    one second) it plans (`plan_failovers`) against the current
    configuration and cluster state, logs each new wait once, and makes
    each failover as one configuration change through
    `ConfigurationService.change` (compare-and-swap, durable before it
    counts), re-planned inside the change so that it applies to the
    configuration as it is then.  Each failover is its own eliot task,
    ``flocker:control:failover:automatic``.  While failovers are being
    made, ticks do nothing.

    :ivar clock: the time and the scheduler.
    :ivar configuration_service: the loaded `ConfigurationService`.
    :ivar cluster_state_service: the `ClusterStateService`.
    :ivar failover_after: seconds of a primary's silence before failover.
    :ivar interval: seconds between checks, or ``None`` for the default.
    """

    clock: IReactorTime
    configuration_service: ConfigurationService
    cluster_state_service: ClusterStateService
    failover_after: float
    interval: float | None = None
    _started: float | None = attrs.field(default=None, init=False)
    _loop: LoopingCall | None = attrs.field(default=None, init=False)
    _applying: Deferred[None] | None = attrs.field(default=None, init=False)
    _logged: set[tuple[str, str, float]] = attrs.field(factory=set, init=False)

    def startService(self) -> None:  # noqa: N802
        """Note when the control service started and check periodically."""
        Service.startService(self)
        self._started = self.clock.seconds()
        interval = self.interval or min(1.0, self.failover_after / 10)
        self._loop = LoopingCall(self.check)
        self._loop.clock = self.clock
        self._loop.start(interval, now=False)

    def stopService(self) -> Deferred[None] | None:  # noqa: N802
        """Stop checking (a failover being made finishes)."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        stopped: Deferred[None] | None = Service.stopService(self)
        return stopped

    def plan(self, configuration: Deployment) -> FailoverPlan:
        """What `plan_failovers` decides now, for ``configuration``."""
        started = self.clock.seconds() if self._started is None else self._started
        return plan_failovers(
            configuration,
            self.cluster_state_service.as_deployment_state(),
            self.clock.seconds(),
            lambda node: self.cluster_state_service.last_heard(node, "dataset"),
            self.failover_after,
            started,
        )

    def check(self) -> None:
        """
        Plan now; log new waits; start making the failovers planned.  An
        error is logged and the next tick plans again: automatic failover
        never stops because one check failed.
        """
        if self._applying is not None:
            return
        try:
            configuration: Deployment = self.configuration_service.deployment
        except RuntimeError:
            return  # not loaded yet
        try:
            plan = self.plan(configuration)
            self._log_waiting(plan.waiting)
        except Exception:
            write_traceback()
            return
        if not plan.failovers:
            return
        self._applying = Deferred.fromCoroutine(self._make(list(plan.failovers)))

        def done(result: object) -> None:
            self._applying = None

        self._applying.addBoth(done)

    def _log_waiting(self, waiting: Any) -> None:
        """Log each silence's wait once (until that silence ends)."""
        current = {w.episode for w in waiting}
        for w in waiting:
            if w.episode not in self._logged:
                FAILOVER_WAITING.log(
                    dataset_id=w.dataset_id,
                    datasets=list(w.datasets),
                    primary=w.primary,
                    silent_since=w.silent_since,
                    reason=w.reason,
                )
        self._logged = current

    async def _make(self, failovers: list[Failover]) -> None:
        """Make each failover in turn, each in its own eliot task."""
        for planned in failovers:
            await self._make_one(planned)

    async def _make_one(self, planned: Failover) -> None:
        """Make one failover, re-planned against the configuration as it is."""

        def change(configuration: Deployment) -> Deployment:
            for now in self.plan(configuration).failovers:
                if (
                    now.dataset_id == planned.dataset_id
                    and now.target == planned.target
                ):
                    return apply_failover(configuration, now)
            raise FailoverCalledOff(
                f"dataset {planned.dataset_id} no longer needs or allows a "
                f"failover to node {planned.target}"
            )

        action = AUTOMATIC_FAILOVER(
            dataset_id=planned.dataset_id,
            datasets=list(planned.datasets),
            to=planned.target,
            epoch=planned.epoch,
            snapshot=planned.snapshots[planned.dataset_id],
            reason=planned.reason,
            **{"from": planned.source},
        )
        with action.context():
            changing = self.configuration_service.change(change)
        try:
            stored = await changing
        except FailoverCalledOff as e:
            action.finish(e)
            return
        except Exception as e:
            action.finish(e)
            write_traceback()
            return
        action.add_success_fields(generation=stored.generation)
        action.finish()
