"""Tests for the stream helpers every backend builds on."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import pytest_twisted
from eliot.testing import capture_logging
from twisted.internet import reactor
from twisted.internet.interfaces import IPushProducer
from twisted.trial.unittest import SynchronousTestCase

from .. import BadStream, IStreamSink, IStreamSource, StreamStopped
from .._streams import (
    DIGEST_SIZE,
    BytesStreamSource,
    DigestTrailer,
    ProcessStreamSink,
    ProcessStreamSource,
)
from ..memory import MemoryVolumeBackend
from ..testtools import BytesConsumer, RecordingProducer

ID = "6f2bb4a7-7c3a-4a7e-9b6e-0d1f1e7c2a01"


def _with_trailer(payload: bytes) -> bytes:
    return payload + hashlib.sha256(payload).digest()


class DigestTrailerTests(SynchronousTestCase):
    """DigestTrailer passes on the payload and checks the trailer."""

    def test_payload_any_chunking(self) -> None:
        """However the stream is cut into writes, the payload comes out whole."""
        payload = bytes(range(256)) * 10
        stream = _with_trailer(payload)
        for size in [1, 7, 31, 32, 33, 1000, len(stream)]:
            trailer = DigestTrailer()
            out = b"".join(
                trailer.feed(stream[i : i + size]) for i in range(0, len(stream), size)
            )
            self.assertEqual(out, payload)
            self.assertIsNone(trailer.problem())

    def test_truncated(self) -> None:
        """A stream shorter than a digest, or cut short, is reported."""
        for stream in [b"", b"x" * (DIGEST_SIZE - 1), _with_trailer(b"abc" * 50)[:-1]]:
            trailer = DigestTrailer()
            trailer.feed(stream)
            self.assertIsNotNone(trailer.problem())

    def test_corrupt(self) -> None:
        """A changed byte anywhere is reported."""
        stream = bytearray(_with_trailer(b"some payload" * 20))
        for index in [0, 100, len(stream) - 1]:
            spoiled = bytearray(stream)
            spoiled[index] ^= 1
            trailer = DigestTrailer()
            trailer.feed(bytes(spoiled))
            self.assertIsNotNone(trailer.problem())


class BytesStreamSourceTests(SynchronousTestCase):
    """BytesStreamSource is a well-behaved push producer."""

    def source(self) -> BytesStreamSource:
        return BytesStreamSource(
            b"x" * 1000,
            dataset_id=ID,
            snapshot="s",
            base=None,
            stream_format="f",
            chunk_size=100,
        )

    def test_provides(self) -> None:
        """It provides IStreamSource and IPushProducer."""
        from zope.interface.verify import verifyObject

        self.assertTrue(verifyObject(IStreamSource, self.source()))
        self.assertTrue(verifyObject(IPushProducer, self.source()))

    def test_pause_resume(self) -> None:
        """Nothing is written while paused; everything once resumed."""
        source = self.source()
        consumer = BytesConsumer(pause_after=3)
        done = source.start(consumer)
        self.assertNoResult(done)
        self.assertEqual(len(consumer.chunks), 3)
        source.resumeProducing()
        self.assertIsNone(self.successResultOf(done))
        self.assertEqual(consumer.value(), b"x" * 1000)
        self.assertTrue(consumer.unregistered)

    def test_stop(self) -> None:
        """Stopping fails the stream with StreamStopped."""
        source = self.source()
        consumer = BytesConsumer(pause_after=1)
        done = source.start(consumer)
        source.stop()
        self.failureResultOf(done, StreamStopped)
        source.resumeProducing()
        self.assertEqual(len(consumer.chunks), 1)

    def test_start_twice(self) -> None:
        """A source runs only once."""
        source = self.source()
        source.start(BytesConsumer())
        self.assertRaises(RuntimeError, source.start, BytesConsumer())


class MemoryBackendSynchronousTests(SynchronousTestCase):
    """The fake works without a reactor, as other packages' unit tests need."""

    def test_round_trip(self) -> None:
        """Create, snapshot, send and receive all complete synchronously."""
        sender, receiver = MemoryVolumeBackend(), MemoryVolumeBackend()
        self.successResultOf(sender.create(ID))
        sender.write_file(ID, "f", b"data")
        self.successResultOf(sender.snapshot(ID, "s"))
        source = self.successResultOf(sender.send(ID, "s"))
        sink = self.successResultOf(receiver.receive(ID))
        self.successResultOf(source.start(sink))
        self.successResultOf(sink.finish())
        self.assertEqual(receiver.read_files(ID), {"f": b"data"})

    @capture_logging(None)  # type: ignore[untyped-decorator]  # eliot is untyped
    def test_logged(self, logger: Any) -> None:
        """Each operation is an eliot action named flocker:volume:<verb>."""
        backend = MemoryVolumeBackend()
        self.successResultOf(backend.create(ID, maximum_size=1000))
        self.successResultOf(backend.snapshot(ID, "s"))
        types = [m.get("action_type") for m in logger.messages]
        self.assertIn("flocker:volume:create", types)
        self.assertIn("flocker:volume:snapshot", types)
        started = [
            m for m in logger.messages
            if m.get("action_type") == "flocker:volume:create"
            and m.get("action_status") == "started"
        ]  # fmt: skip
        self.assertEqual(
            (started[0]["dataset_id"], started[0]["maximum_size"], started[0]["backend"]),
            (ID, 1000, "memory"),
        )


def _sink(argv: list[str], committed: list[bytes]) -> ProcessStreamSink:
    async def commit(header: bytes, writable: bool) -> None:
        committed.append(header)

    async def discard() -> None:
        committed.append(b"discarded")

    return ProcessStreamSink(
        reactor,
        argv,
        backend="test",
        dataset_id=ID,
        base=None,
        stream_format="f",
        commit=commit,
        discard=discard,
        check_digest=True,
        header=True,
    )


@pytest.mark.functional
@pytest_twisted.ensureDeferred
async def test_process_sink_back_pressure() -> None:
    """A slow command's full pipe pauses the producer; the data all arrives."""
    committed: list[bytes] = []
    sink = _sink(["sh", "-c", "sleep 0.5; wc -c"], committed)
    assert IStreamSink.providedBy(sink)
    producer = RecordingProducer()
    sink.registerProducer(producer, True)
    payload = b"head\n" + b"y" * (16 * 1024 * 1024)  # beyond what is buffered
    stream = _with_trailer(payload)
    for offset in range(0, len(stream), 65536):
        sink.write(stream[offset : offset + 65536])
    assert "pause" in producer.calls
    sink.unregisterProducer()
    await sink.finish()
    assert committed == [b"head\n"]


@pytest.mark.functional
@pytest_twisted.ensureDeferred
async def test_process_sink_command_dies() -> None:
    """If the command exits early the producer is stopped and finish fails."""
    committed: list[bytes] = []
    sink = _sink(["sh", "-c", "exit 3"], committed)
    producer = RecordingProducer()
    sink.registerProducer(producer, True)
    from twisted.internet.task import deferLater

    while "stop" not in producer.calls:
        sink.write(b"z" * 65536)
        await deferLater(reactor, 0.01, lambda: None)
    with pytest.raises(BadStream):
        await sink.finish()
    assert committed == [b"discarded"]


@pytest.mark.functional
@pytest_twisted.ensureDeferred
async def test_process_source_failure() -> None:
    """A failing command fails the stream with its standard error."""
    from .. import SendFailed

    source = ProcessStreamSource(
        reactor,
        ["sh", "-c", "echo partial; echo oops >&2; exit 2"],
        backend="test",
        dataset_id=ID,
        snapshot="s",
        base=None,
        stream_format="f",
    )
    consumer = BytesConsumer()
    with pytest.raises(SendFailed, match="oops"):
        await source.start(consumer)
    assert consumer.unregistered


@pytest.mark.functional
@pytest_twisted.ensureDeferred
async def test_process_source_stopped_before_start() -> None:
    """A source stopped before it starts runs nothing and fails at once."""
    source = ProcessStreamSource(
        reactor,
        ["sh", "-c", "echo should not run"],
        backend="test",
        dataset_id=ID,
        snapshot="s",
        base=None,
        stream_format="f",
    )
    source.stop()
    consumer = BytesConsumer()
    with pytest.raises(StreamStopped):
        await source.start(consumer)
    assert consumer.chunks == []
