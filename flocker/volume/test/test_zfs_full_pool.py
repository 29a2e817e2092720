"""
Functional tests, on real ZFS, of a pool that one dataset fills: the ZFS
backend keeps room in it (a quota on the pool's top filesystem), so the
full pool can still be snapshotted, sent from and given new datasets, and
it says how much room its datasets have.
"""

from __future__ import annotations

import errno
import os
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.threads import deferToThread

from flocker.volume.testtools import feed, stream_bytes
from flocker.volume.zfs import ZFSVolumeBackend, reserve_for

DS = "aaaaaaaa-0000-4000-8000-0000000000f1"
NEW = "aaaaaaaa-0000-4000-8000-0000000000f2"

#: The small pool's file size (zfs-fuse's smallest is 64 MiB).
POOL_SIZE = "128M"
MIB = 1024 * 1024


def fill(directory: str) -> int:
    """Write a file into ``directory`` until the filesystem refuses; its size."""
    written = 0
    block = os.urandom(MIB)
    path = os.path.join(directory, "fill")
    with open(path, "wb") as handle:
        try:
            while written < 1024 * MIB:
                handle.write(block)
                handle.flush()
                written += len(block)
            raise AssertionError("the dataset never filled up")
        except OSError as error:
            assert error.errno in (errno.ENOSPC, errno.EDQUOT), error
    return os.path.getsize(path)


@pytest.mark.functional
@pytest_twisted.ensureDeferred
async def test_a_full_pool_can_still_be_snapshotted_and_sent(make_zfs_pool: Any) -> None:
    """
    A dataset with a maximum size of twice the pool fills it; its pool
    still takes a snapshot, the snapshot's stream reaches another pool
    whole, a new dataset can still be created and mounted there, and the
    backend reports the pool's room as (nearly) all used.
    """
    full_pool, other_pool = make_zfs_pool(POOL_SIZE), make_zfs_pool("256M")
    backend = ZFSVolumeBackend(reactor, full_pool.name)
    other = ZFSVolumeBackend(reactor, other_pool.name)
    before = await backend.pool_space()  # the agent's first discovery does this
    info = await backend.create(DS, maximum_size=256 * MIB)
    written = await deferToThread(fill, info.path)
    assert written > 32 * MIB

    await backend.snapshot(DS, "evacuate")
    data = await stream_bytes(await backend.send(DS, "evacuate"))
    sink = await other.receive(DS)
    feed(sink, data)
    await sink.finish()
    assert (await other.get(DS)).used >= written

    created = await backend.create(NEW)
    assert os.path.isdir(created.path)
    space = await backend.pool_space()
    assert space.free < MIB and space.size == before.size


@pytest.mark.functional
@pytest_twisted.ensureDeferred
async def test_the_room_kept_is_recorded_and_kept_once(make_zfs_pool: Any) -> None:
    """
    The first look at the pool puts a quota on its top filesystem that
    leaves `reserve_for` of it to ZFS, and records the room; a new backend
    (a restarted agent) keeps that quota.
    """
    pool = make_zfs_pool(POOL_SIZE)
    space = await ZFSVolumeBackend(reactor, pool.name).pool_space()
    again = await ZFSVolumeBackend(reactor, pool.name).pool_space()
    assert again.size == space.size
    assert 0 < space.free <= space.size
    result = await deferToThread(
        os.popen, f"zfs get -Hp -o value quota,org.flocker:reserve {pool.name}"
    )
    quota, reserve = (int(line) for line in result.read().split())
    assert reserve == reserve_for(quota + reserve)
