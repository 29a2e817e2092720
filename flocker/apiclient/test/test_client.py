"""
The `IFlockerAPIV1Client` contract, run against `FakeFlockerClient` and
against `FlockerClient` talking to the real REST API resource in memory
(``treq.testing.StubTreq``, no sockets).
"""

from __future__ import annotations

from uuid import UUID, uuid4

from treq.testing import StubTreq
from twisted.internet.task import Clock

from flocker.apiclient import FakeFlockerClient, FlockerClient
from flocker.apiclient.testtools import ClientFixture, make_iflockerapiv1client_tests
from flocker.control import (
    ClusterStateService,
    ConfigurationService,
    MemoryConfigurationStore,
)
from flocker.control._state import DatasetState, NodeState, Snapshot
from flocker.control.httpapi import DeletedDatasetCleaner, make_api_resource


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
    )


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
    treq = StubTreq(make_api_resource(configuration, state, clock))

    #: (node, dataset id) → the epoch it was last reported primary at.
    exposed: dict[tuple[str, str], int] = {}

    def converge() -> None:
        """
        Report what the configuration asks for, as agents would: a former
        primary that a failover superseded reports its copy as diverged.
        """
        deployment = configuration.deployment
        epochs = {d.dataset_id: d.epoch for d, _ in deployment.all_datasets()}
        for uuid in map(str, nodes):
            node = deployment.get_node(uuid)
            datasets = {
                k: DatasetState(
                    dataset_id=k,
                    path=f"/flocker/{k}",
                    maximum_size=m.dataset.maximum_size,
                    role="primary",
                    epoch=m.dataset.epoch,
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
                    uuid=uuid, datasets=datasets, applications=dict(node.applications)
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

    return ClientFixture(
        client=FlockerClient(treq, "https://control.example:4523"),
        fence=fence,
        nodes=nodes,
        era=era,
        clock=clock,
        converge=converge,
        heard_from=lambda node: state.touch(str(node), "dataset"),
        flush=treq.flush,
    )


class TestFakeFlockerClient(make_iflockerapiv1client_tests(fake_cluster)):  # type: ignore[misc]
    """The in-memory fake passes the contract."""


class TestFlockerClient(make_iflockerapiv1client_tests(real_cluster)):  # type: ignore[misc]
    """The treq client of the real REST API passes the contract."""


def test_uuid_type() -> None:
    """Node UUIDs in fixtures are UUID values (as the interface promises)."""
    assert isinstance(fake_cluster().nodes[0], UUID)
