"""The configuration routes of the REST API v1: ``/v1/configuration/...``.

Datasets, leases and containers as the user wants them.  Each write goes
through `APIContext.change` with a pure function of the configuration it
is given (so the checks and the change are atomic) and is durable before
the answer; the rules themselves are the model's (`flocker.control._model`),
which raises a typed error whose message is the answer's description.
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import attrs
from twisted.web.server import Request

from .._checks import DeletedDatasetNotMovable, NoLease
from .._httpjson import (
    application_from,
    check_uuid,
    configured_container_json,
    dataset_json,
    path_dataset_id,
    read_body,
    updated_application,
)
from .._model import (
    KEEP,
    Application,
    Dataset,
    DatasetDeleted,
    Deployment,
)
from ._context import (
    Routes,
    dataset_answer,
    deferrable_answer,
    replicas_from,
)
from ._operation import Response, operation, routes_app

__all__ = ["ConfigurationRoutes"]

#: Where `ConfigurationRoutes` are mounted.
MOUNT = "/v1/configuration"


@attrs.define
class ConfigurationRoutes(Routes):
    """The routes under ``/v1/configuration``."""

    app = routes_app()

    # -- datasets ------------------------------------------------------------

    @operation(app, "list_datasets_configuration", MOUNT)
    async def list_datasets_configuration(self, request: Request) -> Response:
        """Every configured dataset."""
        stored = self.context.current()
        deployment = stored.deployment
        body = [
            dataset_json(d, p, deployment.replicas_of(d.dataset_id))
            for d, p in deployment.all_datasets()
        ]
        return Response(200, body, stored)

    @operation(app, "create_dataset", MOUNT)
    async def create_dataset(
        self, request: Request, body: dict[str, Any], expected_tag: str | None
    ) -> Response:
        """Add a dataset with its primary on a known node, maybe with replicas."""
        primary = check_uuid(body["primary"], "primary")
        dataset_id = check_uuid(body.get("dataset_id", str(uuid4())), "dataset_id")
        replicas = replicas_from(body)
        dataset = Dataset(
            dataset_id=dataset_id,
            metadata=body.get("metadata", {}),
            maximum_size=body.get("maximum_size"),
        )

        def change(deployment: Deployment) -> Deployment:
            self.context.require_node(deployment, primary, "primary")
            deployment = deployment.add_dataset(dataset, primary)
            deployment = self._replicate(deployment, dataset_id, replicas, body)
            self.context.refuse_oversized(deployment, dataset_id)
            return deployment

        stored = await self.context.change(expected_tag, change)
        return Response(201, dataset_answer(stored.deployment, dataset_id), stored)

    @operation(app, "update_dataset", MOUNT)
    async def update_dataset(
        self,
        request: Request,
        dataset_id: str,
        body: dict[str, Any],
        expected_tag: str | None,
    ) -> Response:
        """
        Move a dataset; change its size, metadata, replicas or replication.

        A dataset that was deleted cannot be changed: moving it is a 405, as
        the original Flocker API answered; other changes (this project's
        extensions) a 409.
        """
        dataset_id = path_dataset_id(dataset_id)
        primary = check_uuid(body["primary"], "primary") if "primary" in body else None
        replicas = replicas_from(body)

        def change(deployment: Deployment) -> Deployment:
            dataset, _ = deployment.get_dataset(dataset_id)
            if dataset.deleted and primary is not None:
                raise DeletedDatasetNotMovable(dataset_id)
            if dataset.deleted:
                raise DatasetDeleted(dataset_id)
            if primary is not None:
                self.context.require_node(deployment, primary, "primary")
            deployment = deployment.update_dataset(
                dataset_id,
                metadata=body.get("metadata"),
                maximum_size=body.get("maximum_size", KEEP),
            )
            if primary is not None and primary != deployment.get_dataset(dataset_id)[1]:
                self.context.refuse_diverged_target([dataset_id], primary)
                self.context.refuse_unsettled_failover(deployment, [dataset_id])
            if primary is not None:
                deployment = deployment.move_dataset(dataset_id, primary)
            deployment = self._replicate(deployment, dataset_id, replicas, body)
            if "maximum_size" in body or primary is not None or replicas is not None:
                self.context.refuse_oversized(deployment, dataset_id)
            return deployment

        if primary is None:
            stored = await self.context.change(expected_tag, change)
            return Response(200, dataset_answer(stored.deployment, dataset_id), stored)
        result = await self.context.change_or_defer(
            request, expected_tag, dataset_id, f"move to {primary}", change
        )
        return deferrable_answer(result, dataset_id)

    @operation(app, "delete_dataset", MOUNT)
    async def delete_dataset(
        self, request: Request, dataset_id: str, expected_tag: str | None
    ) -> Response:
        """Mark a dataset deleted (when its lease ends, if it has one)."""
        dataset_id = path_dataset_id(dataset_id)
        result = await self.context.change_or_defer(
            request,
            expected_tag,
            dataset_id,
            "delete",
            lambda deployment: deployment.delete_dataset(dataset_id),
        )
        return deferrable_answer(result, dataset_id)

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
            self.context.require_node(deployment, node_uuid, "replica")
        dataset, _ = deployment.get_dataset(dataset_id)
        replication = KEEP
        if "replication" in body:
            replication = dataset.replication.set(**body["replication"])
        return deployment.set_replicas(
            dataset_id,
            deployment.replicas_of(dataset_id) if replicas is None else replicas,
            replication=replication,
        )

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

    @operation(app, "list_leases", MOUNT)
    async def list_leases(self, request: Request) -> Response:
        """The leases that have not lapsed."""
        stored = self.context.current()
        now = self.context.clock.seconds()
        leases = stored.deployment.leases.expire(now)
        return Response(
            200, [self._leasejson_response(x, now) for x in leases], stored
        )

    @operation(app, "acquire_lease", MOUNT)
    async def acquire_lease(
        self, request: Request, body: dict[str, Any], expected_tag: str | None
    ) -> Response:
        """Acquire or renew a lease."""
        dataset_id = check_uuid(body["dataset_id"], "dataset_id")
        node_uuid = check_uuid(body["node_uuid"], "node_uuid")
        expires = body["expires"]
        now = self.context.clock.seconds()
        renewed: list[bool] = []

        def change(deployment: Deployment) -> Deployment:
            dataset, _ = deployment.get_dataset(dataset_id)
            if dataset.deleted:
                raise DatasetDeleted(dataset_id)
            self.context.require_node(deployment, node_uuid, "node_uuid")
            current = deployment.leases.expire(now).get(dataset_id)
            renewed[:] = [current is not None and current.node_uuid == node_uuid]
            return deployment.set(
                leases=deployment.leases.acquire(now, dataset_id, node_uuid, expires)
            )

        stored = await self.context.change(expected_tag, change)
        lease = stored.deployment.leases.get(dataset_id)
        return Response(
            200 if renewed[0] else 201, self._leasejson_response(lease, now), stored
        )

    @operation(app, "release_lease", MOUNT)
    async def release_lease(
        self, request: Request, dataset_id: str, expected_tag: str | None
    ) -> Response:
        """
        Release the lease on a dataset, then carry out the move or deletion
        that waited for it, if any (its failure does not fail the release).
        """
        dataset_id = path_dataset_id(dataset_id)
        now = self.context.clock.seconds()
        released: list[Any] = []

        def change(deployment: Deployment) -> Deployment:
            lease = deployment.leases.get(dataset_id)
            if lease is None:
                raise NoLease(dataset_id)
            released[:] = [lease]
            return deployment.set(leases=deployment.leases.release(dataset_id))

        await self.context.change(expected_tag, change)
        await self.context.lease_ended(dataset_id)
        return Response(200, self._leasejson_response(released[0], now), self.context.current())

    # -- containers ----------------------------------------------------------

    @operation(app, "list_containers_configuration", MOUNT)
    async def list_containers_configuration(self, request: Request) -> Response:
        """Every configured container."""
        stored = self.context.current()
        body = [
            configured_container_json(a, n)
            for a, n in stored.deployment.all_applications()
        ]
        return Response(200, body, stored)

    @operation(app, "create_container", MOUNT)
    async def create_container(
        self, request: Request, body: dict[str, Any], expected_tag: str | None
    ) -> Response:
        """Configure a container on a node."""
        node_uuid = check_uuid(body["node_uuid"], "node_uuid")
        app = application_from(body)

        def change(deployment: Deployment) -> Deployment:
            self.context.require_node(deployment, node_uuid, "node_uuid")
            return deployment.add_application(app, node_uuid)

        stored = await self.context.change(expected_tag, change)
        return Response(201, configured_container_json(app, node_uuid), stored)

    @operation(app, "update_container", MOUNT)
    async def update_container(
        self,
        request: Request,
        name: str,
        body: dict[str, Any],
        expected_tag: str | None,
    ) -> Response:
        """
        Move a container (and its datasets) to another node, as the original
        API's ``{"node_uuid": ...}`` does, and/or update its specification
        (`updated_application`): a changed one is its next revision, the one
        it replaces kept to roll back to; the same one changes nothing.

        A move and an update in one request are both made, or neither: the
        new specification's ports are checked on the node it ends up on.
        """
        node_uuid = (
            check_uuid(body["node_uuid"], "node_uuid") if "node_uuid" in body else None
        )

        def change(deployment: Deployment) -> Deployment:
            app, source = deployment.get_application(name)
            target = source if node_uuid is None else node_uuid
            if node_uuid is not None:
                self.context.require_node(deployment, node_uuid, "node_uuid")
            new = updated_application(app, body)
            if source != target:
                deployment.check_ports(app if new is None else new, target)
                volumes = [v.dataset_id for v in app.volumes]
                self.context.refuse_diverged_target(volumes, target)
                self.context.refuse_unsettled_failover(deployment, volumes)
                deployment = deployment.move_application(name, target)
            if new is not None:
                deployment = deployment.update_application(new)
            return deployment

        stored = await self.context.change(expected_tag, change)
        app, node = stored.deployment.get_application(name)
        return Response(200, configured_container_json(app, node), stored)

    @operation(app, "rollback_container", MOUNT)
    async def rollback_container(
        self, request: Request, name: str, expected_tag: str | None
    ) -> Response:
        """
        Return a container to the specification its last update replaced,
        as its next revision (`Deployment.rollback_application`); its
        external ports must still be free on its node.  The request has no
        body, or ``{}``.
        """
        _empty_body(request)

        def change(deployment: Deployment) -> Deployment:
            current, node = deployment.get_application(name)
            deployment.check_ports(current.rolled_back(), node)
            return deployment.rollback_application(name)

        stored = await self.context.change(expected_tag, change)
        app, node = stored.deployment.get_application(name)
        return Response(200, configured_container_json(app, node), stored)

    @operation(app, "delete_container", MOUNT)
    async def delete_container(
        self, request: Request, name: str, expected_tag: str | None
    ) -> Response:
        """Remove a container from the configuration."""
        removed: list[tuple[Application, str]] = []

        def change(deployment: Deployment) -> Deployment:
            removed[:] = [deployment.get_application(name)]
            return deployment.remove_application(name)

        stored = await self.context.change(expected_tag, change)
        app, node = removed[0]
        return Response(200, configured_container_json(app, node), stored)


def _empty_body(request: Request) -> None:
    """
    Refuse (400) a request body other than none or an empty JSON object
    (``container_rollback``).
    """
    content = request.content
    if content is None or not content.read().strip():
        return
    content.seek(0)
    read_body(request, "container_rollback")
