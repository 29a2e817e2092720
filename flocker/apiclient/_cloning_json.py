"""
JSON ↔ values for the REST API's snapshots, clones, environments and
transfers: the treq client reads answers with these, and the CLI's
``--json`` prints the values as the REST API gives them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from ._interface import (
    ContainerPort,
    Environment,
    EnvironmentApplication,
    EnvironmentCopy,
    EnvironmentDataset,
    Origin,
    Rollback,
    Snapshot,
    Transfer,
)

__all__ = [
    "environment_copy_from_json",
    "environment_copy_to_json",
    "environment_from_json",
    "environment_to_json",
    "origin_from_json",
    "origin_to_json",
    "rollback_from_json",
    "rollback_to_json",
    "snapshot_from_json",
    "snapshot_to_json",
    "transfer_from_json",
]


def origin_from_json(body: Mapping[str, Any]) -> Origin:
    """An `Origin` from ``{"dataset_id", "snapshot"}``."""
    return Origin(dataset_id=UUID(body["dataset_id"]), snapshot=body["snapshot"])


def origin_to_json(origin: Origin) -> dict[str, Any]:
    """The REST API's JSON for an `Origin`."""
    return {"dataset_id": str(origin.dataset_id), "snapshot": origin.snapshot}


def snapshot_from_json(body: Mapping[str, Any]) -> Snapshot:
    """A `Snapshot` from the REST API's JSON."""
    created = body.get("created")
    node = body.get("node_uuid")
    return Snapshot(
        name=body["name"],
        created=None if created is None else float(created),
        node_uuid=None if node is None else UUID(node),
        set_aside=bool(body.get("set_aside", False)),
    )


def snapshot_to_json(snapshot: Snapshot) -> dict[str, Any]:
    """
    The REST API's JSON for a `Snapshot`: ``node_uuid`` and ``set_aside``
    only for a set-aside one.
    """
    body: dict[str, Any] = {"name": snapshot.name, "created": snapshot.created}
    if snapshot.set_aside:
        body["set_aside"] = True
        if snapshot.node_uuid is not None:
            body["node_uuid"] = str(snapshot.node_uuid)
    return body


def rollback_from_json(body: Mapping[str, Any]) -> Rollback:
    """A `Rollback` from the REST API's JSON."""
    return Rollback(
        dataset_id=UUID(body["dataset_id"]),
        snapshot=body["snapshot"],
        request_id=UUID(body["request_id"]),
    )


def rollback_to_json(rollback: Rollback) -> dict[str, Any]:
    """The REST API's JSON for a `Rollback`."""
    return {
        "dataset_id": str(rollback.dataset_id),
        "snapshot": rollback.snapshot,
        "request_id": str(rollback.request_id),
    }


def transfer_from_json(body: Mapping[str, Any]) -> Transfer:
    """A `Transfer` from the REST API's JSON."""
    return Transfer(
        dataset_id=UUID(body["dataset_id"]),
        node_uuid=UUID(body["node_uuid"]),
        snapshot=body["snapshot"],
        base=body.get("base"),
        bytes=int(body["bytes"]),
        size=body.get("size"),
    )


def environment_copy_from_json(body: Mapping[str, Any]) -> EnvironmentCopy:
    """An `EnvironmentCopy` from the REST API's JSON."""
    return EnvironmentCopy(
        name=body["name"],
        applications=[
            EnvironmentApplication(
                name=a["name"],
                origin=a["origin"],
                node_uuid=None if a.get("node_uuid") is None else UUID(a["node_uuid"]),
                ports=[ContainerPort(**p) for p in a.get("ports", [])],
            )
            for a in body["applications"]
        ],
        datasets=[
            EnvironmentDataset(
                dataset_id=UUID(d["dataset_id"]), origin=origin_from_json(d["origin"])
            )
            for d in body["datasets"]
        ],
    )


def environment_copy_to_json(copy: EnvironmentCopy) -> dict[str, Any]:
    """
    The REST API's JSON for an `EnvironmentCopy`: an application no longer
    configured has neither ``node_uuid`` nor ``ports``.
    """
    applications = []
    for application in copy.applications:
        entry: dict[str, Any] = {"name": application.name, "origin": application.origin}
        if application.node_uuid is not None:
            entry["node_uuid"] = str(application.node_uuid)
            entry["ports"] = [
                {"internal": p.internal, "external": p.external}
                for p in application.ports
            ]
        applications.append(entry)
    return {
        "name": copy.name,
        "applications": applications,
        "datasets": [
            {"dataset_id": str(d.dataset_id), "origin": origin_to_json(d.origin)}
            for d in copy.datasets
        ],
    }


def environment_from_json(body: Mapping[str, Any]) -> Environment:
    """An `Environment` from the REST API's JSON."""
    return Environment(
        name=body["name"],
        snapshot=body["snapshot"],
        applications=list(body["applications"]),
        copies=[environment_copy_from_json(c) for c in body["copies"]],
    )


def environment_to_json(environment: Environment) -> dict[str, Any]:
    """The REST API's JSON for an `Environment`."""
    return {
        "name": environment.name,
        "snapshot": environment.snapshot,
        "applications": list(environment.applications),
        "copies": [environment_copy_to_json(c) for c in environment.copies],
    }
