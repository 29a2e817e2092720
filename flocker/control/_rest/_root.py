"""The root of the REST API v1: the route objects mounted, and the resource served.

`ConfigurationAPIUserV1` answers ``/v1/version`` and ``/v1/openapi.json``
itself and mounts one route object per subtree as a child resource:
``/v1/configuration`` (`ConfigurationRoutes`), ``/v1/state``
(`StateRoutes`), ``/v1/datasets`` (`DatasetRoutes`) and
``/v1/environments`` (`EnvironmentRoutes`).  `LoggedAPIResource` serves it:
one eliot action per request, client certificates checked, bodies bounded.
"""

from __future__ import annotations

from typing import Any

import attrs
from eliot import ActionType, Field, start_action
from klein import Klein
from twisted.internet.interfaces import IReactorTime, ISSLTransport
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from ... import __version__
from ...ca import UnknownPeer, peer_identity
from .._clusterstate import ClusterStateService
from .._httpaccess import APIAccess
from .._httpjson import json_response
from .._httpschema import openapi_document
from .._persistence import ConfigurationAccess
from ._context import DEFAULT_FAILOVER_AFTER, APIContext
from ._operation import ACTIONS, Response, mount, operation, path_segments, serve_errors
from ._routes_configuration import ConfigurationRoutes
from ._routes_datasets import DatasetRoutes
from ._routes_environments import EnvironmentRoutes
from ._routes_state import StateRoutes

__all__ = [
    "MAXIMUM_BODY_SIZE",
    "REST_REQUEST",
    "ConfigurationAPIUserV1",
    "LoggedAPIResource",
]

#: The largest request body accepted (bigger ones get 413).
MAXIMUM_BODY_SIZE = 1024 * 1024

_METHOD = Field.for_types("method", [str], "The HTTP method.")
_PATH = Field.for_types("path", [str], "The request's path.")
_STATUS = Field.for_types("status", [int], "The HTTP response status code.")

#: One REST API request, from arrival until its response is finished.
REST_REQUEST = ActionType(
    "flocker:control:rest:request",
    [_METHOD, _PATH],
    [_STATUS],
    "The control service answered a REST API request.",
)


@attrs.define
class ConfigurationAPIUserV1:
    """
    The REST API v1 over the configuration and the cluster state.

    :ivar configuration_service: the `ConfigurationService` (already loaded).
    :ivar cluster_state_service: the `ClusterStateService`.
    :ivar clock: the time (for lease expiry).
    :ivar agents: what reaches the nodes' dataset agents (for snapshots and
        transfers: a `ControlAMPService` or an `AgentRelay`), or ``None``.
    :ivar failover_after: seconds the primary's dataset agent must have been
        silent before a failover is allowed without ``force``.
    """

    app = Klein()

    configuration_service: ConfigurationAccess
    cluster_state_service: ClusterStateService
    clock: IReactorTime
    agents: Any = None
    failover_after: float = DEFAULT_FAILOVER_AFTER
    context: APIContext = attrs.field(init=False)
    configuration: ConfigurationRoutes = attrs.field(init=False)
    state: StateRoutes = attrs.field(init=False)
    datasets: DatasetRoutes = attrs.field(init=False)
    environments: EnvironmentRoutes = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        """Build the context the route objects share, and the route objects."""
        self.context = APIContext(
            self.configuration_service,
            self.cluster_state_service,
            self.clock,
            self.agents,
            self.failover_after,
        )
        self.configuration = ConfigurationRoutes(self.context)
        self.state = StateRoutes(self.context)
        self.datasets = DatasetRoutes(self.context)
        self.environments = EnvironmentRoutes(self.context)

    def pending_changes(self) -> dict[str, str]:
        """Dataset id → the move or deletion waiting for its lease to end."""
        return self.context.pending_changes()

    serve_errors(app)
    mount(app, "/v1/configuration", "configuration")
    mount(app, "/v1/state", "state")
    mount(app, "/v1/datasets", "datasets")
    mount(app, "/v1/environments", "environments")

    @operation(app, "version")
    async def version(self, request: Request) -> Response:
        """The control service's version."""
        return Response(200, {"flocker": __version__})

    @operation(app, "openapi")
    async def openapi(self, request: Request) -> Response:
        """The OpenAPI document, generated from the schema files."""
        return Response(200, openapi_document(__version__))


class LoggedAPIResource(Resource):
    """
    The root resource: logs each request as an eliot action, bounds bodies.

    Each request runs inside a ``flocker:control:rest:request`` action that
    finishes, with the status code, when the response is finished; over TLS
    the client's identity from its certificate is logged inside it
    (``flocker:ca:peer_identified``), and a certificate that ``access``
    refuses (any but a user certificate of this cluster) gets 403 before
    routing, on every path.  A body larger than `MAXIMUM_BODY_SIZE` is
    refused with 413 before routing; so is a URL that is not UTF-8 once
    percent-decoded (404, or 400 for the Host header: `_undecodable_url`),
    with a JSON answer like every other.
    """

    isLeaf = True

    def __init__(self, api: ConfigurationAPIUserV1, access: APIAccess) -> None:
        """Serve ``api``'s Klein application to the peers ``access`` allows."""
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted's
        #: The API object served (its settings, e.g. ``failover_after``).
        self.api = api
        #: Whose certificates are served.
        self.access = access
        self._inner = api.app.resource()

    def render(self, request: Request) -> Any:
        """Route the request to the API inside its eliot action."""
        action = start_action(
            action_type=REST_REQUEST.action_type,
            method=request.method.decode("ascii", "replace"),
            path=request.path.decode("utf-8", "replace"),
        )
        ACTIONS[request] = action

        def finished(result: object) -> None:
            action.add_success_fields(status=request.code)
            action.finish()

        request.notifyFinish().addBoth(finished)
        with action.context():
            transport = getattr(request.channel, "transport", None)
            # (In-memory transports may claim ISSLTransport without TLS.)
            if ISSLTransport.providedBy(transport) and hasattr(
                transport, "getPeerCertificate"
            ):
                # Log who is asking (flocker:ca:peer_identified) in this action.
                try:
                    refusal = self.access.refusal(peer_identity(transport))
                except UnknownPeer as e:
                    refusal = str(e)
                if refusal is not None:
                    request.write(json_response(request, 403, {"description": refusal}))
                    request.finish()
                    return NOT_DONE_YET
            refusal_code, description = _undecodable_url(request)
            if refusal_code:
                request.write(
                    json_response(request, refusal_code, {"description": description})
                )
                request.finish()
                return NOT_DONE_YET
            if _body_size(request) > MAXIMUM_BODY_SIZE:
                request.write(
                    json_response(
                        request,
                        413,
                        {
                            "description": "the request body is larger than "
                            f"{MAXIMUM_BODY_SIZE} bytes"
                        },
                    )
                )
                request.finish()
                return NOT_DONE_YET
            return self._inner.render(request)


def _undecodable_url(request: Request) -> tuple[int, str]:
    """
    Why the request's URL cannot be routed, as a status and a description,
    or ``(0, "")`` if it can.

    Routing needs text: a path whose percent-decoded bytes are not UTF-8
    names nothing the API has (every name and id in it is text), so it is
    404; a Host header that is not UTF-8 is a malformed request, 400.  (Klein
    would answer both with a plain-text 400.)
    """
    try:
        request.getRequestHostname().decode("utf-8")
    except UnicodeDecodeError:
        return 400, "the Host header is not UTF-8"
    try:
        for segment in path_segments(request):
            segment.decode("utf-8")
    except UnicodeDecodeError:
        return 404, (
            f"no such path: {request.path.decode('latin-1')} (once "
            "percent-decoded it is not UTF-8)"
        )
    return 0, ""


def _body_size(request: Request) -> int:
    if getattr(request, "body_too_large", False):
        return MAXIMUM_BODY_SIZE + 1
    content = request.content
    if content is None:
        return 0
    position = content.tell()
    content.seek(0, 2)
    size = content.tell()
    content.seek(position)
    return int(size)


