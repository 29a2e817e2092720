"""
The part of the :class:`IVolumeBackend` contract about streams (``send``
and ``receive``, full and incremental, bad, aborted, paused and stopped).

:class:`StreamContract` is a base of the test class that
:func:`flocker.volume.testtools.make_volume_backend_tests` builds, so every
backend passes it; its tests use that class's ``harness``, ``backend`` and
``origin`` fixtures.  Both sides of ``incremental_send`` are tested: where a
backend claims it, a stream with a base carries only the changes; where it
does not, it carries everything with the same result.
"""

from __future__ import annotations

import os

import pytest
import pytest_twisted
from twisted.internet.task import deferLater
from zope.interface.verify import verifyObject

from ._contract_tools import (
    ID1,
    BytesConsumer,
    Files,
    MiB,
    VolumeHarness,
    corrupt,
    fails,
    feed,
    snapshot_names,
    stream_bytes,
)
from ._interface import (
    BadStream,
    DatasetExists,
    DatasetInfo,
    InvalidBase,
    IStreamSink,
    IStreamSource,
    IVolumeBackend,
    StreamStopped,
    UnknownDataset,
)


class StreamContract:
    """Streams: ``send`` into ``receive``, on another backend ("node")."""

    @pytest_twisted.ensureDeferred
    async def test_send_full(
        self, harness: VolumeHarness, backend: IVolumeBackend, origin: DatasetInfo
    ) -> None:
        """A full stream recreates the snapshot on another backend."""
        expected = harness.read_files(backend, origin)
        harness.write_file(backend, origin, "unsaved", b"not sent")
        other = await harness.make_backend()
        source = await backend.send(ID1, "s1")
        assert verifyObject(IStreamSource, source)
        assert source.stream_format == backend.capabilities.stream_format
        sink = await other.receive(ID1)
        assert verifyObject(IStreamSink, sink)
        await source.start(sink)
        await sink.finish()
        await sink.abort()  # too late: does nothing
        received = await other.get(ID1)
        assert harness.read_files(other, received) == expected
        assert await snapshot_names(other, ID1) == ["s1"]
        assert [d.dataset_id for d in await other.list_datasets()] == [ID1]
        assert harness.read_files(backend, origin)["unsaved"] == b"not sent"

    @pytest_twisted.ensureDeferred
    async def test_receive_existing(
        self, harness: VolumeHarness, backend: IVolumeBackend, origin: DatasetInfo
    ) -> None:
        """A full receive into an existing dataset is refused up front."""
        await fails(backend.receive(ID1), DatasetExists)
        assert await snapshot_names(backend, ID1) == ["s1"]

    async def _incremental_setup(
        self, harness: VolumeHarness, backend: IVolumeBackend, diverge: bool = True
    ) -> tuple[IVolumeBackend, bytes, Files, Files]:
        """
        Send s1 in full to another backend, then (``diverge``) make the
        received copy writable and change things there: a later
        snapshot and unsaved changes.  Without, the base of the s1->s2
        stream is the receiver's newest snapshot, as in every round of
        a move, and the received copy stays read-only.

        :return: The other backend, the incremental s1->s2 stream, the
            files of s2, and the other backend's files before receiving.
        """
        other = await harness.make_backend()
        sink = await other.receive(ID1)
        feed(sink, await stream_bytes(await backend.send(ID1, "s1")))
        await sink.finish()
        info = await backend.get(ID1)
        harness.write_file(backend, info, "a.txt", b"alpha, changed")
        harness.delete_file(backend, info, "dir/b.bin")
        harness.write_file(backend, info, "new/c", os.urandom(100_000))
        await backend.snapshot(ID1, "s2")
        s2 = harness.read_files(backend, info)
        stream = await stream_bytes(await backend.send(ID1, "s2", base="s1"))
        there = await other.get(ID1)
        if diverge:
            there = await other.set_read_only(ID1, False)
            harness.write_file(other, there, "local", b"local change")
            await other.snapshot(ID1, "local-snap")
            harness.write_file(other, there, "unsaved", b"unsaved change")
        before = harness.read_files(other, there)
        return other, stream, s2, before

    @pytest_twisted.ensureDeferred
    async def test_failed_increment_onto_newest_snapshot(
        self, harness: VolumeHarness, backend: IVolumeBackend, origin: DatasetInfo
    ) -> None:
        """
        Cut, corrupt or foreign streams, an abort halfway and an abort
        after the whole stream all leave the receiver as it was.
        """
        other, stream, _, before = await self._incremental_setup(harness, backend, diverge=False)
        full = await stream_bytes(await backend.send(ID1, "s2"))
        for bad in [stream[: len(stream) // 2], corrupt(stream), full]:
            sink = await other.receive(ID1, base="s1")
            feed(sink, bad)
            await fails(sink.finish(), BadStream)
            assert harness.read_files(other, await other.get(ID1)) == before
            assert await snapshot_names(other, ID1) == ["s1"]
        for part in [stream[: len(stream) // 2], stream]:
            sink = await other.receive(ID1, base="s1")
            feed(sink, part, chunk_size=4096)
            await sink.abort()
            assert harness.read_files(other, await other.get(ID1)) == before
            assert await snapshot_names(other, ID1) == ["s1"]
        sink = await other.receive(ID1, base="s1")
        feed(sink, stream)
        await sink.finish()
        assert await snapshot_names(other, ID1) == ["s1", "s2"]

    @pytest.mark.parametrize("diverge", [True, False], ids=["diverged", "newest"])
    @pytest_twisted.ensureDeferred
    async def test_send_incremental(
        self,
        harness: VolumeHarness,
        backend: IVolumeBackend,
        origin: DatasetInfo,
        diverge: bool,
    ) -> None:
        """
        An incremental stream brings the receiver to the new snapshot,
        whether the receiver has snapshots after the base (diverged) or
        the base is its newest snapshot (every round of a move).
        """
        other, stream, s2, _ = await self._incremental_setup(
            harness, backend, diverge=diverge
        )
        sink = await other.receive(ID1, base="s1")
        feed(sink, stream, chunk_size=4096)
        await sink.finish()
        assert harness.read_files(other, await other.get(ID1)) == s2
        assert await snapshot_names(other, ID1) == ["s1", "s2"]

    @pytest_twisted.ensureDeferred
    async def test_incremental_is_small(
        self, harness: VolumeHarness, backend: IVolumeBackend, origin: DatasetInfo
    ) -> None:
        """Where claimed, a stream with a base carries only the changes."""
        harness.write_file(backend, origin, "small", b"a small change")
        await backend.snapshot(ID1, "s2")
        full = await stream_bytes(await backend.send(ID1, "s2"))
        since = await stream_bytes(await backend.send(ID1, "s2", base="s1"))
        assert len(full) > MiB
        if backend.capabilities.incremental_send:
            assert len(since) < MiB / 4
        else:
            assert len(since) > MiB

    @pytest_twisted.ensureDeferred
    async def test_invalid_base(
        self, backend: IVolumeBackend, origin: DatasetInfo
    ) -> None:
        """A base that is not older than the snapshot is refused."""
        await backend.snapshot(ID1, "s2")
        await fails(backend.send(ID1, "s1", base="s2"), InvalidBase)
        await fails(backend.send(ID1, "s1", base="s1"), InvalidBase)

    @pytest_twisted.ensureDeferred
    async def test_abort_full(
        self, harness: VolumeHarness, backend: IVolumeBackend, origin: DatasetInfo
    ) -> None:
        """Aborting a full receive halfway leaves no dataset."""
        other = await harness.make_backend()
        stream = await stream_bytes(await backend.send(ID1, "s1"))
        sink = await other.receive(ID1)
        feed(sink, stream[: len(stream) // 2])
        await sink.abort()
        await sink.abort()
        assert await other.list_datasets() == []
        await fails(other.get(ID1), UnknownDataset)
        again = await other.receive(ID1)
        feed(again, stream)
        await again.finish()
        assert await snapshot_names(other, ID1) == ["s1"]

    @pytest_twisted.ensureDeferred
    async def test_abort_incremental(
        self, harness: VolumeHarness, backend: IVolumeBackend, origin: DatasetInfo
    ) -> None:
        """Aborting an incremental receive halfway keeps the previous state."""
        other, stream, _, before = await self._incremental_setup(harness, backend)
        sink = await other.receive(ID1, base="s1")
        feed(sink, stream[: len(stream) // 2], chunk_size=4096)
        await sink.abort()
        assert harness.read_files(other, await other.get(ID1)) == before
        assert await snapshot_names(other, ID1) == ["s1", "local-snap"]

    @pytest_twisted.ensureDeferred
    async def test_bad_full_streams(
        self, harness: VolumeHarness, backend: IVolumeBackend, origin: DatasetInfo
    ) -> None:
        """Truncated, corrupt or foreign full streams fail and leave nothing."""
        other = await harness.make_backend()
        stream = await stream_bytes(await backend.send(ID1, "s1"))
        for bad in [
            stream[: len(stream) // 2],
            stream[:-1],
            corrupt(stream),
            os.urandom(10_000),
            b"",
        ]:
            sink = await other.receive(ID1)
            feed(sink, bad)
            await fails(sink.finish(), BadStream)
            await sink.abort()
            assert await other.list_datasets() == []

    @pytest_twisted.ensureDeferred
    async def test_bad_incremental_streams(
        self, harness: VolumeHarness, backend: IVolumeBackend, origin: DatasetInfo
    ) -> None:
        """Bad incremental streams fail and keep the previous state."""
        other, stream, _, before = await self._incremental_setup(harness, backend)
        full = await stream_bytes(await backend.send(ID1, "s2"))
        for bad in [stream[: len(stream) // 2], corrupt(stream), full]:
            sink = await other.receive(ID1, base="s1")
            feed(sink, bad)
            await fails(sink.finish(), BadStream)
            assert harness.read_files(other, await other.get(ID1)) == before
            assert await snapshot_names(other, ID1) == ["s1", "local-snap"]

    @pytest_twisted.ensureDeferred
    async def test_source_pauses(
        self, backend: IVolumeBackend, origin: DatasetInfo
    ) -> None:
        """A source writes nothing while paused and all once resumed."""
        from twisted.internet import reactor

        whole = await stream_bytes(await backend.send(ID1, "s1"))
        source = await backend.send(ID1, "s1")
        consumer = BytesConsumer(pause_after=1)
        done = source.start(consumer)
        for _ in range(5):
            await deferLater(reactor, 0.02, lambda: None)
        assert len(consumer.chunks) == 1
        consumer.producer.resumeProducing()
        await done
        assert consumer.value() == whole
        assert consumer.unregistered

    @pytest_twisted.ensureDeferred
    async def test_source_stop(
        self, backend: IVolumeBackend, origin: DatasetInfo
    ) -> None:
        """A stopped source fails with StreamStopped and writes no more."""
        source = await backend.send(ID1, "s1")
        consumer = BytesConsumer(pause_after=1)
        done = source.start(consumer)
        source.stop()
        await fails(done, StreamStopped)
        assert len(consumer.chunks) <= 1
