"""Snapshot operations on a dataset's primary, asked of its node's dataset agent.

Snapshots are taken, listed and destroyed at once by the dataset agent of
the dataset's primary node, through the agent protocol (`SnapshotCommand`):
the answer says what the node has *now*.  Failures to reach the agent are
503s; the agent's refusals get the status of `_AGENT_ERRORS`.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from .._httpjson import APIError
from .._model import DatasetDeleted
from .._protocol import AgentUnavailable
from ._context import APIContext

__all__ = ["AGENT_TIMEOUT", "on_primary", "require_snapshot"]

#: Seconds a node's dataset agent has to answer a snapshot operation.
AGENT_TIMEOUT = 30.0

#: HTTP status for each error code of `SnapshotCommand`.
_AGENT_ERRORS = {
    "not_here": 409,
    "unknown_snapshot": 404,
    "snapshot_exists": 409,
    "has_clones": 409,
    "bad_request": 400,
}


async def on_primary(
    context: APIContext, dataset_id: str, operation: str, name: str = ""
) -> dict[str, Any]:
    """Run a snapshot operation on the dataset's primary; its answer or an error."""
    dataset, primary = context.configuration_service.deployment.get_dataset(dataset_id)
    if dataset.deleted:
        raise DatasetDeleted(dataset_id)
    if context.agents is None:
        raise APIError(503, "this control service does not reach the nodes' agents")
    try:
        asked = context.agents.snapshot_operation(primary, operation, dataset_id, name)
        result: dict[str, Any] = await asked.addTimeout(AGENT_TIMEOUT, context.clock)
    except AgentUnavailable:
        raise APIError(
            503,
            f"the dataset agent of node {primary}, the primary of dataset "
            f"{dataset_id}, is not connected to the control service",
        ) from None
    except defer.TimeoutError:
        raise APIError(
            503,
            f"the dataset agent of node {primary} did not answer within "
            f"{AGENT_TIMEOUT:.0f} s",
        ) from None
    except Exception as reason:  # the agent's or its backend's failure
        raise APIError(
            503, f"the dataset agent of node {primary} could not do it: {reason}"
        ) from None
    error = result.get("error")
    if error is not None:
        description = error["description"]
        if error["code"] == "not_here":
            description = (
                f"dataset {dataset_id} is not exposed on its primary node {primary} "
                "yet (being created or moved): try again once it is mounted"
            )
        raise APIError(_AGENT_ERRORS.get(error["code"], 500), description)
    return result


async def require_snapshot(context: APIContext, dataset_id: str, name: str) -> None:
    """Refuse (404) a snapshot the dataset's primary does not have."""
    listed = await on_primary(context, dataset_id, "list")
    if name not in {s["name"] for s in listed["snapshots"]}:
        raise APIError(404, f"dataset {dataset_id} has no snapshot {name!r}")
