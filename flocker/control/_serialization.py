"""JSON for the model: the persisted configuration format and the state wire format.

The configuration document carries an explicit ``"format_version"``.  When
the format changes, `CURRENT_FORMAT_VERSION` goes up by one, a function that
turns a document of the previous version into one of the new is added to
`UPGRADES`, and the old version's fixture stays in ``test/fixtures`` so the
upgrade test keeps loading it.  Version 2 added clones' ``origin``, pending
``rollback`` requests on datasets and the ``environments``; version 3 added
standing replicas (a manifestation's ``standing``) and a dataset's
``replication`` settings and ``epoch``; version 4 datasets'
``failover_snapshot`` and applications' ``swappiness``; version 5
applications' ``health`` checks and update history; version 6 how many
instances of each application run (``replicas``).

Decoding is strict: unknown or missing keys, wrong types and values breaking
a model invariant all raise `SerializationError` naming where in the document
the problem is — a damaged configuration must never load as something else.

State (`NodeState`, `DeploymentState`) is not persisted; its JSON is for the
wire between agents and the control service and carries no version (the AMP
handshake negotiates that).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pyrsistent import InvariantException, PTypeError

from ._model import (
    Application,
    AttachedVolume,
    Dataset,
    Deployment,
    Environment,
    EnvironmentCopy,
    HealthCheck,
    Lease,
    Leases,
    Link,
    Manifestation,
    Node,
    Origin,
    Port,
    Replication,
    RestartAlways,
    RestartNever,
    RestartOnFailure,
    RollbackRequest,
)
from ._state import (
    ApplicationHealth,
    ChangeFailure,
    DatasetState,
    DeploymentState,
    ImagePull,
    NodeState,
    PoolState,
    Snapshot,
)

__all__ = [
    "CURRENT_FORMAT_VERSION",
    "UPGRADES",
    "SerializationError",
    "deployment_from_json",
    "deployment_state_from_json",
    "deployment_state_to_json",
    "deployment_to_json",
    "deserialize_deployment",
    "deserialize_deployment_state",
    "deserialize_node_state",
    "node_convergence_json",
    "node_state_from_json",
    "node_state_to_json",
    "serialize_deployment",
    "serialize_deployment_state",
    "serialize_node_state",
    "upgrade_document",
]

#: The configuration format version `serialize_deployment` writes.
CURRENT_FORMAT_VERSION = 6


def _upgrade_1_to_2(document: dict[str, Any]) -> dict[str, Any]:
    """Version 2: datasets gain ``origin`` and ``rollback``; ``environments``."""
    nodes = {}
    for uuid, node in document.get("nodes", {}).items():
        manifestations = {}
        for dataset_id, m in node.get("manifestations", {}).items():
            dataset = {**m.get("dataset", {}), "origin": None, "rollback": None}
            manifestations[dataset_id] = {**m, "dataset": dataset}
        nodes[uuid] = {**node, "manifestations": manifestations}
    return {**document, "format_version": 2, "nodes": nodes, "environments": {}}


def _upgrade_2_to_3(document: dict[str, Any]) -> dict[str, Any]:
    """
    Version 3: manifestations gain ``standing`` (none was: every non-primary
    copy was one a move left), datasets ``replication`` and ``epoch``.
    """
    nodes = {}
    for uuid, node in document.get("nodes", {}).items():
        manifestations = {}
        for dataset_id, m in node.get("manifestations", {}).items():
            dataset = {
                **m.get("dataset", {}),
                "replication": {"interval_seconds": 0, "failover": "manual"},
                "epoch": 0,
            }
            manifestations[dataset_id] = {**m, "dataset": dataset, "standing": False}
        nodes[uuid] = {**node, "manifestations": manifestations}
    return {**document, "format_version": 3, "nodes": nodes}


def _upgrade_3_to_4(document: dict[str, Any]) -> dict[str, Any]:
    """
    Version 4: datasets gain ``failover_snapshot`` (none failed over with
    one); applications gain ``swappiness`` (null: the engine's default).
    """
    nodes = {}
    for uuid, node in document.get("nodes", {}).items():
        manifestations = {}
        for dataset_id, m in node.get("manifestations", {}).items():
            dataset = {**m.get("dataset", {}), "failover_snapshot": None}
            manifestations[dataset_id] = {**m, "dataset": dataset}
        applications = {
            name: {**a, "swappiness": None}
            for name, a in node.get("applications", {}).items()
        }
        nodes[uuid] = {
            **node,
            "applications": applications,
            "manifestations": manifestations,
        }
    return {**document, "format_version": 4, "nodes": nodes}


#: What an application created before version 5 has: no health check of
#: its own and no update history.
_NO_HISTORY: dict[str, Any] = {
    "health": None,
    "revision": 0,
    "previous": None,
    "updating": False,
    "update_failed": None,
}


def _upgrade_4_to_5(document: dict[str, Any]) -> dict[str, Any]:
    """
    Version 5: applications gain ``health`` (null: `default_health`) and
    their update history: ``revision`` 0, no ``previous``, not
    ``updating``, no ``update_failed``.
    """
    nodes = {}
    for uuid, node in document.get("nodes", {}).items():
        applications = {
            name: {**a, **_NO_HISTORY} if isinstance(a, dict) else a
            for name, a in node.get("applications", {}).items()
        }
        nodes[uuid] = {**node, "applications": applications}
    return {**document, "format_version": 5, "nodes": nodes}


def _one_instance(application: Any) -> Any:
    """An application's JSON (and its previous specification's) running once."""
    if not isinstance(application, dict):
        return application
    upgraded = {**application, "replicas": 1}
    if isinstance(application.get("previous"), dict):
        upgraded["previous"] = {**application["previous"], "replicas": 1}
    return upgraded


def _upgrade_5_to_6(document: dict[str, Any]) -> dict[str, Any]:
    """
    Version 6: applications, and the previous specifications they keep,
    gain ``replicas`` 1 (each ran once).
    """
    nodes = {}
    for uuid, node in document.get("nodes", {}).items():
        applications = {
            name: _one_instance(a) for name, a in node.get("applications", {}).items()
        }
        nodes[uuid] = {**node, "applications": applications}
    return {**document, "format_version": 6, "nodes": nodes}


#: ``{N: upgrade}`` where ``upgrade`` turns a version-N document (a dict) into
#: a version N+1 document.
UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {
    1: _upgrade_1_to_2,
    2: _upgrade_2_to_3,
    3: _upgrade_3_to_4,
    4: _upgrade_4_to_5,
    5: _upgrade_5_to_6,
}


class SerializationError(ValueError):
    """A document is not valid JSON for the model; ``path`` says where."""

    def __init__(self, path: str, reason: str) -> None:
        """Remember where (a ``/``-separated path) and why."""
        super().__init__(path, reason)
        self.path = path
        self.reason = reason

    def __str__(self) -> str:
        """Say where the document is wrong and why."""
        return f"at {self.path or '/'}: {self.reason}"


# --------------------------------------------------------------------------
# Encoding (model → JSON-compatible values)


def _dataset(d: Dataset) -> dict[str, Any]:
    return {
        "dataset_id": d.dataset_id,
        "metadata": dict(d.metadata),
        "maximum_size": d.maximum_size,
        "deleted": d.deleted,
        "origin": None
        if d.origin is None
        else {"dataset_id": d.origin.dataset_id, "snapshot": d.origin.snapshot},
        "rollback": None
        if d.rollback is None
        else {"snapshot": d.rollback.snapshot, "request_id": d.rollback.request_id},
        "replication": {
            "interval_seconds": d.replication.interval_seconds,
            "failover": d.replication.failover,
        },
        "epoch": d.epoch,
        "failover_snapshot": d.failover_snapshot,
    }


def _environment(e: Environment) -> dict[str, Any]:
    return {
        "snapshot": e.snapshot,
        "applications": list(e.applications),
        "copies": {
            name: {
                "applications": dict(c.applications),
                "datasets": dict(c.datasets),
            }
            for name, c in e.copies.items()
        },
    }


def _restart(policy: Any) -> dict[str, Any]:
    if isinstance(policy, RestartOnFailure):
        return {"name": "on-failure", "maximum_retry_count": policy.maximum_retry_count}
    if isinstance(policy, RestartAlways):
        return {"name": "always"}
    return {"name": "never"}


def _health_check(h: HealthCheck) -> dict[str, Any]:
    return {
        "kind": h.kind,
        "port": h.port,
        "path": h.path,
        "interval": h.interval,
        "timeout": h.timeout,
        "retries": h.retries,
        "start_period": h.start_period,
    }


def _application(a: Application) -> dict[str, Any]:
    return {
        "name": a.name,
        "image": a.image,
        "ports": sorted(
            (
                {"internal_port": p.internal_port, "external_port": p.external_port}
                for p in a.ports
            ),
            key=lambda p: (p["external_port"], p["internal_port"]),
        ),
        "links": sorted(
            (
                {
                    "alias": x.alias,
                    "local_port": x.local_port,
                    "remote_port": x.remote_port,
                }
                for x in a.links
            ),
            key=lambda x: (x["alias"], x["local_port"], x["remote_port"]),
        ),
        "environment": dict(a.environment),
        "volumes": sorted(
            (
                {"dataset_id": v.dataset_id, "mountpoint": v.mountpoint}
                for v in a.volumes
            ),
            key=lambda v: (v["mountpoint"], v["dataset_id"]),
        ),
        "restart_policy": _restart(a.restart_policy),
        "cpu_shares": a.cpu_shares,
        "memory_limit": a.memory_limit,
        "swappiness": a.swappiness,
        "command_line": None if a.command_line is None else list(a.command_line),
        "health": None if a.health is None else _health_check(a.health),
        "revision": a.revision,
        "previous": None if a.previous is None else _application(a.previous),
        "updating": a.updating,
        "update_failed": a.update_failed,
        "replicas": a.replicas,
    }


def node_to_json(n: Node) -> dict[str, Any]:
    """A JSON-compatible dict for one configured `Node`."""
    return {
        "applications": {k: _application(v) for k, v in n.applications.items()},
        "manifestations": {
            k: {
                "dataset": _dataset(m.dataset),
                "primary": m.primary,
                "standing": m.standing,
            }
            for k, m in n.manifestations.items()
        },
    }


def _leases(leases: Leases) -> dict[str, Any]:
    return {
        lease.dataset_id: {"node_uuid": lease.node_uuid, "expiration": lease.expiration}
        for lease in leases
    }


def deployment_to_json(
    deployment: Deployment, nodes: dict[str, Any] | None = None
) -> dict[str, Any]:
    """
    The current-format document (a JSON-compatible dict) for a `Deployment`;
    ``nodes``, if given, is its nodes' JSON already made (`node_to_json`).
    """
    return {
        "format_version": CURRENT_FORMAT_VERSION,
        "nodes": {k: node_to_json(v) for k, v in deployment.nodes.items()}
        if nodes is None
        else nodes,
        "leases": _leases(deployment.leases),
        "environments": {k: _environment(v) for k, v in deployment.environments.items()},
    }


def _dataset_state(d: DatasetState) -> dict[str, Any]:
    return {
        "dataset_id": d.dataset_id,
        "path": d.path,
        "size": d.size,
        "maximum_size": d.maximum_size,
        "snapshots": [{"name": s.name, "created": s.created} for s in d.snapshots],
        "rolled_back": d.rolled_back,
        "role": d.role,
        "epoch": d.epoch,
        "set_aside": [{"name": s.name, "created": s.created} for s in d.set_aside],
    }


def node_state_to_json(state: NodeState) -> dict[str, Any]:
    """A JSON-compatible dict for a `NodeState` (``None`` halves stay ``null``)."""
    return {
        "uuid": state.uuid,
        "hostname": state.hostname,
        "era": state.era,
        "applications": None
        if state.applications is None
        else {k: _application(v) for k, v in state.applications.items()},
        "datasets": None
        if state.datasets is None
        else {k: _dataset_state(v) for k, v in state.datasets.items()},
        "busy_ports": None if state.busy_ports is None else sorted(state.busy_ports),
        "port_conflicts": None
        if state.port_conflicts is None
        else {k: sorted(v) for k, v in state.port_conflicts.items()},
        "last_converged": state.last_converged,
        "failing_changes": None
        if state.failing_changes is None
        else [_change_failure(f) for f in state.failing_changes],
        "pool": None if state.pool is None else _pool(state.pool),
        "deletions_seen": None
        if state.deletions_seen is None
        else sorted(state.deletions_seen),
        "image_pulls": None
        if state.image_pulls is None
        else {k: _image_pull(v) for k, v in state.image_pulls.items()},
        "health": None
        if state.health is None
        else {k: _application_health(v) for k, v in state.health.items()},
    }


def node_convergence_json(state: NodeState) -> dict[str, Any]:
    """
    What ``GET /v1/state/nodes`` shows of a node's convergence and pool:
    ``last_converged``, ``failing_changes`` and ``pool``, each only once
    the node's dataset agent reported it, and all only while something is
    wrong (a change failing, the pool full or a dataset larger than it);
    ``image_pulls`` while its container agent is getting or failed to get
    an application's image.
    A node that converges keeps the original API's shape, ``uuid`` and
    ``host``, which its clients validate strictly.
    """
    shown: dict[str, Any] = {}
    if state.image_pulls:
        shown["image_pulls"] = [
            _image_pull(pull)
            for _, pull in sorted(state.image_pulls.items())
        ]
    pool = state.pool
    if not state.failing_changes and (
        pool is None or (not pool.full and not pool.oversized)
    ):
        return shown
    if state.last_converged is not None:
        shown["last_converged"] = state.last_converged
    if state.failing_changes is not None:
        shown["failing_changes"] = [_change_failure(f) for f in state.failing_changes]
    if state.pool is not None:
        shown["pool"] = _pool(state.pool)
    return shown


def _change_failure(f: ChangeFailure) -> dict[str, Any]:
    return {
        "dataset_id": f.dataset_id,
        "change": f.change,
        "reason": f.reason,
        "since": f.since,
        "count": f.count,
    }


def _image_pull(p: ImagePull) -> dict[str, Any]:
    return {
        "application": p.application,
        "image": p.image,
        "pulling": p.pulling,
        "reason": p.reason,
        "attempts": p.attempts,
        "since": p.since,
        "layers_done": p.layers_done,
        "layers_total": p.layers_total,
        "bytes_done": p.bytes_done,
        "bytes_total": p.bytes_total,
    }


def _application_health(h: ApplicationHealth) -> dict[str, Any]:
    return {
        "application": h.application,
        "status": h.status,
        "revision": h.revision,
        "reason": h.reason,
        "failures": h.failures,
        "since": h.since,
        "ports": [[internal, host] for internal, host in sorted(h.ports.items())],
    }


def _pool(p: PoolState) -> dict[str, Any]:
    return {"size": p.size, "free": p.free, "full": p.full, "oversized": list(p.oversized)}


def deployment_state_to_json(state: DeploymentState) -> dict[str, Any]:
    """A JSON-compatible dict for a `DeploymentState`."""
    return {"nodes": {k: node_state_to_json(v) for k, v in state.nodes.items()}}


def _dumps(document: Any) -> bytes:
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), allow_nan=False
    ).encode("utf-8")


def serialize_deployment(deployment: Deployment) -> bytes:
    """UTF-8 JSON bytes of a `Deployment` in the current format (deterministic)."""
    return _dumps(deployment_to_json(deployment))


def serialize_node_state(state: NodeState) -> bytes:
    """UTF-8 JSON bytes of a `NodeState`."""
    return _dumps(node_state_to_json(state))


def serialize_deployment_state(state: DeploymentState) -> bytes:
    """UTF-8 JSON bytes of a `DeploymentState`."""
    return _dumps(deployment_state_to_json(state))


# --------------------------------------------------------------------------
# Decoding (JSON-compatible values → model), strict


class _Reader:
    """Read one JSON object strictly, remembering where it is in the document."""

    def __init__(self, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise SerializationError(path, f"expected an object, got {_kind(value)}")
        self.value = value
        self.path = path
        self.used: set[str] = set()

    def get(self, key: str, types: tuple[type, ...] | type) -> Any:
        if key not in self.value:
            raise SerializationError(f"{self.path}/{key}", "missing")
        self.used.add(key)
        value = self.value[key]
        if not isinstance(value, types) or (
            isinstance(value, bool) and bool not in _as_tuple(types)
        ):
            raise SerializationError(f"{self.path}/{key}", f"unexpected {_kind(value)}")
        return value

    def obj(self, key: str) -> _Reader:
        return _Reader(self.get(key, dict), f"{self.path}/{key}")

    def done(self) -> None:
        extra = set(self.value) - self.used
        if extra:
            raise SerializationError(self.path, f"unknown keys {sorted(extra)}")


def _as_tuple(types: tuple[type, ...] | type) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }.get(type(value), type(value).__name__)


_OPT_INT = (int, type(None))
_OPT_NUM = (int, float, type(None))
_OPT_STR = (str, type(None))

_T = TypeVar("_T")


def _build(where: str, cls: Callable[..., _T], /, **fields: Any) -> _T:
    """Construct a model value, turning its invariant errors into ours."""
    try:
        return cls(**fields)
    except InvariantException as e:
        reasons = [str(r) for r in e.invariant_errors] + [
            f"missing {m}" for m in e.missing_fields
        ]
        raise SerializationError(where, "; ".join(reasons) or str(e)) from e
    except (PTypeError, TypeError, ValueError) as e:
        raise SerializationError(where, str(e)) from e


def _str_map(value: Any, path: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise SerializationError(path, f"expected an object, got {_kind(value)}")
    for k, v in value.items():
        if not isinstance(v, str):
            raise SerializationError(
                f"{path}/{k}", f"expected a string, got {_kind(v)}"
            )
    return value


def _dataset_from(value: Any, path: str) -> Dataset:
    r = _Reader(value, path)
    origin = r.get("origin", (dict, type(None)))
    rollback = r.get("rollback", (dict, type(None)))
    result = _build(
        path,
        Dataset,
        dataset_id=r.get("dataset_id", str),
        metadata=_str_map(r.get("metadata", dict), f"{path}/metadata"),
        maximum_size=r.get("maximum_size", _OPT_INT),
        deleted=r.get("deleted", bool),
        origin=None if origin is None else _origin_from(origin, f"{path}/origin"),
        rollback=None
        if rollback is None
        else _rollback_from(rollback, f"{path}/rollback"),
        replication=_replication_from(
            r.get("replication", dict), f"{path}/replication"
        ),
        epoch=r.get("epoch", int),
        failover_snapshot=r.get("failover_snapshot", _OPT_STR),
    )
    r.done()
    return result


def _environment_from(name: str) -> Callable[[Any, str], Environment]:
    def read(value: Any, path: str) -> Environment:
        r = _Reader(value, path)
        applications = _list_of(
            r.get("applications", list), f"{path}/applications", _string
        )
        copies = {}
        for copy_name, copy in r.get("copies", dict).items():
            where = f"{path}/copies/{copy_name}"
            cr = _Reader(copy, where)
            copies[copy_name] = _build(
                where,
                EnvironmentCopy,
                name=copy_name,
                applications=_str_map(cr.get("applications", dict), f"{where}/applications"),
                datasets=_str_map(cr.get("datasets", dict), f"{where}/datasets"),
            )
            cr.done()
        result = _build(
            path,
            Environment,
            name=name,
            snapshot=r.get("snapshot", str),
            applications=applications,
            copies=copies,
        )
        r.done()
        return result

    return read


def _restart_from(value: Any, path: str) -> Any:
    r = _Reader(value, path)
    name = r.get("name", str)
    if name == "never":
        result: Any = RestartNever()
    elif name == "always":
        result = RestartAlways()
    elif name == "on-failure":
        result = _build(
            path,
            RestartOnFailure,
            maximum_retry_count=r.get("maximum_retry_count", _OPT_INT),
        )
    else:
        raise SerializationError(f"{path}/name", f"unknown restart policy {name!r}")
    r.done()
    return result


def _list_of(value: Any, path: str, item: Callable[[Any, str], Any]) -> list[Any]:
    if not isinstance(value, list):
        raise SerializationError(path, f"expected an array, got {_kind(value)}")
    return [item(v, f"{path}/{i}") for i, v in enumerate(value)]


def _simple(cls: type, spec: Mapping[str, Any]) -> Callable[[Any, str], Any]:
    def read(value: Any, path: str) -> Any:
        r = _Reader(value, path)
        result = _build(path, cls, **{k: r.get(k, t) for k, t in spec.items()})
        r.done()
        return result

    return read


_port_from = _simple(Port, {"internal_port": int, "external_port": int})
_origin_from = _simple(Origin, {"dataset_id": str, "snapshot": str})
_rollback_from = _simple(RollbackRequest, {"snapshot": str, "request_id": str})
_link_from = _simple(Link, {"alias": str, "local_port": int, "remote_port": int})
_volume_from = _simple(AttachedVolume, {"dataset_id": str, "mountpoint": str})
_replication_from = _simple(Replication, {"interval_seconds": int, "failover": str})


_health_check_from = _simple(
    HealthCheck,
    {
        "kind": str,
        "port": int,
        "path": _OPT_STR,
        "interval": (int, float),
        "timeout": (int, float),
        "retries": int,
        "start_period": (int, float),
    },
)


def _application_reader(
    history_optional: bool, nested: bool = False
) -> Callable[[Any, str], Application]:
    """
    A reader of one application's JSON.

    :param history_optional: ``health``, the update history and
        ``replicas`` may be left out (reports of applications by agents,
        which send none of it for the applications they discover);
        configuration documents, upgraded to the current format, always
        carry them.
    :param nested: it is a ``previous`` specification, which has none of
        its own.
    """

    def optional(r: _Reader, key: str, types: Any, default: Any) -> Any:
        if history_optional and key not in r.value:
            return default
        return r.get(key, types)

    def read(value: Any, path: str) -> Application:
        r = _Reader(value, path)
        command_line = r.get("command_line", (list, type(None)))
        if command_line is not None:
            _list_of(command_line, f"{path}/command_line", _string)
        health = optional(r, "health", (dict, type(None)), None)
        previous = optional(r, "previous", (dict, type(None)), None)
        if previous is not None and nested:
            raise SerializationError(
                f"{path}/previous", "a previous specification has none of its own"
            )
        result = _build(
            path,
            Application,
            name=r.get("name", str),
            image=r.get("image", str),
            ports=_list_of(r.get("ports", list), f"{path}/ports", _port_from),
            links=_list_of(r.get("links", list), f"{path}/links", _link_from),
            environment=_str_map(r.get("environment", dict), f"{path}/environment"),
            volumes=_list_of(r.get("volumes", list), f"{path}/volumes", _volume_from),
            restart_policy=_restart_from(
                r.get("restart_policy", dict), f"{path}/restart_policy"
            ),
            cpu_shares=r.get("cpu_shares", _OPT_INT),
            memory_limit=r.get("memory_limit", _OPT_INT),
            # Agents from before swappiness report applications without it.
            swappiness=r.get("swappiness", _OPT_INT) if "swappiness" in r.value else None,
            command_line=command_line,
            health=None
            if health is None
            else _health_check_from(health, f"{path}/health"),
            revision=optional(r, "revision", int, 0),
            previous=None
            if previous is None
            else _application_reader(history_optional, nested=True)(
                previous, f"{path}/previous"
            ),
            updating=optional(r, "updating", bool, False),
            update_failed=optional(r, "update_failed", _OPT_STR, None),
            replicas=optional(r, "replicas", int, 1),
        )
        r.done()
        return result

    return read


#: A configured application (every key required).
_application_from = _application_reader(history_optional=False)

#: An application a node reports running.
_reported_application_from = _application_reader(history_optional=True)


def _string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise SerializationError(path, f"expected a string, got {_kind(value)}")
    return value


def _keyed(value: Any, path: str, item: Callable[[Any, str], Any]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SerializationError(path, f"expected an object, got {_kind(value)}")
    return {k: item(v, f"{path}/{k}") for k, v in value.items()}


def _manifestation_from(value: Any, path: str) -> Manifestation:
    r = _Reader(value, path)
    result = _build(
        path,
        Manifestation,
        dataset=_dataset_from(r.get("dataset", dict), f"{path}/dataset"),
        primary=r.get("primary", bool),
        standing=r.get("standing", bool),
    )
    r.done()
    return result


def _node_from(uuid: str) -> Callable[[Any, str], Node]:
    def read(value: Any, path: str) -> Node:
        r = _Reader(value, path)
        result = _build(
            path,
            Node,
            uuid=uuid,
            applications=_keyed(
                r.get("applications", dict), f"{path}/applications", _application_from
            ),
            manifestations=_keyed(
                r.get("manifestations", dict),
                f"{path}/manifestations",
                _manifestation_from,
            ),
        )
        r.done()
        return result

    return read


def _current_deployment_from(document: dict[str, Any]) -> Deployment:
    r = _Reader(document, "")
    r.get("format_version", int)
    nodes_doc = r.get("nodes", dict)
    nodes = {k: _node_from(k)(v, f"/nodes/{k}") for k, v in nodes_doc.items()}
    leases_doc = r.get("leases", dict)
    leases = {}
    for dataset_id, value in leases_doc.items():
        lr = _Reader(value, f"/leases/{dataset_id}")
        leases[dataset_id] = _build(
            lr.path,
            Lease,
            dataset_id=dataset_id,
            node_uuid=lr.get("node_uuid", str),
            expiration=lr.get("expiration", _OPT_NUM),
        )
        lr.done()
    environments = {
        k: _environment_from(k)(v, f"/environments/{k}")
        for k, v in r.get("environments", dict).items()
    }
    r.done()
    return _build(
        "",
        Deployment,
        nodes=nodes,
        leases=_build("/leases", Leases, leases=leases),
        environments=environments,
    )


def upgrade_document(
    document: dict[str, Any],
    upgrades: Mapping[int, Callable[[dict[str, Any]], dict[str, Any]]] = UPGRADES,
    current: int = CURRENT_FORMAT_VERSION,
) -> dict[str, Any]:
    """
    Bring a configuration document of any known format version to ``current``.

    :raise SerializationError: the version is missing, newer than ``current``
        (written by a newer Flocker), or has no upgrade path.
    """
    if not isinstance(document, dict):
        raise SerializationError("", f"expected an object, got {_kind(document)}")
    version = document.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise SerializationError(
            "/format_version", f"not a format version: {version!r}"
        )
    if version > current:
        raise SerializationError(
            "/format_version",
            f"format version {version} is newer than this Flocker's {current}",
        )
    while version < current:
        if version not in upgrades:
            raise SerializationError(
                "/format_version", f"no upgrade from format version {version}"
            )
        document = upgrades[version](document)
        version += 1
        if document.get("format_version") != version:
            raise SerializationError(
                "/format_version", f"upgrade to version {version} did not set it"
            )
    return document


def deployment_from_json(document: Any) -> Deployment:
    """A `Deployment` from a document of any known format version (upgrading it)."""
    return _current_deployment_from(upgrade_document(document))


def _loads(data: bytes) -> Any:
    if not isinstance(data, bytes | bytearray):
        raise SerializationError("", f"expected bytes, got {type(data).__name__}")
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SerializationError("", f"not UTF-8 JSON: {e}") from e


def deserialize_deployment(data: bytes) -> Deployment:
    """
    A `Deployment` from bytes written by `serialize_deployment` (any version).

    :raise SerializationError: the bytes are not a valid configuration.
    """
    return deployment_from_json(_loads(data))


def _dataset_state_from(value: Any, path: str) -> DatasetState:
    r = _Reader(value, path)
    snapshots = _list_of(
        r.get("snapshots", list),
        f"{path}/snapshots",
        _simple(Snapshot, {"name": str, "created": _OPT_NUM}),
    )
    result = _build(
        path,
        DatasetState,
        dataset_id=r.get("dataset_id", str),
        path=r.get("path", _OPT_STR),
        size=r.get("size", _OPT_INT),
        maximum_size=r.get("maximum_size", _OPT_INT),
        snapshots=snapshots,
        # Optional: agents before format 2 did not send it.
        rolled_back=r.get("rolled_back", _OPT_STR) if "rolled_back" in r.value else None,
        # Optional: agents before standing replicas did not send them.
        role=r.get("role", _OPT_STR) if "role" in r.value else None,
        epoch=r.get("epoch", _OPT_INT) if "epoch" in r.value else None,
        # Optional: agents before failback did not send them.
        set_aside=_list_of(
            r.get("set_aside", list),
            f"{path}/set_aside",
            _simple(Snapshot, {"name": str, "created": _OPT_NUM}),
        )
        if "set_aside" in r.value
        else [],
    )
    r.done()
    return result


def _node_state_from(value: Any, path: str) -> NodeState:
    r = _Reader(value, path)
    applications = r.get("applications", (dict, type(None)))
    datasets = r.get("datasets", (dict, type(None)))
    # Optional: agents before busy ports were reported did not send them.
    busy = r.get("busy_ports", (list, type(None))) if "busy_ports" in r.value else None
    if busy is not None:
        for index, port in enumerate(busy):
            if not isinstance(port, int) or isinstance(port, bool):
                raise SerializationError(
                    f"{path}/busy_ports/{index}", f"expected a port number, got {_kind(port)}"
                )
    # Optional: agents before port conflicts were reported did not send them.
    conflicts = (
        r.get("port_conflicts", (dict, type(None))) if "port_conflicts" in r.value else None
    )
    for name, ports in (conflicts or {}).items():
        if not isinstance(ports, list) or not all(
            isinstance(p, int) and not isinstance(p, bool) for p in ports
        ):
            raise SerializationError(
                f"{path}/port_conflicts/{name}", "expected an array of port numbers"
            )
    # Optional: agents before protocol 6 did not send these.
    last_converged = (
        r.get("last_converged", _OPT_NUM) if "last_converged" in r.value else None
    )
    failing = (
        r.get("failing_changes", (list, type(None))) if "failing_changes" in r.value else None
    )
    pool = r.get("pool", (dict, type(None))) if "pool" in r.value else None
    # Optional: agents before protocol 7 did not send it.
    seen = (
        r.get("deletions_seen", (list, type(None))) if "deletions_seen" in r.value else None
    )
    # Optional: agents before protocol 8 did not send it.
    pulls = r.get("image_pulls", (dict, type(None))) if "image_pulls" in r.value else None
    # Optional: agents before protocol 9 did not send it.
    health = r.get("health", (dict, type(None))) if "health" in r.value else None
    for index, dataset_id in enumerate(seen or []):
        if not isinstance(dataset_id, str):
            raise SerializationError(
                f"{path}/deletions_seen/{index}", f"expected a dataset id, got {_kind(dataset_id)}"
            )
    result = _build(
        path,
        NodeState,
        uuid=r.get("uuid", str),
        hostname=r.get("hostname", _OPT_STR),
        era=r.get("era", _OPT_STR),
        applications=None
        if applications is None
        else _keyed(applications, f"{path}/applications", _reported_application_from),
        datasets=None
        if datasets is None
        else _keyed(datasets, f"{path}/datasets", _dataset_state_from),
        busy_ports=busy,
        port_conflicts=conflicts,
        last_converged=last_converged,
        failing_changes=None
        if failing is None
        else _list_of(failing, f"{path}/failing_changes", _change_failure_from),
        pool=None if pool is None else _pool_from(pool, f"{path}/pool"),
        deletions_seen=seen,
        image_pulls=None
        if pulls is None
        else _keyed(pulls, f"{path}/image_pulls", _image_pull_from),
        health=None
        if health is None
        else _keyed(health, f"{path}/health", _application_health_from),
    )
    r.done()
    return result


_image_pull_from = _simple(
    ImagePull,
    {
        "application": str,
        "image": str,
        "pulling": bool,
        "reason": _OPT_STR,
        "attempts": int,
        "since": (int, float),
        "layers_done": int,
        "layers_total": int,
        "bytes_done": int,
        "bytes_total": int,
    },
)

_application_health_fields_from = _simple(
    ApplicationHealth,
    {
        "application": str,
        "status": str,
        "revision": _OPT_INT,
        "reason": _OPT_STR,
        "failures": int,
        "since": (int, float),
    },
)


def _port_pair(value: Any, path: str) -> tuple[int, int]:
    """``[internal, host]``: two port numbers."""
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(p, int) and not isinstance(p, bool) for p in value)
    ):
        raise SerializationError(path, "expected [internal port, host port]")
    return value[0], value[1]


def _application_health_from(value: Any, path: str) -> ApplicationHealth:
    """An `ApplicationHealth`; its ``ports`` (pairs) may be left out: none."""
    if not isinstance(value, dict):
        raise SerializationError(path, f"expected an object, got {_kind(value)}")
    rest = {k: v for k, v in value.items() if k != "ports"}
    health: ApplicationHealth = _application_health_fields_from(rest, path)
    if "ports" not in value:
        return health
    pairs = _list_of(value["ports"], f"{path}/ports", _port_pair)
    result: ApplicationHealth = _build(f"{path}/ports", health.set, ports=dict(pairs))
    return result

_change_failure_from = _simple(
    ChangeFailure,
    {
        "dataset_id": _OPT_STR,
        "change": str,
        "reason": str,
        "since": (int, float),
        "count": int,
    },
)


def _pool_from(value: Any, path: str) -> PoolState:
    r = _Reader(value, path)
    result = _build(
        path,
        PoolState,
        size=r.get("size", int),
        free=r.get("free", int),
        full=r.get("full", bool),
        oversized=_list_of(r.get("oversized", list), f"{path}/oversized", _string),
    )
    r.done()
    return result


def node_state_from_json(document: Any) -> NodeState:
    """A `NodeState` from `node_state_to_json`'s output; strict."""
    return _node_state_from(document, "")


def deployment_state_from_json(document: Any) -> DeploymentState:
    """A `DeploymentState` from `deployment_state_to_json`'s output; strict."""
    r = _Reader(document, "")
    nodes = _keyed(r.get("nodes", dict), "/nodes", _node_state_from)
    r.done()
    return _build("", DeploymentState, nodes=nodes)


def deserialize_node_state(data: bytes) -> NodeState:
    """A `NodeState` from `serialize_node_state`'s bytes."""
    return node_state_from_json(_loads(data))


def deserialize_deployment_state(data: bytes) -> DeploymentState:
    """A `DeploymentState` from `serialize_deployment_state`'s bytes."""
    return deployment_state_from_json(_loads(data))
