"""
Functional test of the REST API over real HTTPS with client certificates.

`create_api_service` listens on 127.0.0.1 port 0 with the control service's
certificate; a user certificate from the cluster works, while a client with
no certificate or with one from another cluster is refused at the handshake.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from treq.client import HTTPClient
from twisted.internet import reactor, ssl
from twisted.internet.defer import CancelledError, TimeoutError
from twisted.web.client import Agent
from twisted.web.http_headers import Headers
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from flocker.ca import ClusterPolicyForHTTPS, load_tls_files, server_context_factory
from flocker.ca.testtools import TestClusterCredentials, make_test_cluster_credentials
from flocker.control import (
    ClusterStateService,
    ConfigurationService,
    MemoryConfigurationStore,
)
from flocker.control._state import NodeState
from flocker.control.httpapi import create_api_service

pytestmark = pytest.mark.functional

#: Guard against a hung connection; a request never takes anywhere near this.
HANG_GUARD = 30


@pytest.fixture
def cluster(tmp_path: Path) -> TestClusterCredentials:
    """A cluster: control service on 127.0.0.1, one node, user alice."""
    d = tmp_path / "cluster"
    d.mkdir()
    return make_test_cluster_credentials(d, nodes=1, users=("alice",))


@pytest.fixture
def other_cluster(tmp_path: Path) -> TestClusterCredentials:
    """An unrelated cluster with its own user alice."""
    d = tmp_path / "other"
    d.mkdir()
    return make_test_cluster_credentials(d, nodes=1, users=("alice",))


async def _serve(cluster: TestClusterCredentials) -> tuple[Any, int, Any]:
    """Start the API service for ``cluster``; return (service, port, state)."""
    configuration = ConfigurationService(MemoryConfigurationStore())
    await configuration.load()
    state = ClusterStateService(reactor)
    state.update_node_state(
        NodeState(uuid=str(cluster.node_uuids[0]), hostname="127.0.0.1")
    )
    control = load_tls_files(cluster.control_directory, "control-service")
    service = create_api_service(
        reactor,
        configuration,
        state,
        "tcp:0:interface=127.0.0.1",
        server_context_factory(control.credential, control.authority),
    )
    service.startService()
    port = await service.getServiceNamed("api").listening()
    return service, port.getHost().port, configuration


def _client(policy: Any) -> HTTPClient:
    return HTTPClient(Agent(reactor, contextFactory=policy))


@implementer(IPolicyForHTTPS)
class _Anonymous:
    """A client that trusts the cluster CA but presents no certificate."""

    def __init__(self, ca_pem: bytes) -> None:
        self._ca = ssl.Certificate.loadPEM(ca_pem)

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:  # noqa: N802
        """Options verifying the server against the CA, without a client cert."""
        return ssl.optionsForClientTLS(hostname.decode(), trustRoot=self._ca)


@pytest_twisted.ensureDeferred
async def test_https_with_client_certificates(
    cluster: TestClusterCredentials,
    other_cluster: TestClusterCredentials,
    eliot_logger: Any,
) -> None:
    """A cluster user is served; no certificate or another cluster's is refused."""
    service, port, configuration = await _serve(cluster)
    url = f"https://127.0.0.1:{port}/v1"
    try:
        alice = load_tls_files(cluster.user_directories["alice"], "alice")
        client = _client(ClusterPolicyForHTTPS(alice.credential, alice.authority))
        response = await client.get(f"{url}/version").addTimeout(HANG_GUARD, reactor)
        assert response.code == 200
        assert "flocker" in await response.json()

        node = str(cluster.node_uuids[0])
        response = await client.post(
            f"{url}/configuration/datasets",
            data=json.dumps({"primary": node}).encode(),
            headers=Headers({b"content-type": [b"application/json"]}),
        ).addTimeout(HANG_GUARD, reactor)
        assert response.code == 201
        created = await response.json()
        assert configuration.deployment.get_dataset(created["dataset_id"])[1] == node

        anonymous = _client(_Anonymous(alice.authority.certificate_pem()))
        with pytest.raises(Exception) as refused:  # noqa: B017 - TLS failures vary
            await anonymous.get(f"{url}/version").addTimeout(HANG_GUARD, reactor)
        assert not refused.errisinstance((TimeoutError, CancelledError))

        intruder = load_tls_files(other_cluster.user_directories["alice"], "alice")
        # The intruder trusts our CA, so only the server's check stops it.
        foreign = _client(ClusterPolicyForHTTPS(intruder.credential, alice.authority))
        with pytest.raises(Exception) as refused:  # noqa: B017 - TLS failures vary
            await foreign.get(f"{url}/version").addTimeout(HANG_GUARD, reactor)
        assert not refused.errisinstance((TimeoutError, CancelledError))
        assert len(list(configuration.deployment.all_datasets())) == 1
        # Each request names its client in its own eliot action.
        requests = {
            m["task_uuid"]
            for m in eliot_logger.messages
            if m.get("action_type") == "flocker:control:rest:request"
        }
        identified = [
            m
            for m in eliot_logger.messages
            if m.get("message_type") == "flocker:ca:peer_identified"
            and m["task_uuid"] in requests
        ]
        assert [m["username"] for m in identified] == ["alice", "alice"]
    finally:
        await service.stopService()
