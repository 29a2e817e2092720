"""
The part of the :class:`IVolumeBackend` contract about replacing full
receives (``receive(dataset_id, replace=True)``).

:class:`ReplaceContract` is a base of the test class that
:func:`flocker.volume.testtools.make_volume_backend_tests` builds, so every
backend passes it; its tests use that class's ``harness``, ``backend`` and
``origin`` fixtures.  The scene is a standing replica that shares no
snapshot with its primary any more: ``backend`` is the primary, and
another backend holds an old copy of the dataset (made writable, changed,
with a snapshot of its own).  Both sides of ``clones_depend_on_origin`` are
tested: where a backend claims it, an old copy with a clone is not
replaced; where it does not, it is and the clone keeps its data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest
import pytest_twisted
from zope.interface.verify import verifyObject

from ._contract_tools import (
    ID1,
    ID2,
    Files,
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
    DependentClones,
    InvalidBase,
    InvalidName,
    IStreamSink,
    IVolumeBackend,
)
from ._read_only_contract import check_read_only


@dataclass
class _OldCopy:
    """What the receiving backend held before a replacing receive."""

    backend: IVolumeBackend
    files: Files
    snapshots: list[str]
    read_only: bool


async def _old_copy(
    harness: VolumeHarness, backend: IVolumeBackend, read_only: bool = False
) -> _OldCopy:
    """
    Another backend with an old copy of ``ID1``: received from ``backend``
    at ``s1``, made writable, changed, snapshotted as ``old-snap``, changed
    again without a snapshot, then given the flag ``read_only``.
    """
    other = await harness.make_backend()
    sink = await other.receive(ID1)
    feed(sink, await stream_bytes(await backend.send(ID1, "s1")))
    await sink.finish()
    info = await other.set_read_only(ID1, False)
    harness.write_file(other, info, "old-only", b"only in the old copy")
    await other.snapshot(ID1, "old-snap")
    harness.write_file(other, info, "a.txt", b"unsaved change of the old copy")
    info = await other.set_read_only(ID1, read_only)
    return _OldCopy(
        backend=other,
        files=harness.read_files(other, info),
        snapshots=await snapshot_names(other, ID1),
        read_only=read_only,
    )


async def _new_snapshot(harness: VolumeHarness, backend: IVolumeBackend) -> Files:
    """
    The primary moves on: ``s1`` is destroyed (so the copies share no
    snapshot) and ``s2`` taken of changed files.

    :return: The files of ``s2``.
    """
    info = await backend.get(ID1)
    harness.write_file(backend, info, "a.txt", b"alpha, new")
    harness.write_file(backend, info, "new-only", b"only in the new copy")
    await backend.snapshot(ID1, "s2")
    await backend.destroy_snapshot(ID1, "s1")
    return harness.read_files(backend, info)


async def _assert_unchanged(harness: VolumeHarness, old: _OldCopy) -> None:
    """The old copy is exactly as it was: files, snapshots, flag, listing."""
    info = await old.backend.get(ID1)
    assert harness.read_files(old.backend, info) == old.files
    assert await snapshot_names(old.backend, ID1) == old.snapshots
    assert info.read_only is old.read_only
    assert [d.dataset_id for d in await old.backend.list_datasets()] == [ID1]


class ReplaceContract:
    """Replacing full receives: ``receive(dataset_id, replace=True)``."""

    @pytest.mark.parametrize("read_only", [True, False], ids=["read-only", "writable"])
    @pytest_twisted.ensureDeferred
    async def test_replace_existing_copy(
        self,
        harness: VolumeHarness,
        backend: IVolumeBackend,
        origin: DatasetInfo,
        read_only: bool,
    ) -> None:
        """
        A replacing full receive leaves the old copy untouched while the
        stream flows; ``finish`` replaces it with the received snapshot's
        data and only that snapshot, read-only whatever the old flag, and
        incremental rounds from the new snapshot work afterwards.
        """
        old = await _old_copy(harness, backend, read_only=read_only)
        s2 = await _new_snapshot(harness, backend)
        sink = await old.backend.receive(ID1, replace=True)
        assert verifyObject(IStreamSink, sink)
        assert (sink.dataset_id, sink.base) == (ID1, None)
        feed(sink, await stream_bytes(await backend.send(ID1, "s2")))
        await _assert_unchanged(harness, old)
        await sink.finish()
        await sink.abort()  # too late: does nothing
        info = await old.backend.get(ID1)
        assert harness.read_files(old.backend, info) == s2
        assert await snapshot_names(old.backend, ID1) == ["s2"]
        assert [(d.dataset_id, d.read_only) for d in await old.backend.list_datasets()] == [
            (ID1, True)
        ]
        check_read_only(harness, old.backend, info)
        harness.write_file(backend, await backend.get(ID1), "a.txt", b"round 2")
        await backend.snapshot(ID1, "s3")
        sink = await old.backend.receive(ID1, base="s2")
        feed(sink, await stream_bytes(await backend.send(ID1, "s3", base="s2")))
        await sink.finish()
        assert await snapshot_names(old.backend, ID1) == ["s2", "s3"]
        after = harness.read_files(old.backend, await old.backend.get(ID1))
        assert after["a.txt"] == b"round 2"

    @pytest.mark.parametrize("read_only", [True, False], ids=["read-only", "writable"])
    @pytest_twisted.ensureDeferred
    async def test_abort_keeps_old_copy(
        self,
        harness: VolumeHarness,
        backend: IVolumeBackend,
        origin: DatasetInfo,
        read_only: bool,
    ) -> None:
        """
        Aborting a replacing receive halfway, or after the whole stream,
        leaves the old copy exactly as it was, its flag included; a new
        replacing receive then still works.
        """
        old = await _old_copy(harness, backend, read_only=read_only)
        await _new_snapshot(harness, backend)
        stream = await stream_bytes(await backend.send(ID1, "s2"))
        for part in [stream[: len(stream) // 2], stream]:
            sink = await old.backend.receive(ID1, replace=True)
            feed(sink, part, chunk_size=4096)
            await sink.abort()
            await sink.abort()
            await _assert_unchanged(harness, old)
        sink = await old.backend.receive(ID1, replace=True)
        feed(sink, stream)
        await sink.finish()
        assert await snapshot_names(old.backend, ID1) == ["s2"]

    @pytest_twisted.ensureDeferred
    async def test_bad_stream_keeps_old_copy(
        self, harness: VolumeHarness, backend: IVolumeBackend, origin: DatasetInfo
    ) -> None:
        """
        Truncated, corrupt or foreign streams fail a replacing receive's
        ``finish`` with BadStream and leave the old copy as it was.
        """
        old = await _old_copy(harness, backend)
        await _new_snapshot(harness, backend)
        stream = await stream_bytes(await backend.send(ID1, "s2"))
        for bad in [
            stream[: len(stream) // 2],
            stream[:-1],
            corrupt(stream),
            os.urandom(10_000),
            b"",
        ]:
            sink = await old.backend.receive(ID1, replace=True)
            feed(sink, bad)
            await fails(sink.finish(), BadStream)
            await sink.abort()
            await _assert_unchanged(harness, old)

    @pytest_twisted.ensureDeferred
    async def test_replace_missing_dataset(
        self, harness: VolumeHarness, backend: IVolumeBackend, origin: DatasetInfo
    ) -> None:
        """
        Where the dataset does not exist, a replacing receive is a plain
        full receive: it creates the dataset, read-only, and an abort
        leaves none.
        """
        expected = harness.read_files(backend, origin)
        other = await harness.make_backend()
        stream = await stream_bytes(await backend.send(ID1, "s1"))
        sink = await other.receive(ID1, replace=True)
        feed(sink, stream[: len(stream) // 2])
        await sink.abort()
        assert await other.list_datasets() == []
        sink = await other.receive(ID1, replace=True)
        feed(sink, stream)
        await sink.finish()
        info = await other.get(ID1)
        assert harness.read_files(other, info) == expected
        assert await snapshot_names(other, ID1) == ["s1"]
        check_read_only(harness, other, info)

    @pytest_twisted.ensureDeferred
    async def test_replace_refused_with_base(
        self, harness: VolumeHarness, backend: IVolumeBackend, origin: DatasetInfo
    ) -> None:
        """
        ``replace`` with a base is InvalidBase (a ValueError) and a
        ``replace`` that is not a bool InvalidName, both up front; without
        ``replace`` a full receive into an existing dataset is still
        DatasetExists.  Nothing changes.
        """
        files = harness.read_files(backend, origin)
        error = await fails(backend.receive(ID1, base="s1", replace=True), InvalidBase)
        assert isinstance(error, ValueError)
        await fails(backend.receive(ID1, replace="yes"), InvalidName)  # type: ignore[arg-type]
        await fails(backend.receive(ID1, replace=False), DatasetExists)
        assert harness.read_files(backend, await backend.get(ID1)) == files
        assert await snapshot_names(backend, ID1) == ["s1"]

    @pytest_twisted.ensureDeferred
    async def test_replace_with_dependent_clone(
        self, harness: VolumeHarness, backend: IVolumeBackend, origin: DatasetInfo
    ) -> None:
        """
        Where clones depend on their origin, an old copy whose snapshot has
        a clone is not replaced: ``finish`` fails with DependentClones and
        the old copy and the clone stay as they were.  Elsewhere the old
        copy is replaced and the clone keeps its data.
        """
        old = await _old_copy(harness, backend)
        clone = await old.backend.clone(ID1, "old-snap", ID2)
        harness.write_file(old.backend, clone, "clone-only", b"the clone's")
        clone_files = harness.read_files(old.backend, clone)
        s2 = await _new_snapshot(harness, backend)
        sink = await old.backend.receive(ID1, replace=True)
        feed(sink, await stream_bytes(await backend.send(ID1, "s2")))
        if old.backend.capabilities.clones_depend_on_origin:
            await fails(sink.finish(), DependentClones)
            info = await old.backend.get(ID1)
            assert harness.read_files(old.backend, info) == old.files
            assert await snapshot_names(old.backend, ID1) == old.snapshots
            assert info.read_only is False
        else:
            await sink.finish()
            info = await old.backend.get(ID1)
            assert harness.read_files(old.backend, info) == s2
            assert await snapshot_names(old.backend, ID1) == ["s2"]
        listed = [d.dataset_id for d in await old.backend.list_datasets()]
        assert listed == sorted([ID1, ID2])
        again = await old.backend.get(ID2)
        assert harness.read_files(old.backend, again) == clone_files
