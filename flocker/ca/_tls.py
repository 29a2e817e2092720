"""
TLS context factories for every Flocker connection, and peer identification.

All Flocker traffic is mutually authenticated with the cluster CA:

* servers (``flocker-control``'s REST API and AMP ports, a dataset agent's
  transfer port) use :func:`server_context_factory`, which **requires** a
  client certificate signed by the cluster CA -- no certificate, or one from
  another cluster, and the handshake fails;
* clients connecting to the control service use
  :func:`client_context_factory`, which verifies the server's certificate
  against the cluster CA *and* the host name or IP address connected to
  (strictly: unlike Twisted's ``optionsForClientTLS``, a certificate without
  a subjectAltName, such as a node's, is refused);
* nodes connecting to another node (transfers) use
  :func:`node_client_context_factory`, which verifies the peer against the
  cluster CA and that it is a node (optionally a given node UUID);
* treq clients use :class:`ClusterPolicyForHTTPS` as their ``contextFactory``;
* bulk transfers, which run TLS in a thread of their own with the standard
  library's :mod:`ssl` (see :mod:`flocker.transport`), use
  :func:`bulk_tls_context` -- the same credential, trust and minimum
  version -- and check the peer with :func:`check_node_certificate`;
* after the handshake (``IHandshakeListener.handshakeCompleted``, or when
  the first data arrives -- not in ``connectionMade``, where the handshake
  has not happened yet) either side calls :func:`peer_identity` on the
  transport to learn who the peer is; authorization (e.g. "a node reports
  state only for itself") is decided from that, never from what the peer says.

Files come from a directory laid out as described in :mod:`flocker.ca._ca`
(``cluster.crt`` plus ``node.crt``/``node.key``, ``control-service.crt``/
``.key`` or ``<username>.crt``/``.key``); see :func:`load_tls_files`.
"""

from __future__ import annotations

import ipaddress
import os
import ssl as stdlib_ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import attrs
from cryptography import x509
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from OpenSSL.crypto import X509
from pyrsistent import PClass, field
from service_identity import CertificateError as ServiceIdentityCertificateError
from service_identity import VerificationError
from service_identity.cryptography import (
    verify_certificate_hostname,
    verify_certificate_ip_address,
)
from twisted.internet import ssl
from twisted.internet._sslverify import IOpenSSLTrustRoot
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
    ISSLTransport,
)
from twisted.python.failure import Failure
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from ._ca import (
    CONTROL_COMMON_NAME,
    NODE_PREFIX,
    USER_PREFIX,
    CertificateAuthority,
    CertificateError,
    Credential,
    load_authority,
    load_credential,
)
from ._logging import PEER_IDENTIFIED, PEER_REJECTED

#: The oldest TLS version any Flocker party speaks.
MINIMUM_TLS_VERSION = ssl.TLSVersion.TLSv1_2


class PeerIdentity(PClass):
    """
    Who the peer of a TLS connection is, read from its verified certificate.

    :ivar kind: ``"node"``, ``"control"`` or ``"user"``.
    :ivar node_uuid: The node's UUID if ``kind == "node"``, else ``None``.
    :ivar username: The user's name if ``kind == "user"``, else ``None``.
    :ivar cluster_uuid: The UUID of the cluster the certificate belongs to.
    """

    kind = field(
        type=str,
        mandatory=True,
        invariant=lambda k: (k in ("node", "control", "user"), f"unknown kind {k!r}"),
    )
    node_uuid = field(type=(UUID, type(None)), initial=None)
    username = field(type=(str, type(None)), initial=None)
    cluster_uuid = field(type=UUID, mandatory=True)

    __invariant__ = lambda self: (  # noqa: E731
        (self.kind == "node") == (self.node_uuid is not None)
        and (self.kind == "user") == (self.username is not None),
        "node_uuid is set exactly for nodes, username exactly for users",
    )


class UnknownPeer(Exception):
    """A TLS peer's certificate does not name a Flocker party."""


def identify_certificate(certificate: x509.Certificate) -> PeerIdentity:
    """
    Read the Flocker identity from a certificate issued by ``flocker-ca``.

    This does not check the signature: call it on certificates that TLS
    verification already accepted.

    :raise UnknownPeer: If the certificate does not name a Flocker party.
    """
    subject = certificate.subject
    names = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    units = subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    if len(names) != 1 or len(units) != 1:
        raise UnknownPeer(
            f"Certificate subject {subject.rfc4514_string()} is not Flocker's."
        )
    common_name = str(names[0].value)
    try:
        cluster_uuid = UUID(str(units[0].value))
    except ValueError:
        raise UnknownPeer(
            f"Certificate carries no cluster UUID: {subject.rfc4514_string()}."
        ) from None
    if common_name == CONTROL_COMMON_NAME:
        return PeerIdentity(kind="control", cluster_uuid=cluster_uuid)
    if common_name.startswith(NODE_PREFIX):
        try:
            node_uuid = UUID(common_name[len(NODE_PREFIX) :])
        except ValueError:
            raise UnknownPeer(f"Bad node certificate name {common_name!r}.") from None
        return PeerIdentity(kind="node", node_uuid=node_uuid, cluster_uuid=cluster_uuid)
    if common_name.startswith(USER_PREFIX) and len(common_name) > len(USER_PREFIX):
        return PeerIdentity(
            kind="user",
            username=common_name[len(USER_PREFIX) :],
            cluster_uuid=cluster_uuid,
        )
    raise UnknownPeer(f"Certificate name {common_name!r} is not a Flocker party.")


def peer_identity(transport: ISSLTransport) -> PeerIdentity:
    """
    Identify the peer of a connected, handshaken TLS transport, and log it.

    Call it e.g. from a protocol's ``connectionMade`` onwards, once data has arrived, or from
    ``IHandshakeListener.handshakeCompleted``).

    :raise UnknownPeer: If there is no peer certificate (yet) or it does not
        name a Flocker party.
    """
    certificate = transport.getPeerCertificate()
    if not isinstance(certificate, X509):
        raise UnknownPeer("The TLS peer presented no certificate.")
    identity = identify_certificate(certificate.to_cryptography())
    PEER_IDENTIFIED.log(
        kind=identity.kind,
        node_uuid=None if identity.node_uuid is None else str(identity.node_uuid),
        username=identity.username,
        cluster_uuid=str(identity.cluster_uuid),
    )
    return identity


class TLSFiles(PClass):
    """
    What a Flocker party needs for TLS: its own credential and the cluster CA.

    :ivar credential: The party's certificate and key.
    :ivar authority: The cluster CA (certificate only).
    """

    credential = field(type=Credential, mandatory=True)
    authority = field(type=CertificateAuthority, mandatory=True)


def load_tls_files(directory: Path | str, basename: str) -> TLSFiles:
    """
    Load ``cluster.crt`` and ``<basename>.crt``/``.key`` from ``directory``.

    ``basename`` is ``"control-service"`` for ``flocker-control``, ``"node"``
    for the agents, the user's name for API clients.

    :raise CertificateError: If a file is missing or unusable, or the
        credential was not issued by that cluster CA.
    """
    authority = load_authority(directory)
    credential = load_credential(directory, basename)
    if credential.certificate.issuer != authority.certificate.subject:
        raise CertificateError(
            f"{Path(directory) / (basename + '.crt')} was not issued by this "
            "cluster's CA."
        )
    return TLSFiles(credential=credential, authority=authority)


def _trust_root(authority: CertificateAuthority) -> IOpenSSLTrustRoot:
    """Trust only the cluster CA."""
    root: IOpenSSLTrustRoot = ssl.trustRootFromCertificates(
        [ssl.Certificate.loadPEM(authority.certificate_pem())]
    )
    return root


def _certificate_options(
    credential: Credential, authority: CertificateAuthority
) -> ssl.CertificateOptions:
    """Options that present ``credential`` and require a cluster-CA peer."""
    # pyOpenSSL's contexts take cryptography objects directly (passing its
    # own X509/PKey wrappers is deprecated).
    return ssl.CertificateOptions(
        privateKey=credential.private_key,
        certificate=credential.certificate,  # type: ignore[arg-type]
        trustRoot=_trust_root(authority),
        raiseMinimumTo=MINIMUM_TLS_VERSION,
    )


def server_context_factory(
    credential: Credential, authority: CertificateAuthority
) -> IOpenSSLServerConnectionCreator:
    """
    TLS server options that REQUIRE a client certificate from the cluster.

    They present ``credential`` and accept only a client certificate signed
    by ``authority``; use with ``SSL4ServerEndpoint`` or
    ``TLSMemoryBIOFactory``.
    """
    return _certificate_options(credential, authority)


class PeerRejected(Exception):
    """A TLS peer's certificate is from the cluster but not the expected party."""


def _is_ip_address(hostname: str) -> bool:
    """Whether ``hostname`` is an IPv4 or IPv6 address literal."""
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        return False
    return True


def _check_hostname(hostname: str) -> Callable[[x509.Certificate], None]:
    """
    A check that a certificate's subjectAltName names ``hostname``.

    Twisted's own ``optionsForClientTLS`` lets a certificate with no
    subjectAltName at all through (service_identity raises
    ``CertificateError`` there, which Twisted only logs), so a node's
    certificate could pose as the control service; this check refuses it.
    """

    def check(certificate: x509.Certificate) -> None:
        try:
            if _is_ip_address(hostname):
                verify_certificate_ip_address(certificate, hostname)
            else:
                verify_certificate_hostname(certificate, hostname)
        except (VerificationError, ServiceIdentityCertificateError) as e:
            raise PeerRejected(
                f"The peer's certificate is not for {hostname}: {e}"
            ) from None

    return check


def _check_node(node_uuid: UUID | None) -> Callable[[x509.Certificate], None]:
    """A check that a certificate is a node's (node ``node_uuid``'s if given)."""

    def check(certificate: x509.Certificate) -> None:
        try:
            identity = identify_certificate(certificate)
        except UnknownPeer as e:
            raise PeerRejected(str(e)) from None
        if identity.kind != "node":
            raise PeerRejected(f"The peer is a {identity.kind}, not a node.")
        if node_uuid is not None and identity.node_uuid != node_uuid:
            raise PeerRejected(
                f"The peer is node {identity.node_uuid}, not node {node_uuid}."
            )

    return check


@implementer(IOpenSSLClientConnectionCreator)
@attrs.define
class _VerifyingClientCreator:
    """
    Client connections that verify the server against the cluster CA and then
    run one more check on its (leaf) certificate.
    """

    _options: ssl.CertificateOptions
    _check: Callable[[x509.Certificate], None]
    _server_name: bytes | None = None

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:  # noqa: N802
        """Create a connection whose verification also runs the check."""
        connection = SSL.Connection(self._options.getContext(), None)
        connection.set_app_data(tlsProtocol)
        if self._server_name is not None:
            connection.set_tlsext_host_name(self._server_name)
        check = self._check

        def verify(
            conn: SSL.Connection, cert: X509, err: int, depth: int, ok: int
        ) -> bool:
            if not ok or depth != 0:
                return bool(ok)
            try:
                check(cert.to_cryptography())
            except PeerRejected as e:
                PEER_REJECTED.log(reason=str(e))
                tlsProtocol.failVerification(Failure())
                return False
            return True

        connection.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, verify)
        return connection


def client_context_factory(
    credential: Credential, authority: CertificateAuthority, hostname: str
) -> IOpenSSLClientConnectionCreator:
    """
    TLS client options for connecting to the control service (or any host).

    They present ``credential`` and verify that the server is certified by
    ``authority`` for ``hostname`` (a DNS name or an IP address, as written
    into the control certificate's subjectAltName); use with
    ``SSL4ClientEndpoint`` or ``wrapClientTLS``.
    """
    server_name = None
    if not _is_ip_address(hostname):
        try:
            server_name = hostname.encode("idna")
        except UnicodeError:
            server_name = None
    return _VerifyingClientCreator(
        _certificate_options(credential, authority),
        _check_hostname(hostname),
        server_name,
    )


def node_client_context_factory(
    credential: Credential,
    authority: CertificateAuthority,
    node_uuid: UUID | None = None,
) -> IOpenSSLClientConnectionCreator:
    """
    TLS client options for connecting to another node (e.g. its transfer port).

    They present ``credential``, and accept only a peer certified by
    ``authority`` as a node -- as node ``node_uuid`` if given. Node
    certificates name no host, so the host name is not checked.
    """
    return _VerifyingClientCreator(
        _certificate_options(credential, authority), _check_node(node_uuid)
    )


def check_node_certificate(
    certificate: x509.Certificate, node_uuid: UUID | None = None
) -> None:
    """
    Accept only a node's certificate (node ``node_uuid``'s if given).

    :raise PeerRejected: If it is someone else's (it is logged).
    """
    try:
        _check_node(node_uuid)(certificate)
    except PeerRejected as e:
        PEER_REJECTED.log(reason=str(e))
        raise


def bulk_tls_context(tls: TLSFiles, server_side: bool) -> stdlib_ssl.SSLContext:
    """
    A standard-library TLS context for a party of the cluster.

    It presents ``tls.credential``, trusts only the cluster CA, requires the
    peer's certificate and refuses TLS older than
    :data:`MINIMUM_TLS_VERSION`: what the pyOpenSSL factories above do, for
    connections whose TLS runs in a worker thread.  Host names are not
    checked (node certificates name none); check *who* the peer is after
    the handshake, e.g. with :func:`check_node_certificate`.
    """
    context = stdlib_ssl.SSLContext(
        stdlib_ssl.PROTOCOL_TLS_SERVER
        if server_side
        else stdlib_ssl.PROTOCOL_TLS_CLIENT
    )
    context.check_hostname = False
    context.verify_mode = stdlib_ssl.CERT_REQUIRED
    context.minimum_version = stdlib_ssl.TLSVersion.TLSv1_2
    context.load_verify_locations(
        cadata=tls.authority.certificate_pem().decode("ascii")
    )
    # load_cert_chain reads only files: hand it an anonymous in-memory one,
    # so the private key never touches a disk.
    fd = os.memfd_create("flocker-credential", os.MFD_CLOEXEC)
    try:
        os.write(
            fd, tls.credential.certificate_pem() + tls.credential.private_key_pem()
        )
        context.load_cert_chain(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)
    return context


@implementer(IPolicyForHTTPS)
@attrs.define
class ClusterPolicyForHTTPS:
    """
    A treq/``twisted.web.client.Agent`` ``contextFactory`` for the cluster.

    It presents a user's credential and verifies the control service against the cluster CA
    and the URL's host name or IP address.
    """

    credential: Credential
    authority: CertificateAuthority

    def creatorForNetloc(
        self, hostname: bytes, port: int
    ) -> IOpenSSLClientConnectionCreator:  # noqa: N802
        """Return client options for connecting to ``hostname``."""
        return client_context_factory(
            self.credential, self.authority, hostname.decode("ascii")
        )
