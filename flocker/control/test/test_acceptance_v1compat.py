"""
Compatibility with the original ClusterHQ Flocker v1 API, on a real local
cluster, driven only through the REST API (HTTPS, client certificate) and
the ``flocker-node-era`` command, as a user migrating from the original
would.

The requests are those of the original's published API examples
(``docs/reference/api_examples.yml`` of ClusterHQ/flocker): create datasets
with and without an id, a size and metadata, a duplicate id; move, delete,
unknown ids; create containers with links, a command line, a memory limit,
CPU shares, an attached volume, environment, ports; a duplicate name; move
and delete them; the configuration and state listings.  Each answer's
status is the example's, and its body is checked against the original's
JSON schemas (restated below as this test's own definitions, following the
original ``flocker/control/schema/types.yml``: its containers leave empty
``ports`` and ``links`` out, those arrays need at least one item, and no
key unknown to the original may appear).  Then the original's lease
acceptance flow: a move requested while the dataset is leased is accepted,
has not happened while the lease holds, and happens once it is released.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from uuid import uuid4

import jsonschema
import pytest

from flocker.testtools.waiting import wait_for

pytestmark = pytest.mark.acceptance

MIB = 1024 * 1024

# -- the original's schemas, restated ---------------------------------------

_UUID = {"type": "string", "minLength": 36, "maxLength": 36}
_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
_METADATA = {
    "type": "object",
    "maxProperties": 16,
    "patternProperties": {"^.{1,256}$": {"type": "string", "maxLength": 256}},
    "additionalProperties": False,
}
_RESTART = {
    "type": "object",
    "oneOf": [
        {
            "type": "object",
            "properties": {
                "name": {"enum": ["on-failure"]},
                "maximum_retry_count": {"type": "integer", "minimum": 1},
            },
            "required": ["name"],
            "additionalProperties": False,
        },
        {
            "type": "object",
            "properties": {"name": {"enum": ["never", "always"]}},
            "required": ["name"],
            "additionalProperties": False,
        },
    ],
}
_CONTAINER_PROPERTIES: dict[str, Any] = {
    "node_uuid": _UUID,
    "name": {"type": "string", "pattern": "^[a-zA-Z0-9_-]+$"},
    "image": {"type": "string"},
    "ports": {
        "type": "array",
        "minItems": 1,
        "uniqueItems": True,
        "items": {
            "type": "object",
            "properties": {
                "internal": {"type": "integer"},
                "external": {"type": "integer"},
            },
            "additionalProperties": False,
        },
    },
    "environment": {
        "type": "object",
        "patternProperties": {"^.+$": {"type": "string"}},
    },
    "restart_policy": _RESTART,
    "volumes": {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {
                "dataset_id": _UUID,
                "mountpoint": {"type": "string", "pattern": "^/.*$"},
            },
            "required": ["dataset_id", "mountpoint"],
            "additionalProperties": False,
        },
    },
    "links": {
        "type": "array",
        "minItems": 1,
        "uniqueItems": True,
        "items": {
            "type": "object",
            "properties": {
                "alias": {"type": "string", "pattern": "^[a-zA-Z0-9]+$"},
                "local_port": _PORT,
                "remote_port": _PORT,
            },
            "required": ["alias", "local_port", "remote_port"],
            "additionalProperties": False,
        },
    },
    "cpu_shares": {"type": "integer", "minimum": 1, "maximum": 1024},
    "memory_limit": {"type": "integer", "minimum": MIB},
    "swappiness": {"type": "integer", "minimum": 0, "maximum": 100},
    "command_line": {"type": "array", "items": {"type": "string"}},
}

SCHEMAS: dict[str, dict[str, Any]] = {
    "version": {
        "type": "object",
        "properties": {"flocker": {"type": "string"}},
        "required": ["flocker"],
    },
    "dataset": {
        "type": "object",
        "properties": {
            "dataset_id": _UUID,
            "primary": _UUID,
            "deleted": {"type": "boolean"},
            "metadata": _METADATA,
            "maximum_size": {"type": ["number", "null"], "minimum": 64 * MIB},
        },
        "additionalProperties": False,
    },
    "dataset_state": {
        "type": "object",
        "properties": {
            "dataset_id": _UUID,
            "primary": _UUID,
            "maximum_size": {"type": ["number", "null"]},
            "path": {"type": "string"},
        },
        "required": ["dataset_id"],
        "additionalProperties": False,
    },
    "container": {
        "type": "object",
        "properties": _CONTAINER_PROPERTIES,
        "required": ["node_uuid", "name", "image"],
        "additionalProperties": False,
    },
    "container_state": {
        "type": "object",
        "properties": {**_CONTAINER_PROPERTIES, "running": {"type": "boolean"}},
        "required": ["node_uuid", "name", "image", "running"],
        "additionalProperties": False,
    },
    "node": {
        "type": "object",
        "properties": {"uuid": _UUID, "host": {"type": "string"}},
        "required": ["uuid"],
        "additionalProperties": False,
    },
    "node_by_era": {
        "type": "object",
        "properties": {"uuid": _UUID},
        "required": ["uuid"],
        "additionalProperties": False,
    },
    "lease": {
        "type": "object",
        "properties": {
            "dataset_id": _UUID,
            "node_uuid": _UUID,
            "expires": {"type": ["number", "null"]},
        },
        "required": ["dataset_id", "node_uuid", "expires"],
        "additionalProperties": False,
    },
    "error": {
        "type": "object",
        "properties": {
            "description": {"type": "string"},
            "errors": {"type": "array"},
        },
        "required": ["description"],
    },
}


def _check(name: str, document: Any, many: bool = False) -> None:
    """Validate an answer (or each item of a list answer) with an original schema."""
    schema = SCHEMAS[name]
    if many:
        schema = {"type": "array", "items": schema}
    jsonschema.Draft4Validator(schema).validate(document)


# -- talking to the cluster -------------------------------------------------


def _call(
    cluster: dict[str, Any],
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """One REST request with the user certificate: (status, decoded body)."""
    certificates = cluster["certificates"]
    context = ssl.create_default_context(cafile=certificates["ca"])
    context.load_cert_chain(certificates["user_cert"], certificates["user_key"])
    request = urllib.request.Request(
        cluster["control"]["api_url"] + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as reply:
            return reply.status, json.loads(reply.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def _expect(
    cluster: dict[str, Any],
    status: int,
    schema: str,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> Any:
    """Make a request, assert its status, validate its body; the body."""
    code, answer = _call(cluster, method, path, body, headers)
    assert code == status, (method, path, body, code, answer)
    _check(schema, answer)
    return answer


@pytest.fixture
def cluster(make_lab: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """A two-node local cluster with directory-backed datasets."""
    return make_lab(nodes=2, backend="directory")


# -- the examples -----------------------------------------------------------


def test_documented_dataset_examples(cluster: dict[str, Any]) -> None:
    """
    The original's dataset examples get the original's statuses and answers
    that its schemas accept; ``maximum_size: null`` means no limit; the
    state listing and the nodes match the original's shapes.
    """
    node0, node1 = (n["uuid"] for n in cluster["nodes"])
    _expect(cluster, 200, "version", "GET", "/v1/version")

    created = _expect(
        cluster, 201, "dataset", "POST", "/v1/configuration/datasets",
        {"primary": node0},
    )  # fmt: skip
    assert (created["primary"], created["metadata"], created["deleted"]) == (
        node0, {}, False,
    )  # fmt: skip
    chosen = str(uuid4())
    _expect(
        cluster, 201, "dataset", "POST", "/v1/configuration/datasets",
        {"dataset_id": chosen, "primary": node0},
    )  # fmt: skip
    duplicate = _expect(
        cluster, 409, "error", "POST", "/v1/configuration/datasets",
        {"dataset_id": chosen, "primary": node0},
    )  # fmt: skip
    assert duplicate["description"]
    sized = _expect(
        cluster, 201, "dataset", "POST", "/v1/configuration/datasets",
        {"primary": node0, "maximum_size": 1073741824},
    )  # fmt: skip
    assert sized["maximum_size"] == 1073741824
    unlimited = _expect(
        cluster, 201, "dataset", "POST", "/v1/configuration/datasets",
        {"primary": node0, "maximum_size": None},
    )  # fmt: skip
    assert "maximum_size" not in unlimited
    labelled = _expect(
        cluster, 201, "dataset", "POST", "/v1/configuration/datasets",
        {"primary": node0, "metadata": {"name": "demo", "owner": "alice"}},
    )  # fmt: skip
    assert labelled["metadata"] == {"name": "demo", "owner": "alice"}

    code, listed = _call(cluster, "GET", "/v1/configuration/datasets")
    assert code == 200
    _check("dataset", listed, many=True)
    assert {chosen, created["dataset_id"]} <= {d["dataset_id"] for d in listed}

    moved = _expect(
        cluster, 200, "dataset", "POST", f"/v1/configuration/datasets/{chosen}",
        {"primary": node1},
    )  # fmt: skip
    assert moved["primary"] == node1
    unknown = str(uuid4())
    for method, body in (("POST", {"primary": node1}), ("DELETE", None)):
        missing = _expect(
            cluster, 404, "error", method, f"/v1/configuration/datasets/{unknown}", body
        )
        assert unknown in missing["description"]
        malformed = _expect(
            cluster, 404, "error", method, "/v1/configuration/datasets/not-an-id", body
        )
        assert malformed["description"] == "Dataset not found."
    deleted = _expect(
        cluster, 200, "dataset", "DELETE", f"/v1/configuration/datasets/{chosen}"
    )
    assert deleted["deleted"] is True
    _expect(
        cluster, 405, "error", "POST", f"/v1/configuration/datasets/{chosen}",
        {"primary": node0},
    )  # fmt: skip

    bad = _expect(
        cluster, 400, "error", "POST", "/v1/configuration/datasets",
        {"primary": node0, "maximum_size": "big", "colour": "blue"},
    )  # fmt: skip
    assert len(bad["errors"]) == 2

    def mounted() -> Any:
        code, state = _call(cluster, "GET", "/v1/state/datasets")
        assert code == 200
        _check("dataset_state", state, many=True)
        return [s for s in state if s["dataset_id"] == sized["dataset_id"]]

    [state] = wait_for(mounted, 60, "the sized dataset to be mounted")
    assert (state["primary"], state["maximum_size"]) == (node0, 1073741824)

    code, nodes = _call(cluster, "GET", "/v1/state/nodes")
    assert code == 200
    _check("node", nodes, many=True)
    assert {n["uuid"] for n in nodes} == {node0, node1}


def test_documented_container_examples(cluster: dict[str, Any]) -> None:
    """
    The original's container examples get its statuses and answers its
    schemas accept (no empty ``ports``, ``links``, ``environment`` or
    ``volumes``), in the configuration and in the state; ``swappiness`` is
    accepted and answered; a duplicate name
    and a duplicate link alias are conflicts (409).
    """
    node0, node1 = (n["uuid"] for n in cluster["nodes"])
    dataset = _expect(
        cluster, 201, "dataset", "POST", "/v1/configuration/datasets",
        {"primary": node1},
    )  # fmt: skip
    base = {"node_uuid": node0, "image": "nginx:latest"}
    requests = [
        {**base, "name": "webserver"},
        {**base, "name": "linked",
         "links": [{"alias": "postgres", "local_port": 5432, "remote_port": 54320}]},
        {**base, "name": "nc", "image": "busybox",
         "command_line": ["nc", "-l", "-p", "1234"]},
        {**base, "name": "limited", "memory_limit": 262144000},
        {**base, "name": "weighted", "cpu_shares": 512},
        {**base, "name": "swapping", "swappiness": 60},
        {**base, "name": "webserver2", "node_uuid": node1,
         "volumes": [{"dataset_id": dataset["dataset_id"],
                      "mountpoint": "/usr/share/nginx/html"}]},
        {**base, "name": "configured",
         "environment": {"CONFIG_FILE": "/etc/nginx/nginx.conf"},
         "restart_policy": {"name": "never"}},
        {**base, "name": "published", "ports": [{"internal": 80, "external": 18080}],
         "restart_policy": {"name": "never"}},
    ]  # fmt: skip
    for request in requests:
        answer = _expect(
            cluster, 201, "container", "POST", "/v1/configuration/containers", request
        )
        assert answer == {"restart_policy": {"name": "never"}, **request}, answer

    _expect(
        cluster, 409, "error", "POST", "/v1/configuration/containers",
        {**base, "name": "webserver"},
    )  # fmt: skip
    twice = [
        {"alias": "db", "local_port": 5432, "remote_port": 15432},
        {"alias": "db", "local_port": 5433, "remote_port": 15433},
    ]
    _expect(
        cluster, 409, "error", "POST", "/v1/configuration/containers",
        {**base, "name": "twice", "links": twice},
    )  # fmt: skip

    code, listed = _call(cluster, "GET", "/v1/configuration/containers")
    assert code == 200
    _check("container", listed, many=True)
    assert {c["name"] for c in listed} == {r["name"] for r in requests}

    moved = _expect(
        cluster, 200, "container", "POST", "/v1/configuration/containers/webserver",
        {"node_uuid": node1},
    )  # fmt: skip
    assert moved == {
        "node_uuid": node1,
        "name": "webserver",
        "image": "nginx:latest",
        "restart_policy": {"name": "never"},
    }
    code, state = _call(cluster, "GET", "/v1/state/containers")
    assert code == 200
    _check("container_state", state, many=True)
    for request in requests:
        _expect(
            cluster, 200, "container", "DELETE",
            f"/v1/configuration/containers/{request['name']}",
        )  # fmt: skip
    _expect(cluster, 404, "error", "DELETE", "/v1/configuration/containers/webserver")


def test_lease_defers_move(cluster: dict[str, Any]) -> None:
    """
    As in the original's lease acceptance test: with the dataset leased on
    its node, a move is accepted (200) but the dataset stays while the lease
    holds; once the lease is released it moves.  With
    ``X-Refuse-If-Leased: true`` the move is refused (409) instead.
    """
    node0, node1 = (n["uuid"] for n in cluster["nodes"])
    dataset = _expect(
        cluster, 201, "dataset", "POST", "/v1/configuration/datasets",
        {"primary": node0, "maximum_size": 64 * MIB},
    )  # fmt: skip
    dataset_id = dataset["dataset_id"]
    path = f"/v1/configuration/datasets/{dataset_id}"

    def mounted_on(node: str) -> Callable[[], bool]:
        def check() -> bool:
            code, state = _call(cluster, "GET", "/v1/state/datasets")
            return any(
                s["dataset_id"] == dataset_id and s.get("primary") == node
                and s.get("path")
                for s in state
            )  # fmt: skip

        return check

    wait_for(mounted_on(node0), 60, "the dataset to be mounted on node 0")
    _expect(
        cluster, 201, "lease", "POST", "/v1/configuration/leases",
        {"dataset_id": dataset_id, "node_uuid": node0, "expires": None},
    )  # fmt: skip
    _expect(
        cluster, 409, "error", "POST", path, {"primary": node1},
        headers={"X-Refuse-If-Leased": "true"},
    )  # fmt: skip
    accepted = _expect(cluster, 200, "dataset", "POST", path, {"primary": node1})
    assert accepted["primary"] == node1
    time.sleep(5)
    assert mounted_on(node0)(), "the leased dataset moved"
    assert not mounted_on(node1)()
    _expect(
        cluster, 200, "lease", "DELETE", f"/v1/configuration/leases/{dataset_id}"
    )
    wait_for(mounted_on(node1), 120, "the dataset to move once the lease went")


def test_node_era(cluster: dict[str, Any]) -> None:
    """
    ``flocker-node-era`` prints a node's era, and ``by_era`` answers that
    node's UUID as ``{"uuid": ...}``, once its container agent reported.
    """
    node = cluster["nodes"][0]["uuid"]
    printed = subprocess.run(
        [sys.executable, "-m", "flocker.node._era", "--node-uuid", node],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip

    def found() -> Any:
        code, answer = _call(cluster, "GET", f"/v1/state/nodes/by_era/{printed}")
        return answer if code == 200 else None

    answer = wait_for(found, 60, "the node to report its era")
    _check("node_by_era", answer)
    assert answer == {"uuid": node}
    missing = _expect(
        cluster, 404, "error", "GET", f"/v1/state/nodes/by_era/{uuid4()}"
    )
    assert missing["description"]
