"""
Functional test: `FlockerClient` against the REST API over real HTTPS.

The control service's API listens on 127.0.0.1 port 0 with its certificate;
the client is built from a cluster.json-like mapping naming alice's
certificate directory.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
import pytest_twisted
from twisted.internet import reactor

from flocker.apiclient import FlockerClient, UnknownDataset
from flocker.ca import load_tls_files, server_context_factory
from flocker.ca.testtools import make_test_cluster_credentials
from flocker.control import (
    ClusterStateService,
    ConfigurationService,
    MemoryConfigurationStore,
)
from flocker.control._state import NodeState
from flocker.control.rest_service import create_api_service

pytestmark = pytest.mark.functional

#: Guard against a hung connection; a request never takes anywhere near this.
HANG_GUARD = 30


@pytest_twisted.ensureDeferred
async def test_client_over_https(tmp_path: Path) -> None:
    """The treq client creates, lists and moves datasets over mutual TLS."""
    cluster = make_test_cluster_credentials(tmp_path, nodes=2, users=("alice",))
    configuration = ConfigurationService(MemoryConfigurationStore())
    await configuration.load()
    state = ClusterStateService(reactor)
    for i, uuid in enumerate(cluster.node_uuids):
        state.update_node_state(NodeState(uuid=str(uuid), hostname=f"127.0.0.{i + 1}"))
    control = load_tls_files(cluster.control_directory, "control-service")
    service = create_api_service(
        reactor,
        configuration,
        state,
        "tcp:0:interface=127.0.0.1",
        server_context_factory(control.credential, control.authority),
        cluster_uuid=cluster.cluster_uuid,
    )
    service.startService()
    try:
        port = (await service.getServiceNamed("api").listening()).getHost().port
        client = FlockerClient.from_cluster_config(
            reactor,
            {
                "control_service": "127.0.0.1",
                "control_port": port,
                "certificates_directory": str(cluster.user_directories["alice"]),
                "user": "alice",
            },
        )
        assert await client.version().addTimeout(HANG_GUARD, reactor)
        first, second = (UUID(str(u)) for u in cluster.node_uuids)
        dataset = await client.create_dataset(first, metadata={"name": "pg"})
        moved = await client.move_dataset(second, dataset.dataset_id)
        assert moved.primary == second
        listed = await client.list_datasets_configuration()
        assert dict(listed.datasets) == {dataset.dataset_id: moved}
        assert sorted(n.uuid for n in await client.list_nodes()) == sorted(
            [first, second]
        )
        with pytest.raises(UnknownDataset):
            await client.delete_dataset(UUID(int=1))
    finally:
        await service.stopService()


@pytest.fixture
def dead_port() -> Iterator[int]:
    """
    A loopback port that refuses connections: bound, not listening, and held
    for the test, so that no other process on the machine can take it.
    """
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield int(holder.getsockname()[1])


@pytest_twisted.ensureDeferred
async def test_client_answers_from_the_live_instance(tmp_path: Path, dead_port: int) -> None:
    """
    Given a dead instance first and a live one second, the client's reads
    and writes are answered by the live one over mutual TLS.
    """
    cluster = make_test_cluster_credentials(tmp_path, nodes=1, users=("alice",))
    configuration = ConfigurationService(MemoryConfigurationStore())
    await configuration.load()
    state = ClusterStateService(reactor)
    (node,) = cluster.node_uuids
    state.update_node_state(NodeState(uuid=str(node), hostname="127.0.0.11"))
    control = load_tls_files(cluster.control_directory, "control-service")
    service = create_api_service(
        reactor,
        configuration,
        state,
        "tcp:0:interface=127.0.0.1",
        server_context_factory(control.credential, control.authority),
        cluster_uuid=cluster.cluster_uuid,
    )
    service.startService()
    try:
        port = (await service.getServiceNamed("api").listening()).getHost().port
        client = FlockerClient.from_certificates(
            reactor,
            [("127.0.0.1", dead_port), ("127.0.0.1", port)],
            0,
            cluster.user_directories["alice"],
            "alice",
        )
        # A write whose connection to the dead instance is refused...
        dataset = await client.create_dataset(UUID(str(node))).addTimeout(
            HANG_GUARD, reactor
        )
        assert client.base_url == f"https://127.0.0.1:{port}"
        # ...and reads, from the instance that answered.
        assert await client.version().addTimeout(HANG_GUARD, reactor)
        listed = await client.list_datasets_configuration()
        assert set(listed.datasets) == {dataset.dataset_id}
    finally:
        await service.stopService()
