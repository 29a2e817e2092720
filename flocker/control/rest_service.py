"""The control service's REST API v1, served over HTTPS with client certificates.

Entry points for ``flocker-control``:

* `create_api_service` — an ``IService`` that listens (TLS, client
  certificate required: a user certificate of this cluster) and serves the
  API, and (unless told not to) runs the configuration's maintenance duties
  that `flocker.control._maintenance` defines: removing deleted datasets
  once no node has them (`DeletedDatasetCleaner`) and moving environment
  copies off ports their nodes report taken (`CopyPortMover`);
* `make_api_resource` — the API as an ``IResource`` (used directly, with
  ``treq.testing.StubTreq``, by unit tests).

The routes, request and response shapes are in ``schema/`` and documented by
``GET /v1/openapi.json``; see `flocker.control._rest` for the behaviour.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import attrs
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ServerEndpoint, serverFromString
from twisted.internet.interfaces import (
    IListeningPort,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.web.resource import IResource
from twisted.web.server import Request, Site

from ._clusterstate import ClusterStateService
from ._httpaccess import APIAccess
from ._maintenance import CopyPortMover, DeletedDatasetCleaner
from ._persistence import ConfigurationAccess, ConfigurationService
from ._rest import (
    DEFAULT_FAILOVER_AFTER,
    MAXIMUM_BODY_SIZE,
    REST_REQUEST,
    ConfigurationAPIUserV1,
    LoggedAPIResource,
    configuration_tag,
)

__all__ = [
    "DEFAULT_FAILOVER_AFTER",
    "MAXIMUM_BODY_SIZE",
    "REST_API_PORT",
    "REST_REQUEST",
    "APIService",
    "ConfigurationAPIUserV1",
    "configuration_tag",
    "create_api_service",
    "make_api_resource",
    "make_api_site",
]

#: The REST API's default TCP port.
REST_API_PORT = 4523


def make_api_resource(
    configuration_service: ConfigurationAccess,
    cluster_state_service: ClusterStateService,
    clock: IReactorTime,
    agents: Any = None,
    failover_after: float = DEFAULT_FAILOVER_AFTER,
    cluster_uuid: UUID | None = None,
) -> IResource:
    """
    The REST API v1 as a resource to put at the root of a ``Site``.

    :param configuration_service: a loaded `ConfigurationService`.
    :param cluster_state_service: the `ClusterStateService`.
    :param clock: the time, for lease expiry.
    :param agents: the `ControlAMPService`, through which snapshots are
        taken by the nodes' dataset agents (``None``: snapshot requests
        answer 503).
    :param failover_after: seconds a primary's dataset agent must have been
        silent before a failover is allowed without ``force``.
    :param cluster_uuid: the control service's cluster: over TLS only user
        certificates of this cluster are served (with ``None``, none is;
        requests not over TLS, as in unit tests, are not checked).
    """
    return LoggedAPIResource(
        ConfigurationAPIUserV1(
            configuration_service, cluster_state_service, clock, agents, failover_after
        ),
        APIAccess(cluster_uuid),
    )


class _BoundedRequest(Request):
    """A request that stops buffering its body past `MAXIMUM_BODY_SIZE`."""

    body_too_large = False
    _received = 0

    def gotLength(self, length: int | None) -> None:  # noqa: N802
        """Do not prepare storage for a body that will be refused anyway."""
        if length is not None and length > MAXIMUM_BODY_SIZE:
            self.body_too_large = True
            length = 0
        super().gotLength(length)  # type: ignore[no-untyped-call]  # Twisted's

    def handleContentChunk(self, data: bytes) -> None:  # noqa: N802
        """Buffer the body only while it is within the limit."""
        self._received += len(data)
        if self._received > MAXIMUM_BODY_SIZE:
            self.body_too_large = True
        if not self.body_too_large:
            super().handleContentChunk(data)  # type: ignore[no-untyped-call]  # Twisted's


def make_api_site(resource: IResource) -> Site:
    """A ``Site`` for the API that never buffers more than a bounded body."""
    site = Site(resource, requestFactory=_BoundedRequest)
    site.displayTracebacks = False
    site.noisy = False
    return site


@attrs.define(eq=False)
class APIService(Service):
    """
    Listen on an endpoint and serve a factory; `listening` tells the port.

    :ivar endpoint: where to listen.
    :ivar factory: what to serve (already wrapped in TLS).
    """

    endpoint: IStreamServerEndpoint
    factory: Any
    _port: Deferred[Any] | None = attrs.field(default=None, init=False)

    def startService(self) -> None:  # noqa: N802
        """Start listening."""
        Service.startService(self)
        self._port = self.endpoint.listen(self.factory)

    def listening(self) -> Deferred[IListeningPort]:
        """A Deferred firing with the listening port (once started)."""
        if self._port is None:
            raise RuntimeError("the API service has not been started")
        result: Deferred[IListeningPort] = Deferred()

        def listened(port: IListeningPort | None) -> IListeningPort | None:
            if port is None:
                result.errback(RuntimeError("the API service failed to listen"))
            else:
                result.callback(port)
            return port

        def failed(failure: Failure) -> None:
            result.errback(failure)

        self._port.addCallbacks(listened, failed)
        return result

    def stopService(self) -> Deferred[None]:  # noqa: N802
        """Stop listening."""
        Service.stopService(self)
        if self._port is None:
            return succeed(None)
        port, self._port = self._port, None

        def stop(listening: IListeningPort | None) -> Any:
            return None if listening is None else listening.stopListening()

        return port.addCallback(stop)


def create_api_service(
    reactor: IReactorTime,
    configuration_service: ConfigurationService,
    cluster_state_service: ClusterStateService,
    endpoint_description_or_port: str | int | IStreamServerEndpoint,
    tls_context_factory: Any,
    agents: Any = None,
    failover_after: float = DEFAULT_FAILOVER_AFTER,
    *,
    cluster_uuid: UUID,
    duties: bool = True,
) -> MultiService:
    """
    The REST API as a service: HTTPS with client certificates, and cleanup.

    :param reactor: the reactor (listening and time).
    :param configuration_service: a loaded `ConfigurationService`.
    :param cluster_state_service: the `ClusterStateService`.
    :param endpoint_description_or_port: a TCP port number (all interfaces),
        a server endpoint description string (``"tcp:4523:interface=..."``;
        plain, TLS is added here) or an ``IStreamServerEndpoint``.
    :param tls_context_factory: from ``flocker.ca.server_context_factory``
        (it requires a client certificate from the cluster CA).
    :param agents: the `ControlAMPService` (for snapshots), or ``None``.
    :param failover_after: seconds a primary's dataset agent must have been
        silent before a failover is allowed without ``force``.
    :param cluster_uuid: the control service's cluster (its certificate's):
        only user certificates of this cluster are served, every other gets
        403 (see `flocker.control._httpaccess`).
    :param duties: also run the `DeletedDatasetCleaner` and the
        `CopyPortMover` here (``flocker-control`` runs them, with the other
        singleton duties, under its leadership instead).
    :return: a ``MultiService`` holding the `APIService` (named ``"api"``)
        and, with ``duties``, the `DeletedDatasetCleaner` (named
        ``"cleaner"``) and the `CopyPortMover` (named ``"port-mover"``).
    """
    if isinstance(endpoint_description_or_port, int):
        endpoint: IStreamServerEndpoint = TCP4ServerEndpoint(
            reactor, endpoint_description_or_port
        )
    elif isinstance(endpoint_description_or_port, str):
        endpoint = serverFromString(reactor, endpoint_description_or_port)
    else:
        endpoint = endpoint_description_or_port
    site = make_api_site(
        make_api_resource(
            configuration_service,
            cluster_state_service,
            reactor,
            agents,
            failover_after,
            cluster_uuid,
        )
    )
    factory = TLSMemoryBIOFactory(tls_context_factory, False, site)
    service = MultiService()
    api = APIService(endpoint, factory)
    api.setName("api")
    api.setServiceParent(service)
    if not duties:
        return service
    cleaner = DeletedDatasetCleaner(configuration_service, cluster_state_service)
    cleaner.setName("cleaner")
    cleaner.setServiceParent(service)
    mover = CopyPortMover(configuration_service, cluster_state_service)
    mover.setName("port-mover")
    mover.setServiceParent(service)
    return service
