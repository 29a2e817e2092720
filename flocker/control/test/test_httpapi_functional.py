"""
Functional test of the REST API over real HTTPS with client certificates.

`create_api_service` listens on 127.0.0.1 port 0 with the control service's
certificate; a user certificate from the cluster works, while a client with
no certificate or with one from another CA is refused at the handshake, and
node, control and other clusters' certificates signed by the same CA get 403.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from uuid import UUID

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
from flocker.ca._ca import (
    CertificateAuthority,
    Credential,
    issue_certificate,
    load_authority,
)
from flocker.ca.testtools import TestClusterCredentials, make_test_cluster_credentials
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
        cluster_uuid=cluster.cluster_uuid,
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


class _OtherClusterAuthority(CertificateAuthority):
    """The cluster's own CA (same key, same subject) naming another cluster."""

    @property
    def cluster_uuid(self) -> UUID:
        """A cluster that is not the control service's."""
        return OTHER_CLUSTER


#: The cluster a same-CA foreign certificate names.
OTHER_CLUSTER = UUID("0ce0ce0c-0000-4000-8000-000000000000")


def _credentials(cluster: TestClusterCredentials) -> dict[str, Credential]:
    """Every client certificate signed by the cluster's CA, by who holds it."""
    authority = load_authority(cluster.directory, with_key=True)
    foreign = _OtherClusterAuthority(
        certificate=authority.certificate, private_key=authority.private_key
    )
    return {
        "user": load_tls_files(cluster.user_directories["alice"], "alice").credential,
        "node": load_tls_files(cluster.node_directories[0], "node").credential,
        "control": load_tls_files(cluster.control_directory, "control-service").credential,
        "other cluster's user": issue_certificate(
            foreign, "user-mallory", server=False, client=True
        ),
    }


@pytest_twisted.ensureDeferred
async def test_only_this_clusters_users_are_served(
    cluster: TestClusterCredentials,
) -> None:
    """
    Over real TLS, a user certificate of the cluster is served; a node's,
    the control service's, and a user certificate of another cluster signed
    by the same CA get 403 with a JSON description, on reads, writes and
    paths that do not exist alike, and change nothing.
    """
    service, port, configuration = await _serve(cluster)
    url = f"https://127.0.0.1:{port}"
    authority = load_authority(cluster.directory)
    node = str(cluster.node_uuids[0])
    answers: dict[str, list[tuple[int, str]]] = {}
    try:
        for holder, credential in _credentials(cluster).items():
            client = _client(ClusterPolicyForHTTPS(credential, authority))
            answers[holder] = []
            for method, path, body in [
                ("GET", "/v1/version", None),
                ("POST", "/v1/configuration/datasets", {"primary": node}),
                ("GET", "/metrics", None),
            ]:
                response = await client.request(
                    method,
                    url + path,
                    data=None if body is None else json.dumps(body).encode(),
                ).addTimeout(HANG_GUARD, reactor)
                answer = await response.json()
                answers[holder].append((response.code, answer.get("description", "")))
    finally:
        await service.stopService()
    assert [code for code, _ in answers["user"]] == [200, 201, 404]
    for holder in ("node", "control", "other cluster's user"):
        assert [code for code, _ in answers[holder]] == [403, 403, 403], holder
    assert "not a node certificate" in answers["node"][0][1]
    assert "not a control certificate" in answers["control"][0][1]
    assert str(OTHER_CLUSTER) in answers["other cluster's user"][0][1]
    assert len(list(configuration.deployment.all_datasets())) == 1
