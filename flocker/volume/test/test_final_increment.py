"""
Functional tests of the last increment of a move: the ``final`` header flag
and the receiver's ``on_stored`` hook, over real TLS with directory backends.
"""

from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred

from flocker.ca import load_tls_files
from flocker.ca.testtools import make_test_cluster_credentials
from flocker.volume.directory import DirectoryVolumeBackend
from flocker.volume.transfer import (
    TransferFailed,
    TransferReceiver,
    listen_for_transfers,
    push,
)

pytestmark = pytest.mark.functional

DATASET = "0c9e2f3b-1d4a-4e8f-9b7a-5c6d7e8f9a0b"


async def two_nodes(tmp_path: Path, on_stored):
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

    def send(final):
        return push(
            reactor, sender, DATASET, "s1", None, "127.0.0.1",
            port.getHost().port, tls, final=final,
        )

    return send, receiver, port


@pytest_twisted.ensureDeferred
async def test_on_stored_runs_before_sender_is_told(tmp_path):
    """The hook sees the final flag and runs before the push returns."""
    seen = []
    gate = Deferred()

    def on_stored(header):
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
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_on_stored_failure_reported(tmp_path):
    """If the hook fails, the sender learns the transfer failed."""

    def on_stored(header):
        raise OSError("disk full while recording the role")

    send, receiver, port = await two_nodes(tmp_path, on_stored)
    try:
        with pytest.raises(TransferFailed):
            await send(False)
    finally:
        await port.stopListening()


def _tick():
    """A Deferred firing on the next reactor turn."""
    d = Deferred()
    reactor.callLater(0.01, d.callback, None)
    return d
