"""The ZFS backend passes the IVolumeBackend contract on real zfs-fuse pools."""

from __future__ import annotations

import os
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor

from ...common import run_command
from .. import DatasetInfo, DependentClones
from ..testtools import FilesystemHarness, feed, make_volume_backend_tests, stream_bytes
from ..zfs import TARGET_PROPERTY, TEMPORARY_PREFIX, ZFSVolumeBackend

pytestmark = pytest.mark.functional


def zfs_harness(request: pytest.FixtureRequest) -> FilesystemHarness:
    """Each backend instance gets its own fresh file-backed pool."""
    make_pool = request.getfixturevalue("make_zfs_pool")

    async def make() -> ZFSVolumeBackend:
        return ZFSVolumeBackend(reactor, make_pool(size="1G").name)

    return FilesystemHarness(make)


_Contract: Any = make_volume_backend_tests(zfs_harness)


class TestZFSVolumeBackend(_Contract):
    """ZFSVolumeBackend against the contract."""


# -- ZFS-specific behaviour: clones during receives, crash recovery ---------

ID1 = "6f2bb4a7-7c3a-4a7e-9b6e-0d1f1e7c2a01"
ID2 = "0b9c1f84-1d63-4fd0-8b5a-3cc0f9f6a702"


def _write(info: DatasetInfo, name: str, data: bytes) -> None:
    with open(os.path.join(info.path, name), "wb") as f:
        f.write(data)


def _read(info: DatasetInfo) -> dict[str, bytes]:
    result = {}
    for name in os.listdir(info.path):
        with open(os.path.join(info.path, name), "rb") as f:
            result[name] = f.read()
    return result


async def _names(backend: ZFSVolumeBackend, dataset_id: str) -> list[str]:
    return [s.name for s in await backend.list_snapshots(dataset_id)]


async def _two_nodes(
    make_zfs_pool: Any,
) -> tuple[ZFSVolumeBackend, ZFSVolumeBackend, bytes]:
    """
    A sender with ID1@s1 and @s2, a receiver with ID1@s1 (sent in full).

    :return: Both backends and the incremental s1->s2 stream.
    """
    sender = ZFSVolumeBackend(reactor, make_zfs_pool(size="1G").name)
    receiver = ZFSVolumeBackend(reactor, make_zfs_pool(size="1G").name)
    info = await sender.create(ID1)
    _write(info, "a", b"one")
    await sender.snapshot(ID1, "s1")
    sink = await receiver.receive(ID1)
    feed(sink, await stream_bytes(await sender.send(ID1, "s1")))
    await sink.finish()
    _write(info, "a", b"two")
    await sender.snapshot(ID1, "s2")
    stream = await stream_bytes(await sender.send(ID1, "s2", base="s1"))
    return sender, receiver, stream


@pytest_twisted.ensureDeferred
async def test_incremental_receive_keeps_clones(make_zfs_pool: Any) -> None:
    """Clones of the receiver's earlier snapshots survive receive and abort."""
    _, receiver, stream = await _two_nodes(make_zfs_pool)
    clone = await receiver.clone(ID1, "s1", ID2)
    _write(clone, "mine", b"clone data")
    sink = await receiver.receive(ID1, base="s1")
    feed(sink, stream[: len(stream) // 2])
    await sink.abort()
    assert _read(await receiver.get(ID1)) == {"a": b"one"}
    sink = await receiver.receive(ID1, base="s1")
    feed(sink, stream)
    await sink.finish()
    assert _read(await receiver.get(ID1)) == {"a": b"two"}
    assert await _names(receiver, ID1) == ["s1", "s2"]
    assert _read(await receiver.get(ID2)) == {"a": b"one", "mine": b"clone data"}
    with pytest.raises(DependentClones):
        await receiver.destroy(ID1)


@pytest_twisted.ensureDeferred
async def test_receive_refused_if_later_snapshot_cloned(make_zfs_pool: Any) -> None:
    """An incremental receive that would drop a cloned snapshot is refused."""
    _, receiver, _ = await _two_nodes(make_zfs_pool)
    await receiver.snapshot(ID1, "later")
    await receiver.clone(ID1, "later", ID2)
    with pytest.raises(DependentClones):
        await receiver.receive(ID1, base="s1")
    with pytest.raises(DependentClones):
        await receiver.rollback(ID1, "s1")
    assert await _names(receiver, ID1) == ["s1", "later"]


@pytest_twisted.ensureDeferred
async def test_recover_interrupted_receives(make_zfs_pool: Any) -> None:
    """``recover`` undoes what receives cut short by a crash left behind."""
    _, receiver, _ = await _two_nodes(make_zfs_pool)
    pool = receiver.pool_name
    info = await receiver.get(ID1)
    _write(info, "unsaved", b"kept")
    await receiver.snapshot(ID1, "later")
    # The state an incremental receive is in while the stream flows, and a
    # full receive's temporary filesystem:
    for argv in [
        ["zfs", "clone", "-o", f"{TARGET_PROPERTY}={ID1}", f"{pool}/{ID1}@s1",
         f"{pool}/{TEMPORARY_PREFIX}a"],
        ["zfs", "promote", f"{pool}/{TEMPORARY_PREFIX}a"],
        ["zfs", "create", f"{pool}/{TEMPORARY_PREFIX}b"],
    ]:
        await run_command(reactor, argv)
    assert [d.dataset_id for d in await receiver.list_datasets()] == [ID1]
    await ZFSVolumeBackend(reactor, pool).recover()
    assert await _names(receiver, ID1) == ["s1", "later"]
    assert _read(await receiver.get(ID1)) == {"a": b"one", "unsaved": b"kept"}
    listed = await run_command(reactor, ["zfs", "list", "-H", "-r", "-o", "name", pool])
    assert TEMPORARY_PREFIX not in listed.stdout.decode()
    await receiver.destroy(ID1)


@pytest_twisted.ensureDeferred
async def test_unmounted_dataset_is_mounted(zfs_pool: Any) -> None:
    """A dataset left unmounted (e.g. by a zfs-fuse restart) is mounted on get."""
    backend = ZFSVolumeBackend(reactor, zfs_pool.name)
    info = await backend.create(ID1)
    _write(info, "f", b"kept")
    await run_command(reactor, ["zfs", "unmount", f"{zfs_pool.name}/{ID1}"])
    assert _read(await backend.get(ID1)) == {"f": b"kept"}
    await run_command(reactor, ["zfs", "unmount", f"{zfs_pool.name}/{ID1}"])
    [listed] = await backend.list_datasets()
    assert _read(listed) == {"f": b"kept"}
