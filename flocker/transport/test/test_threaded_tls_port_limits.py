"""
Functional: a threaded TLS listening port spends nothing on a peer before it
is authenticated: a peer that never starts TLS is cut off at the handshake
deadline, and connections are capped in all and per peer address.  Real
sockets on 127.0.0.0/8.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor, threads
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.protocol import Factory, Protocol

from flocker.ca import bulk_tls_context

from .. import ThreadedTLSServerEndpoint
from ..testtools import closed_by_server, idle, settle, two_nodes_tls

pytestmark = pytest.mark.functional


@pytest.fixture
def tls(tmp_path: Path) -> Any:
    """Two nodes' credentials: the listening one's and a client's."""
    return two_nodes_tls(tmp_path)


class _Quiet(Protocol):
    """Holds a connection open and does nothing."""


async def listening(tls: Any, **options: Any) -> Any:
    """A threaded TLS port on 127.0.0.1 with the given limits."""
    endpoint = ThreadedTLSServerEndpoint(
        IReactorFromThreads(reactor),
        0,
        bulk_tls_context(tls[0], server_side=True),
        lambda certificate: None,
        interface="127.0.0.1",
        **options,
    )
    return await endpoint.listen(Factory.forProtocol(_Quiet))


@pytest_twisted.ensureDeferred
async def test_a_handshake_has_a_deadline(tls: Any) -> None:
    """A peer that never starts TLS is cut off once the handshake deadline passed."""
    port = await listening(tls, handshake_timeout=0.3)
    try:
        [connection] = await threads.deferToThread(idle, port.getHost().port, 1)
        assert await threads.deferToThread(closed_by_server, connection, 5)
        connection.close()
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_connections_are_capped_per_peer_and_in_all(tls: Any) -> None:
    """
    A peer address holds at most ``maximum_per_peer`` connections and the
    port at most ``maximum_connections``: one more is reset at once, while
    the ones held stay open; a slot freed is taken again.
    """
    port = await listening(tls, maximum_connections=3, maximum_per_peer=2)
    number = port.getHost().port
    made: list[socket.socket] = []
    try:
        first = await threads.deferToThread(idle, number, 3, "127.0.0.1")
        made += first
        assert await threads.deferToThread(closed_by_server, first[2], 2)
        assert not await threads.deferToThread(closed_by_server, first[0], 0.3)
        [other] = await threads.deferToThread(idle, number, 1, "127.0.0.2")
        made.append(other)
        assert not await threads.deferToThread(closed_by_server, other, 0.3)
        [third] = await threads.deferToThread(idle, number, 1, "127.0.0.3")
        made.append(third)
        assert await threads.deferToThread(closed_by_server, third, 2)
        first[0].close()
        await settle()
        [again] = await threads.deferToThread(idle, number, 1, "127.0.0.3")
        made.append(again)
        assert not await threads.deferToThread(closed_by_server, again, 0.3)
    finally:
        for connection in made:
            connection.close()
        await port.stopListening()
