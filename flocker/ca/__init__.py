"""
flocker-ca: the cluster CA, its certificates, and Flocker's TLS helpers.

The TLS context helpers here are what every Flocker connection uses.

See :mod:`flocker.ca._ca` for the file layout each daemon expects and
:mod:`flocker.ca._tls` for how connections are authenticated.
"""

from ._ca import (
    CertificateAuthority,
    CertificateError,
    Credential,
    IssuedCertificate,
    create_api_certificate,
    create_control_certificate,
    create_node_certificate,
    initialize,
    load_authority,
    load_credential,
)
from ._tls import (
    ClusterPolicyForHTTPS,
    PeerIdentity,
    PeerRejected,
    TLSFiles,
    UnknownPeer,
    bulk_tls_context,
    check_node_certificate,
    client_context_factory,
    identify_certificate,
    load_tls_files,
    node_client_context_factory,
    peer_identity,
    server_context_factory,
)

__all__ = [
    "CertificateAuthority",
    "CertificateError",
    "ClusterPolicyForHTTPS",
    "Credential",
    "IssuedCertificate",
    "PeerIdentity",
    "PeerRejected",
    "TLSFiles",
    "UnknownPeer",
    "bulk_tls_context",
    "check_node_certificate",
    "client_context_factory",
    "create_api_certificate",
    "create_control_certificate",
    "create_node_certificate",
    "identify_certificate",
    "initialize",
    "load_authority",
    "load_credential",
    "load_tls_files",
    "node_client_context_factory",
    "peer_identity",
    "server_context_factory",
]
