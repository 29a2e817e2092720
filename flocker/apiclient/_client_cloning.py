"""
The part of `FlockerClient` that makes the REST API's snapshot, rollback,
clone, environment and transfer requests (``/v1/datasets/…/snapshots``,
``…/rollback``, ``…/clone``, ``/v1/environments…``, ``/v1/state/transfers``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote
from uuid import UUID

from twisted.internet.defer import Deferred

from ._interface import (
    Dataset,
    Environment,
    EnvironmentConflict,
    EnvironmentCopy,
    FlockerAPIError,
    NodeUnavailable,
    Rollback,
    Snapshot,
    SnapshotConflict,
    Transfers,
    UnknownContainer,
    UnknownDataset,
    UnknownEnvironment,
    UnknownSnapshot,
)
from ._json import (
    dataset_from_json,
    environment_copy_from_json,
    environment_from_json,
    rollback_from_json,
    snapshot_from_json,
    transfer_from_json,
)

__all__ = ["CloningRequests"]

#: A 404 whose description names a snapshot is refined to `UnknownSnapshot`.
_SNAPSHOT: dict[int, type[FlockerAPIError]] = {
    404: UnknownDataset,
    409: SnapshotConflict,
    503: NodeUnavailable,
}
_ENVIRONMENT: dict[int, type[FlockerAPIError]] = {
    404: UnknownEnvironment,
    409: EnvironmentConflict,
    503: NodeUnavailable,
}


class CloningRequests:
    """
    `FlockerClient`'s snapshot, rollback, clone, environment and transfer
    methods, made with its ``_request``.
    """

    _request: Callable[..., Awaitable[tuple[Any, dict[str, str]]]]
    _run: Callable[[Any], Deferred[Any]]

    # -- snapshots, rollback, clones --------------------------------------------

    async def _on_snapshot(
        self,
        method: str,
        path: str,
        expected: tuple[int, ...],
        body: Any = None,
        configuration_tag: str | None = None,
    ) -> Any:
        """A snapshot request: a 404 naming a snapshot is `UnknownSnapshot`."""
        try:
            decoded, _ = await self._request(
                method, path, expected, body, _SNAPSHOT, configuration_tag
            )
        except UnknownDataset as e:
            if "snapshot" in e.description:
                raise UnknownSnapshot(e.code, e.description) from None
            raise
        return decoded

    def list_snapshots(self, dataset_id: UUID) -> Deferred[list[Snapshot]]:
        """See `IFlockerAPIV1Client.list_snapshots`."""

        async def run() -> list[Snapshot]:
            body = await self._on_snapshot(
                "GET", f"/datasets/{dataset_id}/snapshots", (200,)
            )
            return [snapshot_from_json(s) for s in body]

        return self._run(run())

    def create_snapshot(self, dataset_id: UUID, name: str) -> Deferred[Snapshot]:
        """See `IFlockerAPIV1Client.create_snapshot`."""

        async def run() -> Snapshot:
            body = await self._on_snapshot(
                "POST", f"/datasets/{dataset_id}/snapshots", (201,), {"name": name}
            )
            return snapshot_from_json(body)

        return self._run(run())

    def delete_snapshot(self, dataset_id: UUID, name: str) -> Deferred[Snapshot]:
        """See `IFlockerAPIV1Client.delete_snapshot`."""

        async def run() -> Snapshot:
            body = await self._on_snapshot(
                "DELETE",
                f"/datasets/{dataset_id}/snapshots/{quote(name, safe='')}",
                (200,),
            )
            return snapshot_from_json(body)

        return self._run(run())

    def rollback_dataset(
        self, dataset_id: UUID, snapshot: str, configuration_tag: str | None = None
    ) -> Deferred[Rollback]:
        """See `IFlockerAPIV1Client.rollback_dataset`."""

        async def run() -> Rollback:
            body = await self._on_snapshot(
                "POST",
                f"/datasets/{dataset_id}/rollback",
                (202,),
                {"snapshot": snapshot},
                configuration_tag,
            )
            return rollback_from_json(body)

        return self._run(run())

    def clone_dataset(
        self,
        dataset_id: UUID,
        snapshot: str,
        new_dataset_id: UUID | None = None,
        metadata: Mapping[str, str] | None = None,
        configuration_tag: str | None = None,
    ) -> Deferred[Dataset]:
        """See `IFlockerAPIV1Client.clone_dataset`."""
        request: dict[str, Any] = {"snapshot": snapshot}
        if new_dataset_id is not None:
            request["dataset_id"] = str(new_dataset_id)
        if metadata is not None:
            request["metadata"] = dict(metadata)

        async def run() -> Dataset:
            body = await self._on_snapshot(
                "POST",
                f"/datasets/{dataset_id}/clone",
                (201,),
                request,
                configuration_tag,
            )
            return dataset_from_json(body)

        return self._run(run())

    # -- transfers ----------------------------------------------------------------

    def list_transfers(self) -> Deferred[Transfers]:
        """See `IFlockerAPIV1Client.list_transfers`."""

        async def run() -> Transfers:
            body, headers = await self._request("GET", "/state/transfers", (200,))
            unanswered = [u for u in headers["unanswered"].split(",") if u.strip()]
            return Transfers(
                transfers=[transfer_from_json(t) for t in body],
                unanswered=[UUID(u.strip()) for u in unanswered],
            )

        return self._run(run())

    # -- environments -------------------------------------------------------------

    def list_environments(self) -> Deferred[list[Environment]]:
        """See `IFlockerAPIV1Client.list_environments`."""

        async def run() -> list[Environment]:
            body, _ = await self._request("GET", "/environments", (200,))
            return [environment_from_json(e) for e in body]

        return self._run(run())

    def get_environment(self, name: str) -> Deferred[Environment]:
        """See `IFlockerAPIV1Client.get_environment`."""

        async def run() -> Environment:
            body, _ = await self._request(
                "GET", f"/environments/{quote(name, safe='')}", (200,), None, _ENVIRONMENT
            )
            return environment_from_json(body)

        return self._run(run())

    def create_environment(
        self,
        name: str,
        applications: Sequence[str],
        copies: int | Sequence[str],
        ports: Mapping[str, Mapping[str, Mapping[int, int]]] | None = None,
        configuration_tag: str | None = None,
    ) -> Deferred[Environment]:
        """See `IFlockerAPIV1Client.create_environment`."""
        request: dict[str, Any] = {
            "name": name,
            "applications": list(applications),
            "copies": copies if isinstance(copies, int) else list(copies),
        }
        if ports:
            request["ports"] = {
                copy: {
                    application: {str(k): v for k, v in chosen.items()}
                    for application, chosen in by_application.items()
                }
                for copy, by_application in ports.items()
            }

        async def run() -> Environment:
            body, _ = await self._request(
                "POST",
                "/environments",
                (201,),
                request,
                {**_ENVIRONMENT, 404: UnknownContainer},
                configuration_tag,
            )
            return environment_from_json(body)

        return self._run(run())

    def delete_environment(
        self, name: str, configuration_tag: str | None = None
    ) -> Deferred[Environment]:
        """See `IFlockerAPIV1Client.delete_environment`."""

        async def run() -> Environment:
            body, _ = await self._request(
                "DELETE",
                f"/environments/{quote(name, safe='')}",
                (200,),
                None,
                _ENVIRONMENT,
                configuration_tag,
            )
            return environment_from_json(body)

        return self._run(run())

    def _on_copy(
        self, method: str, name: str, copy: str, suffix: str, tag: str | None
    ) -> Deferred[EnvironmentCopy]:
        path = f"/environments/{quote(name, safe='')}/copies/{quote(copy, safe='')}"

        async def run() -> EnvironmentCopy:
            body, _ = await self._request(
                method, path + suffix, (200,), None, _ENVIRONMENT, tag
            )
            return environment_copy_from_json(body)

        return self._run(run())

    def reset_environment_copy(
        self, name: str, copy: str, configuration_tag: str | None = None
    ) -> Deferred[EnvironmentCopy]:
        """See `IFlockerAPIV1Client.reset_environment_copy`."""
        return self._on_copy("POST", name, copy, "/reset", configuration_tag)

    def delete_environment_copy(
        self, name: str, copy: str, configuration_tag: str | None = None
    ) -> Deferred[EnvironmentCopy]:
        """See `IFlockerAPIV1Client.delete_environment_copy`."""
        return self._on_copy("DELETE", name, copy, "", configuration_tag)
