"""
The ZFS backend passes the IVolumeBackend contract on real zfs-fuse pools;
its own tests cover clones during receives, crash recovery and how
read-only datasets are mounted despite zfs-fuse's quirks.
"""

from __future__ import annotations

import errno
import os
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater

from ...common import CommandFailed, run_command
from .. import (
    BadStream,
    DatasetBusy,
    DatasetInfo,
    DependentClones,
    IVolumeBackend,
    UnknownDataset,
)
from ..testtools import FilesystemHarness, feed, make_volume_backend_tests, stream_bytes
from ..zfs import (
    ID_PROPERTY,
    OLD_PREFIX,
    PART_PREFIX,
    SET_ASIDE_PREFIX,
    TARGET_PROPERTY,
    TEMPORARY_PREFIX,
    ZFSVolumeBackend,
)
from .test_page_cache import cached_bytes

pytestmark = pytest.mark.functional


def zfs_harness(request: pytest.FixtureRequest) -> FilesystemHarness:
    """Each backend instance gets its own fresh file-backed pool."""
    make_pool = request.getfixturevalue("make_zfs_pool")

    async def make() -> ZFSVolumeBackend:
        return ZFSVolumeBackend(reactor, make_pool(size="1G").name)

    async def reopen(backend: IVolumeBackend) -> ZFSVolumeBackend:
        assert isinstance(backend, ZFSVolumeBackend)
        return ZFSVolumeBackend(reactor, backend.pool_name)

    return FilesystemHarness(make, reopen=reopen)


_Contract: Any = make_volume_backend_tests(zfs_harness, lists_at_once=True)


class TestZFSVolumeBackend(_Contract):  # type: ignore[misc]  # made at runtime
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
    info = await receiver.set_read_only(ID1, False)  # received: read-only
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


@pytest_twisted.ensureDeferred
async def test_evicting_a_dataset_drops_its_files_from_the_page_cache(zfs_pool: Any) -> None:
    """
    ``evict_cache`` has the kernel drop the cached pages of the dataset's
    files (a FUSE mount drops them all when unmounted, at a cost that
    grows with them); the files are unchanged, and an unknown dataset is
    refused.
    """
    backend = ZFSVolumeBackend(reactor, zfs_pool.name)
    info = await backend.create(ID1)
    data = os.urandom(8 * 1024 * 1024)
    _write(info, "f", data)
    path = os.path.join(info.path, "f")
    with open(path, "rb") as f:
        f.read()
    assert cached_bytes(path) > 0
    await backend.evict_cache(ID1)
    assert cached_bytes(path) == 0
    assert _read(await backend.get(ID1)) == {"f": data}
    with pytest.raises(UnknownDataset):
        await backend.evict_cache(ID2)


def _mode(path: str) -> str:
    """``ro`` or ``rw``: how the filesystem at ``path`` is mounted."""
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if fields[1] == path:
                return fields[3].split(",")[0]
    raise AssertionError(f"{path} is not mounted")


@pytest_twisted.ensureDeferred
async def test_read_only_dataset_mounted_read_only(zfs_pool: Any) -> None:
    """
    A read-only dataset is mounted ``ro``, also when it is found unmounted
    (zfs-fuse's ``zfs mount`` alone would mount it read-write), so even
    overwriting an existing file fails; writable again, it is mounted ``rw``.
    """
    backend = ZFSVolumeBackend(reactor, zfs_pool.name)
    info = await backend.create(ID1)
    _write(info, "f", b"kept")
    await backend.set_read_only(ID1, True)
    assert _mode(info.path) == "ro"
    await run_command(reactor, ["zfs", "unmount", f"{zfs_pool.name}/{ID1}"])
    again = ZFSVolumeBackend(reactor, zfs_pool.name)
    assert (await again.get(ID1)).read_only is True
    assert _mode(info.path) == "ro"
    with pytest.raises(OSError) as caught:
        _write(info, "f", b"overwritten")
    assert caught.value.errno == errno.EROFS
    assert _read(info) == {"f": b"kept"}
    await again.set_read_only(ID1, False)
    assert _mode(info.path) == "rw"
    await run_command(reactor, ["zfs", "unmount", f"{zfs_pool.name}/{ID1}"])
    [listed] = await again.list_datasets()
    assert listed.read_only is False and _mode(info.path) == "rw"
    await again.destroy(ID1)


@pytest_twisted.ensureDeferred
async def test_received_dataset_mounted_read_only(make_zfs_pool: Any) -> None:
    """
    A dataset received in full is mounted ``ro`` with ``readonly=on``, and
    stays so through an incremental receive onto its newest snapshot.
    """
    _, receiver, stream = await _two_nodes(make_zfs_pool)
    name = f"{receiver.pool_name}/{ID1}"
    info = await receiver.get(ID1)
    assert _mode(info.path) == "ro"
    sink = await receiver.receive(ID1, base="s1")
    feed(sink, stream)
    await sink.finish()
    assert _mode(info.path) == "ro"
    await run_command(reactor, ["zfs", "unmount", name])
    got = await run_command(reactor, ["zfs", "get", "-H", "-o", "value", "readonly", name])
    assert got.stdout.strip() == b"on"
    assert _read(await receiver.get(ID1)) == {"a": b"two"}
    assert _mode(info.path) == "ro"
    await receiver.destroy(ID1)


@pytest_twisted.ensureDeferred
async def test_a_writable_receive_whose_mount_fails_leaves_the_copy_read_only(
    make_zfs_pool: Any,
) -> None:
    """
    A final increment finished ``writable`` whose remount fails is
    discarded with the copy's ``readonly`` as it was: a later mount (after
    a zfs-fuse restart, say) does not make the replica writable.
    """
    _, receiver, stream = await _two_nodes(make_zfs_pool)
    name = f"{receiver.pool_name}/{ID1}"
    sink = await receiver.receive(ID1, base="s1")
    feed(sink, stream)
    real_mount = receiver._mount

    async def failing(*args: Any, **kwargs: Any) -> None:
        raise CommandFailed(["zfs", "mount", name], 1, b"", b"cannot mount: test")

    receiver._mount = failing  # type: ignore[method-assign]
    with pytest.raises(BadStream):
        await sink.finish(writable=True)
    receiver._mount = real_mount  # type: ignore[method-assign]
    got = await run_command(reactor, ["zfs", "get", "-H", "-o", "value", "readonly", name])
    assert got.stdout.strip() == b"on"
    assert (await receiver.get(ID1)).read_only
    assert await _names(receiver, ID1) == ["s1"]
    await receiver.destroy(ID1)


@pytest_twisted.ensureDeferred
async def test_set_read_only_busy_keeps_dataset_writable(zfs_pool: Any) -> None:
    """
    When zfs-fuse cannot remount a dataset read-only because a file in it
    is open, ``set_read_only`` fails with DatasetBusy (after retrying) and
    the dataset stays writable, its property too.
    """
    backend = ZFSVolumeBackend(reactor, zfs_pool.name)
    info = await backend.create(ID1)
    name = f"{zfs_pool.name}/{ID1}"
    with open(os.path.join(info.path, "open"), "wb") as f:
        with pytest.raises(DatasetBusy):
            await backend.set_read_only(ID1, True)
        f.write(b"still writable")
    assert (await backend.get(ID1)).read_only is False
    assert _mode(info.path) == "rw"
    await run_command(reactor, ["zfs", "unmount", name])
    got = await run_command(reactor, ["zfs", "get", "-H", "-o", "value", "readonly", name])
    assert got.stdout.strip() == b"off"
    await backend.destroy(ID1)


async def _zfs_while_busy(argv: list[str]) -> None:
    """Run a zfs command, again for a few seconds while zfs-fuse says "busy"."""
    for _ in range(50):
        result = await run_command(reactor, argv, check=False)
        if result.exit_code == 0:
            return
        if b"busy" not in result.stderr:
            break
        await deferLater(reactor, 0.1, lambda: None)
    raise AssertionError(f"{' '.join(argv)}: {result.stderr!r}")


async def _step_aside(pool: str) -> None:
    """
    Rename ``ID1`` to ``flocker-old-ID1``, as a replacement's swap does
    (again while zfs-fuse says the dataset is busy).
    """
    argv = ["zfs", "rename", f"{pool}/{ID1}", f"{pool}/{OLD_PREFIX}{ID1}"]
    for _ in range(50):
        await run_command(reactor, ["zfs", "unmount", f"{pool}/{ID1}"], check=False)
        result = await run_command(reactor, argv, check=False)
        if result.exit_code == 0:
            return
        await deferLater(reactor, 0.1, lambda: None)
    raise AssertionError(result.stderr)


@pytest_twisted.ensureDeferred
async def test_recover_replacement_cut_before_new_copy_moved_in(
    make_zfs_pool: Any,
) -> None:
    """
    A replacing receive cut short by a crash after the old copy stepped
    aside and before the received one took its name: ``recover`` puts the
    old copy back, snapshots and flag included, and destroys the new one.
    """
    _, receiver, _ = await _two_nodes(make_zfs_pool)
    pool = receiver.pool_name
    await _step_aside(pool)
    await run_command(
        reactor,
        ["zfs", "create", "-o", f"{ID_PROPERTY}={ID1}", f"{pool}/{TEMPORARY_PREFIX}n"],
    )
    assert await receiver.list_datasets() == []
    await ZFSVolumeBackend(reactor, pool).recover()
    info = await receiver.get(ID1)
    assert _read(info) == {"a": b"one"}
    assert await _names(receiver, ID1) == ["s1"]
    assert info.read_only is True
    listed = await run_command(reactor, ["zfs", "list", "-H", "-r", "-o", "name", pool])
    assert TEMPORARY_PREFIX not in listed.stdout.decode()
    assert OLD_PREFIX not in listed.stdout.decode()
    await receiver.destroy(ID1)


@pytest_twisted.ensureDeferred
async def test_recover_replacement_cut_after_new_copy_moved_in(
    make_zfs_pool: Any,
) -> None:
    """
    A replacing receive cut short by a crash after the received copy took
    the dataset's name and before the old one was destroyed: ``recover``
    keeps the new copy and destroys the old one.
    """
    _, receiver, _ = await _two_nodes(make_zfs_pool)
    pool = receiver.pool_name
    await _step_aside(pool)
    await run_command(
        reactor, ["zfs", "create", "-o", f"{ID_PROPERTY}={ID1}", f"{pool}/{ID1}"]
    )
    _write(await receiver.get(ID1), "new", b"the new copy")
    await receiver.snapshot(ID1, "s9")
    await ZFSVolumeBackend(reactor, pool).recover()
    assert _read(await receiver.get(ID1)) == {"new": b"the new copy"}
    assert await _names(receiver, ID1) == ["s9"]
    listed = await run_command(reactor, ["zfs", "list", "-H", "-r", "-o", "name", pool])
    assert OLD_PREFIX not in listed.stdout.decode()
    await receiver.destroy(ID1)


@pytest_twisted.ensureDeferred
async def test_mounting_a_dataset_someone_just_mounted_succeeds(make_zfs_pool: Any) -> None:
    """
    A receive's finish mounting a dataset that a discovery (finding it
    unmounted a moment before) already mounted succeeds: it is mounted,
    as wanted, and the round is not failed for it.
    """
    backend = ZFSVolumeBackend(reactor, make_zfs_pool(size="1G").name)
    await backend.create(ID1)
    name = f"{backend.pool_name}/{ID1}"
    await backend._mount(name)  # already mounted: zfs mount says so and fails
    mounted = await run_command(reactor, ["zfs", "get", "-H", "-o", "value", "mounted", name])
    assert mounted.stdout.strip() == b"yes"


@pytest_twisted.ensureDeferred
async def test_discovery_leaves_a_receiving_dataset_unmounted(make_zfs_pool: Any) -> None:
    """
    While a receive into a dataset is under way, listing the datasets does
    not mount it (the receive's finish unmounts and mounts it itself, and a
    discovery's mount in between made it fail); once the receive is over,
    an unmounted dataset is mounted again as before.
    """
    sender, receiver, stream = await _two_nodes(make_zfs_pool)
    name = f"{receiver.pool_name}/{ID1}"
    sink = await receiver.receive(ID1, base="s1")
    await run_command(reactor, ["zfs", "unmount", name])
    await receiver.list_datasets()
    mounted = await run_command(reactor, ["zfs", "get", "-H", "-o", "value", "mounted", name])
    assert mounted.stdout.strip() == b"no"
    feed(sink, stream)
    await sink.finish()
    await run_command(reactor, ["zfs", "unmount", name])
    await receiver.list_datasets()
    mounted = await run_command(reactor, ["zfs", "get", "-H", "-o", "value", "mounted", name])
    assert mounted.stdout.strip() == b"yes"


# -- set-aside snapshots: hidden parts, crashes ------------------------------


async def _filesystems(pool: str) -> list[str]:
    """Every filesystem of the pool but the pool itself."""
    result = await run_command(
        reactor, ["zfs", "list", "-H", "-r", "-t", "filesystem", "-o", "name", pool]
    )
    return [line for line in result.stdout.decode().splitlines() if line != pool]


async def _set_aside_scene(make_zfs_pool: Any) -> ZFSVolumeBackend:
    """ID1 with @s1 holding a=one, then @s2 with a=two and unsaved b=three."""
    backend = ZFSVolumeBackend(reactor, make_zfs_pool(size="1G").name)
    info = await backend.create(ID1)
    _write(info, "a", b"one")
    await backend.snapshot(ID1, "s1")
    _write(info, "a", b"two")
    await backend.snapshot(ID1, "s2")
    _write(info, "b", b"three")
    return backend


@pytest_twisted.ensureDeferred
async def test_set_aside_kept_in_unmounted_hidden_part(make_zfs_pool: Any) -> None:
    """
    The set-aside data sits in one unmounted hidden filesystem next to the
    dataset, with the later snapshots; destroy removes it with the dataset.
    """
    backend = await _set_aside_scene(make_zfs_pool)
    pool = backend.pool_name
    await backend.set_aside(ID1, "aside", "s1")
    parts = [n for n in await _filesystems(pool) if n != f"{pool}/{ID1}"]
    assert len(parts) == 1 and parts[0].startswith(f"{pool}/{PART_PREFIX}{ID1}-")
    got = await run_command(
        reactor, ["zfs", "get", "-H", "-o", "value", "mounted,canmount", parts[0]]
    )
    assert got.stdout.decode().split() == ["no", "off"]
    snapshots = await run_command(
        reactor, ["zfs", "list", "-H", "-t", "snapshot", "-r", "-o", "name", parts[0]]
    )
    assert snapshots.stdout.decode().split() == [
        f"{parts[0]}@s2",
        f"{parts[0]}@{SET_ASIDE_PREFIX}aside",
    ]
    assert [d.dataset_id for d in await backend.list_datasets()] == [ID1]
    await backend.destroy(ID1)
    assert await _filesystems(pool) == []


@pytest_twisted.ensureDeferred
async def test_only_datasets_are_listed_with_their_snapshots_at_once(
    make_zfs_pool: Any,
) -> None:
    """
    The one listing of every dataset with its snapshots (beyond the
    contract, ``ListsAtOnceContract``) leaves out the pool's filesystems
    that are no datasets, and filesystems under a dataset, with their
    snapshots; each snapshot has its creation time.
    """
    backend = await _set_aside_scene(make_zfs_pool)
    pool = backend.pool_name
    await run_command(reactor, ["zfs", "create", f"{pool}/not-a-dataset"])
    await run_command(reactor, ["zfs", "snapshot", f"{pool}/not-a-dataset@x"])
    await run_command(reactor, ["zfs", "create", f"{pool}/{ID1}/under"])
    await run_command(reactor, ["zfs", "snapshot", f"{pool}/{ID1}/under@y"])
    listed = await backend.list_datasets_with_snapshots()
    assert [(info.dataset_id, [s.name for s in found]) for info, found in listed] == [
        (ID1, ["s1", "s2"])
    ]
    assert all(s.created is not None for _, found in listed for s in found)
    assert listed == [(await backend.get(ID1), await backend.list_snapshots(ID1))]


@pytest_twisted.ensureDeferred
async def test_destroy_snapshot_needed_by_set_aside_hides_it(make_zfs_pool: Any) -> None:
    """
    Destroying the base a set-aside snapshot depends on (pruning) succeeds:
    the snapshot is no longer listed, the set-aside keeps its data, and the
    dataset still takes increments from its newest snapshot.
    """
    backend = await _set_aside_scene(make_zfs_pool)
    await backend.set_aside(ID1, "aside", "s1")
    await backend.destroy_snapshot(ID1, "s1")
    assert await _names(backend, ID1) == []
    await backend.snapshot(ID1, "s3")
    await backend.destroy_snapshot(ID1, "s3")
    assert await _names(backend, ID1) == []
    clone = await backend.clone(ID1, "aside", ID2)
    assert _read(clone) == {"a": b"two", "b": b"three"}
    await backend.destroy(ID2)
    await backend.destroy(ID1)
    assert await _filesystems(backend.pool_name) == []


@pytest.mark.parametrize("promoted", [False, True], ids=["renamed", "cloned"])
@pytest_twisted.ensureDeferred
async def test_set_aside_cut_short_is_undone(make_zfs_pool: Any, promoted: bool) -> None:
    """
    A set_aside a crash cut short after the dataset was renamed to its part
    (its name missing, or held by an unpromoted clone of the base) is undone
    when a new backend object lists the datasets: the dataset is back with
    its data and snapshots, nothing is set aside, and the call can be made
    again.
    """
    backend = await _set_aside_scene(make_zfs_pool)
    pool = backend.pool_name
    part = f"{pool}/{PART_PREFIX}{ID1}-crashed"
    for argv in [
        ["zfs", "snapshot", f"{pool}/{ID1}@{SET_ASIDE_PREFIX}aside"],
        ["zfs", "unmount", f"{pool}/{ID1}"],
        ["zfs", "rename", f"{pool}/{ID1}", part],
        ["zfs", "set", "canmount=off", part],
    ] + ([["zfs", "clone", f"{part}@s1", f"{pool}/{ID1}"]] if promoted else []):
        # zfs-fuse calls a just-unmounted filesystem busy for a moment.
        await _zfs_while_busy(argv)
    again = ZFSVolumeBackend(reactor, pool)
    assert [d.dataset_id for d in await again.list_datasets()] == [ID1]
    assert await _filesystems(pool) == [f"{pool}/{ID1}"]
    assert _read(await again.get(ID1)) == {"a": b"two", "b": b"three"}
    assert await _names(again, ID1) == ["s1", "s2"]
    assert await again.list_set_aside(ID1) == []
    await again.set_aside(ID1, "aside", "s1")
    assert [s.name for s in await again.list_set_aside(ID1)] == ["aside"]
    assert _read(await again.get(ID1)) == {"a": b"one"}
