"""The REST API's JSON: reading request bodies, writing responses, model ↔ JSON.

The shapes are those of the original Flocker v1 API (see ``schema/types.yml``):
optional fields that are unset (a dataset's ``maximum_size``, a container's
``cpu_shares``…) are left out rather than sent as ``null``, and so are this
project's additions while they say nothing (a container's ``health`` check,
``revision`` and update history, ``replicas`` while it runs once), so that
the original API's clients see the original shapes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from pyrsistent import InvariantException, PTypeError
from twisted.web.server import Request

from ._checks import INSTANCE_SUFFIX, RESERVED_SEPARATOR, is_valid_name
from ._httpschema import SchemaError
from ._httpschema import validate_body as _validate
from ._model import (
    Application,
    AttachedVolume,
    Dataset,
    HealthCheck,
    Link,
    Port,
    Replication,
    RestartAlways,
    RestartNever,
    RestartOnFailure,
    is_uuid,
)
from ._state import ApplicationHealth, DeploymentState

__all__ = [
    "APIError",
    "set_aside_json",
    "application_from",
    "DATASET_NOT_FOUND",
    "MAXIMUM_JSON_DEPTH",
    "check_uuid",
    "path_dataset_id",
    "configured_container_json",
    "container_json",
    "health_json",
    "state_container_json",
    "updated_application",
    "copies_json",
    "dataset_json",
    "invariant_reasons",
    "json_response",
    "read_body",
]


class APIError(Exception):
    """
    Answer the request with this status and description.

    :ivar errors: for a body that violates the schema, every violation (the
        answer's ``errors`` list, as the original Flocker API gave), else
        ``None``.
    """

    def __init__(
        self, code: int, description: str, errors: list[str] | None = None
    ) -> None:
        """Remember the status, the description and any schema violations."""
        super().__init__(code, description)
        self.code = code
        self.description = description
        self.errors = errors

    def body(self) -> dict[str, Any]:
        """The JSON answer: ``description``, and ``errors`` if there are any."""
        result: dict[str, Any] = {"description": self.description}
        if self.errors is not None:
            result["errors"] = self.errors
        return result


#: The original Flocker API's answer for a dataset that does not exist.
DATASET_NOT_FOUND = "Dataset not found."


def path_dataset_id(value: str) -> str:
    """
    The canonical form of a dataset id in a v1 path; 404 "Dataset not
    found." if it is not a UUID, as the original Flocker API answered (no
    dataset can have such an id).
    """
    lowered = value.lower()
    if not is_uuid(lowered):
        raise APIError(404, DATASET_NOT_FOUND)
    return lowered


def check_uuid(value: str, what: str) -> str:
    """Return the canonical (lowercase) form of a UUID, or refuse with 400."""
    lowered = value.lower()
    if not is_uuid(lowered):
        raise APIError(400, f"{what} is not a UUID: {value!r}")
    return lowered


def json_response(request: Request, code: int, body: Any) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(body, sort_keys=True).encode("utf-8") + b"\n"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


#: Integral numbers of fewer digits than this, written with a fraction or
#: an exponent (``2.0``, ``1e6``), are decoded as ints (every integer the
#: API accepts is below 2**63, which has 19 digits).
_INTEGRAL_DIGITS = 20


def _parse_number(text: str) -> int | float:
    """
    A JSON number with a fraction or an exponent: an int when its value is
    an integer (JSON Schema, which the API's schemas are written in, counts
    ``2.0`` as the integer 2), else a float.

    The value is checked exactly (``1048576.0000000000001`` stays a float)
    and only for numbers of fewer than `_INTEGRAL_DIGITS` digits before the
    point, so a hostile ``1e999999999`` costs no more than any other
    number (it becomes ``inf``, which no schema accepts).
    """
    exact = Decimal(text)
    if exact.adjusted() < _INTEGRAL_DIGITS and exact == exact.to_integral_value():
        return int(exact)
    return float(text)


#: The deepest nesting of arrays and objects a request body may have (no
#: request of the API needs more than a few levels).  Deeper bodies are
#: refused before they are parsed: the parser recurses once per level.
MAXIMUM_JSON_DEPTH = 64

#: The characters that matter for nesting: brackets, quotes and escapes.
_SIGNIFICANT = re.compile(r'[\[\]{}"\\]')


def json_depth(text: str, stop_above: int | None = None) -> int:
    """
    How deep the arrays and objects of a JSON text nest, found without
    recursing (so without parsing) in one pass over its brackets, quotes
    and escapes: brackets inside strings do not count.  With ``stop_above``
    the pass ends as soon as the depth is greater (and that depth is
    answered), so a hostile body costs no more than its first levels.

    For a text that is not valid JSON the answer is only an estimate,
    which is enough to refuse it.
    """
    depth = deepest = 0
    in_string = False
    escaped = -1  # the position of the character after a backslash in a string
    for match in _SIGNIFICANT.finditer(text):
        char, at = match.group(), match.start()
        if in_string:
            if at == escaped:
                continue
            if char == "\\":
                escaped = at + 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if stop_above is not None and depth > stop_above:
                break
        elif char in "]}":
            depth -= 1
    return deepest


def read_body(request: Request, definition: str) -> Any:
    """
    The request's JSON body, checked against the schema ``definition``.

    :raise APIError: 400 for a body that is not UTF-8 JSON, that nests
        deeper than `MAXIMUM_JSON_DEPTH` (checked before parsing), or that
        does not match the schema (every violation listed).
    """
    content = request.content
    data = b"" if content is None else content.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise APIError(400, f"the request body is not valid JSON: {e}") from None
    if json_depth(text, MAXIMUM_JSON_DEPTH) > MAXIMUM_JSON_DEPTH:
        raise APIError(
            400,
            "the request body nests arrays and objects deeper than "
            f"{MAXIMUM_JSON_DEPTH} levels",
        )
    try:
        document = json.loads(
            text, parse_constant=_refuse_constant, parse_float=_parse_number
        )
    except ValueError as e:
        raise APIError(400, f"the request body is not valid JSON: {e}") from None
    try:
        _validate(definition, document)
    except SchemaError as e:
        raise APIError(400, _reserved_name(document) or str(e), e.errors) from None
    return document


def _reserved_name(document: Any) -> str | None:
    """
    Why a body's ``name`` is refused when it is otherwise valid but has the
    form of an extra instance's name (``web..2``), which the schema's
    pattern refuses without saying why; else ``None``.
    """
    name = document.get("name") if isinstance(document, dict) else None
    if isinstance(name, str) and is_valid_name(name) and INSTANCE_SUFFIX.search(name):
        return f"name: {RESERVED_SEPARATOR}: {name!r}"
    return None


# --------------------------------------------------------------------------
# Model ↔ API JSON


def dataset_json(
    dataset: Dataset, primary: str, replicas: list[str] | None = None
) -> dict[str, Any]:
    """
    A configured dataset as the API answers it.

    ``replicas``, ``replication`` and ``epoch`` are there only when the
    dataset uses replication (it has standing replicas, settings other than
    the defaults or an epoch above 0), so datasets that do not answer
    exactly as in the original Flocker API, whose clients' schemas lack
    these keys.  ``failover_snapshot`` (the snapshot the primary started
    from at the last failover) is there only after a failover recorded one.
    """
    result: dict[str, Any] = {
        "dataset_id": dataset.dataset_id,
        "primary": primary,
        "metadata": dict(dataset.metadata),
        "deleted": dataset.deleted,
    }
    if dataset.maximum_size is not None:
        result["maximum_size"] = dataset.maximum_size
    if dataset.origin is not None:
        result["origin"] = {
            "dataset_id": dataset.origin.dataset_id,
            "snapshot": dataset.origin.snapshot,
        }
    if replicas or dataset.replication != Replication() or dataset.epoch > 0:
        result["replicas"] = list(replicas or [])
        result["replication"] = {
            "interval_seconds": dataset.replication.interval_seconds,
            "failover": dataset.replication.failover,
        }
        result["epoch"] = dataset.epoch
        if dataset.failover_snapshot is not None:
            result["failover_snapshot"] = dataset.failover_snapshot
    return result


def superseded(ds: Any, epoch: int) -> bool:
    """
    Whether a reported copy is of an older epoch than the configured one:
    a failover promoted another copy over it, so even while its node still
    reports it exposed (it has not heard of the failover yet), it is not
    the dataset's primary.
    """
    return ds.epoch is not None and ds.epoch < epoch


def set_aside_json(ds: Any) -> list[dict[str, Any]]:
    """A copy's set-aside snapshots (kept when it rejoined after diverging)."""
    return [{"name": s.name, "created": s.created} for s in ds.set_aside]


def copies_json(
    state: DeploymentState,
    dataset_id: str,
    now: float,
    epoch: int = 0,
    standing: Iterable[str] = (),
) -> dict[str, Any]:
    """
    The ``replicas`` and ``diverged`` keys of a dataset's state entry: the
    copies nodes report holding as standing replicas (with the newest
    snapshot each holds and its lag behind ``now``) and as diverged copies
    of an older epoch than the configured ``epoch`` (those reported
    diverged, and superseded primaries whose nodes have not yet heard of
    the failover).  Only the nodes configured to hold standing replicas
    (``standing``) are listed as replicas: a move's destination receiving
    its first rounds, or a removed replica's leftover, is none.  A fenced
    copy of an older epoch (a primary that fenced itself and was failed
    over meanwhile) is listed as diverged.  A copy's ``set_aside``
    snapshots (what it held when a failover superseded it, kept when it
    rejoined) are listed with it when it has any.  Keys with nothing to
    list are left out.
    """
    standing = set(standing)
    replicas = []
    diverged = []
    for ds, node_uuid in state.all_datasets():
        if ds.dataset_id != dataset_id:
            continue
        newest = ds.snapshots[-1] if ds.snapshots else None
        name = None if newest is None else newest.name
        if ds.role == "replica" and node_uuid in standing:
            created = None if newest is None else newest.created
            replica: dict[str, Any] = {
                "node_uuid": node_uuid,
                "last_snapshot": name,
                "replicated_at": created,
                "lag_seconds": None if created is None else max(0.0, now - created),
            }
            if ds.set_aside:
                replica["set_aside"] = set_aside_json(ds)
            replicas.append(replica)
        elif (
            ds.role == "diverged"
            or (ds.path is not None and superseded(ds, epoch))
            or (ds.role == "fenced" and superseded(ds, epoch))
        ):
            copy: dict[str, Any] = {
                "node_uuid": node_uuid,
                "epoch": ds.epoch,
                "last_snapshot": name,
            }
            if ds.set_aside:
                copy["set_aside"] = set_aside_json(ds)
            diverged.append(copy)
    result: dict[str, Any] = {}
    if replicas:
        result["replicas"] = replicas
    if diverged:
        result["diverged"] = diverged
    return result


def _restart_json(policy: Any) -> dict[str, Any]:
    if isinstance(policy, RestartOnFailure):
        result: dict[str, Any] = {"name": "on-failure"}
        if policy.maximum_retry_count is not None:
            result["maximum_retry_count"] = policy.maximum_retry_count
        return result
    if isinstance(policy, RestartAlways):
        return {"name": "always"}
    return {"name": "never"}


def container_json(app: Application, node_uuid: str) -> dict[str, Any]:
    """
    A container as the original Flocker API answered it.

    ``ports``, ``environment``, ``volumes`` and ``links`` are left out when
    empty, as the original Flocker API did (its schemas require at least
    one item in ``ports`` and ``links``), and so are the unset optional
    settings (``cpu_shares``, ``memory_limit``, ``swappiness``,
    ``command_line``).
    """
    result: dict[str, Any] = {
        "node_uuid": node_uuid,
        "name": app.name,
        "image": app.image,
        "restart_policy": _restart_json(app.restart_policy),
    }
    if app.ports:
        result["ports"] = [
            {"internal": p.internal_port, "external": p.external_port}
            for p in sorted(app.ports, key=lambda p: (p.external_port, p.internal_port))
        ]
    if app.environment:
        result["environment"] = dict(app.environment)
    if app.volumes:
        result["volumes"] = [
            {"dataset_id": v.dataset_id, "mountpoint": v.mountpoint}
            for v in sorted(app.volumes, key=lambda v: (v.mountpoint, v.dataset_id))
        ]
    if app.links:
        result["links"] = [
            {
                "alias": link.alias,
                "local_port": link.local_port,
                "remote_port": link.remote_port,
            }
            for link in sorted(app.links, key=lambda x: x.alias)
        ]
    for name in ("cpu_shares", "memory_limit", "swappiness"):
        if getattr(app, name) is not None:
            result[name] = getattr(app, name)
    if app.command_line is not None:
        result["command_line"] = list(app.command_line)
    return result


def health_json(health: HealthCheck) -> dict[str, Any]:
    """A health check as the API answers it: every key (``path`` for ``http`` only)."""
    result: dict[str, Any] = {"kind": health.kind, "port": health.port}
    if health.path is not None:
        result["path"] = health.path
    result.update(
        interval=health.interval,
        timeout=health.timeout,
        retries=health.retries,
        start_period=health.start_period,
    )
    return result


def configured_container_json(app: Application, node_uuid: str) -> dict[str, Any]:
    """
    A configured container as the API answers it: `container_json`, with
    its ``health`` check if it has one of its own, its ``revision`` once an
    update made one, ``updating`` while the last update waits for the
    container to be healthy, ``update_failed`` when the last update was
    rolled back by itself (why), ``previous_image`` while there is a
    previous specification to roll back to, and ``replicas`` when it runs
    more than one instance.  A container never updated, without a health
    check, running once, answers as in the original API.
    """
    result = container_json(app, node_uuid)
    if app.health is not None:
        result["health"] = health_json(app.health)
    if app.revision > 0:
        result["revision"] = app.revision
    if app.updating:
        result["updating"] = True
    if app.update_failed is not None:
        result["update_failed"] = app.update_failed
    if app.previous is not None:
        result["previous_image"] = app.previous.image
    if app.replicas != 1:
        result["replicas"] = app.replicas
    return result


def state_container_json(
    app: Application, node_uuid: str, health: ApplicationHealth | None
) -> dict[str, Any]:
    """
    A container a node reports running, as the API answers it:
    `container_json`, ``running``, and, when the node reported the
    container's health, its ``health`` status and ``health_reason`` (what
    the last failed probe saw, when there is one).
    """
    result = container_json(app, node_uuid)
    result["running"] = True
    if health is not None:
        result["health"] = health.status
        if health.reason is not None:
            result["health_reason"] = health.reason
    return result


def _restart_from(body: dict[str, Any] | None) -> Any:
    if body is None or body["name"] == "never":
        return RestartNever()
    if body["name"] == "always":
        return RestartAlways()
    return RestartOnFailure(maximum_retry_count=body.get("maximum_retry_count"))


#: The keys of a container body that an update may change.
UPDATABLE = (
    "image",
    "environment",
    "command_line",
    "ports",
    "links",
    "cpu_shares",
    "memory_limit",
    "swappiness",
    "restart_policy",
    "health",
    "replicas",
)


def _application_fields(body: dict[str, Any]) -> dict[str, Any]:
    """
    The `Application` fields a container body gives (only those it has;
    ``null`` for an optional one is ``None``).

    Two links with one alias are a 409, as in the original Flocker API; a
    port, link or health check breaking the model's rules a 400.
    """
    aliases = [link["alias"] for link in body.get("links", [])]
    repeated = sorted({a for a in aliases if aliases.count(a) > 1})
    if repeated:
        raise APIError(
            409, f"link aliases must be distinct: {', '.join(repeated)} repeated"
        )
    fields: dict[str, Any] = {}
    try:
        if "ports" in body:
            fields["ports"] = [
                Port(internal_port=p["internal"], external_port=p["external"])
                for p in body["ports"]
            ]
        if "links" in body:
            fields["links"] = [Link(**link) for link in body["links"]]
        if "volumes" in body:
            fields["volumes"] = [
                AttachedVolume(
                    dataset_id=check_uuid(v["dataset_id"], "volumes/dataset_id"),
                    mountpoint=v["mountpoint"],
                )
                for v in body["volumes"]
            ]
        if "restart_policy" in body:
            fields["restart_policy"] = _restart_from(body["restart_policy"])
        if body.get("health") is not None:
            fields["health"] = HealthCheck(**body["health"])
    except InvariantException as e:
        raise APIError(400, invariant_reasons(e)) from None
    except (PTypeError, TypeError) as e:
        raise APIError(400, str(e)) from None
    for name in (
        "image",
        "environment",
        "cpu_shares",
        "memory_limit",
        "swappiness",
        "command_line",
        "health",
        "replicas",
    ):
        if name in body and name not in fields:
            fields[name] = body[name]
    return fields


def application_from(body: dict[str, Any]) -> Application:
    """
    Build the `Application` a container request describes (400 if invalid,
    e.g. ``replicas`` above 1 with volumes, saying why).

    Two links with one alias are a 409, as in the original Flocker API.
    """
    fields = _application_fields(body)
    try:
        return Application(name=body["name"], **fields)
    except InvariantException as e:
        raise APIError(400, invariant_reasons(e)) from None
    except (PTypeError, TypeError) as e:
        raise APIError(400, str(e)) from None


def updated_application(current: Application, body: dict[str, Any]) -> Application | None:
    """
    The specification an update request makes of ``current``: each
    `UPDATABLE` key the body has replaces the whole value (``null`` removes
    an optional one); ``None`` if the body changes no specification (a
    move only).  The revision and history are the model's to set
    (`flocker.control.Deployment.update_application`).

    A request that contradicts itself (a health check of a port its new
    ``ports`` do not publish) is a 400, and so is ``replicas`` above 1 for
    a container with volumes (the model's reason); one that contradicts the
    container's configuration (a health check of a port it does not
    publish, or ports leaving out the one its health check probes) a 409.
    """
    changes = {k: v for k, v in body.items() if k in UPDATABLE}
    if not changes:
        return None
    fields = _application_fields(changes)
    specification = current.specification()
    health = fields.get("health", specification.health)
    ports = fields.get("ports", specification.ports)
    published = sorted({p.internal_port for p in ports})
    if health is not None and health.port not in published:
        if "health" in fields and "ports" in fields:
            raise APIError(
                400,
                f"the health check's port {health.port} is not one of the "
                f"internal ports the request publishes {published}",
            )
        if "health" in fields:
            raise APIError(
                409,
                f"the health check's port {health.port} is not one of the "
                f"internal ports container {current.name!r} publishes "
                f"{published}; give the ports too",
            )
        raise APIError(
            409,
            f"the new ports leave out internal port {health.port}, which the "
            f"health check of container {current.name!r} probes; give a new "
            "health check too (or null for the default one)",
        )
    try:
        return specification.set(**fields)
    except InvariantException as e:
        raise APIError(400, invariant_reasons(e)) from None
    except (PTypeError, TypeError) as e:
        raise APIError(400, str(e)) from None


def invariant_reasons(e: InvariantException) -> str:
    reasons = [str(r) for r in e.invariant_errors] + [
        f"missing {m}" for m in e.missing_fields
    ]
    return "; ".join(reasons) or str(e)
