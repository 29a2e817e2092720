"""
Functional tests of the last increment of a move: the ``final`` header flag
and the receiver's ``on_stored`` hook, over real TLS with directory backends.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort

from flocker.ca import load_tls_files
from flocker.ca.testtools import make_test_cluster_credentials
from flocker.volume.directory import DirectoryVolumeBackend
from flocker.volume.testtools import port_number, stop_listening
from flocker.volume.transfer import (
    TransferFailed,
    TransferHeader,
    TransferReceiver,
    TransferResult,
    listen_for_transfers,
    push,
)

pytestmark = pytest.mark.functional

DATASET = "0c9e2f3b-1d4a-4e8f-9b7a-5c6d7e8f9a0b"


async def two_nodes(
    tmp_path: Path, on_stored: Callable[[TransferHeader], Any]
) -> tuple[
    Callable[[bool], Deferred[TransferResult]], DirectoryVolumeBackend, IListeningPort
]:
    """A sender backend with a snapshot, and a listening receiver."""
    (tmp_path / "certs").mkdir()
    credentials = make_test_cluster_credentials(tmp_path / "certs")
    sender = DirectoryVolumeBackend(reactor, str(tmp_path / "a"))
    receiver = DirectoryVolumeBackend(reactor, str(tmp_path / "b"))
    info = await sender.create(DATASET)
    (Path(info.path) / "file").write_text("moved")
    await sender.snapshot(DATASET, "s1")
    port = await listen_for_transfers(
        reactor,
        TransferReceiver(receiver, on_stored=on_stored),
        0,
        load_tls_files(credentials.node_directories[1], "node"),
        "127.0.0.1",
    )
    tls = load_tls_files(credentials.node_directories[0], "node")

    def send(final: bool) -> Deferred[TransferResult]:
        return push(
            reactor, sender, DATASET, "s1", None, "127.0.0.1",
            port_number(port), tls, final=final,
        )

    return send, receiver, port


@pytest_twisted.ensureDeferred
async def test_on_stored_runs_before_sender_is_told(tmp_path: Path) -> None:
    """The hook sees the final flag and runs before the push returns."""
    seen: list[bool] = []
    gate: Deferred[None] = Deferred()

    def on_stored(header: TransferHeader) -> Deferred[None]:
        seen.append(header.final)
        return gate

    send, receiver, port = await two_nodes(tmp_path, on_stored)
    try:
        pushed = send(True)
        while not seen:
            await _tick()
        assert seen == [True]
        assert not pushed.called  # the sender waits for the hook
        gate.callback(None)
        result = await pushed
        assert result.bytes_sent > 0
        info = await receiver.get(DATASET)
        assert (Path(info.path) / "file").read_text() == "moved"
    finally:
        await stop_listening(port)


@pytest_twisted.ensureDeferred
async def test_on_stored_failure_reported(tmp_path: Path) -> None:
    """If the hook fails, the sender learns the transfer failed."""

    def on_stored(header: TransferHeader) -> None:
        raise OSError("disk full while recording the role")

    send, receiver, port = await two_nodes(tmp_path, on_stored)
    try:
        with pytest.raises(TransferFailed):
            await send(False)
    finally:
        await stop_listening(port)


def _tick() -> Deferred[None]:
    """A Deferred firing on the next reactor turn."""
    d: Deferred[None] = Deferred()
    reactor.callLater(0.01, d.callback, None)
    return d
