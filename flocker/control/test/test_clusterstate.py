"""Tests for flocker.control._clusterstate: merging and expiring node reports."""

from eliot import MemoryLogger
from eliot.testing import LoggedMessage, capture_logging
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from flocker.control import ApplicationHealth, DatasetState, DeploymentState, NodeState
from flocker.control._clusterstate import ClusterStateService
from flocker.control._logging import CONTAINER_STATE_EXPIRED, NODE_STATE_EXPIRED

from ._examples import DATASET_PG, NODE_A, NODE_B

DATASETS = {DATASET_PG: DatasetState(dataset_id=DATASET_PG, path="/flocker/pg")}


class ClusterStateServiceTests(SynchronousTestCase):
    """ClusterStateService merges reports and forgets silent nodes."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.service = ClusterStateService(self.clock, expiration=10)
        self.seen: list[DeploymentState] = []
        self.service.subscribe(self.seen.append)

    def test_merges_halves(self) -> None:
        """The dataset agent's and the container agent's reports combine."""
        self.service.update_node_state(NodeState(uuid=NODE_A, datasets=DATASETS))
        self.service.update_node_state(
            NodeState(uuid=NODE_A, hostname="10.0.0.1", applications={})
        )
        self.assertEqual(
            self.service.as_deployment_state().get_node(NODE_A),
            NodeState(
                uuid=NODE_A, hostname="10.0.0.1", applications={}, datasets=DATASETS
            ),
        )
        self.assertEqual(len(self.seen), 2)

    def test_busy_ports_kept_by_dataset_report(self) -> None:
        """
        The container agent's busy ports stay known when the dataset agent,
        which does not read them, reports; a new container report replaces them.
        """
        self.service.update_node_state(NodeState(uuid=NODE_A, applications={}, busy_ports=[22]))
        self.service.update_node_state(NodeState(uuid=NODE_A, datasets=DATASETS))
        node = self.service.as_deployment_state().get_node(NODE_A)
        self.assertEqual(set(node.busy_ports), {22})
        self.service.update_node_state(NodeState(uuid=NODE_A, applications={}, busy_ports=[]))
        node = self.service.as_deployment_state().get_node(NODE_A)
        self.assertEqual(set(node.busy_ports), set())

    def test_unchanged_report_not_told(self) -> None:
        """A report that changes nothing is not told to subscribers."""
        state = NodeState(uuid=NODE_A, datasets=DATASETS)
        self.service.update_node_state(state)
        self.service.update_node_state(state)
        self.assertEqual(len(self.seen), 1)

    @capture_logging(None)  # type: ignore[untyped-decorator]  # eliot is untyped
    def test_expires_silent_nodes(self, logger: MemoryLogger) -> None:
        """A node silent for the expiration time is forgotten; others stay."""
        self.service.start_expiring(interval=1)
        self.service.update_node_state(NodeState(uuid=NODE_A, datasets=DATASETS))
        self.clock.advance(5)
        self.service.update_node_state(NodeState(uuid=NODE_B, datasets={}))
        self.clock.advance(5)
        self.assertEqual(list(self.service.as_deployment_state().nodes), [NODE_B])
        self.clock.advance(5)
        self.assertEqual(self.service.as_deployment_state(), DeploymentState())
        expired = LoggedMessage.of_type(logger.messages, NODE_STATE_EXPIRED)
        self.assertEqual([m.message["node_uuid"] for m in expired], [NODE_A, NODE_B])
        self.service.stop_expiring()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    @capture_logging(None)  # type: ignore[untyped-decorator]  # eliot is untyped
    def test_silent_container_agent_is_forgotten_while_dataset_agent_reports(
        self, logger: MemoryLogger
    ) -> None:
        """
        A node whose container agent went silent for the expiration time
        while its dataset agent kept reporting loses the container half of
        its state (applications, health, ports, pulls: unknown), once and
        logged; its datasets stay.  The container agent reporting again
        brings its half back.
        """
        health = {"web": ApplicationHealth(application="web", status="healthy")}
        containers = NodeState(
            uuid=NODE_A, hostname="10.0.0.1", applications={}, health=health, busy_ports=[80]
        )
        self.service.update_node_state(NodeState(uuid=NODE_A, datasets=DATASETS), "dataset")
        self.service.update_node_state(containers, "container")
        self.service.touch(NODE_A, "dataset")
        self.service.touch(NODE_A, "container")
        self.clock.advance(6)
        self.service.touch(NODE_A, "dataset")
        self.clock.advance(6)
        self.service.touch(NODE_A, "dataset")
        self.assertEqual(self.service.expire(), [])
        node = self.service.as_deployment_state().get_node(NODE_A)
        self.assertEqual(
            (node.applications, node.health, node.busy_ports, node.datasets, node.hostname),
            (None, None, None, DATASETS, "10.0.0.1"),
        )
        self.assertEqual(self.service.expire(), [])
        expired = LoggedMessage.of_type(logger.messages, CONTAINER_STATE_EXPIRED)
        self.assertEqual([m.message["node_uuid"] for m in expired], [NODE_A])
        self.service.update_node_state(containers, "container")
        self.service.touch(NODE_A, "container")
        self.assertEqual(self.service.as_deployment_state().get_node(NODE_A).health, health)

    def test_container_half_kept_while_its_agent_is_heard(self) -> None:
        """A container agent heard from (a keep-alive) keeps its half of the state."""
        self.service.update_node_state(
            NodeState(uuid=NODE_A, applications={}, datasets=DATASETS), "container"
        )
        for _ in range(3):
            self.clock.advance(6)
            self.service.touch(NODE_A, "container")
            self.service.expire()
        self.assertEqual(self.service.as_deployment_state().get_node(NODE_A).applications, {})

    def test_touch_keeps_alive(self) -> None:
        """A keep-alive postpones expiry without changing the state."""
        self.service.update_node_state(NodeState(uuid=NODE_A, datasets=DATASETS))
        self.clock.advance(8)
        self.service.touch(NODE_A)
        self.clock.advance(8)
        self.assertEqual(self.service.expire(), [])
        self.clock.advance(2)
        self.assertEqual(self.service.expire(), [NODE_A])

    def test_touch_unknown_node(self) -> None:
        """A keep-alive from a node that never reported does nothing."""
        self.service.touch(NODE_A)
        self.clock.advance(20)
        self.assertEqual(self.service.expire(), [])

    def test_last_heard_per_agent_kind(self) -> None:
        """Each agent kind of a node has its own last-heard time."""
        self.assertIsNone(self.service.last_heard(NODE_A))
        self.clock.advance(5)
        self.service.touch(NODE_A, "dataset")
        self.clock.advance(3)
        self.service.touch(NODE_A, "container")
        self.assertEqual(self.service.last_heard(NODE_A), 5)
        self.assertEqual(self.service.last_heard(NODE_A, "dataset"), 5)
        self.assertEqual(self.service.last_heard(NODE_A, "container"), 8)
        self.assertIsNone(self.service.last_heard(NODE_B))

    def test_last_heard_survives_expiry(self) -> None:
        """A node's state expires but when it was last heard from is kept."""
        self.service.update_node_state(NodeState(uuid=NODE_A, datasets=DATASETS))
        self.service.touch(NODE_A, "dataset")
        self.clock.advance(20)
        self.assertEqual(self.service.expire(), [NODE_A])
        self.assertEqual(self.service.last_heard(NODE_A), 0)

    def test_remove_node(self) -> None:
        """A node can be forgotten at once."""
        self.service.update_node_state(NodeState(uuid=NODE_A, datasets=DATASETS))
        self.service.remove_node(NODE_A)
        self.service.remove_node(NODE_B)
        self.assertEqual(self.service.as_deployment_state(), DeploymentState())
        self.clock.advance(20)
        self.assertEqual(self.service.expire(), [])

    def test_failing_subscriber(self) -> None:
        """A subscriber that raises does not stop the others."""

        def boom(state: DeploymentState) -> None:
            raise RuntimeError("bug")

        self.service._subscribers.insert(0, boom)
        self.service.update_node_state(NodeState(uuid=NODE_A))
        self.assertEqual(len(self.seen), 1)


class SharingHooksTests(SynchronousTestCase):
    """
    What a control instance needs to share its agents' reports with other
    instances: listeners for its own reports and signs of life, and ways to
    apply what others shared without echoing it back.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.service = ClusterStateService(self.clock, expiration=10)
        self.reports: list[tuple[NodeState, str | None]] = []
        self.heard: list[tuple[str, str, float]] = []
        self.stop = self.service.listen(
            reports=lambda state, kind: self.reports.append((state, kind)),
            heard=lambda node, kind, when: self.heard.append((node, kind, when)),
        )

    def test_own_reports_and_signs_of_life_are_heard(self) -> None:
        """An agent's report and keep-alive reach the listeners, with its kind."""
        state = NodeState(uuid=NODE_A, datasets=DATASETS)
        self.clock.advance(5)
        self.service.update_node_state(state, "dataset")
        self.service.touch(NODE_A, "dataset")
        self.assertEqual(self.reports, [(state, "dataset")])
        self.assertEqual(self.heard, [(NODE_A, "dataset", 5.0)])

    def test_shared_state_is_merged_but_not_echoed(self) -> None:
        """Another instance's report merges like a report but is not re-shared."""
        self.service.apply_shared_state(NodeState(uuid=NODE_A, datasets=DATASETS))
        self.assertEqual(self.service.as_deployment_state().get_node(NODE_A).datasets, DATASETS)
        self.assertEqual(self.reports, [])

    def test_heard_elsewhere_counts_for_last_heard_and_expiry(self) -> None:
        """
        A sign of life another instance heard keeps the node's state and
        moves its last-heard time forward, never backward.
        """
        self.service.apply_shared_state(NodeState(uuid=NODE_A, datasets=DATASETS))
        self.clock.advance(8)
        self.service.heard_at(NODE_A, "dataset", 8.0)
        self.service.heard_at(NODE_A, "dataset", 3.0)
        self.assertEqual(self.service.last_heard(NODE_A, "dataset"), 8.0)
        self.clock.advance(5)
        self.assertEqual(self.service.expire(), [])
        self.assertEqual(self.heard, [])

    def test_stop_listening(self) -> None:
        """After the returned function is called, listeners hear nothing more."""
        self.stop()
        self.service.update_node_state(NodeState(uuid=NODE_B), "container")
        self.service.touch(NODE_B, "container")
        self.assertEqual((self.reports, self.heard), ([], []))
