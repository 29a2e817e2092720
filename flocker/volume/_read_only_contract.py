"""
The part of the :class:`IVolumeBackend` contract about read-only datasets.

:class:`ReadOnlyContract` is the base of the test class that
:func:`flocker.volume.testtools.make_volume_backend_tests` builds, so every
backend passes it; its tests use that class's ``harness``, ``backend`` and
``origin`` fixtures.  Both sides of ``enforces_read_only`` are tested, never
skipped: where a backend claims it, writing, overwriting and deleting
through the path of a read-only dataset fail with ``EROFS``/``EACCES`` and
change nothing; where it does not, they still work (the flag is only
recorded and reported).
"""

from __future__ import annotations

import errno

import pytest
import pytest_twisted

from ._contract_tools import ID1, ID2, VolumeHarness, snapshot_names, stream_bytes
from ._interface import DatasetInfo, IVolumeBackend


async def _received(
    harness: VolumeHarness, backend: IVolumeBackend, writable: bool = False
) -> IVolumeBackend:
    """Another backend ("node") that received ``ID1@s1`` in full."""
    other = await harness.make_backend()
    await _push(backend, other, "s1", None, writable)
    return other


async def _push(
    backend: IVolumeBackend,
    other: IVolumeBackend,
    snapshot: str,
    base: str | None,
    writable: bool = False,
) -> None:
    """
    Send ``ID1@snapshot`` since ``base`` (in full: ``None``) from
    ``backend`` into ``other``, finished ``writable`` or not.
    """
    sink = await other.receive(ID1, base=base)
    source = await backend.send(ID1, snapshot, base=base)
    await source.start(sink)
    await sink.finish(writable=writable)


def _assert_refused(error: pytest.ExceptionInfo[OSError]) -> None:
    """The error is the one a read-only filesystem gives."""
    assert error.value.errno in (errno.EROFS, errno.EACCES)


def check_read_only(
    harness: VolumeHarness, backend: IVolumeBackend, info: DatasetInfo
) -> None:
    """
    ``info`` says the dataset is read-only.  Where the backend enforces it,
    writing a new file, overwriting and deleting existing ones all fail and
    the files stay as they were; where it does not, a write still works.
    """
    assert info.read_only is True
    before = harness.read_files(backend, info)
    if not backend.capabilities.enforces_read_only:
        harness.write_file(backend, info, "recorded-only", b"still writable")
        assert harness.read_files(backend, info)["recorded-only"] == b"still writable"
        harness.delete_file(backend, info, "recorded-only")
        return
    with pytest.raises(OSError) as new_file:
        harness.write_file(backend, info, "new-file", b"refused")
    _assert_refused(new_file)
    for path in before:
        with pytest.raises(OSError) as overwrite:
            harness.write_file(backend, info, path, b"overwritten")
        _assert_refused(overwrite)
        with pytest.raises(OSError) as delete:
            harness.delete_file(backend, info, path)
        _assert_refused(delete)
    assert harness.read_files(backend, info) == before


def check_writable(
    harness: VolumeHarness, backend: IVolumeBackend, info: DatasetInfo
) -> None:
    """``info`` says the dataset is writable, and a write through its path works."""
    assert info.read_only is False
    harness.write_file(backend, info, "written", b"written")
    assert harness.read_files(backend, info)["written"] == b"written"
    harness.delete_file(backend, info, "written")


class ReadOnlyContract:
    """Read-only datasets: ``set_read_only`` and ``DatasetInfo.read_only``."""

    @pytest_twisted.ensureDeferred
    async def test_new_datasets_writable(
        self, harness: VolumeHarness, backend: IVolumeBackend, origin: DatasetInfo
    ) -> None:
        """Created datasets and clones are writable and listed as writable."""
        check_writable(harness, backend, origin)
        clone = await backend.clone(ID1, "s1", ID2)
        check_writable(harness, backend, clone)
        listed = await backend.list_datasets()
        assert [d.read_only for d in listed] == [False, False]

    @pytest_twisted.ensureDeferred
    async def test_set_read_only(
        self, harness: VolumeHarness, backend: IVolumeBackend, origin: DatasetInfo
    ) -> None:
        """
        A dataset made read-only says so in ``get`` and ``list_datasets``
        and refuses writes where enforced; made writable again, it takes
        writes, with its files as they were.
        """
        files = harness.read_files(backend, origin)
        info = await backend.set_read_only(ID1, True)
        assert (info.dataset_id, info.path) == (ID1, origin.path)
        assert (await backend.get(ID1)).read_only is True
        assert [d.read_only for d in await backend.list_datasets()] == [True]
        check_read_only(harness, backend, info)
        writable = await backend.set_read_only(ID1, False)
        assert writable.path == origin.path
        assert (await backend.get(ID1)).read_only is False
        assert [d.read_only for d in await backend.list_datasets()] == [False]
        check_writable(harness, backend, writable)
        assert harness.read_files(backend, writable) == files

    @pytest_twisted.ensureDeferred
    async def test_set_read_only_idempotent(
        self, harness: VolumeHarness, backend: IVolumeBackend, origin: DatasetInfo
    ) -> None:
        """Setting the flag a dataset already has changes nothing."""
        files = harness.read_files(backend, origin)
        first = await backend.set_read_only(ID1, True)
        second = await backend.set_read_only(ID1, True)
        assert first.read_only is second.read_only is True
        check_read_only(harness, backend, second)
        first = await backend.set_read_only(ID1, False)
        second = await backend.set_read_only(ID1, False)
        assert first.read_only is second.read_only is False
        check_writable(harness, backend, second)
        assert harness.read_files(backend, second) == files
        assert await snapshot_names(backend, ID1) == ["s1"]

    @pytest_twisted.ensureDeferred
    async def test_backend_operations_work_while_read_only(
        self, harness: VolumeHarness, backend: IVolumeBackend, origin: DatasetInfo
    ) -> None:
        """
        Snapshots, sends, rollback, destroying a snapshot, cloning and
        destroying work on a read-only dataset, which stays read-only; the
        clone is writable.
        """
        harness.write_file(backend, origin, "a.txt", b"changed")
        await backend.snapshot(ID1, "s2")
        s2 = harness.read_files(backend, origin)
        harness.write_file(backend, origin, "unsaved", b"in s3 only")
        await backend.set_read_only(ID1, True)
        await backend.snapshot(ID1, "s3")
        assert await snapshot_names(backend, ID1) == ["s1", "s2", "s3"]
        other = await harness.make_backend()
        sink = await other.receive(ID1)
        await (await backend.send(ID1, "s3")).start(sink)
        await sink.finish()
        assert harness.read_files(other, await other.get(ID1)) == {
            **s2,
            "unsaved": b"in s3 only",
        }
        assert await stream_bytes(await backend.send(ID1, "s3", base="s2"))
        await backend.rollback(ID1, "s2")
        info = await backend.get(ID1)
        assert harness.read_files(backend, info) == s2
        assert await snapshot_names(backend, ID1) == ["s1", "s2"]
        check_read_only(harness, backend, info)
        await backend.destroy_snapshot(ID1, "s1")
        assert await snapshot_names(backend, ID1) == ["s2"]
        clone = await backend.clone(ID1, "s2", ID2)
        assert harness.read_files(backend, clone) == s2
        check_writable(harness, backend, clone)
        check_read_only(harness, backend, await backend.get(ID1))
        await backend.destroy(ID2)
        await backend.destroy(ID1)
        assert await backend.list_datasets() == []

    @pytest_twisted.ensureDeferred
    async def test_full_receive_is_read_only(
        self, harness: VolumeHarness, backend: IVolumeBackend, origin: DatasetInfo
    ) -> None:
        """
        A dataset received in full is read-only once ``finish`` succeeded
        (a copy from another node); made writable, it takes writes.
        """
        expected = harness.read_files(backend, origin)
        other = await _received(harness, backend)
        info = await other.get(ID1)
        assert harness.read_files(other, info) == expected
        assert [d.read_only for d in await other.list_datasets()] == [True]
        check_read_only(harness, other, info)
        check_writable(harness, other, await other.set_read_only(ID1, False))
        check_writable(harness, backend, await backend.get(ID1))

    @pytest.mark.parametrize("read_only", [True, False], ids=["read-only", "writable"])
    @pytest.mark.parametrize("diverge", [True, False], ids=["diverged", "newest"])
    @pytest_twisted.ensureDeferred
    async def test_incremental_receive_keeps_flag(
        self,
        harness: VolumeHarness,
        backend: IVolumeBackend,
        origin: DatasetInfo,
        read_only: bool,
        diverge: bool,
    ) -> None:
        """
        An incremental receive keeps the dataset's flag, whether the base is
        its newest snapshot (every round of a move) or it has later ones.
        """
        other = await _received(harness, backend)
        if diverge:
            there = await other.set_read_only(ID1, False)
            harness.write_file(other, there, "local", b"local change")
            await other.snapshot(ID1, "local-snap")
        await other.set_read_only(ID1, read_only)
        harness.write_file(backend, origin, "a.txt", b"alpha, changed")
        await backend.snapshot(ID1, "s2")
        expected = harness.read_files(backend, origin)
        await _push(backend, other, "s2", "s1")
        info = await other.get(ID1)
        assert harness.read_files(other, info) == expected
        assert await snapshot_names(other, ID1) == ["s1", "s2"]
        assert [d.read_only for d in await other.list_datasets()] == [read_only]
        if read_only:
            check_read_only(harness, other, info)
        else:
            check_writable(harness, other, info)

    @pytest_twisted.ensureDeferred
    async def test_read_only_survives_new_backend_object(
        self, harness: VolumeHarness, backend: IVolumeBackend, origin: DatasetInfo
    ) -> None:
        """
        A new backend object on the same storage (an agent restarted after
        a crash) reports the flag, enforces it as before and can clear it.
        """
        await backend.set_read_only(ID1, True)
        again = await harness.reopen(backend)
        info = await again.get(ID1)
        assert [d.read_only for d in await again.list_datasets()] == [True]
        check_read_only(harness, again, info)
        await again.set_read_only(ID1, False)
        check_writable(harness, backend, await backend.get(ID1))

    @pytest.mark.parametrize("diverge", [True, False], ids=["diverged", "newest"])
    @pytest_twisted.ensureDeferred
    async def test_a_receive_finished_writable_leaves_the_dataset_writable(
        self,
        harness: VolumeHarness,
        backend: IVolumeBackend,
        origin: DatasetInfo,
        diverge: bool,
    ) -> None:
        """
        A receive finished with ``writable`` (a move's final increment,
        exposed at once) leaves the dataset writable, with the stream's
        contents, whether full or incremental into a read-only copy (onto
        its newest snapshot or not).
        """
        fresh = await _received(harness, backend, writable=True)
        check_writable(harness, fresh, await fresh.get(ID1))
        other = await _received(harness, backend)
        if diverge:
            await other.snapshot(ID1, "local-snap")
        harness.write_file(backend, origin, "a.txt", b"alpha, final")
        await backend.snapshot(ID1, "s2")
        expected = harness.read_files(backend, origin)
        await _push(backend, other, "s2", "s1", writable=True)
        info = await other.get(ID1)
        assert harness.read_files(other, info) == expected
        assert [d.read_only for d in await other.list_datasets()] == [False]
        check_writable(harness, other, info)
