"""
The `IFlockerAPIV1Client` contract, run against `FakeFlockerClient` and
against `FlockerClient` talking to the real REST API resource in memory
(``treq.testing.StubTreq``, no sockets).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from uuid import UUID, uuid4

import attrs
import pytest
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from flocker.apiclient import FakeFlockerClient, FlockerClient, Transfer
from flocker.apiclient.testtools import ClientFixture, make_iflockerapiv1client_tests
from flocker.control import (
    AutomaticRollback,
    ClusterStateService,
    ConfigurationService,
    MemoryConfigurationStore,
    instance_nodes,
    instance_placement,
)
from flocker.control._maintenance import DeletedDatasetCleaner
from flocker.control._protocol import AgentUnavailable
from flocker.control._state import ApplicationHealth, DatasetState, NodeState, Snapshot
from flocker.control.rest_service import make_api_resource
from flocker.node._roles import PRIMARY, MemoryRoles
from flocker.node._snapshots import SnapshotOperations
from flocker.volume.memory import MemoryVolumeBackend


def _clock() -> Clock:
    clock = Clock()
    clock.advance(1_000_000)
    return clock


def fake_cluster() -> ClientFixture:
    """A `FakeFlockerClient` with two known nodes."""
    clock = _clock()
    client = FakeFlockerClient(clock)
    nodes, era = [uuid4(), uuid4()], uuid4()
    client.add_node(nodes[0], "10.0.0.1", era)
    client.add_node(nodes[1], "10.0.0.2")
    return ClientFixture(
        client=client,
        nodes=nodes,
        era=era,
        clock=clock,
        converge=client.synchronize_state,
        heard_from=client.heard_from,
        fence=client.fence,
        report_transfers=client.report_transfers,
        disconnect_agent=client.disconnect_agent,
        report_health=client.report_health,
    )


@attrs.define(eq=False)
class _Connection:
    """A dataset agent's connection answering `TransfersCommand` (or failing)."""

    node_uuid: str
    transfers: list[dict[str, Any]] | None
    agent_kind: str = "dataset"

    def callRemote(self, command: Any, **arguments: Any) -> Deferred[Any]:  # noqa: N802
        """Answer the transfers at once; an unanswering agent fails at once."""
        if self.transfers is None:
            return fail(TimeoutError("no answer"))
        return succeed({"result": json.dumps(self.transfers)})


@attrs.define
class _Agents:
    """
    The nodes' dataset agents as the control service reaches them: each
    node's real `SnapshotOperations` over an in-memory backend.
    """

    backends: dict[str, MemoryVolumeBackend]
    roles: dict[str, MemoryRoles]
    connections: frozenset[_Connection] = frozenset()
    disconnected: set[str] = attrs.field(factory=set)

    @classmethod
    def of(cls, nodes: Sequence[UUID]) -> _Agents:
        """Agents of ``nodes``, holding nothing yet."""
        return cls(
            {str(n): MemoryVolumeBackend() for n in nodes},
            {str(n): MemoryRoles() for n in nodes},
        )

    def snapshot_operation(
        self, node_uuid: str, operation: str, dataset_id: str, name: str = ""
    ) -> Deferred[dict[str, Any]]:
        """Run a snapshot operation on the node's agent (if it is connected)."""
        if node_uuid in self.disconnected:
            return fail(AgentUnavailable(node_uuid))
        operations = SnapshotOperations(self.backends[node_uuid], self.roles[node_uuid])
        return operations(operation, dataset_id, name)

    def report_transfers(
        self, transfers: Sequence[Transfer], unanswered: Sequence[UUID] = ()
    ) -> None:
        """Make the agents answer these transfers (``unanswered`` ones fail)."""
        by_node: dict[str, list[dict[str, Any]] | None] = {n: [] for n in self.backends}
        for node in unanswered:
            by_node[str(node)] = None
        for t in transfers:
            entries = by_node[str(t.node_uuid)]
            assert entries is not None
            entries.append(
                {
                    "dataset_id": str(t.dataset_id),
                    "snapshot": t.snapshot,
                    "base": t.base,
                    "bytes": t.bytes,
                    "size": t.size,
                }
            )
        self.connections = frozenset(_Connection(n, e) for n, e in by_node.items())


def real_cluster() -> ClientFixture:
    """A `FlockerClient` of the control service's REST API, in memory."""
    clock = _clock()
    configuration = ConfigurationService(MemoryConfigurationStore())
    configuration.load()
    state = ClusterStateService(clock)
    nodes, era = [uuid4(), uuid4()], uuid4()
    state.update_node_state(
        NodeState(uuid=str(nodes[0]), hostname="10.0.0.1", era=str(era))
    )
    state.update_node_state(NodeState(uuid=str(nodes[1]), hostname="10.0.0.2"))
    DeletedDatasetCleaner(configuration, state).startService()
    AutomaticRollback(configuration, state).startService()
    agents = _Agents.of(nodes)
    treq = StubTreq(make_api_resource(configuration, state, clock, agents))

    #: (node, dataset id) → the epoch it was last reported primary at.
    exposed: dict[tuple[str, str], int] = {}
    #: dataset id → the request id of the last rollback done.
    done: dict[str, str] = {}

    def expose(node: str, dataset_id: str, rollback: Any) -> list[Snapshot]:
        """
        The node's agent exposes the dataset (doing the rollback asked
        for); its snapshots.
        """
        backend = agents.backends[node]
        held: Any = backend.list_datasets().result
        if dataset_id not in {d.dataset_id for d in held}:
            backend.create(dataset_id)
        agents.roles[node].set(dataset_id, PRIMARY)
        if rollback is not None and done.get(dataset_id) != rollback.request_id:
            backend.rollback(dataset_id, rollback.snapshot)
            done[dataset_id] = rollback.request_id
        snapshots: Any = backend.list_snapshots(dataset_id).result
        return [Snapshot(name=s.name, created=s.created) for s in snapshots]

    def converge() -> None:
        """
        Report what the configuration asks for, as agents would: each
        primary copy is exposed (rollbacks asked for done) with its
        snapshots; a former primary that a failover superseded reports its
        copy as diverged; the datasets deleted there are seen deleted;
        each instance of an application runs on its node.
        """
        deployment = configuration.deployment
        epochs = {d.dataset_id: d.epoch for d, _ in deployment.all_datasets()}
        running: dict[str, dict[str, Any]] = {str(n): {} for n in nodes}
        for app, home in deployment.all_applications():
            for node_uuid in instance_nodes(app, home, running):
                running[node_uuid][app.name] = app
        for uuid in map(str, nodes):
            node = deployment.get_node(uuid)
            datasets = {
                k: DatasetState(
                    dataset_id=k,
                    path=f"/flocker/{k}",
                    maximum_size=m.dataset.maximum_size,
                    role="primary",
                    epoch=m.dataset.epoch,
                    snapshots=expose(uuid, k, m.dataset.rollback),
                    rolled_back=done.get(k),
                )
                for k, m in node.manifestations.items()
                if m.primary and not m.dataset.deleted
            }
            now = clock.seconds()
            datasets.update(
                {
                    k: DatasetState(
                        dataset_id=k,
                        role="replica",
                        snapshots=[Snapshot(name="replicated", created=now)],
                    )
                    for k, m in node.manifestations.items()
                    if m.standing and not m.dataset.deleted
                }
            )
            for (holder, k), epoch in list(exposed.items()):
                if (
                    holder == uuid
                    and k not in datasets
                    and epochs.get(k, epoch) > epoch
                ):
                    datasets[k] = DatasetState(
                        dataset_id=k,
                        role="diverged",
                        epoch=epoch,
                        snapshots=[Snapshot(name="replicated", created=now)],
                    )
            for k, m in node.manifestations.items():
                if m.primary and not m.dataset.deleted:
                    exposed[(uuid, k)] = m.dataset.epoch
            state.update_node_state(
                NodeState(
                    uuid=uuid,
                    datasets=datasets,
                    applications=running[uuid],
                    deletions_seen=[
                        k for k, m in node.manifestations.items() if m.dataset.deleted
                    ],
                )
            )

    def fence(node: UUID) -> None:
        """The node's dataset agent reports its primaries fenced."""
        deployment = configuration.deployment
        held = deployment.get_node(str(node)).manifestations
        reported = dict(state.as_deployment_state().get_node(str(node)).datasets or {})
        for k, m in held.items():
            if m.primary and not m.dataset.deleted:
                reported[k] = DatasetState(
                    dataset_id=k, role="fenced", epoch=m.dataset.epoch
                )
        state.update_node_state(NodeState(uuid=str(node), datasets=reported))

    def report_health(
        name: str, status: str, reason: str | None, node_uuid: UUID | None = None
    ) -> None:
        """
        The node running the application (``node_uuid``, or its own node)
        reports its health at its revision, for each of its instances
        there (``name``, and ``name..k`` for the extra ones), with what it
        reported of the others.
        """
        app, home = configuration.deployment.get_application(name)
        node = home if node_uuid is None else str(node_uuid)
        current = state.as_deployment_state()
        known = [u for u, n in current.nodes.items() if n.applications is not None]
        instances = {
            instance
            for where, instance in instance_placement(app, home, known)
            if where == node
        } | {name}
        reported = dict(current.get_node(node).health or {})
        for instance in instances:
            reported[instance] = ApplicationHealth(
                application=instance,
                status=status,
                revision=app.revision,
                reason=reason,
                since=clock.seconds(),
            )
        state.update_node_state(NodeState(uuid=node, health=reported), "container")

    return ClientFixture(
        client=FlockerClient(treq, "https://control.example:4523"),
        fence=fence,
        nodes=nodes,
        era=era,
        clock=clock,
        converge=converge,
        heard_from=lambda node: state.touch(str(node), "dataset"),
        flush=treq.flush,
        report_transfers=agents.report_transfers,
        disconnect_agent=lambda node: agents.disconnected.add(str(node)),
        report_health=report_health,
    )


class TestFakeFlockerClient(make_iflockerapiv1client_tests(fake_cluster)):  # type: ignore[misc]
    """The in-memory fake passes the contract."""


class TestFlockerClient(make_iflockerapiv1client_tests(real_cluster)):  # type: ignore[misc]
    """The treq client of the real REST API passes the contract."""


def test_uuid_type() -> None:
    """Node UUIDs in fixtures are UUID values (as the interface promises)."""
    assert isinstance(fake_cluster().nodes[0], UUID)


def test_contract_parts_do_not_hide_each_others_tests() -> None:
    """No two parts of the contract suite name a test alike (one would hide the other)."""
    from flocker.apiclient._contract_cloning import CloningContract
    from flocker.apiclient._contract_containers import ContainerUpdateContract

    def tests(cls: type) -> set[str]:
        return {name for name in vars(cls) if name.startswith("test_")}

    suite = make_iflockerapiv1client_tests(fake_cluster)
    parts = [tests(suite), tests(CloningContract), tests(ContainerUpdateContract)]
    assert all(not (a & b) for i, a in enumerate(parts) for b in parts[i + 1 :])


def test_fake_health_report_of_an_unconfigured_container_names_its_node() -> None:
    """
    The fake's health report of a container no longer configured needs
    the reporting node (there is no container's node to default to); an
    unknown status is refused.
    """
    cluster = fake_cluster()
    client = cluster.client
    with pytest.raises(ValueError, match="name the node"):
        client.report_health("web", "healthy")
    client.report_health("web", "healthy", node_uuid=cluster.nodes[1])
    with pytest.raises(ValueError, match="not a health status"):
        client.report_health("web", "fine", node_uuid=cluster.nodes[1])
