"""The REST API v1: a Klein application bound to the control service's state.

`ConfigurationAPIUserV1` answers at the paths and with the JSON shapes of
the original Flocker v1 API.  Its routes come from ``schema/endpoints.yml``
(the `_operation` decorator names the operation); request bodies are
validated against ``schema/types.yml`` before a handler sees them.

Writes go through `ConfigurationService.change` with a pure function that
checks everything against the configuration *it is given* (so the checks and
the change are atomic) and is durable before the response is sent.
Configuration reads carry ``X-Configuration-Tag``; a write carrying
``X-If-Configuration-Matches`` is refused with 412 unless the configuration
still has that tag.

A move or deletion of a dataset that a node holds a lease on is accepted
(200) and carried out when the lease is released or lapses, as the original
API did (`DeferredChanges`); a request with ``X-Refuse-If-Leased: true`` is
refused with 409 instead.

Errors are ``{"description": ...}`` with a precise 4xx status; anything
unexpected is a 500 naming the eliot task of the request (every request is a
``flocker:control:rest:request`` action, see `LoggedAPIResource`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from hashlib import sha256
from typing import Any, ClassVar
from uuid import uuid4
from weakref import WeakKeyDictionary

import attrs
from eliot import ActionType, Field, start_action, write_failure
from klein import Klein
from pyrsistent import InvariantException
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime, ISSLTransport
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from .. import __version__
from ..ca import UnknownPeer, peer_identity
from ._deferral import DeferredChanges
from ._etcd import EtcdUnavailable
from ._httpaccess import APIAccess
from ._httpjson import (
    APIError,
    application_from,
    check_uuid,
    container_json,
    copies_json,
    dataset_json,
    invariant_reasons,
    json_response,
    path_dataset_id,
    read_body,
    superseded,
)
from ._httpschema import klein_path, openapi_document, operations
from ._model import (
    KEEP,
    Application,
    ApplicationAlreadyExists,
    Dataset,
    DatasetAlreadyExists,
    DatasetDeleted,
    DatasetInUse,
    DatasetLeased,
    Deployment,
    EnvironmentAlreadyExists,
    LeaseError,
    ModelError,
    NotAReplica,
    PortBusy,
    UnknownApplication,
    UnknownDataset,
    UnknownEnvironment,
)
from ._persistence import GenerationMismatch, StoredConfiguration
from ._serialization import node_convergence_json, serialize_deployment

__all__ = [
    "DEFAULT_FAILOVER_AFTER",
    "MAXIMUM_BODY_SIZE",
    "ConfigurationAPIUserV1",
    "LoggedAPIResource",
    "REST_REQUEST",
    "configuration_tag",
]

#: Seconds a primary's dataset agent must have been silent before a
#: failover is allowed without ``force``.
DEFAULT_FAILOVER_AFTER = 20.0

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

#: The eliot action of each request in flight (for 500 responses' task_uuid).
_ACTIONS: WeakKeyDictionary[Any, Any] = WeakKeyDictionary()


def configuration_tag(generation: int, deployment: Deployment) -> str:
    """
    The ``X-Configuration-Tag`` of a configuration.

    It names the generation and a digest of the content, so a tag from
    another configuration that happens to have the same generation (a store
    replaced under the service) does not match.
    """
    digest = sha256(serialize_deployment(deployment)).hexdigest()[:20]
    return f"{generation}-{digest}"


def _parse_tag(tag: str) -> int:
    generation, _, digest = tag.partition("-")
    if not generation.isdigit() or len(digest) != 20:
        raise APIError(
            412, f"X-If-Configuration-Matches {tag!r} is not a configuration tag"
        )
    return int(generation)


@attrs.frozen
class _Response:
    """A successful answer: status, JSON body, and the configuration it reflects."""

    code: int
    body: Any
    stored: StoredConfiguration | None = None


_OperationHandler = Callable[..., Coroutine[Any, Any, _Response]]

_app = Klein()


def _operation(name: str) -> Callable[[_OperationHandler], _OperationHandler]:
    """
    Register a handler for the operation ``name`` of ``endpoints.yml``.

    The handler is an ``async`` method taking the request, the path
    parameters, ``body`` (the validated JSON body) if the operation has one,
    and ``expected_tag`` (the X-If-Configuration-Matches header or ``None``)
    if it writes.  It returns a `_Response`.
    """
    op = operations()[name]

    def decorator(handler: _OperationHandler) -> _OperationHandler:
        @functools.wraps(handler)
        def route(self: ConfigurationAPIUserV1, request: Request, **kwargs: Any) -> Any:
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
                    stored = self._current()
                if stored is not None:
                    request.setHeader(
                        b"x-configuration-tag",
                        self._tag(stored).encode("ascii"),
                    )
                    stale = self.configuration_service.stale_reason()
                    if stale is not None:
                        request.setHeader(
                            b"x-configuration-stale",
                            stale.encode("ascii", "replace"),
                        )
                return json_response(request, response.code, response.body)

            return Deferred.fromCoroutine(run())

        _app.route(klein_path(op.path), methods=[op.method])(route)
        return route

    return decorator


# --------------------------------------------------------------------------


#: Which status each model error gets.
_MODEL_ERRORS: list[tuple[type[Exception], int]] = [
    (UnknownDataset, 404),
    (UnknownApplication, 404),
    (DatasetAlreadyExists, 409),
    (ApplicationAlreadyExists, 409),
    (DatasetDeleted, 409),
    (DatasetInUse, 409),
    (DatasetLeased, 409),
    (LeaseError, 409),
    (NotAReplica, 409),
    (UnknownEnvironment, 404),
    (EnvironmentAlreadyExists, 409),
    (PortBusy, 409),
    (ModelError, 400),
]


@attrs.define
class ConfigurationAPIUserV1:
    """
    The REST API v1 over the configuration and the cluster state.

    :ivar configuration_service: the `ConfigurationService` (already loaded).
    :ivar cluster_state_service: the `ClusterStateService`.
    :ivar clock: the time (for lease expiry).
    :ivar agents: the `ControlAMPService` that reaches the nodes' dataset
        agents (for snapshots), or ``None``.
    :ivar failover_after: seconds the primary's dataset agent must have been
        silent before a failover is allowed without ``force``.
    """

    app: ClassVar[Klein] = _app

    configuration_service: Any
    cluster_state_service: Any
    clock: IReactorTime
    agents: Any = None
    failover_after: float = DEFAULT_FAILOVER_AFTER
    _tags: dict[int, tuple[Deployment, str]] = attrs.field(factory=dict, init=False)
    _deferred: DeferredChanges = attrs.field(init=False)

    @_deferred.default
    def _make_deferred(self) -> DeferredChanges:
        return DeferredChanges(self.clock, self.configuration_service)

    def pending_changes(self) -> dict[str, str]:
        """Dataset id → the move or deletion waiting for its lease to end."""
        return self._deferred.pending()

    async def _change_or_defer(
        self,
        request: Request,
        expected_tag: str | None,
        dataset_id: str,
        what: str,
        change: Callable[[Deployment], Deployment],
    ) -> StoredConfiguration | Deployment:
        """
        Apply ``change``; if a lease on the dataset refuses it, keep it to
        carry out when the lease ends and return the configuration as it
        will be then (unless the request asks ``X-Refuse-If-Leased: true``,
        which gets the 409).
        """
        try:
            return await self._change(expected_tag, change)
        except DatasetLeased:
            refuse = request.getHeader(b"x-refuse-if-leased") or b""
            if refuse.strip().lower() == b"true":
                raise
        deployment = self.configuration_service.deployment
        leases = deployment.leases
        if leases.get(dataset_id) is not None:
            leases = leases.release(dataset_id)
        future = change(deployment.set(leases=leases))
        self._deferred.defer(dataset_id, what, change)
        return future

    # -- helpers -------------------------------------------------------------

    def _current(self) -> StoredConfiguration:
        """The current configuration and its generation."""
        service = self.configuration_service
        return StoredConfiguration(
            generation=service.generation, deployment=service.deployment
        )

    def _tag(self, stored: StoredConfiguration) -> str:
        cached = self._tags.get(stored.generation)
        if cached is not None and cached[0] is stored.deployment:
            return cached[1]
        tag = configuration_tag(stored.generation, stored.deployment)
        self._tags = {stored.generation: (stored.deployment, tag)}
        return tag

    def _require_node(self, deployment: Deployment, node_uuid: str, what: str) -> None:
        """Refuse (400) a node that neither reported state nor holds configuration."""
        state = self.cluster_state_service.as_deployment_state()
        if node_uuid not in deployment.nodes and node_uuid not in state.nodes:
            raise APIError(
                400,
                f"{what} {node_uuid} is not a node of this cluster: it has never "
                "reported its state to the control service and holds no "
                "configuration",
            )

    def _refuse_diverged_target(self, dataset_ids: list[str], node_uuid: str) -> None:
        """
        Refuse (409) to move datasets to a node that keeps a diverged copy
        of one of them (its copy of an older epoch, kept after a failover):
        that copy refuses every stream, so the move could never finish and
        the dataset would be exposed nowhere.
        """
        state = self.cluster_state_service.as_deployment_state()
        held = state.get_node(node_uuid).datasets or {}
        for dataset_id in dataset_ids:
            copy = held.get(dataset_id)
            if copy is not None and copy.role == "diverged":
                raise APIError(
                    409,
                    f"node {node_uuid} keeps a diverged copy of dataset {dataset_id} "
                    f"(epoch {copy.epoch}, kept after a failover): a move there cannot "
                    "finish until that copy is dealt with; choose another node",
                )

    def _refuse_oversized(self, deployment: Deployment, dataset_id: str) -> None:
        """
        Refuse (409) a dataset whose maximum size is larger than the pool
        its primary or one of its standing replicas reported: it could
        never grow to it there, and filling the pool would stop the node
        taking anything else.
        """
        dataset, primary = deployment.get_dataset(dataset_id)
        state = self.cluster_state_service.as_deployment_state()
        reason = state.too_small_for(
            [primary, *deployment.replicas_of(dataset_id)], dataset.maximum_size
        )
        if reason is not None:
            raise APIError(409, reason)

    def _refuse_unsettled_failover(self, deployment: Deployment, dataset_ids: list[str]) -> None:
        """
        Refuse (409) to move a dataset that failed over while its new
        primary has not yet reported its copy as primary at the new epoch:
        until then the data of that epoch is on no node that could send it
        (the chosen replica becomes primary only when its agent hears of the
        failover), so the move would leave the dataset exposed nowhere.
        """
        state = self.cluster_state_service.as_deployment_state()
        for dataset_id in dataset_ids:
            dataset, primary = deployment.get_dataset(dataset_id)
            if dataset.epoch == 0:
                continue
            copy = (state.get_node(primary).datasets or {}).get(dataset_id)
            if copy is None or copy.role != "primary" or (copy.epoch or 0) < dataset.epoch:
                raise APIError(
                    409,
                    f"dataset {dataset_id} failed over to node {primary} (epoch "
                    f"{dataset.epoch}), which has not reported taking it up yet: "
                    "move it once that node reports its copy as the primary",
                )

    async def _change(
        self, expected_tag: str | None, change: Callable[[Deployment], Deployment]
    ) -> StoredConfiguration:
        """Apply ``change`` durably, only at ``expected_tag`` if one is given."""
        generation = None
        if expected_tag is not None:
            generation = _parse_tag(expected_tag)
            unconditional = change

            def change(deployment: Deployment) -> Deployment:
                if configuration_tag(generation, deployment) != expected_tag:
                    raise GenerationMismatch(generation, None)
                return unconditional(deployment)

        stored: StoredConfiguration = await self.configuration_service.change(
            change, expected_generation=generation
        )
        return stored

    # -- misc ----------------------------------------------------------------

    @_operation("version")
    async def version(self, request: Request) -> _Response:
        """The control service's version."""
        return _Response(200, {"flocker": __version__})

    @_operation("openapi")
    async def openapi(self, request: Request) -> _Response:
        """The OpenAPI document, generated from the schema files."""
        return _Response(200, openapi_document(__version__))

    # -- datasets ------------------------------------------------------------

    @_operation("list_datasets_configuration")
    async def list_datasets_configuration(self, request: Request) -> _Response:
        """Every configured dataset."""
        stored = self._current()
        deployment = stored.deployment
        body = [
            dataset_json(d, p, deployment.replicas_of(d.dataset_id))
            for d, p in deployment.all_datasets()
        ]
        return _Response(200, body, stored)

    @_operation("create_dataset")
    async def create_dataset(
        self, request: Request, body: dict[str, Any], expected_tag: str | None
    ) -> _Response:
        """Add a dataset with its primary on a known node, maybe with replicas."""
        primary = check_uuid(body["primary"], "primary")
        dataset_id = check_uuid(body.get("dataset_id", str(uuid4())), "dataset_id")
        replicas = _replicas_from(body)
        dataset = Dataset(
            dataset_id=dataset_id,
            metadata=body.get("metadata", {}),
            maximum_size=body.get("maximum_size"),
        )

        def change(deployment: Deployment) -> Deployment:
            self._require_node(deployment, primary, "primary")
            deployment = deployment.add_dataset(dataset, primary)
            deployment = self._replicate(deployment, dataset_id, replicas, body)
            self._refuse_oversized(deployment, dataset_id)
            return deployment

        stored = await self._change(expected_tag, change)
        return _Response(201, _dataset_answer(stored.deployment, dataset_id), stored)

    @_operation("update_dataset")
    async def update_dataset(
        self,
        request: Request,
        dataset_id: str,
        body: dict[str, Any],
        expected_tag: str | None,
    ) -> _Response:
        """
        Move a dataset; change its size, metadata, replicas or replication.

        A dataset that was deleted cannot be changed: moving it is a 405, as
        the original Flocker API answered; other changes (this project's
        extensions) a 409.
        """
        dataset_id = path_dataset_id(dataset_id)
        primary = check_uuid(body["primary"], "primary") if "primary" in body else None
        replicas = _replicas_from(body)

        def change(deployment: Deployment) -> Deployment:
            dataset, _ = deployment.get_dataset(dataset_id)
            if dataset.deleted and primary is not None:
                raise APIError(
                    405, f"dataset {dataset_id} was deleted: it cannot be moved"
                )
            if dataset.deleted:
                raise DatasetDeleted(dataset_id)
            if primary is not None:
                self._require_node(deployment, primary, "primary")
            deployment = deployment.update_dataset(
                dataset_id,
                metadata=body.get("metadata"),
                maximum_size=body.get("maximum_size", KEEP),
            )
            if primary is not None and primary != deployment.get_dataset(dataset_id)[1]:
                self._refuse_diverged_target([dataset_id], primary)
                self._refuse_unsettled_failover(deployment, [dataset_id])
            if primary is not None:
                deployment = deployment.move_dataset(dataset_id, primary)
            deployment = self._replicate(deployment, dataset_id, replicas, body)
            if "maximum_size" in body or primary is not None or replicas is not None:
                self._refuse_oversized(deployment, dataset_id)
            return deployment

        if primary is None:
            stored = await self._change(expected_tag, change)
            return _Response(200, _dataset_answer(stored.deployment, dataset_id), stored)
        result = await self._change_or_defer(
            request, expected_tag, dataset_id, f"move to {primary}", change
        )
        return _deferrable_answer(result, dataset_id)

    @_operation("delete_dataset")
    async def delete_dataset(
        self, request: Request, dataset_id: str, expected_tag: str | None
    ) -> _Response:
        """Mark a dataset deleted (when its lease ends, if it has one)."""
        dataset_id = path_dataset_id(dataset_id)
        result = await self._change_or_defer(
            request,
            expected_tag,
            dataset_id,
            "delete",
            lambda deployment: deployment.delete_dataset(dataset_id),
        )
        return _deferrable_answer(result, dataset_id)

    def _replicate(
        self,
        deployment: Deployment,
        dataset_id: str,
        replicas: list[str] | None,
        body: dict[str, Any],
    ) -> Deployment:
        """
        Apply a request's ``replicas`` and ``replication`` (if any) to a dataset.

        Replicas left out keep the current set; replication keys left out
        keep their current value.
        """
        if replicas is None and "replication" not in body:
            return deployment
        for node_uuid in replicas or []:
            self._require_node(deployment, node_uuid, "replica")
        dataset, _ = deployment.get_dataset(dataset_id)
        replication = KEEP
        if "replication" in body:
            replication = dataset.replication.set(**body["replication"])
        return deployment.set_replicas(
            dataset_id,
            deployment.replicas_of(dataset_id) if replicas is None else replicas,
            replication=replication,
        )

    @_operation("list_datasets_state")
    async def list_datasets_state(self, request: Request) -> _Response:
        """
        The datasets nodes report having mounted, with the standing
        replicas and diverged copies other nodes report holding.  A
        primary's copy whose node fenced itself (it lost the control
        service: the copy is not exposed) is listed too, with ``fenced``
        and without ``path`` unless the node still reports one.
        """
        state = self.cluster_state_service.as_deployment_state()
        now = self.clock.seconds()
        deployment = self._current().deployment
        epochs = {d.dataset_id: d.epoch for d, _ in deployment.all_datasets()}
        body = []
        for uuid, node in state.nodes.items():
            for ds in (node.datasets or {}).values():
                epoch = epochs.get(ds.dataset_id, 0)
                fenced = ds.role == "fenced"
                if (ds.path is None and not fenced) or superseded(ds, epoch):
                    continue
                entry: dict[str, Any] = {"dataset_id": ds.dataset_id, "primary": uuid}
                if ds.path is not None:
                    entry["path"] = ds.path
                if fenced:
                    entry["fenced"] = True
                if ds.maximum_size is not None:
                    entry["maximum_size"] = ds.maximum_size
                if ds.rolled_back is not None:
                    entry["rolled_back"] = ds.rolled_back
                entry.update(
                    copies_json(
                        state, ds.dataset_id, now, epoch, deployment.replicas_of(ds.dataset_id)
                    )
                )
                body.append(entry)
        body.sort(key=lambda e: (e["dataset_id"], e["primary"]))
        return _Response(200, body)

    # -- nodes ---------------------------------------------------------------

    @_operation("list_nodes")
    async def list_nodes(self, request: Request) -> _Response:
        """
        The nodes that reported their state; ``fenced`` lists the datasets
        whose copies a node reports fenced (present only when there is one);
        ``last_converged``, ``failing_changes`` and ``pool`` say whether its
        dataset agent converges and how full its pool is (present once it
        reported them).
        """
        state = self.cluster_state_service.as_deployment_state()
        body = []
        for uuid in sorted(state.nodes):
            node = state.nodes[uuid]
            entry: dict[str, Any] = {"uuid": uuid}
            if node.hostname is not None:
                entry["host"] = node.hostname
            fenced = sorted(
                k for k, ds in (node.datasets or {}).items() if ds.role == "fenced"
            )
            if fenced:
                entry["fenced"] = fenced
            entry.update(node_convergence_json(node))
            body.append(entry)
        return _Response(200, body)

    @_operation("node_by_era")
    async def node_by_era(self, request: Request, era: str) -> _Response:
        """The node whose current era is ``era``."""
        era = check_uuid(era, "era")
        state = self.cluster_state_service.as_deployment_state()
        for uuid, node in state.nodes.items():
            if node.era == era:
                return _Response(200, {"uuid": uuid})
        raise APIError(404, f"no node reported era {era}")

    # -- leases --------------------------------------------------------------

    def _leasejson_response(self, lease: Any, now: float) -> dict[str, Any]:
        expires = None
        if lease.expiration is not None:
            expires = max(0.0, lease.expiration - now)
        return {
            "dataset_id": lease.dataset_id,
            "node_uuid": lease.node_uuid,
            "expires": expires,
        }

    @_operation("list_leases")
    async def list_leases(self, request: Request) -> _Response:
        """The leases that have not lapsed."""
        stored = self._current()
        now = self.clock.seconds()
        leases = stored.deployment.leases.expire(now)
        return _Response(
            200, [self._leasejson_response(x, now) for x in leases], stored
        )

    @_operation("acquire_lease")
    async def acquire_lease(
        self, request: Request, body: dict[str, Any], expected_tag: str | None
    ) -> _Response:
        """Acquire or renew a lease."""
        dataset_id = check_uuid(body["dataset_id"], "dataset_id")
        node_uuid = check_uuid(body["node_uuid"], "node_uuid")
        expires = body["expires"]
        now = self.clock.seconds()
        renewed: list[bool] = []

        def change(deployment: Deployment) -> Deployment:
            dataset, _ = deployment.get_dataset(dataset_id)
            if dataset.deleted:
                raise DatasetDeleted(dataset_id)
            self._require_node(deployment, node_uuid, "node_uuid")
            current = deployment.leases.expire(now).get(dataset_id)
            renewed[:] = [current is not None and current.node_uuid == node_uuid]
            return deployment.set(
                leases=deployment.leases.acquire(now, dataset_id, node_uuid, expires)
            )

        stored = await self._change(expected_tag, change)
        lease = stored.deployment.leases.get(dataset_id)
        return _Response(
            200 if renewed[0] else 201, self._leasejson_response(lease, now), stored
        )

    @_operation("release_lease")
    async def release_lease(
        self, request: Request, dataset_id: str, expected_tag: str | None
    ) -> _Response:
        """
        Release the lease on a dataset, then carry out the move or deletion
        that waited for it, if any (its failure does not fail the release).
        """
        dataset_id = path_dataset_id(dataset_id)
        now = self.clock.seconds()
        released: list[Any] = []

        def change(deployment: Deployment) -> Deployment:
            lease = deployment.leases.get(dataset_id)
            if lease is None:
                raise APIError(404, f"there is no lease on dataset {dataset_id}")
            released[:] = [lease]
            return deployment.set(leases=deployment.leases.release(dataset_id))

        await self._change(expected_tag, change)
        await self._deferred.lease_ended(dataset_id)
        return _Response(200, self._leasejson_response(released[0], now), self._current())

    # -- containers ----------------------------------------------------------

    @_operation("list_containers_configuration")
    async def list_containers_configuration(self, request: Request) -> _Response:
        """Every configured container."""
        stored = self._current()
        body = [container_json(a, n) for a, n in stored.deployment.all_applications()]
        return _Response(200, body, stored)

    @_operation("create_container")
    async def create_container(
        self, request: Request, body: dict[str, Any], expected_tag: str | None
    ) -> _Response:
        """Configure a container on a node."""
        node_uuid = check_uuid(body["node_uuid"], "node_uuid")
        app = application_from(body)

        def change(deployment: Deployment) -> Deployment:
            self._require_node(deployment, node_uuid, "node_uuid")
            try:
                deployment.get_application(app.name)
            except UnknownApplication:
                pass
            else:
                raise ApplicationAlreadyExists(app.name)
            node = deployment.get_node(node_uuid)
            for volume in app.volumes:
                dataset, primary = deployment.get_dataset(volume.dataset_id)
                if dataset.deleted:
                    raise DatasetDeleted(dataset.dataset_id)
                if primary != node_uuid:
                    raise APIError(
                        409,
                        f"dataset {dataset.dataset_id} is on node {primary}, not "
                        f"{node_uuid}: move it first",
                    )
                user = node.application_using(volume.dataset_id)
                if user is not None:
                    raise DatasetInUse(volume.dataset_id, user.name)
            _check_ports(deployment, app, node_uuid)
            return deployment.add_application(app, node_uuid)

        stored = await self._change(expected_tag, change)
        return _Response(201, container_json(app, node_uuid), stored)

    @_operation("move_container")
    async def move_container(
        self,
        request: Request,
        name: str,
        body: dict[str, Any],
        expected_tag: str | None,
    ) -> _Response:
        """Move a container (and its datasets) to another node."""
        node_uuid = check_uuid(body["node_uuid"], "node_uuid")

        def change(deployment: Deployment) -> Deployment:
            app, source = deployment.get_application(name)
            self._require_node(deployment, node_uuid, "node_uuid")
            if source != node_uuid:
                _check_ports(deployment, app, node_uuid)
                self._refuse_diverged_target([v.dataset_id for v in app.volumes], node_uuid)
                self._refuse_unsettled_failover(deployment, [v.dataset_id for v in app.volumes])
            return deployment.move_application(name, node_uuid)

        stored = await self._change(expected_tag, change)
        app, node = stored.deployment.get_application(name)
        return _Response(200, container_json(app, node), stored)

    @_operation("delete_container")
    async def delete_container(
        self, request: Request, name: str, expected_tag: str | None
    ) -> _Response:
        """Remove a container from the configuration."""
        removed: list[tuple[Application, str]] = []

        def change(deployment: Deployment) -> Deployment:
            removed[:] = [deployment.get_application(name)]
            return deployment.remove_application(name)

        stored = await self._change(expected_tag, change)
        app, node = removed[0]
        return _Response(200, container_json(app, node), stored)

    @_operation("list_containers_state")
    async def list_containers_state(self, request: Request) -> _Response:
        """The containers nodes report running."""
        state = self.cluster_state_service.as_deployment_state()
        body = []
        for uuid, node in state.nodes.items():
            for app in (node.applications or {}).values():
                entry = container_json(app, uuid)
                entry["running"] = True
                body.append(entry)
        body.sort(key=lambda e: (e["name"], e["node_uuid"]))
        return _Response(200, body)

    # -- errors --------------------------------------------------------------

    @_app.handle_errors(Exception)  # type: ignore[arg-type]
    def _error(self, request: Request, failure: Failure) -> bytes | None:
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
            return json_response(
                request,
                412,
                {
                    "description": "the configuration changed since the tag in "
                    "X-If-Configuration-Matches; read it again"
                },
            )
        if isinstance(error, ModelError):
            code = next(c for t, c in _MODEL_ERRORS if isinstance(error, t))
            return json_response(request, code, {"description": str(error)})
        if isinstance(error, InvariantException):
            return json_response(
                request, 409, {"description": invariant_reasons(error)}
            )
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
        action = _ACTIONS.get(request)
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


def _deferrable_answer(
    result: StoredConfiguration | Deployment, dataset_id: str
) -> _Response:
    """
    The answer to a move or deletion: the dataset as changed, or, for one
    waiting for a lease to end, as it will be once carried out (the
    configuration's tag is then that of the unchanged configuration).
    """
    if isinstance(result, StoredConfiguration):
        return _Response(200, _dataset_answer(result.deployment, dataset_id), result)
    return _Response(200, _dataset_answer(result, dataset_id))


def _replicas_from(body: dict[str, Any]) -> list[str] | None:
    """The canonical node UUIDs a request lists as ``replicas``, or ``None``."""
    if "replicas" not in body:
        return None
    return [check_uuid(u, "replicas") for u in body["replicas"]]


def _dataset_answer(deployment: Deployment, dataset_id: str) -> dict[str, Any]:
    """A dataset of the configuration as the API answers it."""
    dataset, node = deployment.get_dataset(dataset_id)
    return dataset_json(dataset, node, deployment.replicas_of(dataset_id))


def _check_ports(deployment: Deployment, app: Application, node_uuid: str) -> None:
    """Refuse (409) an application whose external ports are taken on the node."""
    node = deployment.get_node(node_uuid)
    taken = {
        p.external_port
        for other in node.applications.values()
        if other.name != app.name
        for p in other.ports
    }
    clash = sorted(taken & {p.external_port for p in app.ports})
    if clash:
        raise APIError(
            409,
            f"external port(s) {', '.join(map(str, clash))} already used on "
            f"node {node_uuid}",
        )


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
        super().__init__()
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
        _ACTIONS[request] = action

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
        for segment in [*request.prepath, *request.postpath]:
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


# The snapshot, clone, rollback and environment operations, and failover,
# register their routes on the same Klein app.
from . import (  # noqa: E402
    _httpapi_cloning,  # noqa: F401
    _httpapi_replication,  # noqa: F401
)
