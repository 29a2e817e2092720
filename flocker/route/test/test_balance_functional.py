"""
Functional tests of `NodeRouter` spreading connections over several targets
and holding them while there is none, over real sockets on loopback.

As in ``test_proxy_functional``: the router listens on `NODE`, the targets
are small Twisted servers on `OTHER`, clients are blocking sockets in
threads.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import pytest
import pytest_twisted
from pyrsistent import pmap
from twisted.internet import reactor
from twisted.internet.threads import deferToThread

from flocker.common import loop_until

from .. import Target
from .test_proxy_functional import (
    LARGE,
    NODE,
    OTHER,
    Digest,
    Harness,
    Named,
    connect,
    connection_logs,
    exchange,
    free_port,
    read_all,
    read_line,
)

pytestmark = pytest.mark.functional

T = TypeVar("T")

#: How long the tests wait for the router to reach a state before failing.
PATIENCE = 20.0


def until(predicate: Callable[[], T]) -> Any:
    """A Deferred firing with ``predicate()`` once it is true (fails after `PATIENCE`)."""
    return loop_until(reactor, predicate, [0.02] * int(PATIENCE / 0.02))


@pytest_twisted.async_yield_fixture
async def balancer() -> AsyncIterator[Harness]:
    """A router on `NODE` and servers on `OTHER`, closed after the test."""
    h = Harness()
    yield h
    await h.close()


def named(h: Harness, name: bytes) -> int:
    """The port of a new `Named` server saying ``name``."""
    return h.serve(lambda: Named(name))


def on_other(port: int) -> Target:
    """The target at `OTHER`:``port``."""
    return Target(host=OTHER, port=port)


@pytest_twisted.ensureDeferred
async def test_least_connections(balancer: Harness) -> None:
    """
    With two connections open to A, the next two go to the new target B;
    then, all equal, the turn goes back to A.
    """
    port = free_port(NODE)
    a, b = named(balancer, b"a"), named(balancer, b"b")
    await balancer.route_to(port, a)
    clients = [await deferToThread(connect, port) for _ in range(2)]
    try:
        for client in clients:
            assert await deferToThread(read_line, client) == b"a\n"
        await balancer.route_to(port, a, b)
        names = []
        for _ in range(3):
            clients.append(await deferToThread(connect, port))
            names.append(await deferToThread(read_line, clients[-1]))
        assert names == [b"b\n", b"b\n", b"a\n"]
        assert balancer.router.connections() == pmap({on_other(a): 3, on_other(b): 2})
    finally:
        for client in clients:
            client.close()
    await until(lambda: balancer.router.connections() == pmap())


@pytest_twisted.ensureDeferred
async def test_ties_rotate(balancer: Harness) -> None:
    """One connection after another, equal targets take turns."""
    port = free_port(NODE)
    await balancer.route_to(
        port, named(balancer, b"a"), named(balancer, b"b"), named(balancer, b"c")
    )
    replies = []
    for _ in range(4):
        replies.append(await deferToThread(exchange, port, b""))
        # The router counts a connection until both of its sockets closed.
        await until(lambda: balancer.router.connections() == pmap())
    assert replies == [b"a\n", b"b\n", b"c\n", b"a\n"]


@pytest_twisted.ensureDeferred
async def test_failover(balancer: Harness, eliot_logger: Any) -> None:
    """A target that refuses is skipped for the next; the client never notices."""
    port = free_port(NODE)
    dead = free_port(OTHER)
    await balancer.route_to(port, dead, named(balancer, b"alive"))
    assert await deferToThread(exchange, port, b"hi") == b"alive\nhi"
    [log] = await until(lambda: connection_logs(eliot_logger))
    assert log["unreachable"] == [f"{OTHER}:{dead}"]
    assert (log["outcome"], log["held"]) == ("closed", 0)
    assert log["target"].startswith(f"{OTHER}:")


@pytest_twisted.ensureDeferred
async def test_held_until_a_target_works(balancer: Harness, eliot_logger: Any) -> None:
    """
    With every target down the client is held, not refused; once a working
    target is routed to, what it sent while held arrives first and the
    conversation carries on both ways.
    """
    port = free_port(NODE)
    await balancer.route_to(port, free_port(OTHER))
    client = await deferToThread(connect, port)
    try:
        await deferToThread(client.sendall, b"sent while held;")
        await until(lambda: balancer.router.held() == pmap({port: 1}))
        await balancer.route_to(port, named(balancer, b"app"))
        assert await deferToThread(read_line, client) == b"app\n"
        await deferToThread(client.sendall, b"after\n")
        assert await deferToThread(read_line, client) == b"sent while held;after\n"
        await deferToThread(client.shutdown, socket.SHUT_WR)
        assert await deferToThread(read_all, client) == b""
    finally:
        client.close()
    [log] = await until(lambda: connection_logs(eliot_logger))
    assert log["outcome"] == "closed"
    assert log["held"] > 0
    assert log["bytes_to_target"] == len(b"sent while held;after\n")


@pytest_twisted.ensureDeferred
async def test_large_upload_while_held(balancer: Harness) -> None:
    """
    Several MiB sent (and half-closed) while held, far more than the router
    buffers, all reach the target once there is one, and its answer returns.
    """
    port = free_port(NODE)
    await balancer.route_to(port)
    payload = os.urandom(LARGE)
    started = threading.Event()

    def upload() -> bytes:
        with connect(port) as client:
            for offset in range(0, len(payload), 65536):
                client.sendall(payload[offset : offset + 65536])
                if offset >= 2 * 65536:
                    started.set()
            client.shutdown(socket.SHUT_WR)
            return read_all(client)

    reply = deferToThread(upload)
    assert await deferToThread(started.wait, PATIENCE)
    assert balancer.router.held() == pmap({port: 1})
    await balancer.route_to(port, balancer.serve(Digest))
    assert await reply == hashlib.sha256(payload).hexdigest().encode("ascii")


@pytest_twisted.ensureDeferred
async def test_hold_timeout(balancer: Harness, eliot_logger: Any) -> None:
    """A client held for the route's hold timeout is closed; the wait is logged."""
    port = free_port(NODE)
    await balancer.route_to(port, hold_timeout=0.3)

    def wait() -> tuple[bytes, float]:
        begun = time.monotonic()
        with connect(port) as client:
            return read_all(client), time.monotonic() - begun

    data, waited = await deferToThread(wait)
    assert data == b""
    assert waited >= 0.25
    [log] = await until(lambda: connection_logs(eliot_logger))
    assert log["outcome"] == "held_too_long"
    assert log["held"] >= 0.3
    assert balancer.router.held() == pmap()


@pytest_twisted.ensureDeferred
async def test_unrouting_closes_held(balancer: Harness, eliot_logger: Any) -> None:
    """Held clients are closed when their port is no longer routed."""
    port = free_port(NODE)
    await balancer.route_to(port)
    client = await deferToThread(connect, port)
    try:
        await until(lambda: balancer.router.held() == pmap({port: 1}))
        await balancer.router.set_routes(pmap())
        assert await deferToThread(read_all, client) == b""
    finally:
        client.close()
    [log] = await until(lambda: connection_logs(eliot_logger))
    assert log["outcome"] == "unrouted"


@pytest_twisted.ensureDeferred
async def test_stopping_closes_held(balancer: Harness, eliot_logger: Any) -> None:
    """A router that stops closes its held clients."""
    port = free_port(NODE)
    await balancer.route_to(port)
    client = await deferToThread(connect, port)
    try:
        await until(lambda: balancer.router.held() == pmap({port: 1}))
        await balancer.router.stopService()
        assert await deferToThread(read_all, client) == b""
    finally:
        client.close()
    [log] = await until(lambda: connection_logs(eliot_logger))
    assert log["outcome"] == "router_stopped"


@pytest_twisted.ensureDeferred
async def test_client_leaves_while_held(balancer: Harness, eliot_logger: Any) -> None:
    """A held client that goes away is noticed, forgotten and logged."""
    port = free_port(NODE)
    await balancer.route_to(port)
    client = await deferToThread(connect, port)
    await until(lambda: balancer.router.held() == pmap({port: 1}))
    client.close()
    [log] = await until(lambda: connection_logs(eliot_logger))
    assert log["outcome"] == "client_gone"
    assert balancer.router.held() == pmap()


@pytest_twisted.ensureDeferred
async def test_retargeting_keeps_forwarded(balancer: Harness) -> None:
    """
    A connection forwarded to A carries on after the route loses all its
    targets, while a new connection is held meanwhile.
    """
    port = free_port(NODE)
    await balancer.route_to(port, named(balancer, b"a"))
    before = await deferToThread(connect, port)
    after = None
    try:
        assert await deferToThread(read_line, before) == b"a\n"
        await balancer.route_to(port)
        after = await deferToThread(connect, port)
        await until(lambda: balancer.router.held() == pmap({port: 1}))
        await deferToThread(before.sendall, b"still a\n")
        assert await deferToThread(read_line, before) == b"still a\n"
        await balancer.route_to(port, named(balancer, b"b"))
        assert await deferToThread(read_line, after) == b"b\n"
    finally:
        before.close()
        if after is not None:
            after.close()
