"""
The contract of `IListsSnapshotsAtOnce`: a backend that lists every dataset
with its snapshots at once says what its one-by-one listings say.

Backends providing it (the in-memory fake and ZFS) add `ListsAtOnceContract`
to their `IVolumeBackend` contract (``make_volume_backend_tests``).
"""

from __future__ import annotations

from typing import Any

import pytest_twisted
from zope.interface.verify import verifyObject

from ._contract_tools import ID1, ID2
from ._interface import DatasetInfo, IListsSnapshotsAtOnce, IVolumeBackend


async def _one_by_one(backend: IVolumeBackend) -> list[tuple[DatasetInfo, list[Any]]]:
    """The datasets, each with its snapshots, listed one listing at a time."""
    return [
        (info, await backend.list_snapshots(info.dataset_id))
        for info in await backend.list_datasets()
    ]


class ListsAtOnceContract:
    """``list_datasets_with_snapshots`` against ``list_datasets`` and ``list_snapshots``."""

    @pytest_twisted.ensureDeferred
    async def test_datasets_listed_with_their_snapshots_as_one_by_one(
        self, backend: IVolumeBackend, origin: DatasetInfo
    ) -> None:
        """
        Every dataset is listed with its snapshots as the one-by-one
        listings say, oldest first: one without snapshots with none, and
        neither a set-aside snapshot nor one hidden because a set-aside
        needs it.
        """
        assert verifyObject(IListsSnapshotsAtOnce, backend)
        await backend.snapshot(ID1, "s2")
        await backend.set_aside(ID1, "aside", "s1")
        await backend.destroy_snapshot(ID1, "s1")  # needed by the set-aside
        await backend.snapshot(ID1, "s3")
        await backend.snapshot(ID1, "s4")
        await backend.create(ID2)
        listed = await backend.list_datasets_with_snapshots()  # type: ignore[attr-defined]
        assert listed == await _one_by_one(backend)
        assert {info.dataset_id: [s.name for s in found] for info, found in listed} == {
            ID1: ["s3", "s4"],
            ID2: [],
        }


__all__ = ["ListsAtOnceContract"]
