"""
Unit tests of `FlockerClient` with several control service instances: which
failures send a request on to the next instance, and which never do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import uuid4

import attrs
import pytest
from treq.testing import StubTreq
from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.error import ConnectionRefusedError, TimeoutError
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.web.client import ResponseNeverReceived

from flocker.apiclient import (
    CONNECT_TIMEOUT,
    FlockerClient,
    connect_timeout,
)
from flocker.apiclient.test.test_client import real_cluster
from flocker.apiclient.test.test_client_errors import _Canned
from flocker.apiclient.testtools import ClientFixture, make_iflockerapiv1client_tests
from flocker.ca.testtools import make_test_cluster_credentials

DEAD = "https://dead.example:4523"
ALIVE = "https://alive.example:4523"
OTHER = "https://other.example:4523"


@attrs.define
class Instances:
    """
    An HTTP client in front of control service instances by base URL: some
    fail every request with an error, the others are answered by ``http``.
    """

    http: Any
    failing: dict[str, BaseException] = attrs.field(factory=dict)
    tried: list[tuple[str, str]] = attrs.field(factory=list)

    def request(self, method: str, url: str, **kwargs: Any) -> Deferred[Any]:
        """Record the request; fail it if its instance fails, else pass it on."""
        self.tried.append((method, url))
        for base, error in self.failing.items():
            if url.startswith(base + "/"):
                return fail(error)
        return self.http.request(method, url, **kwargs)  # type: ignore[no-any-return]


def client_of(
    failing: dict[str, BaseException], urls: list[str]
) -> tuple[FlockerClient, Instances, StubTreq]:
    """A client of ``urls``, where ``failing`` instances fail; the others answer 200."""
    treq = StubTreq(_Canned(200, b'{"flocker": "1.2", "description": "ok"}'))
    instances = Instances(treq, failing)
    return FlockerClient(instances, urls), instances, treq


def outcome(treq: StubTreq, d: Deferred[Any]) -> Any:
    """The result of ``d`` once the in-memory requests are answered (or its Failure)."""
    results: list[Any] = []
    d.addBoth(results.append)
    treq.flush()
    assert results, "the request did not end"
    return results[0]


def never_received() -> ResponseNeverReceived:
    """The error of a request whose connection broke before the answer came."""
    return ResponseNeverReceived([Failure(ConnectionRefusedError("reset"))])


def test_refused_instance_is_passed_over() -> None:
    """A request to an instance that refuses the connection goes to the next one."""
    client, instances, treq = client_of(
        {DEAD: ConnectionRefusedError()}, [DEAD, ALIVE]
    )
    assert outcome(treq, client.version()) == "1.2"
    assert [url for _, url in instances.tried] == [
        f"{DEAD}/v1/version",
        f"{ALIVE}/v1/version",
    ]


def test_requests_stay_with_the_instance_that_answered() -> None:
    """After a failover, the next requests go first to the instance that answered."""
    client, instances, treq = client_of({DEAD: TimeoutError()}, [DEAD, ALIVE])
    outcome(treq, client.version())
    assert client.base_url == ALIVE
    instances.tried.clear()
    outcome(treq, client.version())
    assert [url for _, url in instances.tried] == [f"{ALIVE}/v1/version"]


def test_instances_are_tried_round_the_list() -> None:
    """After the last instance, the first one is tried again (once round the list)."""
    client, instances, treq = client_of({}, [DEAD, OTHER, ALIVE])
    outcome(treq, client.version())
    instances.failing = {ALIVE: ConnectionRefusedError(), DEAD: ConnectionRefusedError()}
    # Answered by DEAD at first; now only OTHER answers.
    assert outcome(treq, client.version()) == "1.2"
    assert [url.split("/v1")[0] for _, url in instances.tried] == [DEAD, DEAD, OTHER]


def test_every_instance_unreachable_raises_the_last_error() -> None:
    """When no instance can be reached, each is tried once and the last error is raised."""
    client, instances, treq = client_of(
        {DEAD: ConnectionRefusedError(), OTHER: TimeoutError()}, [DEAD, OTHER]
    )
    result = outcome(treq, client.version())
    assert isinstance(result, Failure) and result.check(TimeoutError)
    assert len(instances.tried) == 2


@pytest.mark.parametrize("method", ["create", "delete"])
def test_a_write_that_may_have_arrived_is_not_sent_again(method: str) -> None:
    """
    A POST or DELETE whose answer did not arrive is not sent to another
    instance: the first may have carried it out.
    """
    client, instances, treq = client_of({DEAD: never_received()}, [DEAD, ALIVE])
    if method == "create":
        d = client.create_dataset(uuid4())
    else:
        d = client.delete_dataset(uuid4())
    result = outcome(treq, d)
    assert isinstance(result, Failure) and result.check(ResponseNeverReceived)
    assert len(instances.tried) == 1


def test_a_write_that_could_not_connect_goes_to_the_next_instance() -> None:
    """A POST that could not even connect is sent to the next instance."""
    client, instances, treq = client_of(
        {DEAD: ConnectionRefusedError()}, [DEAD, ALIVE]
    )
    outcome(treq, client.create_dataset(uuid4()))
    assert [(m, url.split("/v1")[0]) for m, url in instances.tried] == [
        ("POST", DEAD),
        ("POST", ALIVE),
    ]


def test_a_read_without_answer_goes_to_the_next_instance() -> None:
    """A GET whose answer did not arrive is asked again of the next instance."""
    client, instances, treq = client_of({DEAD: never_received()}, [DEAD, ALIVE])
    assert outcome(treq, client.version()) == "1.2"
    assert len(instances.tried) == 2


def test_a_cancelled_request_is_not_tried_again() -> None:
    """A cancelled request (a timeout, Ctrl-C) goes to no other instance."""
    client, instances, treq = client_of({DEAD: CancelledError()}, [DEAD, ALIVE])
    result = outcome(treq, client.version())
    assert isinstance(result, Failure) and result.check(CancelledError)
    client, instances, treq = client_of(
        {DEAD: ResponseNeverReceived([Failure(CancelledError())])}, [DEAD, ALIVE]
    )
    result = outcome(treq, client.version())
    assert isinstance(result, Failure) and result.check(ResponseNeverReceived)
    assert len(instances.tried) == 1


def test_failover_is_logged(eliot_logger: Any) -> None:
    """Giving up an instance is logged with the reason and the next instance."""
    client, _, treq = client_of({DEAD: ConnectionRefusedError()}, [DEAD, ALIVE])
    outcome(treq, client.version())
    [failover] = [
        m
        for m in eliot_logger.messages
        if m.get("message_type") == "flocker:apiclient:failover"
    ]
    assert (failover["url"], failover["next_url"]) == (f"{DEAD}/v1/version", ALIVE)
    assert "ConnectionRefusedError" in failover["reason"]
    statuses = [
        m.get("action_status")
        for m in eliot_logger.messages
        if m.get("action_type") == "flocker:apiclient:request"
    ]
    assert statuses == ["started", "failed", "started", "succeeded"]


def test_no_url_is_refused() -> None:
    """A client needs at least one URL."""
    with pytest.raises(ValueError, match="no control service URL"):
        FlockerClient(StubTreq(_Canned(200, b"")), [])


def test_from_cluster_config_with_several_hosts(tmp_path: Path) -> None:
    """A cluster.json-like mapping may name several hosts, all on one port."""
    cluster = make_test_cluster_credentials(tmp_path, nodes=0, users=("bob",))
    client = FlockerClient.from_cluster_config(
        MemoryReactorClock(),
        {
            "control_service": ["10.0.0.1", "fd00::2"],
            "control_port": 4600,
            "certificates_directory": str(cluster.user_directories["bob"]),
            "user": "bob",
        },
    )
    assert client.base_urls == ("https://10.0.0.1:4600", "https://[fd00::2]:4600")
    assert client.base_url == "https://10.0.0.1:4600"


def test_connect_timeout_is_bounded() -> None:
    """With other instances to try, a connection is given 2 s; a lone instance longer."""
    assert connect_timeout(2) == CONNECT_TIMEOUT == 2.0
    assert 2.0 < connect_timeout(1) <= 10.0


def real_cluster_behind_a_dead_instance() -> ClientFixture:
    """The real client's contract fixture, whose first instance refuses connections."""
    fixture = real_cluster()
    http = Instances(fixture.client.http, {DEAD: ConnectionRefusedError()})
    return attrs.evolve(
        fixture, client=FlockerClient(http, [DEAD, fixture.client.base_url])
    )


class TestFlockerClientBehindADeadInstance(
    make_iflockerapiv1client_tests(real_cluster_behind_a_dead_instance)  # type: ignore[misc]  # made at runtime
):
    """The treq client passes the contract when its first instance is dead."""
