"""
The part of the :class:`IVolumeBackend` contract about set-aside snapshots
(``set_aside`` and ``list_set_aside``).

:class:`SetAsideContract` is a base of the test class that
:func:`flocker.volume.testtools.make_volume_backend_tests` builds, so every
backend passes it; its tests use that class's ``harness``, ``backend`` and
``origin`` fixtures.  The scene is a failover and the old primary's return:
``backend`` is the new primary, and another backend holds the old
primary's copy, which shares ``s1`` with it and holds writes (a snapshot
and unsaved changes) the new primary never got.  What was set aside is
read back through a clone of the set-aside snapshot.  Both sides of
``clones_depend_on_origin`` are tested for such a clone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest_twisted
from twisted.internet.defer import Deferred

from ._contract_tools import (
    ID1,
    ID2,
    UNKNOWN,
    Files,
    VolumeHarness,
    fails,
    feed,
    snapshot_names,
    stream_bytes,
)
from ._interface import (
    DatasetInfo,
    DependentClones,
    InvalidName,
    IVolumeBackend,
    SnapshotExists,
    UnknownDataset,
    UnknownSnapshot,
)

ID3 = "4c1f0b3e-5a9d-4e7b-8f21-6d0a9c3b7e03"


async def _set_aside_names(backend: IVolumeBackend, dataset_id: str) -> list[str]:
    return [s.name for s in await backend.list_set_aside(dataset_id)]


async def _read_set_aside(
    harness: VolumeHarness, backend: IVolumeBackend, name: str, clone_id: str = ID2
) -> Files:
    """The files of ``ID1``'s set-aside snapshot ``name``, through a clone."""
    clone = await backend.clone(ID1, name, clone_id)
    files = harness.read_files(backend, clone)
    await backend.destroy(clone_id)
    return files


async def _push(
    sender: IVolumeBackend, receiver: IVolumeBackend, snapshot: str, base: str
) -> None:
    """One replication round: ``ID1@snapshot`` since ``base`` into ``receiver``."""
    sink = await receiver.receive(ID1, base=base)
    feed(sink, await stream_bytes(await sender.send(ID1, snapshot, base=base)))
    await sink.finish()


async def _diverged(
    harness: VolumeHarness, backend: IVolumeBackend
) -> tuple[IVolumeBackend, Files]:
    """
    The old primary: another backend that received ``s1`` in full, was
    then written to (snapshot ``old-1`` and unsaved changes) while the new
    primary (``backend``) took ``s2`` of its own writes.

    :return: The old primary and its files (what must be set aside).
    """
    old = await harness.make_backend()
    sink = await old.receive(ID1)
    feed(sink, await stream_bytes(await backend.send(ID1, "s1")))
    await sink.finish()
    info = await old.set_read_only(ID1, False)
    harness.write_file(old, info, "a.txt", b"written on the old primary")
    await old.snapshot(ID1, "old-1")
    harness.write_file(old, info, "unsaved", b"never snapshotted")
    new = await backend.get(ID1)
    harness.write_file(backend, new, "a.txt", b"written on the new primary")
    await backend.snapshot(ID1, "s2")
    return old, harness.read_files(old, info)


class SetAsideContract:
    """Set-aside snapshots: ``set_aside`` and ``list_set_aside``."""

    @pytest_twisted.ensureDeferred
    async def test_set_aside_returns_to_base_and_keeps_contents(
        self, harness: VolumeHarness, backend: IVolumeBackend, origin: DatasetInfo
    ) -> None:
        """
        After ``set_aside`` the dataset holds its base's contents and only
        the snapshots up to it, like a rollback; the set-aside snapshot
        holds the contents of the moment, later snapshot's and unsaved
        changes included, and is listed apart from the snapshots.
        """
        s1 = harness.read_files(backend, origin)
        harness.write_file(backend, origin, "a.txt", b"in s2")
        await backend.snapshot(ID1, "s2")
        harness.write_file(backend, origin, "unsaved", b"never snapshotted")
        expected = harness.read_files(backend, origin)
        info = await backend.set_aside(ID1, "aside", "s1")
        assert info.name == "aside"
        assert await backend.list_set_aside(ID1) == [info]
        assert harness.read_files(backend, await backend.get(ID1)) == s1
        assert await snapshot_names(backend, ID1) == ["s1"]
        assert (await backend.get(ID1)).read_only is False
        assert [d.dataset_id for d in await backend.list_datasets()] == [ID1]
        assert await _read_set_aside(harness, backend, "aside") == expected

    @pytest_twisted.ensureDeferred
    async def test_set_aside_then_replication_rounds(
        self, harness: VolumeHarness, backend: IVolumeBackend, origin: DatasetInfo
    ) -> None:
        """
        An old primary that set its divergence aside takes the new
        primary's increments from the shared base, round after round, and
        then drops the base and the snapshots that moved away (pruning);
        the set-aside stays, with the old primary's writes.
        """
        old, diverged = await _diverged(harness, backend)
        await old.set_aside(ID1, "flocker-diverged-2-1", "s1")
        await _push(backend, old, "s2", "s1")
        new = await backend.get(ID1)
        assert harness.read_files(old, await old.get(ID1)) == harness.read_files(
            backend, new
        )
        harness.write_file(backend, new, "round-2", b"second round")
        await backend.snapshot(ID1, "s3")
        await _push(backend, old, "s3", "s2")
        assert await snapshot_names(old, ID1) == ["s1", "s2", "s3"]
        for pruned in ["s1", "old-1", "s2"]:
            await old.destroy_snapshot(ID1, pruned)
        assert await snapshot_names(old, ID1) == ["s3"]
        assert harness.read_files(old, await old.get(ID1)) == harness.read_files(
            backend, new
        )
        assert await _set_aside_names(old, ID1) == ["flocker-diverged-2-1"]
        assert await _read_set_aside(harness, old, "flocker-diverged-2-1") == diverged
        assert [d.dataset_id for d in await old.list_datasets()] == [ID1]

    @pytest_twisted.ensureDeferred
    async def test_set_aside_survives_rollbacks(
        self, harness: VolumeHarness, backend: IVolumeBackend, origin: DatasetInfo
    ) -> None:
        """
        Rollbacks after a set-aside, to the base and past it, keep the
        set-aside snapshot and its contents.
        """
        s1 = harness.read_files(backend, origin)
        harness.write_file(backend, origin, "b", b"in s2")
        await backend.snapshot(ID1, "s2")
        s2 = harness.read_files(backend, origin)
        harness.write_file(backend, origin, "c", b"set aside")
        expected = harness.read_files(backend, origin)
        await backend.set_aside(ID1, "aside", "s2")
        assert harness.read_files(backend, await backend.get(ID1)) == s2
        info = await backend.get(ID1)
        harness.write_file(backend, info, "d", b"after the set-aside")
        await backend.snapshot(ID1, "s3")
        await backend.rollback(ID1, "s2")
        assert await snapshot_names(backend, ID1) == ["s1", "s2"]
        await backend.rollback(ID1, "s1")
        assert await snapshot_names(backend, ID1) == ["s1"]
        assert harness.read_files(backend, await backend.get(ID1)) == s1
        assert await _set_aside_names(backend, ID1) == ["aside"]
        assert await _read_set_aside(harness, backend, "aside") == expected

    @pytest_twisted.ensureDeferred
    async def test_set_aside_survives_replacing_receive(
        self, harness: VolumeHarness, backend: IVolumeBackend, origin: DatasetInfo
    ) -> None:
        """A replacing full receive keeps the dataset's set-aside snapshots."""
        old, diverged = await _diverged(harness, backend)
        await old.set_aside(ID1, "aside", "s1")
        sink = await old.receive(ID1, replace=True)
        feed(sink, await stream_bytes(await backend.send(ID1, "s2")))
        await sink.finish()
        assert await snapshot_names(old, ID1) == ["s2"]
        assert await _set_aside_names(old, ID1) == ["aside"]
        assert await _read_set_aside(harness, old, "aside") == diverged

    @pytest_twisted.ensureDeferred
    async def test_second_set_aside_listed_after_first(
        self, harness: VolumeHarness, backend: IVolumeBackend, origin: DatasetInfo
    ) -> None:
        """
        A second failover's set-aside (after a replication round) is listed
        after the first, and each keeps its own contents.
        """
        old, diverged = await _diverged(harness, backend)
        await old.set_aside(ID1, "first", "s1")
        await _push(backend, old, "s2", "s1")
        info = await old.set_read_only(ID1, False)
        harness.write_file(old, info, "second", b"diverged again")
        again = harness.read_files(old, info)
        await old.set_aside(ID1, "second", "s2")
        assert await snapshot_names(old, ID1) == ["s1", "s2"]
        listed = await old.list_set_aside(ID1)
        assert [s.name for s in listed] == ["first", "second"]
        assert listed[0].created <= listed[1].created
        assert await _read_set_aside(harness, old, "first") == diverged
        assert await _read_set_aside(harness, old, "second") == again
        assert [d.dataset_id for d in await old.list_datasets()] == [ID1]

    @pytest_twisted.ensureDeferred
    async def test_destroy_removes_set_aside(
        self, harness: VolumeHarness, backend: IVolumeBackend, origin: DatasetInfo
    ) -> None:
        """
        Destroying the dataset removes its set-aside snapshots: a new
        dataset of that id has none.
        """
        harness.write_file(backend, origin, "c", b"set aside")
        await backend.set_aside(ID1, "aside", "s1")
        await backend.destroy(ID1)
        assert await backend.list_datasets() == []
        await fails(backend.list_set_aside(ID1), UnknownDataset)
        await backend.create(ID1)
        assert await backend.list_set_aside(ID1) == []
        assert await snapshot_names(backend, ID1) == []

    @pytest_twisted.ensureDeferred
    async def test_clone_of_set_aside(
        self, harness: VolumeHarness, backend: IVolumeBackend, origin: DatasetInfo
    ) -> None:
        """
        A clone of a set-aside snapshot holds the dataset from being
        destroyed where clones depend on their origin; elsewhere the clone
        outlives the dataset.
        """
        harness.write_file(backend, origin, "c", b"set aside")
        expected = harness.read_files(backend, origin)
        await backend.set_aside(ID1, "aside", "s1")
        clone = await backend.clone(ID1, "aside", ID3)
        if backend.capabilities.clones_depend_on_origin:
            await fails(backend.destroy(ID1), DependentClones)
            assert await _set_aside_names(backend, ID1) == ["aside"]
            await backend.destroy(ID3)
            await backend.destroy(ID1)
        else:
            await backend.destroy(ID1)
            assert harness.read_files(backend, clone) == expected
        assert await backend.list_datasets() == (
            [] if backend.capabilities.clones_depend_on_origin else [await backend.get(ID3)]
        )

    @pytest_twisted.ensureDeferred
    async def test_set_aside_errors_change_nothing(
        self, harness: VolumeHarness, backend: IVolumeBackend, origin: DatasetInfo
    ) -> None:
        """
        An unknown dataset or base, a name already taken (by a snapshot or
        a set-aside snapshot) and bad names are refused, and the dataset,
        its snapshots and set-aside snapshots stay as they were.
        """
        harness.write_file(backend, origin, "b", b"in s2")
        await backend.snapshot(ID1, "s2")
        await backend.set_aside(ID1, "taken", "s2")
        harness.write_file(backend, origin, "unsaved", b"not set aside")
        files = harness.read_files(backend, await backend.get(ID1))
        calls: list[tuple[Callable[[], Deferred[Any]], type[Exception]]] = [
            (lambda: backend.set_aside(UNKNOWN, "x", "s1"), UnknownDataset),
            (lambda: backend.list_set_aside(UNKNOWN), UnknownDataset),
            (lambda: backend.set_aside(ID1, "x", "nope"), UnknownSnapshot),
            (lambda: backend.set_aside(ID1, "s2", "s1"), SnapshotExists),
            (lambda: backend.set_aside(ID1, "taken", "s1"), SnapshotExists),
            (lambda: backend.set_aside(ID1, "a/b", "s1"), InvalidName),
            (lambda: backend.set_aside(ID1, ".hidden", "s1"), InvalidName),
            (lambda: backend.set_aside(ID1, "x", "-s1"), InvalidName),
            (lambda: backend.set_aside("not-a-uuid", "x", "s1"), InvalidName),
            (lambda: backend.list_set_aside("not-a-uuid"), InvalidName),
        ]
        for call, error in calls:
            await fails(call(), error)
            assert harness.read_files(backend, await backend.get(ID1)) == files
            assert await snapshot_names(backend, ID1) == ["s1", "s2"]
            assert await _set_aside_names(backend, ID1) == ["taken"]
        assert [d.dataset_id for d in await backend.list_datasets()] == [ID1]
