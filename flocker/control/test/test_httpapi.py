"""
Unit tests of the REST API v1: datasets, nodes, versions, tags, errors, logging.

Requests go to the Klein resource in memory through ``treq.testing.StubTreq``
(no sockets).  Every response is checked against the schema ``endpoints.yml``
documents for its status; every refused write is checked to leave the stored
configuration unchanged.  `APIHarness` is shared with the other
``test_httpapi_*`` modules.
"""

from __future__ import annotations

import json
import re
from typing import Any

import attrs
import pytest
from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from flocker import __version__
from flocker.control import (
    Application,
    AttachedVolume,
    ClusterStateService,
    ConfigurationService,
    Dataset,
    MemoryConfigurationStore,
    StoredConfiguration,
)
from flocker.control._httpschema import is_valid, operations
from flocker.control._state import DatasetState, NodeState
from flocker.control.rest_service import (
    MAXIMUM_BODY_SIZE,
    make_api_resource,
)

NODE_A = "aaaaaaaa-0000-4000-8000-00000000000a"
NODE_B = "bbbbbbbb-0000-4000-8000-00000000000b"
UNKNOWN_NODE = "eeeeeeee-0000-4000-8000-00000000000e"
DATASET = "d0d0d0d0-0000-4000-8000-00000000000d"
OTHER_DATASET = "d1d1d1d1-0000-4000-8000-00000000001d"
ERA_A = "a1a1a1a1-0000-4000-8000-0000000000a1"
MIB = 1024 * 1024


@attrs.frozen
class Result:
    """One response: status, headers (lowercase names), decoded JSON body."""

    code: int
    headers: dict[str, str]
    body: Any


def _operation_for(method: str, path: str) -> Any:
    for op in operations().values():
        pattern = re.sub(r"\{[a-z_]+\}", "[^/]+", op.path)
        if op.method == method and re.fullmatch(pattern, path):
            return op
    return None


class APIHarness:
    """The API over a memory store, a cluster state with two nodes, and a clock."""

    def __init__(self, store: Any = None) -> None:
        """Build the services; nodes A (era ERA_A) and B have reported."""
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.store = store if store is not None else MemoryConfigurationStore()
        self.configuration = ConfigurationService(self.store)
        self.configuration.load()
        self.state = ClusterStateService(self.clock)
        self.state.update_node_state(
            NodeState(uuid=NODE_A, hostname="10.0.0.1", era=ERA_A)
        )
        self.state.update_node_state(NodeState(uuid=NODE_B, hostname="10.0.0.2"))
        self.treq = StubTreq(
            make_api_resource(self.configuration, self.state, self.clock)
        )

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Result:
        """Make a request and return its response (checked against its schema)."""
        data = (
            raw
            if raw is not None
            else (None if body is None else json.dumps(body).encode("utf-8"))
        )
        results: list[Result | Failure] = []
        d = self.treq.request(  # type: ignore[attr-defined]
            method,
            "https://control.example/" + path.lstrip("/"),
            data=data,
            headers={k: [v] for k, v in (headers or {}).items()},
        )

        def got(response: Any) -> Any:
            def read(content: bytes) -> None:
                results.append(
                    Result(
                        code=response.code,
                        headers={
                            k.decode().lower(): v[0].decode()
                            for k, v in response.headers.getAllRawHeaders()
                        },
                        body=json.loads(content) if content else None,
                    )
                )

            return response.content().addCallback(read)

        d.addCallback(got)
        d.addErrback(results.append)
        self.treq.flush()
        (result,) = results
        if isinstance(result, Failure):
            result.raiseException()
        self._check_schema(method, path, result)
        return result

    def _check_schema(self, method: str, path: str, result: Result) -> None:
        op = _operation_for(method, path.split("?")[0])
        if op is None:
            assert result.code in (404, 405), result
            return
        assert result.headers["content-type"] == "application/json"
        definition = op.responses.get(str(result.code))
        if definition is None and result.code >= 400:
            definition = "error"
        if definition is not None:
            assert is_valid(definition, result.body), (definition, result.body)

    def stored(self) -> StoredConfiguration:
        """What the store holds now."""
        results: list[StoredConfiguration] = []
        self.store.load().addCallback(results.append)
        return results[0]

    def create_dataset(self, **body: Any) -> dict[str, Any]:
        """Create a dataset (primary A by default) and return its JSON."""
        body.setdefault("primary", NODE_A)
        result = self.request("POST", "/v1/configuration/datasets", body)
        assert result.code == 201, result
        return dict(result.body)

    def refused(
        self,
        code: int,
        method: str,
        path: str,
        body: Any = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> str:
        """
        Assert the request gets ``code`` and changes nothing; the description.

        The answer is ``{"description": ...}``, with the original API's
        ``errors`` list of strings too when the body broke the schema.
        """
        before = self.stored()
        result = self.request(method, path, body, raw=raw, headers=headers)
        assert result.code == code, result
        assert set(result.body) - {"errors"} == {"description"}, result.body
        if "errors" in result.body:
            assert result.body["errors"], result.body
            assert all(isinstance(e, str) for e in result.body["errors"])
        after = self.stored()
        assert (after.generation, after.deployment) == (
            before.generation,
            before.deployment,
        )
        assert self.configuration.deployment == before.deployment
        return str(result.body["description"])


@pytest.fixture
def api() -> APIHarness:
    """A fresh API harness."""
    return APIHarness()


# --------------------------------------------------------------------------
# version, openapi, routing


def test_version(api: APIHarness) -> None:
    """GET /v1/version answers Flocker's version."""
    result = api.request("GET", "/v1/version")
    assert (result.code, result.body) == (200, {"flocker": __version__})


def test_unknown_path(api: APIHarness) -> None:
    """An unknown path is a JSON 404."""
    assert "no such path" in api.refused(404, "GET", "/v1/nothing/here")


def test_wrong_method(api: APIHarness) -> None:
    """A known path with the wrong method is a JSON 405 with an Allow header."""
    api.refused(405, "PUT", "/v1/configuration/datasets", {})
    result = api.request("PATCH", "/v1/version")
    assert result.code == 405
    assert "GET" in result.headers["allow"]


def test_openapi_lists_every_operation(api: APIHarness) -> None:
    """The OpenAPI document has every operation, and every reference resolves."""
    result = api.request("GET", "/v1/openapi.json")
    assert result.code == 200
    document = result.body
    assert document["openapi"].startswith("3.")
    found = {
        (method.upper(), path, spec["operationId"])
        for path, methods in document["paths"].items()
        for method, spec in methods.items()
    }
    assert found == {(op.method, op.path, op.name) for op in operations().values()}
    schemas = document["components"]["schemas"]

    def refs(value: Any) -> list[str]:
        if isinstance(value, dict):
            return [r for v in value.values() for r in refs(v)] + (
                [value["$ref"]] if "$ref" in value else []
            )
        if isinstance(value, list):
            return [r for v in value for r in refs(v)]
        return []

    all_refs = refs(document)
    assert all_refs
    for ref in all_refs:
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[1] in schemas


def test_openapi_request_schemas_validate(api: APIHarness) -> None:
    """The request schema the document publishes is the one that validates bodies."""
    document = api.request("GET", "/v1/openapi.json").body
    create = document["paths"]["/v1/configuration/datasets"]["post"]
    ref = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/dataset_create"
    assert document["components"]["schemas"]["maximum_size"]["minimum"] == MIB
    description = api.refused(
        400, "POST", "/v1/configuration/datasets", {"primary": NODE_A, "x": 1}
    )
    assert "x" in description


# --------------------------------------------------------------------------
# datasets: creation


def test_list_datasets_empty(api: APIHarness) -> None:
    """With no datasets the list is empty and carries a configuration tag."""
    result = api.request("GET", "/v1/configuration/datasets")
    assert (result.code, result.body) == (200, [])
    assert result.headers["x-configuration-tag"]


def test_create_dataset(api: APIHarness) -> None:
    """Creating a dataset answers 201 with it; it is stored before the answer."""
    body = api.create_dataset(maximum_size=64 * MIB, metadata={"name": "pg"})
    assert body == {
        "dataset_id": body["dataset_id"],
        "primary": NODE_A,
        "maximum_size": 64 * MIB,
        "metadata": {"name": "pg"},
        "deleted": False,
    }
    stored = api.stored().deployment
    dataset, primary = stored.get_dataset(body["dataset_id"])
    assert (dataset.maximum_size, dict(dataset.metadata), primary) == (
        64 * MIB,
        {"name": "pg"},
        NODE_A,
    )
    listed = api.request("GET", "/v1/configuration/datasets").body
    assert listed == [body]


def test_create_dataset_minimal(api: APIHarness) -> None:
    """Only primary is required: a UUID is generated, no size, no metadata."""
    body = api.create_dataset()
    assert set(body) == {"dataset_id", "primary", "metadata", "deleted"}
    assert re.fullmatch(r"[0-9a-f-]{36}", body["dataset_id"])


def test_create_dataset_with_id(api: APIHarness) -> None:
    """A given dataset_id is used; upper case is accepted and lowered."""
    body = api.create_dataset(dataset_id=DATASET.upper())
    assert body["dataset_id"] == DATASET


def test_create_dataset_on_configured_node(api: APIHarness) -> None:
    """A node known only from the configuration may be a primary."""
    api.state.remove_node(NODE_B)
    api.configuration.change(
        lambda d: d.add_dataset(Dataset(dataset_id=OTHER_DATASET), NODE_B)
    )
    body = api.create_dataset(dataset_id=DATASET, primary=NODE_B)
    assert body["primary"] == NODE_B


def test_create_duplicate_dataset(api: APIHarness) -> None:
    """A dataset_id already in use is refused with 409."""
    api.create_dataset(dataset_id=DATASET)
    description = api.refused(
        409,
        "POST",
        "/v1/configuration/datasets",
        {"primary": NODE_B, "dataset_id": DATASET},
    )
    assert DATASET in description


def test_create_dataset_unknown_primary(api: APIHarness) -> None:
    """A primary that is no node of the cluster is refused with 400 saying why."""
    description = api.refused(
        400, "POST", "/v1/configuration/datasets", {"primary": UNKNOWN_NODE}
    )
    assert UNKNOWN_NODE in description
    assert "not a node of this cluster" in description


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"primary": "10.0.0.1"}, "primary"),
        ({"primary": NODE_A, "dataset_id": "not-a-uuid"}, "dataset_id"),
        ({"primary": NODE_A, "dataset_id": DATASET + "0"}, "dataset_id"),
        ({"primary": 7}, "primary"),
        ({"primary": NODE_A, "maximum_size": "big"}, "maximum_size"),
        ({"primary": NODE_A, "maximum_size": 1.5 * MIB + 0.5}, "maximum_size"),
        ({"primary": NODE_A, "maximum_size": True}, "maximum_size"),
        ({"primary": NODE_A, "maximum_size": MIB - 1}, "maximum_size"),
        ({"primary": NODE_A, "maximum_size": 0}, "maximum_size"),
        ({"primary": NODE_A, "maximum_size": -MIB}, "maximum_size"),
        ({"primary": NODE_A, "maximum_size": 2**63}, "maximum_size"),
        ({"primary": NODE_A, "metadata": {"name": 1}}, "metadata/name"),
        ({"primary": NODE_A, "metadata": ["name"]}, "metadata"),
        ({"primary": NODE_A, "metadata": {"k": "v" * 257}}, "metadata/k"),
        (
            {"primary": NODE_A, "metadata": {f"k{i}": "v" for i in range(17)}},
            "metadata",
        ),
        ({"primary": NODE_A, "deleted": True}, "deleted"),
        ({"primary": NODE_A, "colour": "blue"}, "colour"),
        ({}, "primary"),
    ],
)
def test_create_dataset_bad_fields(
    api: APIHarness, body: dict[str, Any], field: str
) -> None:
    """A body with a wrong type, unknown field or out-of-range value gets 400 naming it."""
    description = api.refused(400, "POST", "/v1/configuration/datasets", body)
    assert field in description


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"not json",
        b"[]",
        b'"primary"',
        b"null",
        b"\xff\xfe",
        b'{"primary": NaN}',
        b'{"primary": "' + NODE_A.encode() + b'", "maximum_size": Infinity}',
    ],
)
def test_create_dataset_malformed(api: APIHarness, raw: bytes) -> None:
    """A body that is not a JSON object is refused with 400."""
    api.refused(400, "POST", "/v1/configuration/datasets", raw=raw)


def test_oversized_body(api: APIHarness) -> None:
    """A body over the size limit is refused with 413 before it is parsed."""
    body = {"primary": NODE_A, "metadata": {"name": "x" * MAXIMUM_BODY_SIZE}}
    description = api.refused(413, "POST", "/v1/configuration/datasets", body)
    assert str(MAXIMUM_BODY_SIZE) in description


def test_body_at_limit_is_read(api: APIHarness) -> None:
    """A body just within the size limit is parsed (and judged on its content)."""
    raw = json.dumps({"primary": NODE_A}).encode()
    raw = raw[:-1] + b" " * (MAXIMUM_BODY_SIZE - len(raw)) + b"}"
    assert len(raw) == MAXIMUM_BODY_SIZE
    result = api.request("POST", "/v1/configuration/datasets", raw=raw)
    assert result.code == 201


# --------------------------------------------------------------------------
# datasets: updates, moves, deletion


def test_move_dataset(api: APIHarness) -> None:
    """Posting a new primary moves the dataset."""
    api.create_dataset(dataset_id=DATASET, maximum_size=64 * MIB)
    result = api.request(
        "POST", f"/v1/configuration/datasets/{DATASET}", {"primary": NODE_B}
    )
    assert result.code == 200
    assert result.body["primary"] == NODE_B
    assert result.body["maximum_size"] == 64 * MIB
    assert api.stored().deployment.get_dataset(DATASET)[1] == NODE_B


def test_update_size_and_metadata(api: APIHarness) -> None:
    """maximum_size and metadata can be changed (and the size removed with null)."""
    api.create_dataset(dataset_id=DATASET, maximum_size=64 * MIB)
    result = api.request(
        "POST",
        f"/v1/configuration/datasets/{DATASET}",
        {"maximum_size": 128 * MIB, "metadata": {"name": "new"}},
    )
    assert result.code == 200
    assert (result.body["maximum_size"], result.body["metadata"]) == (
        128 * MIB,
        {"name": "new"},
    )
    result = api.request(
        "POST", f"/v1/configuration/datasets/{DATASET}", {"maximum_size": None}
    )
    assert "maximum_size" not in result.body
    assert result.body["metadata"] == {"name": "new"}
    assert api.stored().deployment.get_dataset(DATASET)[0].maximum_size is None


def test_update_unknown_dataset(api: APIHarness) -> None:
    """Updating a dataset that does not exist is a 404."""
    description = api.refused(
        404, "POST", f"/v1/configuration/datasets/{DATASET}", {"primary": NODE_B}
    )
    assert DATASET in description


def test_update_bad_dataset_id(api: APIHarness) -> None:
    """
    A dataset id in the path that is not a UUID is a 404 "Dataset not
    found.", as the original API answered.
    """
    description = api.refused(
        404, "POST", "/v1/configuration/datasets/nope", {"primary": NODE_B}
    )
    assert description == "Dataset not found."


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"primary": "node-b"}, "primary"),
        ({"maximum_size": 12}, "maximum_size"),
        ({"metadata": None}, "metadata"),
        ({"dataset_id": DATASET}, "dataset_id"),
        ({"deleted": False}, "deleted"),
    ],
)
def test_update_bad_fields(api: APIHarness, body: dict[str, Any], field: str) -> None:
    """An update with a bad or unknown field gets 400 naming it."""
    api.create_dataset(dataset_id=DATASET)
    description = api.refused(
        400, "POST", f"/v1/configuration/datasets/{DATASET}", body
    )
    assert field in description


def test_move_to_unknown_node(api: APIHarness) -> None:
    """Moving a dataset to a node that is not in the cluster is a 400."""
    api.create_dataset(dataset_id=DATASET)
    description = api.refused(
        400,
        "POST",
        f"/v1/configuration/datasets/{DATASET}",
        {"primary": UNKNOWN_NODE},
    )
    assert UNKNOWN_NODE in description


def test_move_deleted_dataset(api: APIHarness) -> None:
    """
    A deleted dataset can be neither moved (405, as the original API) nor
    changed (409).
    """
    api.create_dataset(dataset_id=DATASET)
    assert api.request("DELETE", f"/v1/configuration/datasets/{DATASET}").code == 200
    description = api.refused(
        405, "POST", f"/v1/configuration/datasets/{DATASET}", {"primary": NODE_B}
    )
    assert "deleted" in description
    api.refused(
        409,
        "POST",
        f"/v1/configuration/datasets/{DATASET}",
        {"metadata": {"a": "b"}},
    )


def test_move_dataset_in_use(api: APIHarness) -> None:
    """A dataset a container mounts cannot move alone: 409 naming the container."""
    api.create_dataset(dataset_id=DATASET)
    _add_app(api, "db", DATASET, NODE_A)
    description = api.refused(
        409, "POST", f"/v1/configuration/datasets/{DATASET}", {"primary": NODE_B}
    )
    assert "db" in description


def test_move_leased_dataset_refused_on_request(api: APIHarness) -> None:
    """A dataset leased on its node is not moved but refused (409) with X-Refuse-If-Leased."""
    api.create_dataset(dataset_id=DATASET)
    lease = {"dataset_id": DATASET, "node_uuid": NODE_A, "expires": None}
    assert api.request("POST", "/v1/configuration/leases", lease).code == 201
    description = api.refused(
        409,
        "POST",
        f"/v1/configuration/datasets/{DATASET}",
        {"primary": NODE_B},
        headers={"X-Refuse-If-Leased": "true"},
    )
    assert "leased" in description


def _add_app(api: APIHarness, name: str, dataset_id: str, node: str) -> None:
    app = Application(
        name=name,
        image="busybox",
        volumes=[AttachedVolume(dataset_id=dataset_id, mountpoint="/data")],
    )
    api.configuration.change(lambda d: d.add_application(app, node))


def test_delete_dataset(api: APIHarness) -> None:
    """Deleting marks the dataset deleted and answers it; deleting again is the same."""
    created = api.create_dataset(dataset_id=DATASET)
    result = api.request("DELETE", f"/v1/configuration/datasets/{DATASET}")
    assert (result.code, result.body) == (200, {**created, "deleted": True})
    assert api.stored().deployment.get_dataset(DATASET)[0].deleted
    again = api.request("DELETE", f"/v1/configuration/datasets/{DATASET}")
    assert (again.code, again.body) == (200, result.body)
    listed = api.request("GET", "/v1/configuration/datasets").body
    assert listed == [result.body]


def test_delete_unknown_dataset(api: APIHarness) -> None:
    """
    Deleting a dataset that does not exist is a 404, and so is a malformed
    id ("Dataset not found.", as the original API answered).
    """
    api.refused(404, "DELETE", f"/v1/configuration/datasets/{DATASET}")
    description = api.refused(404, "DELETE", "/v1/configuration/datasets/xyz")
    assert description == "Dataset not found."


def test_delete_dataset_in_use(api: APIHarness) -> None:
    """A dataset a container mounts cannot be deleted: 409."""
    api.create_dataset(dataset_id=DATASET)
    _add_app(api, "db", DATASET, NODE_A)
    api.refused(409, "DELETE", f"/v1/configuration/datasets/{DATASET}")


# --------------------------------------------------------------------------
# state


def test_state_datasets(api: APIHarness) -> None:
    """Mounted datasets nodes report are listed with their node and path."""
    api.state.update_node_state(
        NodeState(
            uuid=NODE_A,
            datasets={
                DATASET: DatasetState(
                    dataset_id=DATASET, path="/flocker/d", maximum_size=64 * MIB
                ),
                OTHER_DATASET: DatasetState(dataset_id=OTHER_DATASET, path=None),
            },
        )
    )
    api.state.update_node_state(
        NodeState(
            uuid=NODE_B,
            datasets={
                OTHER_DATASET: DatasetState(dataset_id=OTHER_DATASET, path="/f/o")
            },
        )
    )
    result = api.request("GET", "/v1/state/datasets")
    assert result.body == [
        {
            "dataset_id": DATASET,
            "primary": NODE_A,
            "path": "/flocker/d",
            "maximum_size": 64 * MIB,
        },
        {"dataset_id": OTHER_DATASET, "primary": NODE_B, "path": "/f/o"},
    ]


def test_state_nodes(api: APIHarness) -> None:
    """The nodes that reported are listed with their addresses."""
    api.state.update_node_state(NodeState(uuid=UNKNOWN_NODE))
    result = api.request("GET", "/v1/state/nodes")
    assert result.body == [
        {"uuid": NODE_A, "host": "10.0.0.1"},
        {"uuid": NODE_B, "host": "10.0.0.2"},
        {"uuid": UNKNOWN_NODE},
    ]


def test_node_by_era(api: APIHarness) -> None:
    """
    A node is found by its era, answered as ``{"uuid": ...}`` like the
    original API; an unknown era is a 404, a bad one a 400.
    """
    result = api.request("GET", f"/v1/state/nodes/by_era/{ERA_A}")
    assert (result.code, result.body) == (200, {"uuid": NODE_A})
    api.refused(404, "GET", f"/v1/state/nodes/by_era/{DATASET}")
    api.refused(400, "GET", "/v1/state/nodes/by_era/yesterday")


# --------------------------------------------------------------------------
# configuration tags


def test_tag_changes_with_configuration(api: APIHarness) -> None:
    """Writes answer the new tag; reads answer the current one."""
    first = api.request("GET", "/v1/configuration/datasets").headers[
        "x-configuration-tag"
    ]
    created = api.request(
        "POST", "/v1/configuration/datasets", {"primary": NODE_A}
    ).headers["x-configuration-tag"]
    assert created != first
    for path in ("datasets", "leases", "containers"):
        read = api.request("GET", f"/v1/configuration/{path}")
        assert read.headers["x-configuration-tag"] == created


def test_matching_tag_allows_write(api: APIHarness) -> None:
    """A write with the current tag in X-If-Configuration-Matches succeeds."""
    tag = api.request("GET", "/v1/configuration/datasets").headers[
        "x-configuration-tag"
    ]
    result = api.request(
        "POST",
        "/v1/configuration/datasets",
        {"primary": NODE_A},
        headers={"X-If-Configuration-Matches": tag},
    )
    assert result.code == 201


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/configuration/datasets", {"primary": NODE_A}),
        ("POST", f"/v1/configuration/datasets/{DATASET}", {"primary": NODE_B}),
        ("DELETE", f"/v1/configuration/datasets/{DATASET}", None),
        (
            "POST",
            "/v1/configuration/leases",
            {"dataset_id": DATASET, "node_uuid": NODE_A, "expires": None},
        ),
        (
            "POST",
            "/v1/configuration/containers",
            {"node_uuid": NODE_A, "name": "web", "image": "busybox"},
        ),
    ],
)
def test_stale_tag(api: APIHarness, method: str, path: str, body: Any) -> None:
    """A write with a stale tag is refused with 412 and changes nothing."""
    stale = api.request("GET", "/v1/configuration/datasets").headers[
        "x-configuration-tag"
    ]
    api.create_dataset(dataset_id=DATASET)
    description = api.refused(
        412, method, path, body, headers={"X-If-Configuration-Matches": stale}
    )
    assert "changed" in description


@pytest.mark.parametrize("tag", ["", "garbage", "1-xyz", "99-" + "0" * 20])
def test_bad_tag(api: APIHarness, tag: str) -> None:
    """A tag that is not one of this configuration's is refused with 412."""
    api.refused(
        412,
        "POST",
        "/v1/configuration/datasets",
        {"primary": NODE_A},
        headers={"X-If-Configuration-Matches": tag},
    )


def test_same_generation_other_content(api: APIHarness) -> None:
    """A tag of another configuration at the same generation does not match."""
    tag = api.request("GET", "/v1/configuration/datasets").headers[
        "x-configuration-tag"
    ]
    generation = tag.split("-")[0]
    forged = f"{generation}-{'f' * 20}"
    api.refused(
        412,
        "POST",
        "/v1/configuration/datasets",
        {"primary": NODE_A},
        headers={"X-If-Configuration-Matches": forged},
    )


def test_schema_files_are_valid() -> None:
    """Every definition is valid JSON Schema 2020-12; every operation names real ones."""
    from jsonschema import Draft202012Validator

    from flocker.control._httpschema import definitions

    defs = definitions()
    for name in defs:
        Draft202012Validator.check_schema({"$defs": defs, "$ref": f"#/$defs/{name}"})
    for op in operations().values():
        named = [op.request, *op.responses.values()]
        assert all(n is None or n in defs for n in named), op.name
        assert op.method in ("GET", "POST", "DELETE")


def test_every_path_parameter_has_its_schema() -> None:
    """
    The OpenAPI document gives each path parameter the schema of what it
    names (a dataset id is a UUID, not any string), and declares 400 for
    every operation with a body and 403 and 413 for every operation.
    """
    from flocker.control._httpschema import openapi_document

    document = openapi_document("test")
    schemas = document["components"]["schemas"]
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            names = re.findall(r"\{([a-z_]+)\}", path)
            declared = {
                p["name"]: p["schema"]["$ref"].rsplit("/", 1)[1]
                for p in operation.get("parameters", [])
                if p["in"] == "path"
            }
            assert set(declared) == set(names), (method, path)
            assert all(d in schemas for d in declared.values()), (method, path)
            if "dataset_id" in declared:
                assert declared["dataset_id"] == "dataset_id"
            codes = set(operation["responses"])
            assert {"403", "413"} <= codes, (method, path)
            if "requestBody" in operation:
                assert "400" in codes, (method, path)


def test_configuration_tag_has_its_declared_form(api: APIHarness) -> None:
    """The X-Configuration-Tag answered matches the pattern the document declares."""
    from flocker.control._httpschema import openapi_document

    get = openapi_document("test")["paths"]["/v1/configuration/datasets"]["get"]
    declared = get["responses"]["200"]["headers"]["X-Configuration-Tag"]
    assert declared["required"] is True
    created = api.request("POST", "/v1/configuration/datasets", {"primary": NODE_A})
    for result in (api.request("GET", "/v1/configuration/datasets"), created):
        tag = result.headers["x-configuration-tag"]
        assert re.fullmatch(declared["schema"]["pattern"].rstrip("$"), tag), tag


def test_integral_numbers_with_a_fraction_are_integers(api: APIHarness) -> None:
    """
    A size written ``1048576.0`` or ``2e6`` is the integer JSON Schema
    says it is: accepted, stored and answered as an int.
    """
    for written, size in (("1048576.0", MIB), ("2e6", 2_000_000)):
        result = api.request(
            "POST",
            "/v1/configuration/datasets",
            raw=f'{{"primary": "{NODE_A}", "maximum_size": {written}}}'.encode(),
        )
        assert result.code == 201, result
        assert result.body["maximum_size"] == size
        stored = api.stored().deployment.get_dataset(result.body["dataset_id"])[0]
        assert type(stored.maximum_size) is int and stored.maximum_size == size


@pytest.mark.parametrize("value", [NODE_A + "\n", "web\n"])
def test_a_pattern_ends_at_the_end_of_the_string(api: APIHarness, value: str) -> None:
    """
    A value that matches a pattern only before a final newline (Python's
    ``$``, not JSON Schema's) breaks the schema: 400 naming the field.
    """
    field = "node_uuid" if value.startswith(NODE_A) else "name"
    body = {"node_uuid": NODE_A, "name": "web", "image": "busybox", field: value}
    description = api.refused(400, "POST", "/v1/configuration/containers", body)
    assert description.startswith(f"{field}: ") and "expected format" in description
    assert api.request("GET", "/v1/configuration/containers").body == []


# --------------------------------------------------------------------------
# compatibility with the original Flocker v1 API


def test_create_dataset_null_maximum_size(api: APIHarness) -> None:
    """``"maximum_size": null`` on create means no limit, as in the original API."""
    result = api.request(
        "POST",
        "/v1/configuration/datasets",
        {"primary": NODE_A, "dataset_id": DATASET, "maximum_size": None},
    )
    assert result.code == 201, result
    assert "maximum_size" not in result.body
    assert api.stored().deployment.get_dataset(DATASET)[0].maximum_size is None


def test_schema_violation_lists_errors(api: APIHarness) -> None:
    """
    A body breaking the schema is answered with the clear ``description``
    and the original API's ``errors``: one message per violation.
    """
    result = api.request(
        "POST",
        "/v1/configuration/datasets",
        {"primary": "not-a-node", "maximum_size": 12, "colour": "blue"},
    )
    assert result.code == 400
    assert isinstance(result.body["description"], str)
    errors = result.body["errors"]
    assert len(errors) == 3, errors
    assert any("colour" in e for e in errors)
    assert any("maximum_size" in e for e in errors)
    assert any("primary" in e for e in errors)


def test_model_refusal_has_no_errors_list(api: APIHarness) -> None:
    """A refusal that is not a schema violation answers only ``description``."""
    result = api.request("DELETE", f"/v1/configuration/datasets/{DATASET}")
    assert (result.code, set(result.body)) == (404, {"description"})
