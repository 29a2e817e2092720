"""
The part of the :class:`IVolumeBackend` contract about ``recover``.

:class:`RecoverContract` is a base of the test class that
:func:`flocker.volume.testtools.make_volume_backend_tests` builds, so every
backend passes it; its tests use that class's ``harness``, ``backend`` and
``origin`` fixtures.  What a crash leaves half done is particular to each
backend (a ZFS clone being promoted, a directory stepping aside under
``tmp/``), so each backend's own tests show ``recover`` putting such
states right; the contract shows what every backend promises besides:
where nothing is half done, ``recover`` changes nothing, whichever backend
object runs it, and as often as it runs.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted

from ._contract_tools import ID1, ID2, VolumeHarness, snapshot_names
from ._interface import DatasetInfo, IVolumeBackend


async def _state(harness: VolumeHarness, backend: IVolumeBackend) -> list[Any]:
    """
    What ``recover`` must keep: each dataset's id, path, maximum size,
    flag, snapshots, set-aside snapshots and files.
    """
    return [
        (
            (info.dataset_id, info.path, info.maximum_size, info.read_only),
            await backend.list_snapshots(info.dataset_id),
            await backend.list_set_aside(info.dataset_id),
            harness.read_files(backend, info),
        )
        for info in await backend.list_datasets()
    ]


class RecoverContract:
    """``recover``: nothing half done, nothing changes."""

    @pytest_twisted.ensureDeferred
    async def test_recover_changes_nothing_whole(
        self, harness: VolumeHarness, backend: IVolumeBackend, origin: DatasetInfo
    ) -> None:
        """
        With nothing half done, ``recover`` (by a new backend object on
        the same storage, as a restarted agent runs it, and again by the
        backend itself) keeps every dataset as it was: snapshots, set-aside
        snapshots, clones, flags and files; the backend then works on.
        """
        harness.write_file(backend, origin, "a.txt", b"changed after s1")
        await backend.snapshot(ID1, "s2")
        harness.write_file(backend, origin, "unsaved", b"not in a snapshot")
        await backend.clone(ID1, "s1", ID2)
        await backend.set_aside(ID1, "aside", "s1")
        await backend.set_read_only(ID1, True)
        before = await _state(harness, backend)
        kept = {ids[0]: (len(snapshots), len(aside)) for ids, snapshots, aside, _ in before}
        assert kept == {ID1: (1, 1), ID2: (0, 0)}
        await (await harness.reopen(backend)).recover()
        await backend.recover()
        assert await _state(harness, backend) == before
        await backend.snapshot(ID1, "s3")
        assert await snapshot_names(backend, ID1) == ["s1", "s3"]

    @pytest_twisted.ensureDeferred
    async def test_recover_empty(
        self, harness: VolumeHarness, backend: IVolumeBackend
    ) -> None:
        """``recover`` of a backend without datasets leaves it empty and usable."""
        await backend.recover()
        await backend.recover()
        assert await backend.list_datasets() == []
        info = await backend.create(ID1)
        assert [d.dataset_id for d in await backend.list_datasets()] == [info.dataset_id]
