"""
Functional tests: `FlockerClient` over real HTTPS counts a connection as
made only once TLS is up, so a stopped instance (its kernel accepts the
connection, nothing answers) and one whose certificate fails are passed
over, even by a write.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import pytest_twisted
from twisted.internet import reactor

from flocker.apiclient import FlockerClient, TLSHandshakeFailed
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

#: Guard against a hung request; the client gives up an instance in 2 s.
HANG_GUARD = 60


@pytest.fixture
def stopped_port() -> Iterator[int]:
    """
    A loopback port where the kernel accepts connections that nobody ever
    reads or answers, as for a stopped process.
    """
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])


async def serve_api(directory: Path, credentials: Any, node: UUID) -> tuple[Any, int]:
    """
    Start the REST API of ``credentials``' cluster, certified by
    ``credentials``' control certificate; the service and its port.
    """
    configuration = ConfigurationService(MemoryConfigurationStore())
    await configuration.load()
    state = ClusterStateService(reactor)
    state.update_node_state(NodeState(uuid=str(node), hostname="127.0.0.11"))
    control = load_tls_files(credentials.control_directory, "control-service")
    service = create_api_service(
        reactor,
        configuration,
        state,
        "tcp:0:interface=127.0.0.1",
        server_context_factory(control.credential, control.authority),
        cluster_uuid=credentials.cluster_uuid,
    )
    service.startService()
    port = (await service.getServiceNamed("api").listening()).getHost().port
    return service, port


@pytest_twisted.ensureDeferred
async def test_a_stopped_instance_is_passed_over(tmp_path: Path, stopped_port: int) -> None:
    """
    A write goes to the next instance when the first accepts the TCP
    connection but never does the TLS handshake.
    """
    cluster = make_test_cluster_credentials(tmp_path, nodes=1)
    (node,) = cluster.node_uuids
    service, port = await serve_api(tmp_path, cluster, node)
    try:
        client = FlockerClient.from_certificates(
            reactor,
            [("127.0.0.1", stopped_port), ("127.0.0.1", port)],
            0,
            cluster.user_directories["alice"],
            "alice",
        )
        dataset = await client.create_dataset(UUID(str(node))).addTimeout(
            HANG_GUARD, reactor
        )
        assert client.base_url == f"https://127.0.0.1:{port}"
        listed = await client.list_datasets_configuration()
        assert set(listed.datasets) == {dataset.dataset_id}
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_an_instance_failing_tls_is_passed_over(tmp_path: Path) -> None:
    """
    An instance whose certificate the client refuses (another cluster's) is
    a connection that was never made: a write goes on to the next one, and
    alone it fails with `TLSHandshakeFailed` saying why.
    """
    (tmp_path / "ours").mkdir()
    (tmp_path / "theirs").mkdir()
    ours = make_test_cluster_credentials(tmp_path / "ours", nodes=1)
    theirs = make_test_cluster_credentials(tmp_path / "theirs", nodes=1)
    (node,) = ours.node_uuids
    foreign, foreign_port = await serve_api(tmp_path, theirs, theirs.node_uuids[0])
    service, port = await serve_api(tmp_path, ours, node)
    try:
        alone = FlockerClient.from_certificates(
            reactor, "127.0.0.1", foreign_port, ours.user_directories["alice"], "alice"
        )
        with pytest.raises(TLSHandshakeFailed) as caught:
            await alone.create_dataset(UUID(str(node))).addTimeout(HANG_GUARD, reactor)
        assert str(caught.value).startswith("TLS handshake failed: ")
        client = FlockerClient.from_certificates(
            reactor,
            [("127.0.0.1", foreign_port), ("127.0.0.1", port)],
            0,
            ours.user_directories["alice"],
            "alice",
        )
        await client.create_dataset(UUID(str(node))).addTimeout(HANG_GUARD, reactor)
        assert client.base_url == f"https://127.0.0.1:{port}"
    finally:
        await service.stopService()
        await foreign.stopService()
