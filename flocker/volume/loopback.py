"""
The loopback backend: an ext4 filesystem in a sparse file per dataset.

Layout under ``root`` (needs root privileges for ``losetup`` and ``mount``)::

    datasets/<id>/meta.json               read-only flag, snapshots in order
    datasets/<id>/image                   the sparse ext4 image
    datasets/<id>/mnt/                    where it is mounted (the path)
    datasets/<id>/snapshots/<name>.img    a copy of the image per snapshot
    tmp/                                  receives and copies in progress

The image is attached with ``losetup --find`` and mounted; unmounting always
detaches the loop device (there are few).  A snapshot freezes the
filesystem (``fsfreeze``) while the image is copied with ``cp
--reflink=auto --sparse=always``, so it is consistent and costs only the
blocks in use.  The maximum size is the image's size: it grows (unmounted, with
``resize2fs``) but cannot shrink or become unlimited
(:class:`ResizeNotSupported`); clones and received datasets keep the size of
their image.

A read-only dataset is mounted ``-o ro``, so ext4 refuses every write with
``EROFS``, root's too.  ``read_only`` in ``meta.json`` is the authority, so
it survives a new backend object and a reboot:

* ``set_read_only`` records it first, then remounts (``mount -o
  remount,ro|rw``); a remount refused as busy (a file open for writing)
  restores the record and raises :class:`DatasetBusy`;
* whenever the backend mounts a dataset or looks at it (``get``,
  ``list_datasets``) it mounts it, or remounts it, to match the record, so
  a crash between the two steps above is repaired on the next look.

Snapshots (``fsfreeze`` works on a read-only ext4), sends, rollbacks and
receives work on the images and keep the flag; a full receive records its
new dataset read-only.

Set-aside snapshots are frozen copies of the image under
``set_aside/<id>/`` (see :mod:`flocker.volume._files`).

Streams (format ``flocker-ext4-image-v1``): a JSON header line, a sparse tar
of the snapshot's image, and a SHA-256 of all that.  They always carry the
whole image.  A received image is checked with ``e2fsck -n`` under ``tmp/``
before ``finish`` puts it in place.  A replacing receive mounts the new
image in its directory under ``tmp/`` and swaps that directory with the old
dataset's (:meth:`FileStore.exchange`: one ``renameat2``, and mounts move
with their directories), then unmounts the old image lazily and deletes
it; ``recover`` lazily unmounts whatever a crash left mounted under
``tmp/``.
"""

from __future__ import annotations

import os
from typing import cast

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorProcess, IReactorTime
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from ..common import CommandFailed, CommandResult, retry_failure, run_command
from ._file_backend import FileVolumeBackend, recorded_read_only
from ._files import FileStore
from ._interface import (
    BadStream,
    Capabilities,
    DatasetInfo,
    IVolumeBackend,
    ResizeNotSupported,
)

STREAM_FORMAT = "flocker-ext4-image-v1"
DEFAULT_SIZE = 1024 * 1024 * 1024


def _used(path: str) -> int:
    stat = os.statvfs(path)
    return (stat.f_blocks - stat.f_bfree) * stat.f_frsize


def _mounted_read_only(path: str) -> bool:
    """Whether the filesystem mounted at ``path`` is mounted read-only."""
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)


def _single_file(directory: str) -> str | None:
    names = os.listdir(directory)
    if len(names) != 1:
        return None
    path = os.path.join(directory, names[0])
    return path if os.path.isfile(path) and not os.path.islink(path) else None


class _Images:
    """
    The :class:`~flocker.volume._file_backend.Contents` of the loopback
    backend: a dataset's contents are the ext4 image ``image``, mounted at
    ``mnt/`` (its path) through a loop device, read-only or not as its
    metadata records; a snapshot's copy is a frozen copy of the image.
    The maximum size is the image's size.
    """

    records_maximum_size = False

    def __init__(self, reactor: IReactorProcess, store: FileStore) -> None:
        """
        :param reactor: Runs the commands.
        :param store: The backend's layout.
        """
        self._reactor = reactor
        self._store = store

    # -- paths and commands ------------------------------------------------

    def _dir(self, dataset_id: str) -> str:
        return self._store.dataset_dir(dataset_id)

    def _image(self, dataset_id: str) -> str:
        return os.path.join(self._dir(dataset_id), "image")

    def _mnt(self, dataset_id: str) -> str:
        return os.path.join(self._dir(dataset_id), "mnt")

    async def _run(self, *argv: str) -> CommandResult:
        return await self._store.run(*argv)

    async def _copy_image(self, source: str, destination: str) -> None:
        """Copy an image sparsely (sharing blocks where possible), atomically."""
        partial = f"{destination}.partial"
        await self._run("cp", "--reflink=auto", "--sparse=always", source, partial)
        await self._store.rename(partial, destination)

    async def _devices(self, image: str) -> list[str]:
        """The loop devices ``image`` is attached to."""
        result = await self._run("losetup", "-j", image)
        return [
            line.split(":", 1)[0]
            for line in result.stdout.decode().splitlines()
            if line.strip()
        ]

    async def _is_mounted(self, path: str) -> bool:
        result = await run_command(
            self._reactor, ["mountpoint", "-q", path], check=False
        )
        return result.exit_code == 0

    async def _mount_at(self, image: str, mnt: str, read_only: bool) -> None:
        """:meth:`mount` for an image and mount point given by path."""
        mode = "ro" if read_only else "rw"
        if await self._is_mounted(mnt):
            if await self._store.in_thread(_mounted_read_only, mnt) != read_only:
                await self._run("mount", "-o", f"remount,{mode}", mnt)
            return
        devices = await self._devices(image)
        if devices:
            device = devices[0]
        else:
            result: CommandResult = await retry_failure(
                cast(IReactorTime, self._reactor),
                lambda: Deferred.fromCoroutine(
                    self._run("losetup", "--find", "--show", image)
                ),
                expected=(CommandFailed,),
                steps=[0.1, 0.2, 0.5, 1.0, 2.0],
            )
            device = result.stdout.decode().strip()
        try:
            await self._run("mount", "-t", "ext4", "-o", mode, device, mnt)
        except BaseException:
            await run_command(self._reactor, ["losetup", "-d", device], check=False)
            raise

    # -- Contents ----------------------------------------------------------

    async def info(self, dataset_id: str) -> DatasetInfo:
        """Mounts the dataset as recorded, if needed; ``statvfs`` says what is used."""
        read_only = recorded_read_only(await self._store.meta(dataset_id))
        await self.mount(dataset_id, read_only)
        mnt = self._mnt(dataset_id)
        return DatasetInfo(
            dataset_id=dataset_id,
            path=mnt,
            used=await self._store.in_thread(_used, mnt),
            maximum_size=await self._store.in_thread(
                os.path.getsize, self._image(dataset_id)
            ),
            read_only=read_only,
        )

    async def create(
        self, dataset_id: str, maximum_size: int | None, work: str
    ) -> str | None:
        """A new sparse ext4 image of the maximum size."""
        image = os.path.join(work, "image")
        await self._run("truncate", "-s", str(maximum_size), image)
        await self._run("mkfs.ext4", "-q", "-F", "-m", "0", image)
        return image

    async def place(self, contents: str | None, directory: str, copy: bool) -> None:
        """``image`` (copied or moved) and an empty mount point ``mnt/``."""
        assert contents is not None
        await self._store.makedirs(os.path.join(directory, "mnt"))
        target = os.path.join(directory, "image")
        if copy:
            await self._copy_image(contents, target)
        else:
            await self._store.rename(contents, target)

    async def capture(self, dataset_id: str, destination: str) -> None:
        """
        Copy the dataset's image to ``destination`` while its filesystem is
        frozen, so the copy is consistent (mounting it first if needed).
        """
        read_only = recorded_read_only(await self._store.meta(dataset_id))
        await self.mount(dataset_id, read_only)
        mnt = self._mnt(dataset_id)
        await self._run("fsfreeze", "-f", mnt)
        try:
            await self._copy_image(self._image(dataset_id), destination)
        finally:
            await self._run("fsfreeze", "-u", mnt)

    async def restore(self, dataset_id: str, source: str, read_only: bool) -> None:
        """Unmount, copy ``source`` over the dataset's image, mount (read-only?)."""
        await self.unmount(dataset_id)
        try:
            await self._copy_image(source, self._image(dataset_id))
        finally:
            await self.mount(dataset_id, read_only)

    async def resize(self, dataset_id: str, maximum_size: int | None) -> None:
        """Grow the image (unmounted, with ``resize2fs``); never shrink it."""
        current = await self.info(dataset_id)
        if maximum_size is None:
            raise ResizeNotSupported("a loopback dataset cannot be unlimited")
        assert current.maximum_size is not None
        if maximum_size < current.maximum_size:
            raise ResizeNotSupported(
                "loopback datasets cannot shrink (ext4 would need unmounting)"
            )
        if maximum_size > current.maximum_size:
            # Offline: online growth needs privileges containers lack.
            image = self._image(dataset_id)
            await self.unmount(dataset_id)
            try:
                await self._run("truncate", "-s", str(maximum_size), image)
                await run_command(
                    self._reactor, ["e2fsck", "-f", "-p", image], check=False
                )
                await self._run("resize2fs", image)
            finally:
                await self.mount(dataset_id, current.read_only)

    async def mount(self, dataset_id: str, read_only: bool) -> None:
        """
        Attach and mount the dataset's image (read-only or not), unless it
        already is; remount it if it is mounted the other way.
        """
        await self._mount_at(self._image(dataset_id), self._mnt(dataset_id), read_only)

    async def mount_replacement(self, directory: str, read_only: bool) -> None:
        """Mount the new image in its directory: mounts move with directories."""
        await self._mount_at(
            os.path.join(directory, "image"), os.path.join(directory, "mnt"), read_only
        )

    async def unmount(self, dataset_id: str) -> None:
        """Unmount the dataset and detach its loop device(s)."""
        mnt = self._mnt(dataset_id)
        if await self._is_mounted(mnt):
            _: CommandResult = await retry_failure(
                cast(IReactorTime, self._reactor),
                lambda: Deferred.fromCoroutine(self._run("umount", mnt)),
                expected=(CommandFailed,),
                steps=[0.1, 0.2, 0.5, 1.0, 2.0],
            )
        for device in await self._devices(self._image(dataset_id)):
            await run_command(self._reactor, ["losetup", "-d", device], check=False)

    async def release(self, directory: str) -> None:
        """
        Unmount the image lazily first (a process may still hold a file of
        an old copy open), detach its loop devices, then delete.
        """
        mnt = os.path.join(directory, "mnt")
        if await self._is_mounted(mnt):
            await self._run("umount", "-l", mnt)
        image = os.path.join(directory, "image")
        if await self._store.in_thread(os.path.exists, image):
            for device in await self._devices(image):
                await run_command(self._reactor, ["losetup", "-d", device], check=False)
        await self._store.remove(directory)

    async def received(self, tree: str) -> str:
        """The one image extracted, once ``e2fsck -n`` found it clean."""
        image = await self._store.in_thread(_single_file, tree)
        if image is None:
            raise BadStream("the stream does not hold exactly one image")
        check = await run_command(
            self._reactor, ["e2fsck", "-f", "-n", image], check=False
        )
        if check.exit_code != 0:
            raise BadStream("the received image is not a clean ext4")
        return image

    def tar_argv(self, dataset_id: str, snapshot: str) -> list[str]:
        """A sparse tar of the snapshot's image."""
        return [
            "tar", "-C", os.path.join(self._dir(dataset_id), "snapshots"),
            "--sparse", "-cf", "-", f"{snapshot}.img",
        ]  # fmt: skip

    async def recover(self) -> None:
        """Lazily unmount any image mounted in ``tmp/`` (a replacement cut short)."""
        tmp = os.path.join(self._store.root, "tmp")
        for name in await self._store.in_thread(os.listdir, tmp):
            mnt = os.path.join(tmp, name, "mnt")
            if await self._is_mounted(mnt):
                await self._run("umount", "-l", mnt)


@implementer(IVolumeBackend)
class LoopbackVolumeBackend(FileVolumeBackend):
    """Datasets as loop-mounted ext4 images; see the module docstring."""

    kind = "loopback"

    def __init__(
        self,
        reactor: IReactorProcess,
        root: str,
        threadpool: ThreadPool | None = None,
        default_maximum_size: int = DEFAULT_SIZE,
    ) -> None:
        """
        :param reactor: Runs the commands and the thread pool.
        :param root: The directory holding everything (created if needed).
        :param threadpool: For small blocking file operations.
        :param default_maximum_size: The image size of a dataset created
            without a maximum size.
        """
        store = FileStore(reactor, root, threadpool, snapshot_suffix=".img")
        super().__init__(
            store,
            _Images(reactor, store),
            Capabilities(
                constant_time_clone=False,
                incremental_send=False,
                stream_format=STREAM_FORMAT,
                grow=True,
                shrink=False,
                unlimited=False,
                enforces_maximum_size=True,
                clones_depend_on_origin=False,
                default_maximum_size=default_maximum_size,
                enforces_read_only=True,
            ),
        )
