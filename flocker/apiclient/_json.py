"""
JSON ↔ values: the treq client reads the REST API's answers and writes
its requests with these, and the CLI's ``--json`` prints values as the
REST API gives them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from twisted.python.filepath import FilePath

from ._interface import (
    UNCHANGED,
    Container,
    ContainerPort,
    ContainerState,
    Dataset,
    DatasetState,
    DivergedCopy,
    Environment,
    EnvironmentApplication,
    EnvironmentCopy,
    EnvironmentDataset,
    HealthCheck,
    ImagePullState,
    Lease,
    Link,
    MountedDataset,
    Node,
    Origin,
    ReplicaState,
    Replication,
    RestartPolicy,
    Rollback,
    Snapshot,
    Transfer,
)

__all__ = [
    "container_from_json",
    "container_state_from_json",
    "container_to_json",
    "container_update_to_json",
    "dataset_from_json",
    "dataset_state_from_json",
    "float_or_none",
    "health_from_json",
    "health_to_json",
    "lease_from_json",
    "node_from_json",
    "replication_to_json",
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


# --------------------------------------------------------------------------
# Datasets, nodes, leases, containers


def dataset_from_json(body: dict[str, Any]) -> Dataset:
    """A `Dataset` from the REST API's JSON."""
    replication = body.get("replication", {})
    return Dataset(
        dataset_id=UUID(body["dataset_id"]),
        primary=UUID(body["primary"]),
        maximum_size=body.get("maximum_size"),
        deleted=body.get("deleted", False),
        metadata=body.get("metadata", {}),
        replicas=[UUID(u) for u in body.get("replicas", [])],
        replication=Replication(**replication),
        epoch=body.get("epoch", 0),
        failover_snapshot=body.get("failover_snapshot"),
        origin=None if body.get("origin") is None else origin_from_json(body["origin"]),
    )


def float_or_none(value: Any) -> float | None:
    """``value`` as a float, ``None`` staying ``None``."""
    return None if value is None else float(value)


def node_from_json(n: dict[str, Any]) -> Node:
    """A `Node` from an entry of ``GET /v1/state/nodes``."""
    failing = n.get("failing_changes") or []
    last = n.get("last_converged")
    return Node(
        uuid=UUID(n["uuid"]),
        host=n.get("host"),
        fenced=[UUID(d) for d in n.get("fenced", [])],
        last_converged=None if last is None else float(last),
        failing_since=min((float(f["since"]) for f in failing), default=None),
        failing=len(failing),
        pool_full=bool((n.get("pool") or {}).get("full", False)),
        image_pulls={
            pull["application"]: ImagePullState(
                application=pull["application"],
                image=pull["image"],
                pulling=bool(pull["pulling"]),
                reason=pull.get("reason"),
                attempts=int(pull.get("attempts", 0)),
            )
            for pull in n.get("image_pulls", [])
        },
    )


def dataset_state_from_json(d: dict[str, Any]) -> DatasetState:
    """A `DatasetState` from an entry of ``GET /v1/state/datasets``."""
    return DatasetState(
        dataset_id=UUID(d["dataset_id"]),
        primary=UUID(d["primary"]),
        maximum_size=d.get("maximum_size"),
        path=None if d.get("path") is None else FilePath(d["path"]),
        replicas=[
            ReplicaState(
                node_uuid=UUID(r["node_uuid"]),
                last_snapshot=r["last_snapshot"],
                replicated_at=float_or_none(r["replicated_at"]),
                lag_seconds=float_or_none(r["lag_seconds"]),
                set_aside=[s["name"] for s in r.get("set_aside", [])],
            )
            for r in d.get("replicas", [])
        ],
        diverged=[
            DivergedCopy(
                node_uuid=UUID(c["node_uuid"]),
                epoch=c["epoch"],
                last_snapshot=c["last_snapshot"],
                set_aside=[s["name"] for s in c.get("set_aside", [])],
            )
            for c in d.get("diverged", [])
        ],
        fenced=bool(d.get("fenced", False)),
        rolled_back=None if d.get("rolled_back") is None else UUID(d["rolled_back"]),
    )


def replication_to_json(replication: Replication | Mapping[str, Any]) -> dict[str, Any]:
    """The REST API's JSON for replication settings (all, or only those named)."""
    if isinstance(replication, Replication):
        return {
            "interval_seconds": replication.interval_seconds,
            "failover": replication.failover,
        }
    return dict(replication)


def lease_from_json(body: dict[str, Any]) -> Lease:
    """A `Lease` from the REST API's JSON."""
    expires = body["expires"]
    return Lease(
        dataset_id=UUID(body["dataset_id"]),
        node_uuid=UUID(body["node_uuid"]),
        expires=None if expires is None else float(expires),
    )


def health_to_json(health: HealthCheck) -> dict[str, Any]:
    """The REST API's JSON for a `HealthCheck` (``path`` only for ``http``)."""
    body: dict[str, Any] = {"kind": health.kind, "port": health.port}
    if health.path is not None:
        body["path"] = health.path
    body.update(
        interval=health.interval,
        timeout=health.timeout,
        retries=health.retries,
        start_period=health.start_period,
    )
    return body


def health_from_json(body: Mapping[str, Any]) -> HealthCheck:
    """A `HealthCheck` from the REST API's JSON (missing keys: the defaults)."""
    defaults = HealthCheck(kind=body["kind"], port=body["port"])
    return defaults.set(
        path=body.get("path"),
        interval=body.get("interval", defaults.interval),
        timeout=body.get("timeout", defaults.timeout),
        retries=body.get("retries", defaults.retries),
        start_period=body.get("start_period", defaults.start_period),
    )


def _restart_to_json(policy: RestartPolicy) -> dict[str, Any]:
    restart: dict[str, Any] = {"name": policy.name}
    if policy.maximum_retry_count is not None:
        restart["maximum_retry_count"] = policy.maximum_retry_count
    return restart


def _ports_to_json(ports: Any) -> list[dict[str, int]]:
    return [{"internal": p.internal, "external": p.external} for p in ports]


def _links_to_json(links: Any) -> list[dict[str, Any]]:
    return [
        {"alias": x.alias, "local_port": x.local_port, "remote_port": x.remote_port}
        for x in links
    ]


def container_to_json(container: Container) -> dict[str, Any]:
    """
    The REST API's JSON for creating a `Container`: what a user sets (not
    its ``revision`` and update history, which the control service keeps);
    ``replicas`` only when it runs more than one instance, so a request
    for one is the original API's.
    """
    body: dict[str, Any] = {
        "node_uuid": str(container.node_uuid),
        "name": container.name,
        "image": container.image,
        "ports": _ports_to_json(container.ports),
        "environment": dict(container.environment),
        "restart_policy": _restart_to_json(container.restart_policy),
        "volumes": [
            {"dataset_id": str(v.dataset_id), "mountpoint": v.mountpoint}
            for v in container.volumes
        ],
        "links": _links_to_json(container.links),
    }
    for name in ("cpu_shares", "memory_limit", "swappiness"):
        if getattr(container, name) is not None:
            body[name] = getattr(container, name)
    if container.command_line is not None:
        body["command_line"] = list(container.command_line)
    if container.health is not None:
        body["health"] = health_to_json(container.health)
    if container.replicas != 1:
        body["replicas"] = container.replicas
    return body


def container_update_to_json(changes: Mapping[str, Any]) -> dict[str, Any]:
    """
    The body of ``POST /v1/configuration/containers/{name}`` for the fields
    of ``changes`` that are not `UNCHANGED` (``None`` removes an optional
    one).
    """
    body: dict[str, Any] = {}
    for name, value in changes.items():
        if value is UNCHANGED:
            continue
        if value is None:
            body[name] = None
        elif name == "node_uuid":
            body[name] = str(value)
        elif name == "environment":
            body[name] = dict(value)
        elif name == "command_line":
            body[name] = list(value)
        elif name == "ports":
            body[name] = _ports_to_json(value)
        elif name == "links":
            body[name] = _links_to_json(value)
        elif name == "restart_policy":
            body[name] = _restart_to_json(value)
        elif name == "health":
            body[name] = health_to_json(value)
        else:
            body[name] = value
    return body


def container_from_json(body: dict[str, Any]) -> Container:
    """
    A `Container` from the REST API's JSON (a ``health`` that is not a
    mapping, as in a state entry, is not its health check; ``replicas``
    left out is one instance).
    """
    restart = body.get("restart_policy", {"name": "never"})
    command_line = body.get("command_line")
    health = body.get("health")
    return Container(
        node_uuid=UUID(body["node_uuid"]),
        name=body["name"],
        image=body["image"],
        ports=[ContainerPort(**p) for p in body.get("ports", [])],
        environment=body.get("environment", {}),
        restart_policy=RestartPolicy(
            name=restart["name"],
            maximum_retry_count=restart.get("maximum_retry_count"),
        ),
        volumes=[
            MountedDataset(dataset_id=UUID(v["dataset_id"]), mountpoint=v["mountpoint"])
            for v in body.get("volumes", [])
        ],
        links=[Link(**x) for x in body.get("links", [])],
        cpu_shares=body.get("cpu_shares"),
        memory_limit=body.get("memory_limit"),
        swappiness=body.get("swappiness"),
        command_line=None if command_line is None else tuple(command_line),
        health=health_from_json(health) if isinstance(health, Mapping) else None,
        revision=body.get("revision", 0),
        updating=bool(body.get("updating", False)),
        update_failed=body.get("update_failed"),
        previous_image=body.get("previous_image"),
        replicas=body.get("replicas", 1),
    )


def container_state_from_json(body: dict[str, Any]) -> ContainerState:
    """
    A `ContainerState` from an entry of ``GET /v1/state/containers``: the
    container, ``running``, and the ``health`` status (a string) and
    ``health_reason`` its node reported, if any.
    """
    health = body.get("health")
    status = health if isinstance(health, str) else None
    container = {
        k: v
        for k, v in body.items()
        if k not in ("running", "health_reason") and not (k == "health" and status)
    }
    return ContainerState(
        container=container_from_json(container),
        running=body["running"],
        health=status,
        health_reason=body.get("health_reason") if status else None,
    )
