"""Unit tests for the convergence loop state machine, driven by a Clock."""

from typing import Any, Self
from uuid import uuid4

from pyrsistent import PClass, field
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from flocker.control import Dataset, Deployment, DeploymentState, NodeState
from flocker.node import ConvergenceLoop, ILocalState, IStateChange, NoOp, StateChange
from flocker.node._loop import AFTER_CHANGE

NODE = "11111111-1111-1111-1111-111111111111"


@implementer(ILocalState)
class LocalState(PClass):
    """Local state holding a hostname to report."""

    hostname = field(type=str)

    def shared_state_changes(self) -> NodeState:
        """The node state to report."""
        return NodeState(uuid=NODE, hostname=self.hostname)


@implementer(IStateChange)
class Act(PClass):
    """A change the fake deployer records running."""

    action_type = "flocker:node:test:act"

    def log_fields(self) -> dict[str, Any]:
        """No fields."""
        return {}

    def run(self, deployer: "FakeDeployer") -> Deferred[None]:
        """Record the run, or fail/wait as the deployer is told."""
        deployer.runs += 1
        if deployer.fail_runs:
            deployer.fail_runs -= 1
            return fail(RuntimeError("broken"))
        if deployer.gate is not None:
            return deployer.gate
        return succeed(None)


class FakeDeployer:
    """A deployer whose plan is Act() until told the node has converged."""

    node_uuid = NODE
    hostname = "127.0.0.11"

    def __init__(self) -> None:
        self.runs = 0
        self.fail_runs = 0
        #: While set, changes wait for it to fire.
        self.gate: Deferred[None] | None = None
        self.pending_changes = 0
        self.seen_configurations: list[Deployment] = []
        self.discovered = 0
        #: While set, discovery waits for it to fire.
        self.discovery_gate: Deferred[None] | None = None

    def discover_state(self, cluster_state: DeploymentState) -> Deferred[LocalState]:
        """The hostname as local state (once ``discovery_gate`` fired)."""
        if self.discovery_gate is not None:
            return self.discovery_gate.addCallback(lambda _: self._discover())
        return self._discover()

    def _discover(self) -> Deferred[LocalState]:
        self.discovered += 1
        return succeed(LocalState(hostname=self.hostname))

    def calculate_changes(
        self, configuration: Deployment, cluster_state: DeploymentState, local_state: LocalState
    ) -> StateChange[Self]:
        """Act while changes are pending, else nothing."""
        self.seen_configurations.append(configuration)
        if self.pending_changes:
            self.pending_changes -= 1
            return Act()
        return NoOp()


def make_loop(
    poll: float = 1.0,
) -> tuple[ConvergenceLoop[LocalState], Clock, FakeDeployer, list[NodeState]]:
    """A loop with a fake deployer, a Clock and a list of reports."""
    clock, deployer, reports = Clock(), FakeDeployer(), list[NodeState]()
    loop = ConvergenceLoop(clock, deployer, reports.append, poll_interval=poll)
    return loop, clock, deployer, reports


class ConvergenceLoopTests(SynchronousTestCase):
    """Tests for ``ConvergenceLoop``."""

    def test_idle_until_configuration(self) -> None:
        """Nothing happens before the first pushed configuration."""
        loop, clock, deployer, reports = make_loop()
        clock.advance(10)
        self.assertEqual((deployer.discovered, reports), (0, []))

    def test_update_starts_iteration_and_reports(self) -> None:
        """A pushed configuration starts a pass at once, which reports state."""
        loop, clock, deployer, reports = make_loop()
        loop.cluster_updated(Deployment(), DeploymentState())
        self.assertEqual(deployer.discovered, 1)
        self.assertEqual(reports, [NodeState(uuid=NODE, hostname="127.0.0.11")])

    def test_report_only_on_change(self) -> None:
        """Unchanged state is not reported again; changed state is."""
        loop, clock, deployer, reports = make_loop()
        loop.cluster_updated(Deployment(), DeploymentState())
        clock.advance(1)
        clock.advance(1)
        self.assertEqual(len(reports), 1)
        deployer.hostname = "127.0.0.12"
        clock.advance(1)
        self.assertEqual([r.hostname for r in reports], ["127.0.0.11", "127.0.0.12"])

    def test_refused_report_does_not_stop_the_pass(self) -> None:
        """
        A state report the control service refuses is logged, the pass
        still acts on the configuration, and the next pass reports again.
        """
        clock, deployer, sent = Clock(), FakeDeployer(), list[NodeState]()

        def refusing(state: NodeState) -> Deferred[None]:
            sent.append(state)
            if len(sent) == 1:
                return fail(RuntimeError("BadNodeState: unknown keys"))
            return succeed(None)

        loop = ConvergenceLoop(clock, deployer, refusing, poll_interval=1.0)
        deployer.pending_changes = 1
        loop.cluster_updated(Deployment(), DeploymentState())
        self.assertEqual((deployer.runs, loop.failures), (1, 0))
        clock.advance(AFTER_CHANGE)
        self.assertEqual(len(sent), 2)
        self.assertEqual(loop.last_reported, sent[-1])

    def test_a_push_its_passes_do_not_depend_on_is_kept_without_a_pass(self) -> None:
        """
        With a ``view``, a push whose view equals that of the last pass
        begun is kept but starts no pass (while sleeping, nor after a pass
        running meanwhile); the next pass, when its time comes, converges
        to it.  A push with another view starts a pass at once.
        """
        clock, deployer, reports = Clock(), FakeDeployer(), list[NodeState]()
        loop = ConvergenceLoop(
            clock,
            deployer,
            reports.append,
            poll_interval=1.0,
            view=lambda configuration, state: len(configuration.nodes),
        )
        first = Deployment()
        loop.cluster_updated(first, DeploymentState())
        self.assertEqual(deployer.discovered, 1)
        quiet = DeploymentState().update_node(NodeState(uuid=NODE, hostname="127.0.0.12"))
        loop.cluster_updated(first, quiet)
        self.assertEqual(deployer.discovered, 1)
        self.assertIs(loop.cluster_state, quiet)
        deployer.discovery_gate = Deferred()
        clock.advance(1.0)  # the poll timer: a pass, with the push kept
        self.assertEqual(deployer.discovered, 1)
        loop.cluster_updated(first, DeploymentState())  # during the pass
        gate, deployer.discovery_gate = deployer.discovery_gate, None
        gate.callback(None)
        self.assertEqual(deployer.discovered, 2)
        clock.advance(0.5)
        self.assertEqual(deployer.discovered, 2)  # not at once after it
        loop.cluster_updated(first.add_dataset(Dataset(dataset_id=str(uuid4())), NODE), quiet)
        self.assertEqual(deployer.discovered, 3)

    def test_after_losing_the_control_service_the_first_push_starts_a_pass(self) -> None:
        """
        Once the loop lost the control service, the next push starts a
        pass whatever its view: what was converged to before may be stale.
        """
        clock, deployer, reports = Clock(), FakeDeployer(), list[NodeState]()
        loop = ConvergenceLoop(
            clock, deployer, reports.append, poll_interval=1.0, view=lambda c, s: "same"
        )
        loop.cluster_updated(Deployment(), DeploymentState())
        loop.disconnected()
        loop.cluster_updated(Deployment(), DeploymentState())
        self.assertEqual(deployer.discovered, 2)

    def test_a_reported_change_builds_on_the_last_state_sent(self) -> None:
        """
        ``report_change`` reports the last state sent with the change, even
        while that report is not acknowledged yet (never an older state than
        one on its way); changes reported so add up, and never count as the
        pass's last report.  Nothing is reported before a first pass, nor
        for a change that changes nothing.
        """
        clock, deployer, sent = Clock(), FakeDeployer(), list[NodeState]()
        held: list[Deferred[None]] = []

        def holding(state: NodeState) -> Deferred[None]:
            sent.append(state)
            held.append(Deferred())
            return held[-1]

        loop = ConvergenceLoop(clock, deployer, holding, poll_interval=1.0)
        self.assertIsNone(loop.report_change(lambda s: s.set(hostname="x")))
        loop.cluster_updated(Deployment(), DeploymentState())
        self.assertEqual(len(sent), 1)  # the pass's report, not acknowledged
        era = str(uuid4())
        loop.report_change(lambda s: s.set(era=era))
        loop.report_change(lambda s: s.set(hostname="127.0.0.99"))
        self.assertEqual(
            [(s.hostname, s.era) for s in sent],
            [("127.0.0.11", None), ("127.0.0.11", era), ("127.0.0.99", era)],
        )
        self.assertIsNone(loop.report_change(lambda s: None))
        self.assertIsNone(loop.report_change(lambda s: s))
        self.assertEqual(len(sent), 3)
        for report in held:
            report.callback(None)
        self.assertEqual(loop.last_reported, sent[0])

    def test_a_pass_reports_its_state_again_over_a_reported_change(self) -> None:
        """
        A pass whose state equals its last report still reports it when a
        change was reported since (which may no longer hold: a hand-off
        called off), so the control service never keeps a stale change.
        """
        loop, clock, deployer, reports = make_loop()
        loop.cluster_updated(Deployment(), DeploymentState())
        loop.report_change(lambda s: s.set(hostname="127.0.0.99"))
        self.assertEqual(len(reports), 2)
        clock.advance(1)
        self.assertEqual([r.hostname for r in reports][-1], "127.0.0.11")
        clock.advance(1)
        self.assertEqual(len(reports), 3)  # and then only on change again

    def test_a_pass_that_began_before_a_reported_change_keeps_it(self) -> None:
        """
        A pass whose discovery began before a change was reported at once
        (and so may not see it) reports its state with that change applied,
        never undoing it; later passes see the change themselves.
        """
        loop, clock, deployer, reports = make_loop()
        loop.cluster_updated(Deployment(), DeploymentState())
        deployer.discovery_gate = Deferred()
        clock.advance(1)  # a pass begins; its discovery waits
        loop.report_change(lambda s: s.set(hostname="127.0.0.12"))
        gate, deployer.discovery_gate = deployer.discovery_gate, None
        gate.callback(None)  # discovered before the change: 127.0.0.11
        self.assertEqual(
            [r.hostname for r in reports], ["127.0.0.11", "127.0.0.12", "127.0.0.12"]
        )
        deployer.hostname = "127.0.0.12"  # what the change said is true here
        clock.advance(1)
        self.assertEqual(len(reports), 3)

    def test_polls_when_nothing_to_do(self) -> None:
        """With nothing to do, the loop discovers again after poll_interval."""
        loop, clock, deployer, reports = make_loop(poll=5)
        loop.cluster_updated(Deployment(), DeploymentState())
        clock.advance(4.9)
        self.assertEqual(deployer.discovered, 1)
        clock.advance(0.1)
        self.assertEqual(deployer.discovered, 2)

    def test_change_followed_at_once(self) -> None:
        """After a pass that changed something, the next pass comes at once."""
        loop, clock, deployer, reports = make_loop(poll=5)
        deployer.pending_changes = 2
        loop.cluster_updated(Deployment(), DeploymentState())
        clock.advance(AFTER_CHANGE)
        clock.advance(AFTER_CHANGE)
        self.assertEqual((deployer.runs, deployer.discovered), (2, 3))

    def test_pushed_update_wakes_sleeping_loop(self) -> None:
        """An update while sleeping starts a pass without waiting for the timer."""
        loop, clock, deployer, reports = make_loop(poll=60)
        loop.cluster_updated(Deployment(), DeploymentState())
        new = Deployment().update_node(Deployment().get_node(NODE))
        loop.cluster_updated(new, DeploymentState())
        self.assertEqual(deployer.discovered, 2)
        self.assertEqual(deployer.seen_configurations[-1], new)

    def test_update_while_converging_used_next(self) -> None:
        """An update during a pass is used by the pass right after it."""
        loop, clock, deployer, reports = make_loop(poll=60)
        deployer.gate = Deferred()
        deployer.pending_changes = 1
        loop.cluster_updated(Deployment(), DeploymentState())
        newer = Deployment().update_node(Deployment().get_node(NODE))
        loop.cluster_updated(newer, DeploymentState())
        self.assertEqual(deployer.discovered, 1)  # no overlapping passes
        deployer.gate.callback(None)
        clock.advance(0)
        self.assertEqual(deployer.seen_configurations[-1], newer)

    def test_update_during_idle_pass_not_left_waiting(self) -> None:
        """
        An update arriving during a pass that changes nothing is acted on at
        once, not after the poll interval.
        """
        clock, reports = Clock(), list[NodeState]()
        deployer = FakeDeployer()
        gate: Deferred[None] = Deferred()
        deployer.discovery_gate = gate
        loop = ConvergenceLoop(clock, deployer, reports.append, poll_interval=60)
        loop.cluster_updated(Deployment(), DeploymentState())
        newer = Deployment().add_dataset(Dataset(dataset_id=str(uuid4())), NODE)
        loop.cluster_updated(newer, DeploymentState())
        deployer.discovery_gate = None
        gate.callback(None)
        clock.advance(0)
        self.assertEqual(deployer.seen_configurations[-1], newer)

    def test_poke_wakes_sleeping_loop(self) -> None:
        """A poke while sleeping starts a pass at once; while idle it is ignored."""
        loop, clock, deployer, reports = make_loop(poll=60)
        loop.poke()
        self.assertEqual(deployer.discovered, 0)
        loop.cluster_updated(Deployment(), DeploymentState())
        loop.poke()
        self.assertEqual(deployer.discovered, 2)

    def test_poke_during_pass_runs_another(self) -> None:
        """A poke during a pass makes the next pass start at once."""
        loop, clock, deployer, reports = make_loop(poll=60)
        deployer.gate = Deferred()
        deployer.pending_changes = 1
        loop.cluster_updated(Deployment(), DeploymentState())
        loop.poke()
        deployer.gate.callback(None)
        clock.advance(0)
        self.assertEqual(deployer.discovered, 2)

    def test_failure_backs_off(self) -> None:
        """Failed passes are retried after growing delays, then reset."""
        loop, clock, deployer, reports = make_loop(poll=60)
        deployer.pending_changes = 4
        deployer.fail_runs = 3
        loop.cluster_updated(Deployment(), DeploymentState())
        self.assertEqual((deployer.runs, loop.failures), (1, 1))
        clock.advance(0.1)
        self.assertEqual((deployer.runs, loop.failures), (2, 2))
        clock.advance(0.1)
        self.assertEqual(deployer.runs, 2)  # the second delay is 0.2
        clock.advance(0.1)
        self.assertEqual((deployer.runs, loop.failures), (3, 3))
        clock.advance(0.4)
        self.assertEqual((deployer.runs, loop.failures), (4, 0))

    def test_failed_discovery_retried(self) -> None:
        """A pass whose discovery fails is retried with backoff."""
        loop, clock, deployer, reports = make_loop()
        calls: list[int] = []

        def broken(cluster_state: DeploymentState) -> Deferred[LocalState]:
            calls.append(1)
            return fail(OSError("zfs is not answering"))

        deployer.discover_state = broken  # type: ignore[method-assign]  # a failing discovery
        loop.cluster_updated(Deployment(), DeploymentState())
        clock.advance(0.1)
        self.assertEqual((len(calls), loop.failures), (2, 2))

    def test_disconnect_stops_and_reconnect_reports_again(self) -> None:
        """Disconnected, the loop idles; reconnected, it reports state again."""
        loop, clock, deployer, reports = make_loop(poll=1)
        loop.cluster_updated(Deployment(), DeploymentState())
        loop.disconnected()
        clock.advance(10)
        self.assertEqual(deployer.discovered, 1)
        loop.cluster_updated(Deployment(), DeploymentState())
        self.assertEqual(len(reports), 2)

    def test_stop_waits_for_running_pass(self) -> None:
        """stop() fires only after the running pass ends."""
        loop, clock, deployer, reports = make_loop()
        deployer.gate = Deferred()
        deployer.pending_changes = 1
        loop.cluster_updated(Deployment(), DeploymentState())
        stopped = loop.stop()
        self.assertNoResult(stopped)
        deployer.gate.callback(None)
        self.successResultOf(stopped)
        clock.advance(10)
        self.assertEqual(deployer.discovered, 1)
