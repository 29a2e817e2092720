"""
Unit tests of the REST API against hostile input (in memory, via StubTreq):
request bodies nested too deep, and dataset agents that never answer.
"""

from __future__ import annotations

import json
import re
from typing import Any

import attrs
import pytest
from treq.testing import StubTreq

from flocker.control import ControlAMPService
from flocker.control._httpjson import MAXIMUM_JSON_DEPTH, json_depth
from flocker.control._httpschema import operations
from flocker.control._protocol_agent import AgentAMPClient
from flocker.control._transfers import TRANSFERS_BOUND
from flocker.control.rest_service import make_api_resource
from flocker.control.test.test_httpapi import DATASET, NODE_A, NODE_B, APIHarness
from flocker.control.test.test_protocol import Control, connect, identify

#: Every operation that reads a JSON body, as (method, path) with its path
#: parameters filled in.
BODY_OPERATIONS = sorted(
    (op.method, re.sub(r"\{[a-z_]+\}", DATASET, op.path))
    for op in operations().values()
    if op.request is not None
)


@pytest.fixture
def api() -> APIHarness:
    """The API with DATASET on node A."""
    harness = APIHarness()
    harness.create_dataset(dataset_id=DATASET)
    return harness


@pytest.mark.parametrize("levels", [1_000, 100_000])
@pytest.mark.parametrize(("method", "path"), BODY_OPERATIONS)
def test_deeply_nested_body_refused(
    api: APIHarness, method: str, path: str, levels: int
) -> None:
    """
    A body nested deeper than the limit gets 400 with a JSON description
    naming the limit, on every operation with a body, and changes nothing.
    """
    before = api.stored()
    raw = ("[" * levels + "]" * levels).encode()
    description = api.refused(400, method, path, raw=raw)
    assert str(MAXIMUM_JSON_DEPTH) in description
    assert api.stored() == before


def test_deep_objects_refused(api: APIHarness) -> None:
    """Objects nested too deep, unterminated, are refused as arrays are."""
    raw = ('{"a":' * 100_000).encode()
    description = api.refused(400, "POST", "/v1/configuration/datasets", raw=raw)
    assert str(MAXIMUM_JSON_DEPTH) in description


def test_nesting_at_limit_is_parsed(api: APIHarness) -> None:
    """A body exactly at the depth limit is parsed and judged on its content."""
    metadata: Any = "x"
    for _ in range(MAXIMUM_JSON_DEPTH - 2):
        metadata = [metadata]
    body = json.dumps({"primary": NODE_A, "metadata": {"name": metadata}})
    assert json_depth(body) == MAXIMUM_JSON_DEPTH
    description = api.refused(400, "POST", "/v1/configuration/datasets", raw=body.encode())
    assert str(MAXIMUM_JSON_DEPTH) not in description


def test_brackets_in_strings_do_not_nest(api: APIHarness) -> None:
    """Brackets inside strings (escaped quotes included) are not nesting."""
    name = '\\"' + "[" * 100 + "{" * 100
    raw = f'{{"primary": "{NODE_A}", "metadata": {{"name": "{name}"}}}}'.encode()
    result = api.request("POST", "/v1/configuration/datasets", raw=raw)
    assert result.code == 201
    assert result.body["metadata"] == {"name": json.loads(f'"{name}"')}


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("", 0),
        ("1", 0),
        ("[]", 1),
        ('{"a": [1, {"b": []}]}', 4),
        ('["]]]["]', 1),
        ('["\\\\", []]', 2),
        ('["\\"[["]', 1),
        ('["\\n[", "\\\\"]', 1),
    ],
)
def test_json_depth(text: str, depth: int) -> None:
    """The depth counts brackets outside strings only."""
    assert json_depth(text) == depth


def test_json_depth_stops_above() -> None:
    """With a bound, counting stops at the first level past it."""
    assert json_depth("[" * 1_000, stop_above=64) == 65


# -- transfers: an agent that never answers ------------------------------------


def _transfer(node_uuid: str | None = None) -> dict[str, Any]:
    """A transfer of DATASET as an agent reports it (with its node, if given)."""
    entry: dict[str, Any] = {
        "dataset_id": DATASET, "snapshot": "s", "base": None, "bytes": 10, "size": None,
    }
    if node_uuid is not None:
        entry["node_uuid"] = node_uuid
    return entry


@attrs.define
class Cluster:
    """The API served with a real control AMP service, all on one Clock."""

    harness: APIHarness
    control: Control
    treq: StubTreq

    def get(self, path: str) -> list[Any]:
        """Start a GET; the list receives the (code, headers, body) when it is answered."""
        results: list[Any] = []

        def got(response: Any) -> Any:
            def read(content: bytes) -> None:
                header = response.headers.getRawHeaders(b"x-unanswered-nodes")
                results.append((response.code, header, json.loads(content)))

            return response.content().addCallback(read)

        d = self.treq.get("https://control.example" + path)  # type: ignore[attr-defined]
        d.addCallback(got)
        d.addErrback(results.append)
        self.treq.flush()
        return results


@pytest.fixture
def cluster() -> Cluster:
    """The API, its control AMP service, and node A's and B's dataset agents."""
    harness = APIHarness()
    service = ControlAMPService(
        harness.clock, harness.configuration, harness.state, identify=identify
    )
    service.startService()
    control = Control(harness.clock, harness.configuration, harness.state, service)
    treq = StubTreq(
        make_api_resource(harness.configuration, harness.state, harness.clock, service)
    )
    return Cluster(harness, control, treq)


def _agent(cluster: Cluster, node_uuid: str) -> Any:
    """Connect ``node_uuid``'s dataset agent, receiving DATASET."""
    client = AgentAMPClient(
        cluster.harness.clock,
        None,  # type: ignore[arg-type]
        "dataset",
        lambda c, s: None,
        transfers=lambda: [_transfer()],
    )
    return connect(cluster.control, node_uuid, client=client)


def test_transfers_answer_within_bound_without_stalled_agent(cluster: Cluster) -> None:
    """
    With node B's agent connection stalled, ``GET /v1/state/transfers``
    answers once `TRANSFERS_BOUND` seconds have passed, with node A's
    transfers, and names node B in ``X-Unanswered-Nodes``.
    """
    a = _agent(cluster, NODE_A)
    _agent(cluster, NODE_B)  # connected, but its connection is never pumped again
    results = cluster.get("/v1/state/transfers")
    a.pump.flush()
    cluster.treq.flush()
    assert results == []
    cluster.harness.clock.advance(TRANSFERS_BOUND - 0.1)
    cluster.treq.flush()
    assert results == []
    cluster.harness.clock.advance(0.1)
    cluster.treq.flush()
    assert results == [(200, [NODE_B.encode()], [_transfer(NODE_A)])]


def test_transfers_answer_at_once_when_all_answer(cluster: Cluster) -> None:
    """When every agent answers, the answer comes without waiting and has no header."""
    agents = [_agent(cluster, NODE_A), _agent(cluster, NODE_B)]
    results = cluster.get("/v1/state/transfers")
    for agent in agents:
        agent.pump.flush()
    cluster.treq.flush()
    assert results == [(200, None, [_transfer(NODE_A), _transfer(NODE_B)])]


def test_transfers_name_every_silent_node(cluster: Cluster) -> None:
    """With both agents stalled, the answer is empty and names both nodes, sorted."""
    _agent(cluster, NODE_B)
    _agent(cluster, NODE_A)
    results = cluster.get("/v1/state/transfers")
    cluster.harness.clock.advance(TRANSFERS_BOUND)
    cluster.treq.flush()
    assert results == [(200, [f"{NODE_A},{NODE_B}".encode()], [])]


@pytest.mark.parametrize(
    "path",
    [
        f"/v1/configuration/datasets/{DATASET}%ff",
        "/v1/environments/%c3%28",
        "/v1/%ff/version",
    ],
)
def test_url_not_utf8_is_a_json_404(api: APIHarness, path: str) -> None:
    """
    A path that is not UTF-8 once percent-decoded names nothing: 404 with a
    JSON description (not a plain-text error), and nothing changes.
    """
    before = api.stored()
    for method in ("GET", "POST", "DELETE"):
        result = api.request(method, path, raw=b"{}")
        assert result.code == 404, result
        assert result.headers["content-type"] == "application/json"
        assert "not UTF-8" in result.body["description"]
    assert api.stored() == before
