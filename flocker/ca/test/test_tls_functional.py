"""
Functional tests: real TLS connections on loopback with the cluster's certificates.

Each test listens on port 0 with :func:`server_context_factory`, connects with
one of the client factories, and checks who each side sees -- or that the
handshake fails when it must.
"""

from pathlib import Path
from typing import cast

import attrs
import pytest
import pytest_twisted
from eliot import MemoryLogger
from treq.client import HTTPClient
from twisted.internet import reactor, ssl
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import SSL4ClientEndpoint, SSL4ServerEndpoint
from twisted.internet.interfaces import (
    IHandshakeListener,
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
    ISSLTransport,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import Agent
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from zope.interface import implementer

from flocker.ca import (
    ClusterPolicyForHTTPS,
    PeerIdentity,
    TLSFiles,
    client_context_factory,
    load_tls_files,
    node_client_context_factory,
    peer_identity,
    server_context_factory,
)
from flocker.ca.testtools import TestClusterCredentials, make_test_cluster_credentials

pytestmark = pytest.mark.functional

#: Guard against a hung handshake: a test never takes anywhere near this long.
HANG_GUARD = 30


class HandshakeFailed(Exception):
    """The connection closed before the server's reply arrived."""


def _tls(protocol: Protocol) -> ISSLTransport:
    """The protocol's transport, which is a TLS one in these tests."""
    assert protocol.transport is not None
    return cast(ISSLTransport, protocol.transport)


@implementer(IHandshakeListener)
class _Server(Protocol):
    """Records the client's identity; answers one line naming it."""

    factory: "_ServerFactory"
    identity: PeerIdentity

    def handshakeCompleted(self) -> None:  # noqa: N802
        """Record who the client is."""
        self.identity = peer_identity(_tls(self))
        self.factory.seen.append(self.identity)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        """Reply with the client's identity as seen here."""
        _tls(self).write(repr(self.identity.serialize()).encode() + b"\n")


class _ServerFactory(Factory[_Server]):
    """Makes ``_Server``s and keeps the identities they saw."""

    protocol = _Server

    def __init__(self) -> None:
        self.seen: list[PeerIdentity] = []


@implementer(IHandshakeListener)
class _Client(Protocol):
    """Records the server's identity, says hello, waits for the reply."""

    def __init__(self) -> None:
        self.done: Deferred[tuple[PeerIdentity | None, bytes]] = Deferred()
        self.server_identity: PeerIdentity | None = None

    def handshakeCompleted(self) -> None:  # noqa: N802
        """Record who the server is and say hello."""
        self.server_identity = peer_identity(_tls(self))
        _tls(self).write(b"hello\n")

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        """The server answered: the connection works both ways."""
        _tls(self).loseConnection()
        self.done.callback((self.server_identity, data))

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        """Fail if the server never answered."""
        if not self.done.called:
            self.done.errback(HandshakeFailed(reason.getErrorMessage()))


@attrs.define
class Exchange:
    """What both ends of a successful connection saw."""

    client_saw: PeerIdentity
    server_saw: PeerIdentity


async def exchange(
    server_options: IOpenSSLServerConnectionCreator,
    client_options: IOpenSSLClientConnectionCreator,
    interface: str = "127.0.0.1",
    connect_to: str | None = None,
) -> Exchange:
    """
    Listen with ``server_options`` and connect with ``client_options``.

    :return: An ``Exchange`` if both sides talked over the TLS connection.
    :raise HandshakeFailed: If the connection closed before that; the server
        then must not have identified any client.
    """
    factory = _ServerFactory()
    port = await SSL4ServerEndpoint(
        reactor, 0, server_options, interface=interface
    ).listen(factory)
    try:
        client = _Client()
        endpoint = SSL4ClientEndpoint(
            reactor, connect_to or interface, port.getHost().port, client_options
        )
        await endpoint.connect(Factory.forProtocol(lambda: client))
        try:
            server_saw, reply = await client.done.addTimeout(HANG_GUARD, reactor)
        except HandshakeFailed:
            # The server never accepted the client, however far the
            # handshake got.
            assert factory.seen == []
            raise
        (seen,) = factory.seen
        assert server_saw is not None
        assert repr(seen.serialize()).encode() + b"\n" == reply
        return Exchange(client_saw=server_saw, server_saw=seen)
    finally:
        await port.stopListening()


@pytest.fixture
def cluster(tmp_path: Path) -> TestClusterCredentials:
    """A cluster with a control service on 127.0.0.1, two nodes and alice."""
    d = tmp_path / "cluster"
    d.mkdir()
    return make_test_cluster_credentials(d, nodes=2, users=("alice",))


@pytest.fixture
def other_cluster(tmp_path: Path) -> TestClusterCredentials:
    """A second, unrelated cluster with the same layout."""
    d = tmp_path / "other"
    d.mkdir()
    return make_test_cluster_credentials(d, nodes=1, users=("alice",))


def control(cluster: TestClusterCredentials) -> TLSFiles:
    """The control service's TLS files."""
    return load_tls_files(cluster.control_directory, "control-service")


def node(cluster: TestClusterCredentials, i: int = 0) -> TLSFiles:
    """Node ``i``'s TLS files."""
    return load_tls_files(cluster.node_directories[i], "node")


def server(files: TLSFiles) -> IOpenSSLServerConnectionCreator:
    """Server options from TLS files."""
    return server_context_factory(files.credential, files.authority)


def to_control(
    files: TLSFiles, hostname: str = "127.0.0.1"
) -> IOpenSSLClientConnectionCreator:
    """Client options for connecting to the control service."""
    return client_context_factory(files.credential, files.authority, hostname)


@pytest_twisted.ensureDeferred
async def test_node_to_control(cluster: TestClusterCredentials) -> None:
    """A node and the control service authenticate each other and see who the other is."""
    result = await exchange(server(control(cluster)), to_control(node(cluster, 1)))
    assert result.client_saw == PeerIdentity(
        kind="control", cluster_uuid=cluster.cluster_uuid
    )
    assert result.server_saw == PeerIdentity(
        kind="node", node_uuid=cluster.node_uuids[1], cluster_uuid=cluster.cluster_uuid
    )


@pytest_twisted.ensureDeferred
async def test_user_to_control(cluster: TestClusterCredentials) -> None:
    """An API user is identified by name by the control service."""
    alice = load_tls_files(cluster.user_directories["alice"], "alice")
    result = await exchange(server(control(cluster)), to_control(alice))
    assert result.server_saw == PeerIdentity(
        kind="user", username="alice", cluster_uuid=cluster.cluster_uuid
    )


@pytest_twisted.ensureDeferred
async def test_control_on_node_address(tmp_path: Path) -> None:
    """A control certificate for 127.0.0.11 is verified when connecting to 127.0.0.11."""
    cluster = make_test_cluster_credentials(tmp_path, control_hostname="127.0.0.11")
    result = await exchange(
        server(control(cluster)),
        to_control(node(cluster), "127.0.0.11"),
        interface="127.0.0.11",
    )
    assert result.client_saw.kind == "control"


@pytest_twisted.ensureDeferred
async def test_control_dns_name(tmp_path: Path) -> None:
    """A control certificate for a DNS name is verified when connecting by that name."""
    cluster = make_test_cluster_credentials(tmp_path, control_hostname="localhost")
    result = await exchange(
        server(control(cluster)),
        to_control(node(cluster), "localhost"),
        connect_to="localhost",
    )
    assert result.client_saw.kind == "control"


@pytest_twisted.ensureDeferred
async def test_hostname_mismatch(tmp_path: Path) -> None:
    """A client refuses a control certificate issued for another address."""
    cluster = make_test_cluster_credentials(tmp_path, control_hostname="127.0.0.11")
    with pytest.raises(HandshakeFailed):
        await exchange(server(control(cluster)), to_control(node(cluster), "127.0.0.1"))


@pytest_twisted.ensureDeferred
async def test_no_client_certificate(cluster: TestClusterCredentials) -> None:
    """A client without a certificate cannot connect."""
    files = node(cluster)
    anonymous = ssl.optionsForClientTLS(
        "127.0.0.1",
        trustRoot=ssl.Certificate.loadPEM(files.authority.certificate_pem()),
    )
    with pytest.raises(HandshakeFailed):
        await exchange(server(control(cluster)), anonymous)


@pytest_twisted.ensureDeferred
async def test_client_from_other_cluster(
    cluster: TestClusterCredentials, other_cluster: TestClusterCredentials
) -> None:
    """A client certificate from another cluster's CA is refused by the server."""
    intruder = node(other_cluster)
    # The intruder trusts our CA (it knows our public cluster.crt), so only
    # the server's check of the client certificate can stop it.
    options = client_context_factory(
        intruder.credential, control(cluster).authority, "127.0.0.1"
    )
    with pytest.raises(HandshakeFailed):
        await exchange(server(control(cluster)), options)


@pytest_twisted.ensureDeferred
async def test_server_from_other_cluster(
    cluster: TestClusterCredentials, other_cluster: TestClusterCredentials
) -> None:
    """A client refuses a server whose certificate comes from another cluster's CA."""
    impostor = control(other_cluster)
    # The impostor server even accepts our clients (trusts our CA).
    options = server_context_factory(impostor.credential, control(cluster).authority)
    with pytest.raises(HandshakeFailed):
        await exchange(options, to_control(node(cluster)))


@pytest_twisted.ensureDeferred
async def test_node_posing_as_control(cluster: TestClusterCredentials) -> None:
    """A client refuses a same-cluster node certificate serving as the control service."""
    with pytest.raises(HandshakeFailed):
        await exchange(server(node(cluster, 1)), to_control(node(cluster, 0)))


@pytest_twisted.ensureDeferred
async def test_node_to_node(cluster: TestClusterCredentials) -> None:
    """A node connects to another node's server, which it accepts as that node."""
    source, target = node(cluster, 0), node(cluster, 1)
    options = node_client_context_factory(
        source.credential, source.authority, cluster.node_uuids[1]
    )
    result = await exchange(server(target), options)
    assert result.client_saw.node_uuid == cluster.node_uuids[1]
    assert result.server_saw.node_uuid == cluster.node_uuids[0]


@pytest_twisted.ensureDeferred
async def test_node_to_wrong_node(
    cluster: TestClusterCredentials, eliot_logger: MemoryLogger
) -> None:
    """A node refuses a peer that is a different node than the one it expected."""
    source, target = node(cluster, 0), node(cluster, 1)
    options = node_client_context_factory(
        source.credential, source.authority, cluster.node_uuids[0]
    )
    with pytest.raises(HandshakeFailed):
        await exchange(server(target), options)
    assert any(
        m.get("message_type") == "flocker:ca:peer_rejected"
        for m in eliot_logger.messages
    )


@pytest_twisted.ensureDeferred
async def test_node_to_non_node(cluster: TestClusterCredentials) -> None:
    """A node connecting to a node port refuses a peer that is not a node."""
    source = node(cluster, 0)
    options = node_client_context_factory(source.credential, source.authority)
    with pytest.raises(HandshakeFailed):
        await exchange(server(control(cluster)), options)


@pytest_twisted.ensureDeferred
async def test_node_client_other_cluster(
    cluster: TestClusterCredentials, other_cluster: TestClusterCredentials
) -> None:
    """A node refuses another cluster's node, whatever its UUID."""
    source = node(cluster, 0)
    foreign = node(other_cluster)
    options = node_client_context_factory(source.credential, source.authority)
    impostor = server_context_factory(foreign.credential, source.authority)
    with pytest.raises(HandshakeFailed):
        await exchange(impostor, options)


class _Hello(Resource):
    """A web resource answering with the client's identity."""

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:  # noqa: N802
        """Return the requesting user's name."""
        username = peer_identity(
            cast(ISSLTransport, request.channel.transport)
        ).username
        assert username is not None
        return username.encode()


@pytest_twisted.ensureDeferred
async def test_https_policy(cluster: TestClusterCredentials) -> None:
    """treq/Agent with ClusterPolicyForHTTPS talks HTTPS with a client certificate."""
    files = control(cluster)
    port = await SSL4ServerEndpoint(
        reactor, 0, server(files), interface="127.0.0.1"
    ).listen(Site(_Hello()))
    try:
        alice = load_tls_files(cluster.user_directories["alice"], "alice")
        policy = ClusterPolicyForHTTPS(alice.credential, alice.authority)
        client = HTTPClient(Agent(reactor, contextFactory=policy))
        response = await client.get(f"https://127.0.0.1:{port.getHost().port}/")
        assert await response.content() == b"alice"
    finally:
        await port.stopListening()
