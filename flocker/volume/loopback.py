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
import time
from typing import Any, cast

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorProcess, IReactorTime
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from ..common import CommandFailed, CommandResult, retry_failure, run_command
from ._common import (
    backend_operation,
    check_dataset_id,
    check_maximum_size,
    check_read_only,
    check_receive_arguments,
    check_send_arguments,
    check_set_aside_arguments,
    check_snapshot_name,
)
from ._files import (
    FileStore,
    check_received,
    receive_tar,
    send_tar,
    snapshot_infos,
    snapshot_records,
)
from ._interface import (
    BadStream,
    Capabilities,
    DatasetBusy,
    DatasetExists,
    DatasetInfo,
    IStreamSink,
    IStreamSource,
    IVolumeBackend,
    ResizeNotSupported,
    SnapshotExists,
    SnapshotInfo,
)
from ._logging import (
    CLONE,
    CREATE,
    DESTROY,
    DESTROY_SNAPSHOT,
    GET,
    LIST_DATASETS,
    LIST_SET_ASIDE,
    LIST_SNAPSHOTS,
    RECEIVE,
    ROLLBACK,
    SEND,
    SET_ASIDE,
    SET_MAXIMUM_SIZE,
    SET_READ_ONLY,
    SNAPSHOT_ACTION,
)

STREAM_FORMAT = "flocker-ext4-image-v1"
_KIND = "loopback"
DEFAULT_SIZE = 1024 * 1024 * 1024


def _used(path: str) -> int:
    stat = os.statvfs(path)
    return (stat.f_blocks - stat.f_bfree) * stat.f_frsize


def _mounted_read_only(path: str) -> bool:
    """Whether the filesystem mounted at ``path`` is mounted read-only."""
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)


def _read_only(meta: dict[str, Any]) -> bool:
    """The read-only flag recorded in a dataset's metadata."""
    return bool(meta.get("read_only", False))


def _single_file(directory: str) -> str | None:
    names = os.listdir(directory)
    if len(names) != 1:
        return None
    path = os.path.join(directory, names[0])
    return path if os.path.isfile(path) and not os.path.islink(path) else None


@implementer(IVolumeBackend)
class LoopbackVolumeBackend:
    """Datasets as loop-mounted ext4 images; see the module docstring."""

    #: Names the backend in the logs.
    kind = _KIND

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
        self._store = FileStore(reactor, root, threadpool, snapshot_suffix=".img")
        self._reactor = reactor
        self.root = self._store.root
        self.capabilities = Capabilities(
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
        )

    def recover(self) -> Deferred[None]:
        """
        Delete what interrupted operations left in ``tmp/``, after lazily
        unmounting any image mounted there (a replacement cut short).
        """

        async def run() -> None:
            tmp = os.path.join(self.root, "tmp")
            for name in await self._store.in_thread(os.listdir, tmp):
                mnt = os.path.join(tmp, name, "mnt")
                if await self._is_mounted(mnt):
                    await self._run("umount", "-l", mnt)
            await self._store.recover()

        return Deferred.fromCoroutine(run())

    # -- paths and helpers -------------------------------------------------

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

    async def _mount(self, dataset_id: str, read_only: bool) -> None:
        """
        Attach and mount the dataset's image (read-only or not), unless it
        already is; remount it if it is mounted the other way.
        """
        await self._mount_at(self._image(dataset_id), self._mnt(dataset_id), read_only)

    async def _mount_at(self, image: str, mnt: str, read_only: bool) -> None:
        """:meth:`_mount` for an image and mount point given by path."""
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

    async def _unmount(self, dataset_id: str) -> None:
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

    async def _release(self, directory: str) -> None:
        """
        Delete a dataset directory under ``tmp/`` (an old copy swapped out,
        or a new one that never got in), unmounting its image lazily first
        (a process may still hold a file of an old copy open) and
        detaching its loop devices.
        """
        mnt = os.path.join(directory, "mnt")
        if await self._is_mounted(mnt):
            await self._run("umount", "-l", mnt)
        image = os.path.join(directory, "image")
        if await self._store.in_thread(os.path.exists, image):
            for device in await self._devices(image):
                await run_command(self._reactor, ["losetup", "-d", device], check=False)
        await self._store.remove(directory)

    async def _info(self, dataset_id: str) -> DatasetInfo:
        read_only = _read_only(await self._store.meta(dataset_id))
        await self._mount(dataset_id, read_only)
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

    async def _install(
        self,
        dataset_id: str,
        image: str,
        snapshots: list[tuple[SnapshotInfo, str]],
        copy_image: bool,
        read_only: bool = False,
        replace: bool = False,
    ) -> None:
        """
        Build a dataset in ``tmp/`` from an image and rename it into place.

        :param image: The image file; copied if ``copy_image``, else moved.
        :param snapshots: Snapshot images to move into the dataset.
        :param read_only: The new dataset's flag (and how it is mounted).
        :param replace: An existing dataset of that id is replaced instead
            of being :class:`DatasetExists`: the new image is mounted in
            ``tmp/`` and the two directories swapped with
            :meth:`FileStore.exchange` (mounts move with their
            directories, so the dataset's path shows the old or the new
            filesystem, never none); then the old one is released.
        """
        work = self._store.temporary_dir()
        try:
            await self._store.makedirs(os.path.join(work, "snapshots"))
            await self._store.makedirs(os.path.join(work, "mnt"))
            target = os.path.join(work, "image")
            if copy_image:
                await self._copy_image(image, target)
            else:
                await self._store.rename(image, target)
            for info, path in snapshots:
                await self._store.rename(
                    path, os.path.join(work, "snapshots", f"{info.name}.img")
                )
            await self._store.write_meta(
                work,
                {
                    "read_only": read_only,
                    "snapshots": snapshot_records([s for s, _ in snapshots]),
                },
            )
            if not await self._store.exists(dataset_id):
                await self._store.rename(work, self._dir(dataset_id))
            elif replace:
                await self._mount_at(target, os.path.join(work, "mnt"), read_only)
                await self._store.exchange(work, dataset_id)  # work: the old one
            else:
                raise DatasetExists(dataset_id)
        finally:
            await self._release(work)
        await self._mount(dataset_id, read_only)

    # -- IVolumeBackend ----------------------------------------------------

    @backend_operation(CREATE)
    async def create(
        self, dataset_id: str, maximum_size: int | None = None
    ) -> DatasetInfo:
        """See :meth:`IVolumeBackend.create`; a new ext4 image of that size."""
        key = check_dataset_id(dataset_id)
        size = check_maximum_size(maximum_size)
        if size is None:
            size = self.capabilities.default_maximum_size
        if await self._store.exists(key):
            raise DatasetExists(key)
        work = self._store.temporary_dir()
        try:
            await self._store.makedirs(work)
            image = os.path.join(work, "image")
            await self._run("truncate", "-s", str(size), image)
            await self._run("mkfs.ext4", "-q", "-F", "-m", "0", image)
            await self._install(key, image, [], copy_image=False)
        finally:
            await self._store.remove(work)
        return await self._info(key)

    @backend_operation(DESTROY)
    async def destroy(self, dataset_id: str) -> None:
        """See :meth:`IVolumeBackend.destroy`."""
        key = check_dataset_id(dataset_id)
        directory = self._dir(key)
        if await self._store.in_thread(os.path.exists, directory):
            await self._unmount(key)
            await self._store.remove_dataset(key)

    @backend_operation(GET)
    async def get(self, dataset_id: str) -> DatasetInfo:
        """See :meth:`IVolumeBackend.get`; mounts the dataset if needed."""
        return await self._info(check_dataset_id(dataset_id))

    @backend_operation(LIST_DATASETS)
    async def list_datasets(self) -> list[DatasetInfo]:
        """See :meth:`IVolumeBackend.list_datasets`."""
        return await self._store.infos(self._info)

    @backend_operation(SET_MAXIMUM_SIZE)
    async def set_maximum_size(
        self, dataset_id: str, maximum_size: int | None
    ) -> DatasetInfo:
        """See :meth:`IVolumeBackend.set_maximum_size`; grows only."""
        key = check_dataset_id(dataset_id)
        size = check_maximum_size(maximum_size)
        current = await self._info(key)
        if size is None:
            raise ResizeNotSupported("a loopback dataset cannot be unlimited")
        assert current.maximum_size is not None
        if size < current.maximum_size:
            raise ResizeNotSupported(
                "loopback datasets cannot shrink (ext4 would need unmounting)"
            )
        if size > current.maximum_size:
            # Offline: online growth needs privileges containers lack.
            image = self._image(key)
            await self._unmount(key)
            try:
                await self._run("truncate", "-s", str(size), image)
                await run_command(
                    self._reactor, ["e2fsck", "-f", "-p", image], check=False
                )
                await self._run("resize2fs", image)
            finally:
                await self._mount(key, current.read_only)
        return await self._info(key)

    @backend_operation(SET_READ_ONLY)
    async def set_read_only(
        self, dataset_id: str, read_only: bool
    ) -> DatasetInfo:
        """See :meth:`IVolumeBackend.set_read_only`; records it, then remounts."""
        key = check_dataset_id(dataset_id)
        flag = check_read_only(read_only)
        meta = await self._store.meta(key)
        if _read_only(meta) != flag:
            meta["read_only"] = flag
            await self._store.write_meta(self._dir(key), meta)
            try:
                await self._mount(key, flag)
            except BaseException as error:
                # Keep the record true to the mount.
                meta["read_only"] = not flag
                await self._store.write_meta(self._dir(key), meta)
                if isinstance(error, CommandFailed) and b"busy" in error.stderr:
                    raise DatasetBusy(key) from None
                raise
        return await self._info(key)

    @backend_operation(SNAPSHOT_ACTION, snapshot="name")
    async def snapshot(self, dataset_id: str, name: str) -> SnapshotInfo:
        """See :meth:`IVolumeBackend.snapshot`; a frozen copy of the image."""
        key = check_dataset_id(dataset_id)
        check_snapshot_name(name)
        meta = await self._store.meta(key)
        if name in [s.name for s in snapshot_infos(meta)]:
            raise SnapshotExists(key, name)
        info = SnapshotInfo(name=name, created=time.time())
        await self._capture(key, self._store.snapshot_path(key, name))
        meta["snapshots"].append({"name": name, "created": info.created})
        await self._store.write_meta(self._dir(key), meta)
        return info

    @backend_operation(LIST_SNAPSHOTS)
    async def list_snapshots(self, dataset_id: str) -> list[SnapshotInfo]:
        """See :meth:`IVolumeBackend.list_snapshots`."""
        return snapshot_infos(await self._store.meta(check_dataset_id(dataset_id)))

    async def _capture(self, key: str, destination: str) -> None:
        """
        Copy the dataset's image to ``destination`` while its filesystem is
        frozen, so the copy is consistent (mounting it first if needed).
        """
        await self._mount(key, _read_only(await self._store.meta(key)))
        mnt = self._mnt(key)
        await self._run("fsfreeze", "-f", mnt)
        try:
            await self._copy_image(self._image(key), destination)
        finally:
            await self._run("fsfreeze", "-u", mnt)

    async def _put_image(self, key: str, image: str, read_only: bool) -> None:
        """Unmount, copy ``image`` over the dataset's image, mount (read-only?)."""
        await self._unmount(key)
        try:
            await self._copy_image(image, self._image(key))
        finally:
            await self._mount(key, read_only)

    @backend_operation(ROLLBACK, snapshot="name")
    async def rollback(self, dataset_id: str, name: str) -> None:
        """See :meth:`IVolumeBackend.rollback`."""
        key = check_dataset_id(dataset_id)
        await self._store.require_snapshot(key, name)
        meta = await self._store.meta(key)
        await self._put_image(
            key, self._store.snapshot_path(key, name), _read_only(meta)
        )
        await self._store.drop_snapshots_after(key, meta, name)

    @backend_operation(SET_ASIDE, snapshot="name")
    async def set_aside(self, dataset_id: str, name: str, base: str) -> SnapshotInfo:
        """See :meth:`IVolumeBackend.set_aside` and :meth:`FileStore.set_aside`."""
        key = check_set_aside_arguments(dataset_id, name, base)
        read_only = _read_only(await self._store.meta(key))
        return await self._store.set_aside(
            key,
            name,
            base,
            capture=lambda path: self._capture(key, path),
            restore=lambda image: self._put_image(key, image, read_only),
        )

    @backend_operation(LIST_SET_ASIDE)
    async def list_set_aside(self, dataset_id: str) -> list[SnapshotInfo]:
        """See :meth:`IVolumeBackend.list_set_aside`."""
        return await self._store.list_set_aside(check_dataset_id(dataset_id))

    @backend_operation(DESTROY_SNAPSHOT, snapshot="name")
    async def destroy_snapshot(self, dataset_id: str, name: str) -> None:
        """See :meth:`IVolumeBackend.destroy_snapshot`."""
        key = check_dataset_id(dataset_id)
        check_snapshot_name(name)
        await self._store.forget_snapshot(key, name)

    @backend_operation(CLONE)
    async def clone(
        self, dataset_id: str, snapshot: str, new_dataset_id: str
    ) -> DatasetInfo:
        """See :meth:`IVolumeBackend.clone`; a copy of the snapshot's image."""
        key = check_dataset_id(dataset_id)
        new_key = check_dataset_id(new_dataset_id)
        origin = await self._store.origin(key, snapshot)
        if await self._store.exists(new_key):
            raise DatasetExists(new_key)
        await self._install(new_key, origin, [], copy_image=True)
        return await self._info(new_key)

    @backend_operation(SEND)
    async def send(
        self, dataset_id: str, snapshot: str, base: str | None = None
    ) -> IStreamSource:
        """See :meth:`IVolumeBackend.send`; header, sparse tar, checksum."""
        key = check_send_arguments(dataset_id, snapshot, base)
        return await send_tar(
            self._store,
            [
                "tar", "-C", os.path.join(self._dir(key), "snapshots"),
                "--sparse", "-cf", "-", f"{snapshot}.img",
            ],  # fmt: skip
            backend=_KIND,
            stream_format=STREAM_FORMAT,
            dataset_id=key,
            snapshot=snapshot,
            base=base,
        )

    @backend_operation(RECEIVE)
    async def receive(
        self, dataset_id: str, base: str | None = None, replace: bool = False
    ) -> IStreamSink:
        """See :meth:`IVolumeBackend.receive` and the module docstring."""
        key = check_receive_arguments(dataset_id, base, replace)

        async def commit(info: SnapshotInfo, tree: str, work: str) -> None:
            image = await self._store.in_thread(_single_file, tree)
            if image is None:
                raise BadStream("the stream does not hold exactly one image")
            check = await run_command(
                self._reactor, ["e2fsck", "-f", "-n", image], check=False
            )
            if check.exit_code != 0:
                raise BadStream("the received image is not a clean ext4")
            if base is None:
                await self._install(
                    key,
                    image,
                    [(info, image)],
                    copy_image=True,
                    read_only=True,
                    replace=replace,
                )
            else:
                await self._commit_incremental(key, base, info, image, work)

        return await receive_tar(
            self._store,
            commit,
            backend=_KIND,
            stream_format=STREAM_FORMAT,
            dataset_id=key,
            base=base,
            replace=replace,
        )

    async def _commit_incremental(
        self, key: str, base: str, info: SnapshotInfo, image: str, work: str
    ) -> None:
        """Put a received image after ``base``, dropping later snapshots."""
        meta = await self._store.meta(key)
        check_received(key, snapshot_infos(meta), base, info.name)
        await self._put_image(key, image, _read_only(meta))
        kept = await self._store.move_snapshots_after(
            key, snapshot_infos(meta), base, os.path.join(work, "trash")
        )
        await self._store.rename(image, self._store.snapshot_path(key, info.name))
        meta["snapshots"] = snapshot_records([*kept, info])
        await self._store.write_meta(self._dir(key), meta)
        await self._store.remove(work)
