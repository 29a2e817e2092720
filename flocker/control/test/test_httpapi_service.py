"""
Unit tests of the REST API's service parts: deleted-dataset cleanup, request
logging, unexpected errors (500), and the Site's body limit.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import attrs
import pytest
from eliot import MemoryLogger
from eliot.testing import swap_logger
from hypothesis import given, settings
from hypothesis import strategies as st
from treq.testing import StubTreq
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from flocker.control import (
    Application,
    ClusterStateService,
    ConfigurationService,
    Deployment,
    MemoryConfigurationStore,
    Port,
    StoredConfiguration,
)
from flocker.control._cloning import clone_environment
from flocker.control._maintenance import CopyPortMover, DeletedDatasetCleaner
from flocker.control._state import DatasetState, NodeState
from flocker.control.rest_service import (
    MAXIMUM_BODY_SIZE,
    make_api_resource,
    make_api_site,
)
from flocker.control.test.test_httpapi import DATASET, NODE_A, APIHarness


@pytest.fixture
def api() -> APIHarness:
    """A fresh API harness."""
    return APIHarness()


# --------------------------------------------------------------------------
# deleted datasets leave the configuration


def test_cleanup_after_nodes_report(api: APIHarness) -> None:
    """A deleted dataset leaves the configuration once no node reports it."""
    cleaner = DeletedDatasetCleaner(api.configuration, api.state)
    cleaner.startService()
    api.create_dataset(dataset_id=DATASET)
    api.state.update_node_state(
        NodeState(
            uuid=NODE_A,
            datasets={DATASET: DatasetState(dataset_id=DATASET, path="/d")},
        )
    )
    api.request("DELETE", f"/v1/configuration/datasets/{DATASET}")
    # Node A still has it: it stays, marked deleted.
    assert api.stored().deployment.get_dataset(DATASET)[0].deleted
    api.state.update_node_state(
        NodeState(uuid=NODE_A, datasets={}, deletions_seen={DATASET})
    )
    assert api.request("GET", "/v1/configuration/datasets").body == []
    assert list(api.stored().deployment.all_datasets()) == []
    cleaner.stopService()


def test_cleanup_waits_for_a_pass_that_saw_the_deletion(api: APIHarness) -> None:
    """
    A deleted dataset no node holds stays configured until its node's agent
    reports after a pass that saw it deleted: a pass planned before the
    deletion may still be creating it, and once it is gone from the
    configuration nothing would destroy that copy.
    """
    cleaner = DeletedDatasetCleaner(api.configuration, api.state)
    cleaner.startService()
    api.create_dataset(dataset_id=DATASET)
    api.request("DELETE", f"/v1/configuration/datasets/{DATASET}")
    # Reported without the dataset, from a pass that did not see it deleted.
    api.state.update_node_state(NodeState(uuid=NODE_A, datasets={}, deletions_seen=[]))
    assert [d["deleted"] for d in api.request("GET", "/v1/configuration/datasets").body] == [
        True
    ]
    api.state.update_node_state(
        NodeState(uuid=NODE_A, datasets={}, deletions_seen=[DATASET])
    )
    assert api.request("GET", "/v1/configuration/datasets").body == []
    cleaner.stopService()


def test_cleanup_waits_for_unreported_node(api: APIHarness) -> None:
    """A deleted dataset stays while its node has not reported its datasets."""
    cleaner = DeletedDatasetCleaner(api.configuration, api.state)
    cleaner.startService()
    api.create_dataset(dataset_id=DATASET)
    api.request("DELETE", f"/v1/configuration/datasets/{DATASET}")
    listed = api.request("GET", "/v1/configuration/datasets").body
    assert [d["deleted"] for d in listed] == [True]
    cleaner.stopService()
    api.state.update_node_state(NodeState(uuid=NODE_A, datasets={}))
    # Stopped: it no longer changes the configuration.
    assert len(api.request("GET", "/v1/configuration/datasets").body) == 1


# --------------------------------------------------------------------------
# logging and unexpected errors


def _request_actions(logger: Any) -> list[dict[str, Any]]:
    return [
        m
        for m in logger.messages
        if m.get("action_type") == "flocker:control:rest:request"
    ]


def test_every_request_is_an_action(api: APIHarness, eliot_logger: Any) -> None:
    """Each request is a flocker:control:rest:request action with its status."""
    api.request("GET", "/v1/version")
    api.request("GET", "/v1/nowhere")
    api.request("POST", "/v1/configuration/datasets", raw=b"{")
    messages = _request_actions(eliot_logger)
    starts = [
        (m["method"], m["path"]) for m in messages if m["action_status"] == "started"
    ]
    ends = [m["status"] for m in messages if m["action_status"] == "succeeded"]
    assert starts == [
        ("GET", "/v1/version"),
        ("GET", "/v1/nowhere"),
        ("POST", "/v1/configuration/datasets"),
    ]
    assert ends == [200, 404, 400]


def test_writes_are_logged_inside_the_request(
    api: APIHarness, eliot_logger: Any
) -> None:
    """The configuration change of a write is logged in the request's task."""
    api.create_dataset()
    (start, *_) = _request_actions(eliot_logger)
    changes = [
        m
        for m in eliot_logger.messages
        if m.get("action_type") == "flocker:control:configuration:change"
    ]
    assert changes
    assert {m["task_uuid"] for m in changes} == {start["task_uuid"]}


@attrs.define
class _BrokenConfiguration:
    """A configuration service whose changes fail unexpectedly."""

    inner: ConfigurationService

    @property
    def deployment(self) -> Deployment:
        """The inner service's configuration."""
        return self.inner.deployment

    @property
    def generation(self) -> int:
        """The inner service's generation."""
        return self.inner.generation

    def stale_reason(self) -> str | None:
        """The inner service's reason."""
        return self.inner.stale_reason()

    def change(
        self, change: Callable[[Deployment], Deployment], expected_generation: int | None = None
    ) -> Deferred[StoredConfiguration]:
        """Fail as a bug would."""
        raise ZeroDivisionError("a bug")


def test_unexpected_error(api: APIHarness) -> None:
    """An unexpected exception is a 500 naming the eliot task that logged it."""
    # Not the eliot_logger fixture: it validates the messages twice, which
    # eliot's traceback messages do not survive.
    eliot_logger = MemoryLogger()
    previous = swap_logger(eliot_logger)
    try:
        broken = _BrokenConfiguration(api.configuration)
        api.treq = StubTreq(make_api_resource(broken, api.state, api.clock))
        result = api.request("POST", "/v1/configuration/datasets", {"primary": NODE_A})
    finally:
        swap_logger(previous)
    assert result.code == 500
    task_uuid = result.body["task_uuid"]
    assert task_uuid in result.body["description"]
    (start, end) = _request_actions(eliot_logger)
    assert start["task_uuid"] == task_uuid
    assert end["status"] == 500
    tracebacks = eliot_logger.flush_tracebacks(ZeroDivisionError)
    assert [t["task_uuid"] for t in tracebacks] == [task_uuid]
    eliot_logger.validate()


# --------------------------------------------------------------------------
# the HTTP server's body limit (real HTTP parsing over a StringTransport)


def _raw_exchange(api: APIHarness, request: bytes) -> bytes:
    """Feed raw HTTP to the API's Site; return what it answers."""
    site = make_api_site(make_api_resource(api.configuration, api.state, api.clock))
    protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 12345))
    assert protocol is not None
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(request)
    answer: bytes = transport.value()
    return answer


@pytest.mark.parametrize("chunked", [False, True])
def test_site_refuses_large_bodies(api: APIHarness, chunked: bool) -> None:
    """The Site stops buffering a body past the limit and answers 413."""
    body = json.dumps({"primary": NODE_A, "metadata": {"a": "x" * MAXIMUM_BODY_SIZE}})
    data = body.encode()
    head = b"POST /v1/configuration/datasets HTTP/1.1\r\nHost: control\r\n"
    if chunked:
        chunk = 64 * 1024
        pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)]
        encoded = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)
        request = head + b"Transfer-Encoding: chunked\r\n\r\n" + encoded + b"0\r\n\r\n"
    else:
        request = head + b"Content-Length: %d\r\n\r\n" % len(data) + data
    before = api.stored()
    answer = _raw_exchange(api, request)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert api.stored() == before


def test_site_accepts_small_bodies(api: APIHarness) -> None:
    """A small body through the same Site is served normally."""
    data = json.dumps({"primary": NODE_A}).encode()
    request = (
        b"POST /v1/configuration/datasets HTTP/1.1\r\nHost: control\r\n"
        b"Content-Length: %d\r\n\r\n" % len(data) + data
    )
    assert _raw_exchange(api, request).startswith(b"HTTP/1.1 201 ")


def test_cleaner_waits_for_loading() -> None:
    """The cleaner can start before the configuration is loaded."""
    configuration = ConfigurationService(MemoryConfigurationStore())
    state = ClusterStateService(Clock())
    cleaner = DeletedDatasetCleaner(configuration, state)
    cleaner.startService()
    state.update_node_state(NodeState(uuid=NODE_A, datasets={}))
    configuration.load()
    assert configuration.generation == 0
    cleaner.stopService()


# --------------------------------------------------------------------------
# no input is a 500

_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)

_FIELDS = [
    "primary",
    "dataset_id",
    "maximum_size",
    "metadata",
    "node_uuid",
    "name",
    "image",
    "ports",
    "volumes",
    "links",
    "environment",
    "restart_policy",
    "expires",
    "cpu_shares",
    "memory_limit",
    "swappiness",
    "command_line",
]

#: Objects with the API's own field names, so validation goes deeper.
_bodies = st.dictionaries(
    st.sampled_from(_FIELDS),
    _json_values
    | st.sampled_from([NODE_A, DATASET, DATASET.upper(), "web", 1024 * 1024]),
    max_size=6,
)

_WRITES = [
    ("POST", "/v1/configuration/datasets"),
    ("POST", f"/v1/configuration/datasets/{DATASET}"),
    ("POST", "/v1/configuration/leases"),
    ("POST", "/v1/configuration/containers"),
    ("POST", "/v1/configuration/containers/web"),
]


@settings(max_examples=150, deadline=None)
@given(target=st.sampled_from(_WRITES), body=_bodies | _json_values)
def test_no_body_is_a_server_error(target: tuple[str, str], body: Any) -> None:
    """Whatever JSON a write gets, it answers 2xx or a 4xx that changed nothing."""
    api = APIHarness()
    api.create_dataset(dataset_id=DATASET)
    before = api.stored()
    result = api.request(*target, body=None, raw=json.dumps(body).encode())
    assert result.code < 500, result
    if result.code >= 400:
        assert api.stored() == before


@settings(max_examples=100, deadline=None)
@given(raw=st.binary(max_size=64))
def test_no_bytes_are_a_server_error(raw: bytes) -> None:
    """Whatever bytes a write gets as its body, the answer is not a 500."""
    api = APIHarness()
    result = api.request("POST", "/v1/configuration/datasets", raw=raw)
    assert result.code < 500, result


# --------------------------------------------------------------------------
# environment copies move off ports their nodes report taken


@contextmanager
def captured() -> Iterator[MemoryLogger]:
    """eliot's messages, in memory, while the block runs."""
    logger = MemoryLogger()
    previous = swap_logger(logger)
    try:
        yield logger
    finally:
        swap_logger(previous)


def _copy_with_blocked_port(api: APIHarness) -> tuple[str, int]:
    """An environment copy of an application on node A; its name and port."""
    app = Application(
        name="web", image="web", ports=[Port(internal_port=80, external_port=8080)]
    )
    api.configuration.change(lambda d: d.add_application(app, NODE_A))
    api.configuration.change(
        lambda d: clone_environment(d, "s", ["web"], ["1"], "flocker-env-s-1")
    )
    copy, _ = api.stored().deployment.get_application("web-s-1")
    [port] = [p.external_port for p in copy.ports]
    return "web-s-1", port


def test_copy_moved_off_a_taken_port_and_logged(api: APIHarness) -> None:
    """
    When a node reports a copy's port taken, the copy gets another port
    durably, in a ``move_ports`` action whose message gives the reason.
    """
    mover = CopyPortMover(api.configuration, api.state)
    mover.startService()
    name, port = _copy_with_blocked_port(api)
    with captured() as logger:
        api.state.update_node_state(
            NodeState(uuid=NODE_A, applications={}, port_conflicts={name: [port]})
        )
    copy, _ = api.stored().deployment.get_application(name)
    [new] = [p.external_port for p in copy.ports]
    assert new != port
    moved = [m for m in logger.messages if m.get("message_type") == "flocker:control:environment:port_moved"]
    assert [(m["application"], m["old_port"], m["new_port"]) for m in moved] == [(name, port, new)]
    assert "taken by another program" in moved[0]["reason"]
    actions = [m for m in logger.messages if m.get("action_type") == "flocker:control:environment:move_ports"]
    assert [m["action_status"] for m in actions] == ["started", "succeeded"]
    mover.stopService()


def test_copy_moved_at_most_a_few_times(api: APIHarness) -> None:
    """
    A copy whose every new port is reported taken again is moved at most
    ``maximum_moves`` times, then left (logged once) instead of churning.
    """
    mover = CopyPortMover(api.configuration, api.state, maximum_moves=2)
    mover.startService()
    name, port = _copy_with_blocked_port(api)
    seen = [port]
    with captured() as logger:
        for _ in range(4):
            api.state.update_node_state(
                NodeState(uuid=NODE_A, applications={}, port_conflicts={name: [seen[-1]]})
            )
            copy, _ = api.stored().deployment.get_application(name)
            [current] = [p.external_port for p in copy.ports]
            if current != seen[-1]:
                seen.append(current)
    assert len(seen) == 3
    exhausted = [
        m for m in logger.messages
        if m.get("message_type") == "flocker:control:environment:port_moves_exhausted"
    ]
    assert [m["application"] for m in exhausted] == [name]
    mover.stopService()
