"""How the REST API's route objects register operations and answer errors.

Every route object (`flocker.control._rest`) has its own ``Klein()`` and
registers its handlers with `operation`, naming an operation of
``schema/endpoints.yml``; the root object mounts the others as child
resources with `mount`.  Each object's Klein answers failures with
`error_response` (installed by `serve_errors`), so a request gets the same
JSON errors whichever object routes it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from hashlib import sha256
from typing import Any
from weakref import WeakKeyDictionary

import attrs
from eliot import write_failure
from klein import Klein
from pyrsistent import InvariantException
from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure
from twisted.web.server import Request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from .._checks import (
    DeletedDatasetNotMovable,
    DivergedCopyOnTarget,
    FailoverNotTakenUp,
    InvalidSnapshotName,
    NoConsistentReplica,
    NoLease,
    PoolTooSmall,
    ReplicaNotReady,
    RollbackDiscardsNeeded,
    SnapshotHasClones,
    UnknownCopy,
    UnknownNode,
)
from .._etcd import EtcdUnavailable
from .._httpjson import APIError, invariant_reasons, json_response, read_body
from .._httpschema import klein_path, operations
from .._model import (
    ApplicationAlreadyExists,
    DatasetAlreadyExists,
    DatasetDeleted,
    DatasetElsewhere,
    DatasetInUse,
    DatasetLeased,
    Deployment,
    EnvironmentAlreadyExists,
    LeaseError,
    ModelError,
    NotAReplica,
    NothingToRollBack,
    PortBusy,
    PortsTaken,
    UnknownApplication,
    UnknownDataset,
    UnknownEnvironment,
)
from .._persistence import GenerationMismatch, StoredConfiguration
from .._serialization import serialize_deployment

__all__ = [
    "ACTIONS",
    "Response",
    "configuration_tag",
    "error_response",
    "mount",
    "operation",
    "parse_tag",
    "path_segments",
    "routes_app",
    "serve_errors",
]

#: The eliot action of each request in flight (for 500 responses' task_uuid).
ACTIONS: WeakKeyDictionary[Any, Any] = WeakKeyDictionary()


def configuration_tag(generation: int, deployment: Deployment) -> str:
    """
    The ``X-Configuration-Tag`` of a configuration.

    It names the generation and a digest of the content, so a tag from
    another configuration that happens to have the same generation (a store
    replaced under the service) does not match.
    """
    digest = sha256(serialize_deployment(deployment)).hexdigest()[:20]
    return f"{generation}-{digest}"


def parse_tag(tag: str) -> int:
    """The generation an ``X-If-Configuration-Matches`` tag names (412 if none)."""
    generation, _, digest = tag.partition("-")
    if not generation.isdigit() or len(digest) != 20:
        raise APIError(
            412, f"X-If-Configuration-Matches {tag!r} is not a configuration tag"
        )
    return int(generation)


@attrs.frozen
class Response:
    """A successful answer: status, JSON body, and the configuration it reflects."""

    code: int
    body: Any
    stored: StoredConfiguration | None = None


_OperationHandler = Callable[..., Coroutine[Any, Any, Response]]


def operation(
    app: Klein, name: str, mounted_at: str = ""
) -> Callable[[_OperationHandler], _OperationHandler]:
    """
    Register on ``app`` a handler for the operation ``name`` of ``endpoints.yml``.

    ``app`` is served at ``mounted_at`` (a prefix of the operation's path,
    see `mount`), so the route is the rest of the path.  The handler is an
    ``async`` method of an object with a ``context`` (an `APIContext`),
    taking the request, the path parameters, ``body`` (the validated JSON
    body) if the operation has one, and ``expected_tag`` (the
    X-If-Configuration-Matches header or ``None``) if it writes.  It returns
    a `Response`; the answer carries the configuration's tag (and
    ``X-Configuration-Stale`` when the configuration may be stale).
    """
    op = operations()[name]
    path = klein_path(op.path)
    if path != mounted_at and not path.startswith(mounted_at + "/"):
        raise ValueError(f"operation {name} ({op.path}) is not under {mounted_at}")

    def decorator(handler: _OperationHandler) -> _OperationHandler:
        @functools.wraps(handler)
        def route(self: Any, request: Request, **kwargs: Any) -> Any:
            context = self.context

            async def run() -> bytes:
                if op.request is not None:
                    kwargs["body"] = read_body(request, op.request)
                if op.write:
                    header = request.getHeader(b"x-if-configuration-matches")
                    kwargs["expected_tag"] = (
                        None if header is None else header.decode("latin-1")
                    )
                response = await handler(self, request, **kwargs)
                stored = response.stored
                if stored is None and (op.tagged or op.write):
                    stored = context.current()
                if stored is not None:
                    request.setHeader(
                        b"x-configuration-tag",
                        context.tag(stored).encode("ascii"),
                    )
                    stale = context.configuration_service.stale_reason()
                    if stale is not None:
                        request.setHeader(
                            b"x-configuration-stale",
                            stale.encode("ascii", "replace"),
                        )
                return json_response(request, response.code, response.body)

            return Deferred.fromCoroutine(run())

        app.route(path[len(mounted_at) :] or "/", methods=[op.method])(route)
        return route

    return decorator


def path_segments(request: Request) -> list[bytes]:
    """
    The segments of the request's path: those routed so far, then the rest.
    (Twisted sets both lists before any resource sees the request.)
    """
    return [*(request.prepath or []), *(request.postpath or [])]


def mount(app: Klein, prefix: str, attribute: str) -> None:
    """
    Serve, on ``app``, every path under ``prefix`` by the Klein application
    of the route object in the attribute ``attribute`` (a child resource,
    routing the rest of the path).
    """
    encoded = prefix.encode("ascii")

    def child(self: Any, request: Request) -> Any:
        # The child routes the rest of the path the root matched.  (Klein
        # moves a fixed number of segments, which is wrong for a path with
        # empty segments, e.g. ``//v1/...``.)  The mount point itself is the
        # child's "/" (not a redirect to it).
        full = b"/".join(path_segments(request))
        if not full.startswith(b"/"):
            full = b"/" + full
        if full == encoded or full.startswith(encoded + b"/"):
            request.prepath = encoded.split(b"/")[1:]
            request.postpath = [full[len(encoded) + 1 :]]
        elif not request.postpath:
            request.postpath = [b""]
        return getattr(self, attribute).resource

    child.__name__ = f"mount_{attribute}"
    child.__doc__ = f"Route {prefix} and below by {attribute}."
    app.route(prefix, branch=True)(child)


def routes_app() -> Klein:
    """A new Klein application for a route object, answering errors as JSON."""
    app = Klein()
    serve_errors(app)
    return app


def serve_errors(app: Klein) -> None:
    """Answer every failure of ``app``'s routes with `error_response`."""

    def error(self: Any, request: Request, failure: Failure) -> bytes | None:
        return error_response(request, failure)

    app.handle_errors(Exception)(error)  # type: ignore[arg-type]


#: Which status each model error gets.
MODEL_ERRORS: list[tuple[type[Exception], int]] = [
    (DeletedDatasetNotMovable, 405),
    (NoLease, 404),
    (UnknownCopy, 404),
    (NoConsistentReplica, 409),
    (ReplicaNotReady, 409),
    (UnknownDataset, 404),
    (UnknownApplication, 404),
    (DatasetAlreadyExists, 409),
    (ApplicationAlreadyExists, 409),
    (DatasetDeleted, 409),
    (DatasetInUse, 409),
    (DatasetLeased, 409),
    (LeaseError, 409),
    (NotAReplica, 409),
    (NothingToRollBack, 409),
    (UnknownEnvironment, 404),
    (EnvironmentAlreadyExists, 409),
    (PortBusy, 409),
    (DatasetElsewhere, 409),
    (PortsTaken, 409),
    (SnapshotHasClones, 409),
    (RollbackDiscardsNeeded, 409),
    (DivergedCopyOnTarget, 409),
    (FailoverNotTakenUp, 409),
    (PoolTooSmall, 409),
    (InvalidSnapshotName, 400),
    (UnknownNode, 400),
    (ModelError, 400),
]


def error_response(request: Request, failure: Failure) -> bytes | None:
    """Turn a failure into a JSON error response."""
    error = failure.value
    if isinstance(error, CancelledError):
        return None
    if isinstance(error, APIError):
        return json_response(request, error.code, error.body())
    if isinstance(error, EtcdUnavailable):
        return json_response(
            request,
            503,
            {
                "description": "the configuration store cannot be reached, so "
                f"nothing was changed; try again later ({error})"
            },
        )
    if isinstance(error, GenerationMismatch):
        if request.getHeader(b"x-if-configuration-matches") is None:
            # No tag was sent: other writers (other control instances) kept
            # changing the configuration while this write was retried.
            description = (
                "the configuration kept changing while this write was tried "
                "(other writers); nothing was changed, try again"
            )
        else:
            description = (
                "the configuration changed since the tag in "
                "X-If-Configuration-Matches; read it again"
            )
        return json_response(
            request,
            412,
            {"description": description},
        )
    if isinstance(error, ModelError):
        code = next(c for t, c in MODEL_ERRORS if isinstance(error, t))
        return json_response(request, code, {"description": str(error)})
    if isinstance(error, InvariantException):
        return json_response(request, 409, {"description": invariant_reasons(error)})
    if isinstance(error, MethodNotAllowed):
        allowed = ", ".join(error.valid_methods or [])
        request.setHeader(b"allow", allowed.encode("ascii"))
        return json_response(
            request,
            405,
            {
                "description": f"method {request.method.decode('ascii')} is "
                f"not allowed here; allowed: {allowed}"
            },
        )
    if isinstance(error, NotFound):
        return json_response(
            request,
            404,
            {"description": f"no such path: {request.path.decode('latin-1')}"},
        )
    if isinstance(error, HTTPException):
        return json_response(
            request, error.code or 400, {"description": str(error.description)}
        )
    action = ACTIONS.get(request)
    task_uuid = action.task_uuid if action is not None else "unknown"
    if action is not None:
        with action.context():
            write_failure(failure)
    else:
        write_failure(failure)
    return json_response(
        request,
        500,
        {
            "description": "internal error in the control service; its log "
            f"has the details under eliot task {task_uuid}",
            "task_uuid": task_uuid,
        },
    )
