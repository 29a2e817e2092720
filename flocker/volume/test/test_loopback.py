"""
The loopback backend passes the IVolumeBackend contract with real loop
devices, and mounts read-only datasets read-only whenever it mounts them.
"""

from __future__ import annotations

import errno
import os
import subprocess
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor

from .. import DatasetBusy, IVolumeBackend
from ..loopback import LoopbackVolumeBackend
from ..testtools import FilesystemHarness, MiB, make_volume_backend_tests

pytestmark = pytest.mark.functional


def release_loop_devices(root: str) -> None:
    """Unmount and detach whatever a test left under ``root`` (a safety net)."""
    with open("/proc/self/mounts") as f:
        mounts = [line.split()[1] for line in f]
    for mount in mounts:
        if mount.startswith(root + os.sep):
            subprocess.run(["umount", "-l", mount], capture_output=True)
    listed = subprocess.run(["losetup", "-a"], capture_output=True, text=True)
    for line in listed.stdout.splitlines():
        if root in line:
            subprocess.run(
                ["losetup", "-d", line.split(":", 1)[0]], capture_output=True
            )


def loopback_harness(request: pytest.FixtureRequest) -> FilesystemHarness:
    """Each backend instance gets its own root; images are 64 MiB."""
    if os.geteuid() != 0:
        pytest.skip("the loopback backend needs root for losetup and mount")
    tmp_path = request.getfixturevalue("tmp_path")
    request.addfinalizer(lambda: release_loop_devices(str(tmp_path)))
    made: list[None] = []

    async def make() -> LoopbackVolumeBackend:
        made.append(None)
        return LoopbackVolumeBackend(
            reactor, str(tmp_path / f"node{len(made)}"), default_maximum_size=64 * MiB
        )

    async def reopen(backend: IVolumeBackend) -> LoopbackVolumeBackend:
        assert isinstance(backend, LoopbackVolumeBackend)
        return LoopbackVolumeBackend(
            reactor, backend.root, default_maximum_size=64 * MiB
        )

    return FilesystemHarness(make, reopen=reopen)


_Contract: Any = make_volume_backend_tests(loopback_harness)


class TestLoopbackVolumeBackend(_Contract):  # type: ignore[misc]  # made at runtime
    """LoopbackVolumeBackend against the contract."""


# -- Loopback-specific behaviour: how the read-only flag follows a remount ---

ID1 = "6f2bb4a7-7c3a-4a7e-9b6e-0d1f1e7c2a01"


def _mode(path: str) -> str:
    """``ro`` or ``rw``: how the filesystem at ``path`` is mounted."""
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if fields[1] == path:
                return fields[3].split(",")[0]
    raise AssertionError(f"{path} is not mounted")


@pytest.fixture
def loopback_root(tmp_path: Any) -> Any:
    """A root for a loopback backend; its mounts are released afterwards."""
    if os.geteuid() != 0:
        pytest.skip("the loopback backend needs root for losetup and mount")
    yield tmp_path
    release_loop_devices(str(tmp_path))


@pytest_twisted.ensureDeferred
async def test_read_only_dataset_mounted_read_only_after_reboot(
    loopback_root: Any,
) -> None:
    """
    A read-only dataset found unmounted (a reboot) is mounted read-only by a
    new backend object, and refuses writes.
    """
    backend = LoopbackVolumeBackend(
        reactor, str(loopback_root), default_maximum_size=64 * MiB
    )
    info = await backend.set_read_only((await backend.create(ID1)).dataset_id, True)
    subprocess.run(["umount", info.path], check=True)
    release_loop_devices(str(loopback_root))
    again = LoopbackVolumeBackend(reactor, str(loopback_root))
    assert (await again.get(ID1)).read_only is True
    assert _mode(info.path) == "ro"
    with pytest.raises(OSError) as caught:
        open(os.path.join(info.path, "f"), "wb")
    assert caught.value.errno == errno.EROFS
    await again.destroy(ID1)


@pytest_twisted.ensureDeferred
async def test_mount_follows_recorded_flag(loopback_root: Any) -> None:
    """
    A dataset mounted read-write although recorded read-only (a crash
    between the two steps of ``set_read_only``) is remounted read-only the
    next time the backend looks at it; and the other way round.
    """
    backend = LoopbackVolumeBackend(
        reactor, str(loopback_root), default_maximum_size=64 * MiB
    )
    info = await backend.set_read_only((await backend.create(ID1)).dataset_id, True)
    subprocess.run(["mount", "-o", "remount,rw", info.path], check=True)
    [listed] = await backend.list_datasets()
    assert listed.read_only is True and _mode(info.path) == "ro"
    await backend.set_read_only(ID1, False)
    subprocess.run(["mount", "-o", "remount,ro", info.path], check=True)
    assert (await backend.get(ID1)).read_only is False
    assert _mode(info.path) == "rw"
    await backend.destroy(ID1)


@pytest_twisted.ensureDeferred
async def test_set_read_only_refused_while_file_open_for_writing(
    loopback_root: Any,
) -> None:
    """
    Making a dataset read-only while a file in it is open for writing fails
    with DatasetBusy and leaves it writable, recorded as such.
    """
    backend = LoopbackVolumeBackend(
        reactor, str(loopback_root), default_maximum_size=64 * MiB
    )
    info = await backend.create(ID1)
    with open(os.path.join(info.path, "busy"), "wb") as f:
        with pytest.raises(DatasetBusy):
            await backend.set_read_only(ID1, True)
        f.write(b"still writable")
    assert (await backend.get(ID1)).read_only is False
    assert _mode(info.path) == "rw"
    await backend.destroy(ID1)


def _loop_devices(root: str) -> list[str]:
    """The ``losetup -a`` lines of images under ``root``."""
    listed = subprocess.run(["losetup", "-a"], capture_output=True, text=True)
    return [line for line in listed.stdout.splitlines() if root in line]


def _mounts_under(path: str) -> list[str]:
    """The mount points under ``path``."""
    with open("/proc/self/mounts") as f:
        return [
            line.split()[1] for line in f if line.split()[1].startswith(path + os.sep)
        ]


@pytest_twisted.ensureDeferred
async def test_replacing_receive_releases_old_image(loopback_root: Any) -> None:
    """
    A replacing receive swaps the mounted filesystem at the dataset's path
    even while a file of the old copy is open (the old one is unmounted
    lazily, the open file still reads the old data), and leaves one loop
    device, one mount and nothing under ``tmp/``.
    """
    sender = LoopbackVolumeBackend(
        reactor, str(loopback_root / "sender"), default_maximum_size=64 * MiB
    )
    receiver = LoopbackVolumeBackend(
        reactor, str(loopback_root / "receiver"), default_maximum_size=64 * MiB
    )
    for content, name in [(b"old", "s1"), (b"new", "s2")]:
        info = await sender.get(ID1) if name == "s2" else await sender.create(ID1)
        with open(os.path.join(info.path, "f"), "wb") as f:
            f.write(content)
        await sender.snapshot(ID1, name)
    sink = await receiver.receive(ID1)
    await (await sender.send(ID1, "s1")).start(sink)
    await sink.finish()
    old = await receiver.get(ID1)
    with open(os.path.join(old.path, "f"), "rb") as held:
        sink = await receiver.receive(ID1, replace=True)
        await (await sender.send(ID1, "s2")).start(sink)
        await sink.finish()
        assert held.read() == b"old"
    new = await receiver.get(ID1)
    assert new.path == old.path and new.read_only is True
    with open(os.path.join(new.path, "f"), "rb") as f:
        assert f.read() == b"new"
    assert _mode(new.path) == "ro"
    root = str(loopback_root / "receiver")
    assert _mounts_under(root) == [new.path]
    assert len(_loop_devices(root)) == 1
    assert os.listdir(os.path.join(root, "tmp")) == []
    await receiver.destroy(ID1)
    await sender.destroy(ID1)


@pytest_twisted.ensureDeferred
async def test_recover_unmounts_images_left_in_tmp(loopback_root: Any) -> None:
    """
    ``recover`` after a replacement cut short by a crash (a new image
    mounted under ``tmp/``) unmounts and deletes it; the dataset stays.
    """
    backend = LoopbackVolumeBackend(
        reactor, str(loopback_root), default_maximum_size=64 * MiB
    )
    info = await backend.create(ID1)
    with open(os.path.join(info.path, "f"), "wb") as f:
        f.write(b"kept")
    await backend.snapshot(ID1, "s1")
    work = loopback_root / "tmp" / "crashed-replacement"
    (work / "mnt").mkdir(parents=True)
    image = str(loopback_root / "datasets" / ID1 / "snapshots" / "s1.img")
    subprocess.run(["cp", "--sparse=always", image, str(work / "image")], check=True)
    subprocess.run(["mount", "-o", "loop,ro", str(work / "image"), str(work / "mnt")], check=True)
    await LoopbackVolumeBackend(reactor, str(loopback_root)).recover()
    assert os.listdir(loopback_root / "tmp") == []
    assert _mounts_under(str(loopback_root)) == [info.path]
    with open(os.path.join((await backend.get(ID1)).path, "f"), "rb") as f:
        assert f.read() == b"kept"
    await backend.destroy(ID1)
