"""
The dataset agent's answers to the control service's snapshot commands.

The REST API takes, lists and destroys users' snapshots at once, through
the dataset agent of the dataset's primary node (`SnapshotCommand` in
`flocker.control._protocol`); `SnapshotOperations` runs them against the
node's backend.  Only a dataset this node exposes (role ``primary``) is
touched.  Names starting with ``flocker`` are Flocker's own (moves,
environments): they are neither listed nor destroyed here, and users cannot
take them.  After a change the convergence loop is poked, so the new list
of snapshots reaches the cluster state at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attr
from eliot import start_action
from twisted.internet.defer import Deferred

from flocker.control import is_uuid
from flocker.control._checks import is_snapshot_name
from flocker.volume import IVolumeBackend
from flocker.volume._interface import (
    DependentClones,
    SnapshotExists,
    UnknownDataset,
    UnknownSnapshot,
)

from ._roles import PRIMARY, IDatasetRoles


def _error(code: str, description: str) -> dict[str, Any]:
    return {"error": {"code": code, "description": description}}


def _snapshot_json(info: Any) -> dict[str, Any]:
    return {"name": info.name, "created": info.created}


@attr.s(eq=False)
class SnapshotOperations:
    """
    ``operations(operation, dataset_id, name)``: see `SnapshotCommand`.

    :ivar backend: The node's backend.
    :ivar roles: Which datasets this node exposes.
    :ivar poke: Wakes the convergence loop (so the state is reported).
    :ivar internal: Whether Flocker's own names (``flocker…``) are allowed
        for ``take`` (the control service takes environment snapshots).
    """

    backend: IVolumeBackend = attr.ib()
    roles: IDatasetRoles = attr.ib()
    poke: Callable[[], None] = attr.ib(default=lambda: None)

    def __call__(self, operation: str, dataset_id: str, name: str) -> Deferred[dict[str, Any]]:
        """Run one operation inside a ``flocker:node:snapshot`` action."""
        action = start_action(
            action_type="flocker:node:snapshot",
            operation=operation,
            dataset_id=dataset_id,
            name=name,
        )
        with action.context():
            running = Deferred.fromCoroutine(self._run(operation, dataset_id, name))

        def finished(result: dict[str, Any]) -> dict[str, Any]:
            action.add_success_fields(
                error=result.get("error", {}).get("code", "") if "error" in result else ""
            )
            action.finish()
            return result

        def failed(failure: Any) -> Any:
            action.finish(failure.value)
            return failure

        return running.addCallbacks(finished, failed)

    async def _run(self, operation: str, dataset_id: str, name: str) -> dict[str, Any]:
        if not is_uuid(dataset_id):
            return _error("bad_request", f"{dataset_id!r} is not a dataset id")
        if operation not in ("list", "take", "take_internal", "destroy"):
            return _error("bad_request", f"unknown snapshot operation {operation!r}")
        if self.roles.get(dataset_id) != PRIMARY:
            return _error("not_here", f"dataset {dataset_id} is not exposed on this node")
        try:
            snapshots = await self.backend.list_snapshots(dataset_id)
        except UnknownDataset:
            return _error("not_here", f"dataset {dataset_id} is not on this node")
        names = {s.name for s in snapshots}
        if operation == "list":
            return {
                "snapshots": [
                    _snapshot_json(s) for s in snapshots if not s.name.lower().startswith("flocker")
                ]
            }
        internal = operation == "take_internal"
        if not is_snapshot_name(name, internal=internal):
            return _error("bad_request", f"{name!r} is not a snapshot name")
        if operation in ("take", "take_internal"):
            if name in names:
                return _error("snapshot_exists", f"dataset {dataset_id} already has a snapshot {name!r}")
            try:
                info = await self.backend.snapshot(dataset_id, name)
            except SnapshotExists:
                return _error("snapshot_exists", f"dataset {dataset_id} already has a snapshot {name!r}")
            self.poke()
            return {"snapshot": _snapshot_json(info)}
        found = [s for s in snapshots if s.name == name]
        if not found:
            return _error("unknown_snapshot", f"dataset {dataset_id} has no snapshot {name!r}")
        try:
            await self.backend.destroy_snapshot(dataset_id, name)
        except UnknownSnapshot:
            return _error("unknown_snapshot", f"dataset {dataset_id} has no snapshot {name!r}")
        except DependentClones as error:
            return _error("has_clones", f"snapshot {name!r} of {dataset_id} has clones: {error}")
        self.poke()
        return {"snapshot": _snapshot_json(found[0])}


__all__ = ["SnapshotOperations"]
