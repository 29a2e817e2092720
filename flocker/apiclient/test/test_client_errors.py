"""
Unit tests of `FlockerClient` beyond the contract: how answers the contract
cannot provoke map to exceptions, what it logs, how it is constructed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.web.resource import Resource
from twisted.web.server import Request

from flocker.apiclient import (
    BadRequest,
    ConfigurationChanged,
    FlockerAPIError,
    FlockerClient,
    ResponseError,
    UnknownDataset,
)
from flocker.apiclient.testtools import ClientFixture, result_of
from flocker.ca.testtools import make_test_cluster_credentials


class _Canned(Resource):
    """Answers every request with one status and body; remembers requests."""

    isLeaf = True

    def __init__(self, code: int, body: bytes) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted's
        self.code = code
        self.body = body
        self.requests: list[tuple[bytes, bytes, dict[bytes, Any], bytes]] = []

    def render(self, request: Request) -> bytes:
        """Record the request; answer the canned response."""
        assert request.content is not None
        self.requests.append(
            (
                request.method,
                request.uri,
                dict(request.requestHeaders.getAllRawHeaders()),
                request.content.read(),
            )
        )
        request.setResponseCode(self.code)
        return self.body


def _client(resource: Resource) -> tuple[FlockerClient, ClientFixture]:
    treq = StubTreq(resource)
    client = FlockerClient(treq, "https://control:4523")
    return client, ClientFixture(
        client=client,
        nodes=[],
        era=uuid4(),
        clock=Clock(),
        converge=lambda: None,
        heard_from=lambda node: None,
        fence=lambda node: None,
        flush=treq.flush,
    )


@pytest.mark.parametrize(
    ("code", "body", "error"),
    [
        (500, b'{"description": "boom", "task_uuid": "t"}', ResponseError),
        (502, b"<html>bad gateway</html>", ResponseError),
        (400, b'{"description": "primary: bad"}', BadRequest),
        (404, b'{"description": "unknown dataset"}', UnknownDataset),
        (412, b'{"description": "changed"}', ConfigurationChanged),
    ],
)
def test_error_mapping(code: int, body: bytes, error: type[FlockerAPIError]) -> None:
    """Statuses map to typed exceptions carrying the API's description."""
    client, fixture = _client(_Canned(code, body))
    with pytest.raises(FlockerAPIError) as raised:
        result_of(fixture, client.move_dataset(uuid4(), uuid4()))
    assert type(raised.value) is error
    assert raised.value.code == code
    expected = (
        json.loads(body)["description"] if body.startswith(b"{") else body.decode()
    )
    assert raised.value.description == expected


def test_request_shape() -> None:
    """A write sends JSON, and the configuration tag header when given."""
    primary, dataset_id = uuid4(), uuid4()
    answer = {
        "primary": str(primary),
        "dataset_id": str(dataset_id),
        "maximum_size": 64 << 20,
        "metadata": {"a": "b"},
        "deleted": False,
    }
    resource = _Canned(201, json.dumps(answer).encode())
    client, fixture = _client(resource)
    dataset = result_of(
        fixture,
        client.create_dataset(
            primary, 64 << 20, dataset_id, {"a": "b"}, configuration_tag="3-abc"
        ),
    )
    assert (dataset.primary, dataset.dataset_id) == (primary, dataset_id)
    ((method, uri, headers, content),) = resource.requests
    assert (method, uri) == (b"POST", b"/v1/configuration/datasets")
    assert headers[b"X-If-Configuration-Matches"] == [b"3-abc"]
    assert headers[b"Content-Type"] == [b"application/json"]
    assert json.loads(content) == {k: v for k, v in answer.items() if k != "deleted"}


def test_requests_are_logged(eliot_logger: Any) -> None:
    """Each request is a flocker:apiclient:request action with its status."""
    client, fixture = _client(_Canned(200, b'{"flocker": "1.2"}'))
    assert result_of(fixture, client.version()) == "1.2"
    (start, end) = [
        m
        for m in eliot_logger.messages
        if m.get("action_type") == "flocker:apiclient:request"
    ]
    assert (start["method"], start["url"]) == ("GET", "https://control:4523/v1/version")
    assert end["status"] == 200


def test_from_cluster_config(tmp_path: Path) -> None:
    """The client is built from a cluster.json-like mapping (port 4523 by default)."""
    cluster = make_test_cluster_credentials(tmp_path, nodes=0, users=("bob",))
    client = FlockerClient.from_cluster_config(
        MemoryReactorClock(),
        {
            "control_service": "fd00::1",
            "certificates_directory": str(cluster.user_directories["bob"]),
            "user": "bob",
        },
    )
    assert client.base_url == "https://[fd00::1]:4523"
