"""Unit tests for identity parsing and credential loading in flocker.ca._tls."""

import shutil
from pathlib import Path
from typing import cast
from uuid import uuid4

import pytest
from eliot import MemoryLogger
from OpenSSL.crypto import X509
from pyrsistent import InvariantException
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, ISSLTransport
from twisted.internet.ssl import CertificateOptions
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface.verify import verifyObject

from flocker.ca import (
    CertificateError,
    ClusterPolicyForHTTPS,
    PeerIdentity,
    UnknownPeer,
    client_context_factory,
    identify_certificate,
    load_tls_files,
    node_client_context_factory,
    peer_identity,
    server_context_factory,
)
from flocker.ca._ca import issue_certificate, make_authority
from flocker.ca._logging import PEER_IDENTIFIED
from flocker.ca._tls import PeerRejected, _check_hostname, _check_node
from flocker.ca.testtools import TestClusterCredentials, make_test_cluster_credentials


@pytest.fixture
def cluster(tmp_path: Path) -> TestClusterCredentials:
    """A test cluster's credentials."""
    return make_test_cluster_credentials(tmp_path, nodes=2, users=("alice", "plugin"))


class FakeTLSTransport:
    """Just enough of an ISSLTransport for peer_identity."""

    def __init__(self, certificate: X509 | None) -> None:
        self._certificate = certificate

    def getPeerCertificate(self) -> X509 | None:  # noqa: N802
        """Return the certificate given at construction."""
        return self._certificate


def test_identify_node(cluster: TestClusterCredentials) -> None:
    """A node certificate identifies a node with its UUID and the cluster's UUID."""
    files = load_tls_files(cluster.node_directories[1], "node")
    assert identify_certificate(files.credential.certificate) == PeerIdentity(
        kind="node", node_uuid=cluster.node_uuids[1], cluster_uuid=cluster.cluster_uuid
    )


def test_identify_control(cluster: TestClusterCredentials) -> None:
    """The control certificate identifies the control service."""
    files = load_tls_files(cluster.control_directory, "control-service")
    assert identify_certificate(files.credential.certificate) == PeerIdentity(
        kind="control", cluster_uuid=cluster.cluster_uuid
    )


def test_identify_user(cluster: TestClusterCredentials) -> None:
    """An API certificate identifies the user by name."""
    files = load_tls_files(cluster.user_directories["plugin"], "plugin")
    assert identify_certificate(files.credential.certificate) == PeerIdentity(
        kind="user", username="plugin", cluster_uuid=cluster.cluster_uuid
    )


@pytest.mark.parametrize("common_name", ["node-notauuid", "user-", "admin", "node-"])
def test_identify_unknown(common_name: str) -> None:
    """A certificate whose common name is not a Flocker party raises UnknownPeer."""
    authority = make_authority("c")
    credential = issue_certificate(authority, common_name, server=True, client=True)
    with pytest.raises(UnknownPeer):
        identify_certificate(credential.certificate)


def test_identify_ca() -> None:
    """The CA's own certificate names no party and raises UnknownPeer."""
    authority = make_authority("c")
    with pytest.raises(UnknownPeer, match="not a Flocker party"):
        identify_certificate(authority.certificate)


def test_peer_identity_invariants() -> None:
    """PeerIdentity refuses a node without a UUID, a user without a name, unknown kinds."""
    cluster_uuid = uuid4()
    with pytest.raises(InvariantException):
        PeerIdentity(kind="node", cluster_uuid=cluster_uuid)
    with pytest.raises(InvariantException):
        PeerIdentity(kind="user", cluster_uuid=cluster_uuid)
    with pytest.raises(InvariantException):
        PeerIdentity(kind="control", username="x", cluster_uuid=cluster_uuid)
    with pytest.raises(InvariantException):
        PeerIdentity(kind="admin", cluster_uuid=cluster_uuid)


def test_peer_identity_from_transport(
    eliot_logger: MemoryLogger, tmp_path: Path
) -> None:
    """peer_identity reads the transport's peer certificate and logs the identity."""
    cluster = make_test_cluster_credentials(tmp_path)
    files = load_tls_files(cluster.node_directories[0], "node")
    transport = FakeTLSTransport(X509.from_cryptography(files.credential.certificate))
    identity = peer_identity(cast(ISSLTransport, transport))
    assert identity.node_uuid == cluster.node_uuids[0]
    (message,) = eliot_logger.messages
    assert message["message_type"] == PEER_IDENTIFIED.message_type
    assert message["node_uuid"] == str(cluster.node_uuids[0])
    assert message["kind"] == "node"


def test_peer_identity_no_certificate() -> None:
    """A transport without a peer certificate raises UnknownPeer."""
    with pytest.raises(UnknownPeer, match="no certificate"):
        peer_identity(cast(ISSLTransport, FakeTLSTransport(None)))


def test_load_tls_files_other_cluster(
    cluster: TestClusterCredentials, tmp_path: Path
) -> None:
    """A credential not issued by the directory's cluster.crt is refused on load."""
    other = tmp_path / "other"
    other.mkdir()
    other_cluster = make_test_cluster_credentials(other, nodes=1, users=())
    mixed = tmp_path / "mixed"
    shutil.copytree(cluster.node_directories[0], mixed)
    shutil.copyfile(other_cluster.ca_certificate, mixed / "cluster.crt")
    with pytest.raises(CertificateError, match="not issued by this cluster's CA"):
        load_tls_files(mixed, "node")


def test_load_tls_files_missing(cluster: TestClusterCredentials) -> None:
    """Loading a credential that is not there names the missing file."""
    with pytest.raises(CertificateError, match="node.crt does not exist"):
        load_tls_files(cluster.control_directory, "node")


def test_context_factories(cluster: TestClusterCredentials) -> None:
    """The factories build usable OpenSSL contexts and connection creators."""
    files = load_tls_files(cluster.node_directories[0], "node")
    server = server_context_factory(files.credential, files.authority)
    assert isinstance(server, CertificateOptions)
    assert server.getContext() is not None
    assert verifyObject(
        IOpenSSLClientConnectionCreator,
        client_context_factory(files.credential, files.authority, "127.0.0.1"),
    )
    assert verifyObject(
        IOpenSSLClientConnectionCreator,
        node_client_context_factory(files.credential, files.authority),
    )


def test_policy_for_https(cluster: TestClusterCredentials) -> None:
    """ClusterPolicyForHTTPS provides IPolicyForHTTPS and makes client creators."""
    files = load_tls_files(cluster.user_directories["alice"], "alice")
    policy = ClusterPolicyForHTTPS(files.credential, files.authority)
    assert verifyObject(IPolicyForHTTPS, policy)
    assert verifyObject(
        IOpenSSLClientConnectionCreator, policy.creatorForNetloc(b"127.0.0.1", 4523)
    )


def test_hostname_check(cluster: TestClusterCredentials) -> None:
    """The client's hostname check accepts the control certificate and refuses others."""
    control = load_tls_files(cluster.control_directory, "control-service")
    a_node = load_tls_files(cluster.node_directories[0], "node")
    _check_hostname("127.0.0.1")(control.credential.certificate)
    with pytest.raises(PeerRejected, match="not for 127.0.0.2"):
        _check_hostname("127.0.0.2")(control.credential.certificate)
    with pytest.raises(PeerRejected, match="not for example.com"):
        _check_hostname("example.com")(control.credential.certificate)
    with pytest.raises(PeerRejected, match="not for 127.0.0.1"):
        _check_hostname("127.0.0.1")(a_node.credential.certificate)


def test_node_check(cluster: TestClusterCredentials) -> None:
    """The node check accepts the expected node and refuses other nodes and parties."""
    nodes = [load_tls_files(d, "node") for d in cluster.node_directories]
    control = load_tls_files(cluster.control_directory, "control-service")
    _check_node(None)(nodes[0].credential.certificate)
    _check_node(cluster.node_uuids[1])(nodes[1].credential.certificate)
    with pytest.raises(PeerRejected, match="not node"):
        _check_node(cluster.node_uuids[1])(nodes[0].credential.certificate)
    with pytest.raises(PeerRejected, match="not a node"):
        _check_node(None)(control.credential.certificate)
