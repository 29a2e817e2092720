"""
Functional tests of snapshot transfers: real TLS sockets on 127.0.0.1, real
ZFS pools (zfs-fuse) and real directory backends.

Every failure test checks that the receiver's previous state (its datasets,
their snapshots and every byte of their files) is exactly intact, and that
a later retry succeeds.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    connectProtocol,
    wrapClientTLS,
)
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater

from flocker.ca import TLSFiles, load_tls_files, node_client_context_factory
from flocker.ca.testtools import TestClusterCredentials, make_test_cluster_credentials

from .._interface import DatasetInfo, IVolumeBackend
from .._transfer_wire import (
    CHECKSUM,
    DATA,
    HEADER,
    PREAMBLE,
    READY,
    STATUS,
    TRAILER,
    FrameParser,
    TransferHeader,
    checksum_of,
    encode_frame,
    encode_json,
)
from ..directory import DirectoryVolumeBackend
from ..memory import MemoryVolumeBackend
from ..testtools import port_number, stop_listening, stream_bytes
from ..transfer import (
    ReceiveOutcome,
    TransferFailed,
    TransferInterrupted,
    TransferReceiver,
    TransferRefused,
    listen_for_transfers,
    push,
)
from ..zfs import ZFSVolumeBackend

pytestmark = pytest.mark.functional

DATASET = "6f2bb4a7-7c3a-4a7e-9b6e-0d1f1e7c2a01"
MiB = 1024 * 1024
ROOT = Path(__file__).resolve().parents[3]


# --------------------------------------------------------------------------
# Fixtures and helpers


class Nodes:
    """Two nodes' backends and credentials, and a receiver on the second."""

    def __init__(
        self,
        kind: str,
        sender: IVolumeBackend,
        receiver: IVolumeBackend,
        credentials: TestClusterCredentials,
        options: tuple[list[str], list[str]],
    ) -> None:
        self.kind = kind
        self.sender = sender
        self.receiver = receiver
        self.credentials = credentials
        self.sender_tls = load_tls_files(credentials.node_directories[0], "node")
        self.receiver_tls = load_tls_files(credentials.node_directories[1], "node")
        self.sender_options, self.receiver_options = options
        self.outcomes: list[ReceiveOutcome] = []
        self.progress: list[int] = []
        self.protocols: list[Any] = []
        self.on_progress: Callable[[Any], None] | None = None
        self.port: IListeningPort | None = None
        self.waiting: list[Deferred[ReceiveOutcome]] = []
        self.expected: dict[str, dict[str, str]] = {}

    async def listen(self) -> int:
        """Start the receiver on a free port of 127.0.0.1."""
        nodes = self

        class Receiver(TransferReceiver):
            def buildProtocol(self, addr: Any) -> Any:  # noqa: N802
                protocol = super().buildProtocol(addr)
                nodes.protocols.append(protocol)
                return protocol

        def progress(p: Any) -> None:
            self.progress.append(p.bytes_transferred)
            if self.on_progress is not None:
                self.on_progress(p)

        def outcome(o: ReceiveOutcome) -> None:
            self.outcomes.append(o)
            waiting, self.waiting = self.waiting, []
            for d in waiting:
                d.callback(o)

        receiver = Receiver(self.receiver, on_progress=progress, on_outcome=outcome)
        self.port = await listen_for_transfers(
            reactor, receiver, 0, self.receiver_tls, "127.0.0.1"
        )
        return port_number(self.port)

    def next_outcome(self) -> Deferred[ReceiveOutcome]:
        """Fires with the receiver's next outcome."""
        d: Deferred[ReceiveOutcome] = Deferred()
        self.waiting.append(d)
        return d

    def push(self, snapshot: str, base: str | None = None, **kw: Any) -> Deferred[Any]:
        """
        Push from the sender to the receiver; a push that succeeds returns
        once the receiver has recorded its outcome too (it does so just
        after confirming, which a loaded machine may take a while to get
        to), so that each outcome is matched to its own push.
        """
        assert self.port is not None, "listen first"
        expected = len(self.outcomes) + 1

        async def recorded(result: Any) -> Any:
            for _ in range(3000):  # at most 30 s
                if len(self.outcomes) >= expected:
                    break
                await deferLater(reactor, 0.01, lambda: None)
            return result

        return self._push(snapshot, base, **kw).addCallback(
            lambda result: Deferred.fromCoroutine(recorded(result))
        )

    def _push(self, snapshot: str, base: str | None = None, **kw: Any) -> Deferred[Any]:
        """Push from the sender to the receiver, returning when the sender is done."""
        assert self.port is not None, "listen first"
        return push(
            reactor,
            kw.pop("backend", self.sender),
            DATASET,
            snapshot,
            base,
            "127.0.0.1",
            port_number(self.port),
            kw.pop("tls", self.sender_tls),
            **kw,
        )


def write_random(info: DatasetInfo, name: str, size: int) -> None:
    """Write ``size`` random bytes into a file of the dataset."""
    with open(os.path.join(info.path, name), "wb") as f:
        f.write(os.urandom(size))


def files_of(path: str) -> dict[str, str]:
    """SHA-256 of every file under ``path`` (not ext4's lost+found)."""
    found = {}
    for directory, subdirs, names in os.walk(path):
        if "lost+found" in subdirs:
            subdirs.remove("lost+found")
        for name in names:
            full = os.path.join(directory, name)
            with open(full, "rb") as f:
                found[os.path.relpath(full, path)] = hashlib.sha256(
                    f.read()
                ).hexdigest()
    return found


async def state_of(backend: IVolumeBackend) -> dict[str, Any]:
    """Everything a user could see: datasets, snapshots, file contents."""
    state = {}
    for info in await backend.list_datasets():
        snapshots = [s.name for s in await backend.list_snapshots(info.dataset_id)]
        state[info.dataset_id] = (snapshots, files_of(info.path))
    return state


async def setup_source(nodes: Nodes, size: int = 2 * MiB) -> DatasetInfo:
    """A dataset on the sender with snapshots s1 and (after a change) s2."""
    info = await nodes.sender.create(DATASET)
    write_random(info, "one", size)
    await snapshot(nodes, "s1")
    write_random(info, "two", size // 4)
    await snapshot(nodes, "s2")
    return info


@pytest.fixture(params=["zfs", "directory"])
def nodes(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """Two nodes of one cluster with real backends of the same kind."""
    credentials_dir = tmp_path / "credentials"
    credentials_dir.mkdir()
    credentials = make_test_cluster_credentials(credentials_dir)
    if request.param == "zfs":
        make_pool = request.getfixturevalue("make_zfs_pool")
        pools = [make_pool(size="1G"), make_pool(size="1G")]
        backends: list[IVolumeBackend] = [
            ZFSVolumeBackend(reactor, pool.name) for pool in pools
        ]
        options = [["--backend", "zfs", "--pool", pool.name] for pool in pools]
    else:
        roots = [str(tmp_path / "node-a"), str(tmp_path / "node-b")]
        backends = [DirectoryVolumeBackend(reactor, root) for root in roots]
        options = [["--backend", "directory", "--root", root] for root in roots]
    made = Nodes(request.param, backends[0], backends[1], credentials, tuple(options))  # type: ignore[arg-type]
    yield made
    if made.port is not None:
        pytest_twisted.blockon(made.port.stopListening())
    for backend in backends:
        for info in pytest_twisted.blockon(backend.list_datasets()):
            pytest_twisted.blockon(backend.destroy(info.dataset_id))


async def snapshot(nodes: Nodes, name: str) -> None:
    """Snapshot the sender's dataset, remembering its files at that point."""
    info = await nodes.sender.get(DATASET)
    nodes.expected[name] = files_of(info.path)
    await nodes.sender.snapshot(DATASET, name)


async def received_copy(nodes: Nodes, name: str) -> None:
    """The receiver's dataset has the contents of the sender's snapshot now."""
    got = await nodes.receiver.get(DATASET)
    assert files_of(got.path) == nodes.expected[name]
    assert (await nodes.receiver.list_snapshots(DATASET))[-1].name == name


# --------------------------------------------------------------------------
# Success


@pytest_twisted.ensureDeferred
async def test_full_then_incremental(nodes: Nodes) -> None:
    """A full stream, then an incremental one, reproduce the sender's data."""
    info = await nodes.sender.create(DATASET)
    write_random(info, "one", 2 * MiB)
    await snapshot(nodes, "s1")
    await nodes.listen()
    sent: list[int] = []
    result = await nodes.push("s1", progress=lambda p: sent.append(p.bytes_transferred))
    assert result.bytes_sent > 2 * MiB
    assert sent[-1] == result.bytes_sent and len(sent) > 1
    assert nodes.progress[-1] == result.bytes_sent
    assert [s.name for s in await nodes.receiver.list_snapshots(DATASET)] == ["s1"]
    await received_copy(nodes, "s1")
    write_random(info, "two", MiB // 2)
    await snapshot(nodes, "s2")
    result = await nodes.push("s2", "s1")
    if nodes.kind == "zfs":  # only the zfs stream carries just the change
        assert MiB // 2 < result.bytes_sent < MiB
    assert [s.name for s in await nodes.receiver.list_snapshots(DATASET)] == [
        "s1",
        "s2",
    ]
    await received_copy(nodes, "s2")
    assert [o.ok for o in nodes.outcomes] == [True, True]
    assert nodes.outcomes[-1].peer == str(nodes.credentials.node_uuids[0])


# --------------------------------------------------------------------------
# Refusals


@pytest_twisted.ensureDeferred
async def test_bad_base_refused(nodes: Nodes) -> None:
    """An incremental on a base the receiver lacks is refused, naming the base."""
    await setup_source(nodes)
    await nodes.listen()
    with pytest.raises(TransferRefused) as caught:
        await nodes.push("s2", "s1")
    assert caught.value.code == "unknown-dataset"
    await nodes.push("s1")
    info = await nodes.sender.get(DATASET)
    write_random(info, "three", 1000)
    await snapshot(nodes, "s3")
    before = await state_of(nodes.receiver)
    with pytest.raises(TransferRefused) as caught:
        await nodes.push("s3", "s2")
    assert caught.value.code == "unknown-snapshot"
    assert "'s2'" in caught.value.message
    assert await state_of(nodes.receiver) == before
    await nodes.push("s2", "s1")
    await nodes.push("s3", "s2")
    await received_copy(nodes, "s3")


@pytest_twisted.ensureDeferred
async def test_wrong_format_refused(nodes: Nodes) -> None:
    """A stream of another backend's format is refused before any data flows."""
    other = MemoryVolumeBackend()
    await other.create(DATASET)
    await other.snapshot(DATASET, "s1")
    await nodes.listen()
    with pytest.raises(TransferRefused) as caught:
        await nodes.push("s1", backend=other)
    assert caught.value.code == "wrong-format"
    assert "flocker-memory-v1" in caught.value.message
    assert await state_of(nodes.receiver) == {}


@pytest_twisted.ensureDeferred
async def test_existing_dataset_refused(nodes: Nodes) -> None:
    """A full stream of a dataset the receiver has is refused; it is intact."""
    await setup_source(nodes)
    await nodes.listen()
    await nodes.push("s1")
    before = await state_of(nodes.receiver)
    with pytest.raises(TransferRefused) as caught:
        await nodes.push("s2")
    assert caught.value.code == "dataset-exists"
    assert await state_of(nodes.receiver) == before


# --------------------------------------------------------------------------
# Interruptions


@pytest.mark.parametrize("incremental", [False, True])
@pytest_twisted.ensureDeferred
async def test_connection_cut(nodes: Nodes, incremental: bool) -> None:
    """
    A connection cut mid-stream leaves the receiver exactly as it was (no
    dataset, or the dataset with its old snapshots and data); a retry works.
    """
    await setup_source(nodes)
    await nodes.listen()
    snapshot, base = ("s2", "s1") if incremental else ("s1", None)
    if incremental:
        await nodes.push("s1")
        got = await nodes.receiver.set_read_only(DATASET, False)  # was received
        write_random(got, "local-change", 1000)  # not in a snapshot: kept too
    before = await state_of(nodes.receiver)

    def cut(progress: Any) -> None:
        if progress.bytes_transferred > 100_000:
            nodes.on_progress = None
            nodes.protocols[-1].transport.abortConnection()

    nodes.on_progress = cut
    sender_before = await state_of(nodes.sender)
    ended = nodes.next_outcome()
    with pytest.raises(TransferInterrupted):
        await nodes.push(snapshot, base)
    outcome = await ended
    assert outcome.code == "interrupted"
    assert await state_of(nodes.receiver) == before
    assert await state_of(nodes.sender) == sender_before
    await nodes.push(snapshot, base)
    await received_copy(nodes, snapshot)


async def wait_exit(process: subprocess.Popen[bytes]) -> int:
    """Wait, without blocking the reactor, for a subprocess to end."""
    while process.poll() is None:
        await deferLater(reactor, 0.05, lambda: None)
    return process.returncode


def script(nodes: Nodes, *arguments: str) -> subprocess.Popen[bytes]:
    """Start ``python -m flocker.volume.script`` with the sender's backend."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flocker.volume.script",
            *nodes.sender_options,
            *arguments,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest_twisted.ensureDeferred
async def test_sender_killed(nodes: Nodes) -> None:
    """
    A sender process killed mid-stream leaves the receiver as it was; the
    same command run again then succeeds.
    """
    # Larger than everything in flight can hold: socket buffers, and what
    # each end's TLS thread has queued (a few MiB each).
    await setup_source(nodes, size=48 * MiB)
    port = await nodes.listen()
    arguments = (
        "send", DATASET, "s1",
        "--to", f"127.0.0.1:{port}",
        "--certificates", str(nodes.credentials.node_directories[0]),
    )  # fmt: skip
    sender = script(nodes, *arguments)
    paused: Deferred[None] = Deferred()

    transport: Any = None

    def hold(progress: Any) -> None:
        # Stop reading so the sender is stuck mid-stream when it is killed;
        # the sink's own back-pressure must not resume it meanwhile.
        nonlocal transport
        nodes.on_progress = None
        transport = nodes.protocols[-1].transport
        transport.pauseProducing()
        transport.resumeProducing = lambda: None
        paused.callback(None)

    nodes.on_progress = hold
    ended = nodes.next_outcome()
    await paused
    await deferLater(reactor, 0.2, lambda: None)
    os.kill(sender.pid, signal.SIGKILL)
    assert await wait_exit(sender) == -signal.SIGKILL
    del transport.resumeProducing  # the class's own again
    transport.resumeProducing()
    outcome = await ended
    assert outcome.code == "interrupted", outcome
    assert outcome.bytes_received < 48 * MiB
    assert await state_of(nodes.receiver) == {}
    again = script(nodes, *arguments)
    assert await wait_exit(again) == 0, again.stderr.read()  # type: ignore[union-attr]
    assert b"sent" in again.stdout.read()  # type: ignore[union-attr]
    await received_copy(nodes, "s1")


# --------------------------------------------------------------------------
# Corruption and authentication


class RawSender(Protocol):
    """A hand-written sender: writes given frames once the receiver is ready."""

    def __init__(self, header: bytes, body: list[bytes]) -> None:
        self._header = header
        self._body = body
        self.answers: list[tuple[bytes, bytes]] = []
        self.closed: Deferred[list[tuple[bytes, bytes]]] = Deferred()
        self._parser = FrameParser(
            self._answer, lambda d: None, frozenset([READY, STATUS])
        )

    def connectionMade(self) -> None:  # noqa: N802
        assert self.transport is not None
        self.transport.write(self._header)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self._parser.feed(data)

    def _answer(self, kind: bytes, payload: bytes) -> None:
        self.answers.append((kind, payload))
        if kind == READY:
            assert self.transport is not None
            for frame in self._body:
                self.transport.write(frame)

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
        self.closed.callback(self.answers)


@pytest_twisted.ensureDeferred
async def test_corrupted_stream(nodes: Nodes) -> None:
    """
    A stream whose bytes do not match the trailer's SHA-256 is refused with
    checksum-mismatch; the receiver is as before and a real push then works.
    """
    await setup_source(nodes)
    port = await nodes.listen()
    source = await nodes.sender.send(DATASET, "s1")
    data = await stream_bytes(source)
    spoiled = bytearray(data)
    spoiled[len(data) // 2] ^= 0x01
    header = TransferHeader(
        dataset_id=DATASET, snapshot="s1", stream_format=source.stream_format
    )
    client = RawSender(
        PREAMBLE + encode_json(HEADER, header.to_json()),
        [
            encode_frame(DATA, bytes(spoiled)),
            encode_json(
                TRAILER,
                {"bytes": len(data), CHECKSUM: checksum_of(data)},
            ),
        ],
    )
    endpoint = wrapClientTLS(
        node_client_context_factory(
            nodes.sender_tls.credential, nodes.sender_tls.authority
        ),
        TCP4ClientEndpoint(reactor, "127.0.0.1", port),
    )
    await connectProtocol(endpoint, client)
    answers = await client.closed
    assert answers[0] == (READY, b"{}")
    assert answers[-1][0] == STATUS and b'"checksum-mismatch"' in answers[-1][1]
    assert await state_of(nodes.receiver) == {}
    await nodes.push("s1")
    await received_copy(nodes, "s1")


@pytest_twisted.ensureDeferred
async def test_non_nodes_refused(nodes: Nodes, tmp_path: Path) -> None:
    """
    Only nodes of the same cluster may push: a user's certificate is
    refused by the receiver, another cluster's node fails TLS, and a sender
    refuses a receiver that is not the expected node.
    """
    await setup_source(nodes)
    await nodes.listen()
    alice = load_tls_files(nodes.credentials.user_directories["alice"], "alice")
    with pytest.raises(TransferRefused) as caught:
        await nodes.push("s1", tls=alice)
    assert caught.value.code == "not-authorized"
    other_dir = tmp_path / "other-cluster"
    other_dir.mkdir()
    other = make_test_cluster_credentials(other_dir, cluster_name="other")
    stranger: TLSFiles = load_tls_files(other.node_directories[0], "node")
    with pytest.raises(TransferRefused) as caught:
        await nodes.push("s1", tls=stranger)
    assert caught.value.code == "tls-failed"
    with pytest.raises(TransferRefused) as caught:
        await nodes.push("s1", destination_node=nodes.credentials.node_uuids[0])
    assert caught.value.code == "tls-failed"
    assert await state_of(nodes.receiver) == {}
    await nodes.push("s1", destination_node=nodes.credentials.node_uuids[1])
    await received_copy(nodes, "s1")


@pytest_twisted.ensureDeferred
async def test_receiver_rejects_bad_stream(nodes: Nodes) -> None:
    """
    Garbage with a matching checksum is refused by the backend itself
    (bad-stream); the receiver keeps its previous state.
    """
    await setup_source(nodes)
    port = await nodes.listen()
    await nodes.push("s1")
    before = await state_of(nodes.receiver)
    junk = os.urandom(200_000)
    header = TransferHeader(
        dataset_id=DATASET,
        snapshot="s2",
        base="s1",
        stream_format=nodes.receiver.capabilities.stream_format,
    )
    client = RawSender(
        PREAMBLE + encode_json(HEADER, header.to_json()),
        [
            encode_frame(DATA, junk),
            encode_json(
                TRAILER,
                {"bytes": len(junk), CHECKSUM: checksum_of(junk)},
            ),
        ],
    )
    endpoint = wrapClientTLS(
        node_client_context_factory(
            nodes.sender_tls.credential, nodes.sender_tls.authority
        ),
        TCP4ClientEndpoint(reactor, "127.0.0.1", port),
    )
    await connectProtocol(endpoint, client)
    answers = await client.closed
    assert answers[-1][0] == STATUS and b'"bad-stream"' in answers[-1][1]
    assert await state_of(nodes.receiver) == before
    await nodes.push("s2", "s1")
    await received_copy(nodes, "s2")


def test_failure_types() -> None:
    """Every transfer failure the sender raises is a TransferError with a code."""
    for error_type in (TransferRefused, TransferFailed, TransferInterrupted):
        error = error_type("code", "message")
        assert (error.code, error.message) == ("code", "message")
        assert "code" in str(error)


@pytest_twisted.ensureDeferred
async def test_one_eliot_task(nodes: Nodes, eliot_logger: Any) -> None:
    """The send and receive actions are logged in one eliot task."""
    await setup_source(nodes, size=100_000)
    await nodes.listen()
    result = await nodes.push("s1")
    actions = {
        m["action_type"]: m
        for m in eliot_logger.messages
        if m.get("action_type", "").startswith("flocker:volume:transfer:")
        and m.get("action_status") == "succeeded"
    }
    send = actions["flocker:volume:transfer:send"]
    receive = actions["flocker:volume:transfer:receive"]
    assert send["task_uuid"] == receive["task_uuid"]
    assert send["bytes"] == receive["bytes"] == result.bytes_sent
    assert send["result"] == receive["result"] == "ok"


@pytest_twisted.ensureDeferred
async def test_receiver_disk_full(
    make_zfs_pool: Callable[..., Any], tmp_path: Path
) -> None:
    """
    A receiver whose pool fills up mid-stream refuses the stream (the
    sender raises TransferFailed), keeps no trace of it, and the sender's
    data is untouched.
    """
    credentials_dir = tmp_path / "credentials"
    credentials_dir.mkdir()
    credentials = make_test_cluster_credentials(credentials_dir)
    sender = ZFSVolumeBackend(reactor, make_zfs_pool(size="1G").name)
    small = make_zfs_pool(size="64M")
    receiver = ZFSVolumeBackend(reactor, small.name)
    nodes = Nodes("zfs", sender, receiver, credentials, ([], []))
    try:
        info = await sender.create(DATASET)
        write_random(info, "big", 80 * MiB)
        await sender.snapshot(DATASET, "s1")
        sender_before = await state_of(sender)
        await nodes.listen()
        ended = nodes.next_outcome()
        with pytest.raises(TransferFailed) as caught:
            await nodes.push("s1")
        assert caught.value.code == "bad-stream"
        assert (await ended).code == "bad-stream"
        assert await state_of(receiver) == {}
        assert await state_of(sender) == sender_before
    finally:
        if nodes.port is not None:
            await stop_listening(nodes.port)
        await sender.destroy(DATASET)
        await receiver.destroy(DATASET)
