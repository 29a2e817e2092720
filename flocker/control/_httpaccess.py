"""
Who may use the REST API: *user* certificates of *this* cluster, only.

TLS already refuses every certificate the cluster CA did not sign.  That is
not enough: every node holds a node certificate, the control service holds
its own, and one CA may have signed certificates of several clusters (the
cluster is the certificate subject's organizational unit, see
`flocker.ca`).  A node's key must not control the whole cluster, so the REST
port (every path on it) serves only certificates whose identity is a user
(``flocker-ca create-api-certificate``) of the control service's own cluster;
the others get 403 with a description.  The ``flocker`` CLI, the API
client and the Docker plugin all use user certificates (the plugin's is
``plugin.crt``); the AMP and transfer ports, the other way round, accept
node certificates only.
"""

from __future__ import annotations

from uuid import UUID

import attrs

from flocker.ca import PeerIdentity

__all__ = ["APIAccess"]


@attrs.frozen
class APIAccess:
    """
    The REST API's rule for peers' certificates.

    :ivar cluster_uuid: the control service's cluster (from its own
        certificate), or ``None`` when it is not known: then no certificate
        is served (the API refuses rather than guess).
    """

    cluster_uuid: UUID | None

    def refusal(self, identity: PeerIdentity) -> str | None:
        """Why ``identity`` may not use the API (a 403's description), or ``None``."""
        if self.cluster_uuid is None:
            return "the control service does not know its cluster: it serves no certificate"
        if identity.cluster_uuid != self.cluster_uuid:
            return (
                f"the client certificate is of cluster {identity.cluster_uuid}, "
                f"not of this cluster ({self.cluster_uuid})"
            )
        if identity.kind != "user":
            return (
                f"the REST API accepts only user certificates "
                f"(flocker-ca create-api-certificate), not a {identity.kind} certificate"
            )
        return None
