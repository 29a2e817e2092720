"""
Unit tests for what the convergence loop reports about its passes: the
last fully successful pass and the changes failing in the latest one.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any, Self

from eliot import MemoryLogger
from eliot.testing import LoggedMessage, capture_logging
from pyrsistent import PClass, field
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from flocker.control import (
    ChangeFailure,
    Dataset,
    Deployment,
    DeploymentState,
    NodeState,
)
from flocker.node import ConvergenceLoop, IStateChange, NoOp, StateChange, in_parallel
from flocker.node._progress import (
    CONVERGED_REFRESH,
    CONVERGENCE_FAILING,
    ConvergenceProgress,
    one_line,
)
from flocker.node.test.test_loop import NODE, FakeDeployer, LocalState

DS1 = "aaaaaaaa-0000-4000-8000-000000000001"
DS2 = "aaaaaaaa-0000-4000-8000-000000000002"
PUSH = "flocker:node:test:push"

#: The wall-clock time the tests' clock starts at.
START = 1_800_000_000.0


@implementer(IStateChange)
class DatasetAct(PClass):
    """A change for one dataset that fails while the deployer says so."""

    dataset_id = field(type=str, mandatory=True)
    action_type = PUSH

    def log_fields(self) -> dict[str, Any]:
        """The dataset."""
        return {"dataset_id": self.dataset_id}

    def run(self, deployer: PlanDeployer) -> Deferred[None]:
        """Fail with an out-of-space error for the datasets told to."""
        if self.dataset_id in deployer.broken:
            return fail(OSError(f"zfs snapshot {self.dataset_id}:\nout of space"))
        return succeed(None)


class PlanDeployer(FakeDeployer):
    """A deployer whose plan is given (and whose discovery can fail)."""

    def __init__(self) -> None:
        """No plan, nothing broken."""
        super().__init__()
        self.plan: StateChange[PlanDeployer] = NoOp()
        self.broken: set[str] = set()
        self.discovery_fails = False

    def discover_state(self, cluster_state: DeploymentState) -> Deferred[LocalState]:
        """The hostname, or a failure when told."""
        if self.discovery_fails:
            return fail(RuntimeError("zfs does not answer"))
        return super().discover_state(cluster_state)

    def calculate_changes(
        self, configuration: Deployment, cluster_state: DeploymentState, local_state: LocalState
    ) -> StateChange[Self]:
        """The plan given."""
        return self.plan


def tick(clock: Clock, seconds: float) -> None:
    """Let ``seconds`` pass in small steps, so each timer set meanwhile fires."""
    for _ in range(int(seconds * 20)):
        clock.advance(0.05)


def make_loop() -> tuple[ConvergenceLoop[LocalState], Clock, PlanDeployer, list[NodeState]]:
    """A loop with progress, a fake deployer, a Clock at START and its reports."""
    clock, deployer, reports = Clock(), PlanDeployer(), list[NodeState]()
    clock.advance(START)
    loop = ConvergenceLoop(
        clock, deployer, reports.append, poll_interval=1.0, progress=ConvergenceProgress(clock)
    )
    return loop, clock, deployer, reports


class ConvergenceProgressTests(SynchronousTestCase):
    """Tests for ``ConvergenceProgress`` driven by the loop."""

    def test_failing_change_is_reported_with_its_dataset_and_reason(self) -> None:
        """
        A change that failed is reported by the next pass: its dataset, its
        change, its error on one line, since when and in how many passes.
        """
        loop, clock, deployer, reports = make_loop()
        deployer.plan = in_parallel([DatasetAct(dataset_id=DS1), DatasetAct(dataset_id=DS2)])
        deployer.broken = {DS2}
        loop.cluster_updated(Deployment(), DeploymentState())
        clock.advance(0.1)
        failure = ChangeFailure(
            dataset_id=DS2,
            change=PUSH,
            reason=f"OSError: zfs snapshot {DS2}: out of space",
            since=START,
            count=1,
        )
        self.assertEqual(list(reports[-1].failing_changes), [failure])
        self.assertIsNone(reports[-1].last_converged)

    def test_consecutive_failures_count_up_from_the_same_start(self) -> None:
        """Each further failed pass counts one more; ``since`` stays put."""
        loop, clock, deployer, reports = make_loop()
        deployer.plan = DatasetAct(dataset_id=DS1)
        deployer.broken = {DS1}
        loop.cluster_updated(Deployment(), DeploymentState())
        tick(clock, 60)
        (failure,) = reports[-1].failing_changes
        self.assertEqual((failure.since, failure.count > 5), (START, True))

    def test_success_clears_the_failures_and_gives_the_time_at_once(self) -> None:
        """
        A pass that succeeds after failures empties the failing changes and
        reports its end as the last convergence in the next report.
        """
        loop, clock, deployer, reports = make_loop()
        deployer.plan = DatasetAct(dataset_id=DS1)
        deployer.broken = {DS1}
        loop.cluster_updated(Deployment(), DeploymentState())
        tick(clock, 1)
        deployer.broken = set()
        mended_at = clock.seconds()
        tick(clock, 2)
        repaired = [r for r in reports if r.last_converged is not None]
        self.assertEqual(len(repaired), 1)
        self.assertLessEqual(mended_at, repaired[0].last_converged)

    def test_last_convergence_is_refreshed_at_most_every_half_minute(self) -> None:
        """
        While all goes well the reported time moves on only every
        ``CONVERGED_REFRESH`` seconds, so passes every second do not each
        send a report.
        """
        loop, clock, deployer, reports = make_loop()
        loop.cluster_updated(Deployment(), DeploymentState())
        tick(clock, CONVERGED_REFRESH * 2 + 1)
        times = [r.last_converged for r in reports]
        self.assertEqual(times[:2], [None, START])
        self.assertLessEqual(len(reports), 4)
        self.assertTrue(all(b - a >= CONVERGED_REFRESH for a, b in pairwise(times[1:])))

    def test_failed_discovery_is_a_failing_change_of_no_dataset(self) -> None:
        """A discovery that fails is reported as such once discovery works again."""
        loop, clock, deployer, reports = make_loop()
        deployer.discovery_fails = True
        loop.cluster_updated(Deployment(), DeploymentState())
        tick(clock, 1)
        deployer.discovery_fails = False
        tick(clock, 10)
        (failure,) = reports[0].failing_changes
        self.assertEqual(
            (failure.dataset_id, failure.change, failure.reason),
            (None, "flocker:node:discover", "RuntimeError: zfs does not answer"),
        )

    def test_a_change_that_succeeds_is_no_longer_listed(self) -> None:
        """Only the changes that failed in the latest pass are listed."""
        loop, clock, deployer, reports = make_loop()
        deployer.plan = in_parallel([DatasetAct(dataset_id=DS1), DatasetAct(dataset_id=DS2)])
        deployer.broken = {DS1, DS2}
        loop.cluster_updated(Deployment(), DeploymentState())
        tick(clock, 1)
        deployer.broken = {DS2}
        tick(clock, 10)
        self.assertEqual([f.dataset_id for f in reports[-1].failing_changes], [DS2])


class DeletionsSeenTests(SynchronousTestCase):
    """Tests for the deletions a pass saw, as the next pass reports them."""

    def test_deletions_are_reported_by_the_pass_after_the_one_that_saw_them(self) -> None:
        """
        The datasets the configuration marks deleted on this node are
        reported as seen once a pass planned from that configuration has
        ended, not before: a report made while an older plan may still be
        creating one of them must not say it was seen deleted.
        """
        loop, clock, deployer, reports = make_loop()
        live = Deployment().add_dataset(Dataset(dataset_id=DS1), NODE)
        loop.cluster_updated(live, DeploymentState())
        tick(clock, 2)
        loop.cluster_updated(live.delete_dataset(DS1), DeploymentState())
        # The pass planned from it has started (and reported), not ended.
        self.assertEqual(set(reports[-1].deletions_seen), set())
        tick(clock, 2)
        self.assertEqual(set(reports[-1].deletions_seen), {DS1})

    def test_nothing_is_said_before_a_pass_ended(self) -> None:
        """The first report, made before any pass ended, leaves them unknown."""
        loop, clock, deployer, reports = make_loop()
        loop.cluster_updated(Deployment(), DeploymentState())
        self.assertIsNone(reports[0].deletions_seen)


class FailingLogTests(SynchronousTestCase):
    """The log of failing changes."""

    @capture_logging(None)  # type: ignore[untyped-decorator]  # eliot is untyped
    def test_failing_changes_are_logged_when_they_start_and_stop(self, logger: MemoryLogger) -> None:
        """
        ``flocker:node:convergence:failing`` is logged when a change starts
        failing and when it stops, not at every retry.
        """
        loop, clock, deployer, reports = make_loop()
        deployer.plan = DatasetAct(dataset_id=DS1)
        deployer.broken = {DS1}
        loop.cluster_updated(Deployment(), DeploymentState())
        tick(clock, 5)
        deployer.broken = set()
        tick(clock, 12)
        logged = LoggedMessage.of_type(logger.messages, CONVERGENCE_FAILING)
        self.assertEqual(
            [[entry[0] for entry in m.message["failing"]] for m in logged], [[DS1], []]
        )


def test_one_line_cuts_long_reasons() -> None:
    """A reason is one line, cut to a bounded length."""
    reason = one_line(ValueError("a\nb " + "x" * 1000))
    assert reason.startswith("ValueError: a b x") and len(reason) <= 300
