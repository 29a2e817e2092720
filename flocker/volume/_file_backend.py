"""
The shared base of the backends that keep datasets as files under a root
directory (``directory`` and ``loopback``).

:class:`FileVolumeBackend` carries out every :class:`IVolumeBackend`
operation once, on a :class:`FileStore` (the layout, metadata and
snapshot bookkeeping of :mod:`flocker.volume._files`).  What really
differs between the two backends is how the contents of a dataset, and the
copy of each of its snapshots, are kept: a tree of files copied with
``cp``, or an ext4 image file mounted through a loop device.  That is a
:class:`Contents`, the small strategy each backend passes in.
"""

from __future__ import annotations

import os
import time
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from zope.interface import implementer

from ..common import CommandFailed
from ._common import (
    backend_operation,
    check_replace,
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
    Capabilities,
    DatasetBusy,
    DatasetExists,
    DatasetInfo,
    IStreamSink,
    IStreamSource,
    IVolumeBackend,
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


def recorded_read_only(meta: dict[str, Any]) -> bool:
    """The read-only flag recorded in a dataset's metadata."""
    return bool(meta.get("read_only", False))


class Contents(Protocol):
    """
    How a file-based backend keeps a dataset's contents: where a path below
    names *contents*, it is such a copy (a tree, an image file).

    A dataset's directory (see :class:`FileStore`) holds its metadata, its
    snapshots' copies and whatever :meth:`place` puts there.
    """

    #: Whether the dataset's metadata records its maximum size (where the
    #: contents do not hold it).
    records_maximum_size: bool

    async def info(self, dataset_id: str) -> DatasetInfo:
        """The dataset's :class:`DatasetInfo` (or :class:`UnknownDataset`)."""

    async def create(
        self, dataset_id: str, maximum_size: int | None, work: str
    ) -> str | None:
        """
        Make the contents of a new, empty dataset in the existing scratch
        directory ``work``; their path, or ``None`` for :meth:`place` to
        start empty.
        """

    async def place(self, contents: str | None, directory: str, copy: bool) -> None:
        """
        Make ``contents`` (``None``: empty) the contents of the new dataset
        directory ``directory``: a copy of them, or them moved unless
        ``copy``.
        """

    async def capture(self, dataset_id: str, destination: str) -> None:
        """Copy the dataset's current contents, consistently, to a new path."""

    async def restore(self, dataset_id: str, source: str, read_only: bool) -> None:
        """
        Make the dataset's contents a copy of ``source`` (and available
        again, read-only or not).
        """

    async def resize(self, dataset_id: str, maximum_size: int | None) -> None:
        """Change the dataset's maximum size, or refuse as the interface says."""

    async def mount(self, dataset_id: str, read_only: bool) -> None:
        """Make the dataset's path show its contents, read-only or not."""

    async def mount_replacement(self, directory: str, read_only: bool) -> None:
        """
        :meth:`mount` for a new dataset directory (under ``tmp/``) that is
        about to be exchanged with the dataset of its id.
        """

    async def unmount(self, dataset_id: str) -> None:
        """Stop the dataset's path showing its contents (it is destroyed)."""

    async def release(self, directory: str) -> None:
        """
        Delete a dataset directory under ``tmp/``: an old copy swapped out,
        or a new one that never got in.
        """

    async def received(self, tree: str) -> str:
        """
        The contents a received stream extracted into ``tree`` (or
        :class:`BadStream` if they are not whole).
        """

    def tar_argv(self, dataset_id: str, snapshot: str) -> list[str]:
        """The ``tar`` command that writes the copy of a snapshot."""

    async def recover(self) -> None:
        """Make what interrupted operations left under ``tmp/`` deletable."""


@implementer(IVolumeBackend)
class FileVolumeBackend:
    """Datasets as files under ``root``; see the module docstring."""

    #: Names the backend in the logs.
    kind: str

    def __init__(
        self, store: FileStore, contents: Contents, capabilities: Capabilities
    ) -> None:
        """
        :param store: The layout under the backend's root.
        :param contents: How the datasets' contents are kept.
        :param capabilities: What the backend can do.
        """
        self._store = store
        self._contents = contents
        self.root = store.root
        self.capabilities = capabilities

    def recover(self) -> Deferred[None]:
        """
        See :meth:`IVolumeBackend.recover`: let the contents give up what
        they hold under ``tmp/`` (:meth:`Contents.recover`), then delete
        what interrupted operations left there (:meth:`FileStore.recover`).
        """

        async def run() -> None:
            await self._contents.recover()
            await self._store.recover()

        return Deferred.fromCoroutine(run())

    # -- helpers -----------------------------------------------------------

    async def _install(
        self,
        dataset_id: str,
        contents: str | None,
        snapshots: list[tuple[SnapshotInfo, str]],
        *,
        copy: bool,
        maximum_size: int | None = None,
        read_only: bool = False,
        replace: bool = False,
    ) -> None:
        """
        Build a dataset in ``tmp/`` and rename it into place.

        :param contents: The new dataset's contents (``None``: empty),
            copied if ``copy``, else moved.
        :param snapshots: Snapshots with copies to *move* into the dataset.
        :param maximum_size: Recorded where the contents do not hold it.
        :param read_only: The flag the new dataset records.
        :param replace: An existing dataset of that id is swapped out
            (:meth:`FileStore.exchange`, the new one made available
            first, so the dataset's path shows the old or the new
            contents, never none) and released, instead of being
            :class:`DatasetExists`.
        """
        work = self._store.temporary_dir()
        try:
            await self._store.makedirs(os.path.join(work, "snapshots"))
            await self._contents.place(contents, work, copy)
            for info, path in snapshots:
                name = os.path.basename(self._store.snapshot_path(dataset_id, info.name))
                await self._store.rename(path, os.path.join(work, "snapshots", name))
            meta: dict[str, Any] = {}
            if self._contents.records_maximum_size:
                meta["maximum_size"] = maximum_size
            meta["read_only"] = read_only
            meta["snapshots"] = snapshot_records([s for s, _ in snapshots])
            await self._store.write_meta(work, meta)
            if not await self._store.exists(dataset_id):
                await self._store.rename(work, self._store.dataset_dir(dataset_id))
            elif replace:
                await self._contents.mount_replacement(work, read_only)
                await self._store.exchange(work, dataset_id)  # work: the old one
            else:
                raise DatasetExists(dataset_id)
        finally:
            await self._contents.release(work)
        await self._contents.mount(dataset_id, read_only)

    async def _write_meta(self, dataset_id: str, meta: dict[str, Any]) -> None:
        await self._store.write_meta(self._store.dataset_dir(dataset_id), meta)

    # -- IVolumeBackend ----------------------------------------------------

    @backend_operation(CREATE)
    async def create(
        self, dataset_id: str, maximum_size: int | None = None
    ) -> DatasetInfo:
        """See :meth:`IVolumeBackend.create`."""
        if maximum_size is None:
            maximum_size = self.capabilities.default_maximum_size
        if await self._store.exists(dataset_id):
            raise DatasetExists(dataset_id)
        work = self._store.temporary_dir()
        try:
            await self._store.makedirs(work)
            contents = await self._contents.create(dataset_id, maximum_size, work)
            await self._install(dataset_id, contents, [], copy=False, maximum_size=maximum_size)
        finally:
            await self._store.remove(work)
        return await self._contents.info(dataset_id)

    @backend_operation(DESTROY)
    async def destroy(self, dataset_id: str) -> None:
        """See :meth:`IVolumeBackend.destroy`."""
        directory = self._store.dataset_dir(dataset_id)
        if await self._store.in_thread(os.path.exists, directory):
            await self._contents.unmount(dataset_id)
            await self._store.remove_dataset(dataset_id)

    @backend_operation(GET)
    async def get(self, dataset_id: str) -> DatasetInfo:
        """See :meth:`IVolumeBackend.get`."""
        return await self._contents.info(dataset_id)

    @backend_operation(LIST_DATASETS)
    async def list_datasets(self) -> list[DatasetInfo]:
        """See :meth:`IVolumeBackend.list_datasets`."""
        return await self._store.infos(self._contents.info)

    @backend_operation(SET_MAXIMUM_SIZE)
    async def set_maximum_size(
        self, dataset_id: str, maximum_size: int | None
    ) -> DatasetInfo:
        """See :meth:`IVolumeBackend.set_maximum_size` and :meth:`Contents.resize`."""
        await self._contents.resize(dataset_id, maximum_size)
        return await self._contents.info(dataset_id)

    @backend_operation(SET_READ_ONLY)
    async def set_read_only(self, dataset_id: str, read_only: bool) -> DatasetInfo:
        """
        See :meth:`IVolumeBackend.set_read_only`: records the flag, then
        mounts the dataset to match; a mount that fails (as busy: a file is
        open for writing) restores the record.
        """
        meta = await self._store.meta(dataset_id)
        if recorded_read_only(meta) != read_only:
            meta["read_only"] = read_only
            await self._write_meta(dataset_id, meta)
            try:
                await self._contents.mount(dataset_id, read_only)
            except BaseException as error:
                # Keep the record true to the mount.
                meta["read_only"] = not read_only
                await self._write_meta(dataset_id, meta)
                if isinstance(error, CommandFailed) and b"busy" in error.stderr:
                    raise DatasetBusy(dataset_id) from None
                raise
        return await self._contents.info(dataset_id)

    @backend_operation(SNAPSHOT_ACTION, snapshot="name")
    async def snapshot(self, dataset_id: str, name: str) -> SnapshotInfo:
        """See :meth:`IVolumeBackend.snapshot`; a copy of the contents."""
        meta = await self._store.meta(dataset_id)
        if name in [s.name for s in snapshot_infos(meta)]:
            raise SnapshotExists(dataset_id, name)
        info = SnapshotInfo(name=name, created=time.time())
        work = self._store.temporary_dir()
        try:
            await self._contents.capture(dataset_id, work)
            await self._store.rename(work, self._store.snapshot_path(dataset_id, name))
        finally:
            await self._store.remove(work)
        meta["snapshots"].append({"name": name, "created": info.created})
        await self._write_meta(dataset_id, meta)
        return info

    @backend_operation(LIST_SNAPSHOTS)
    async def list_snapshots(self, dataset_id: str) -> list[SnapshotInfo]:
        """See :meth:`IVolumeBackend.list_snapshots`."""
        return snapshot_infos(await self._store.meta(dataset_id))

    @backend_operation(ROLLBACK, snapshot="name")
    async def rollback(self, dataset_id: str, name: str) -> None:
        """See :meth:`IVolumeBackend.rollback`."""
        await self._store.require_snapshot(dataset_id, name)
        meta = await self._store.meta(dataset_id)
        await self._contents.restore(
            dataset_id, self._store.snapshot_path(dataset_id, name), recorded_read_only(meta)
        )
        await self._store.drop_snapshots_after(dataset_id, meta, name)

    @backend_operation(SET_ASIDE, snapshot="name")
    async def set_aside(self, dataset_id: str, name: str, base: str) -> SnapshotInfo:
        """See :meth:`IVolumeBackend.set_aside` and :meth:`FileStore.set_aside`."""
        read_only = recorded_read_only(await self._store.meta(dataset_id))
        return await self._store.set_aside(
            dataset_id,
            name,
            base,
            capture=lambda path: self._contents.capture(dataset_id, path),
            restore=lambda source: self._contents.restore(dataset_id, source, read_only),
        )

    @backend_operation(LIST_SET_ASIDE)
    async def list_set_aside(self, dataset_id: str) -> list[SnapshotInfo]:
        """See :meth:`IVolumeBackend.list_set_aside`."""
        return await self._store.list_set_aside(dataset_id)

    @backend_operation(DESTROY_SNAPSHOT, snapshot="name")
    async def destroy_snapshot(self, dataset_id: str, name: str) -> None:
        """See :meth:`IVolumeBackend.destroy_snapshot`."""
        await self._store.forget_snapshot(dataset_id, name)

    @backend_operation(CLONE)
    async def clone(
        self, dataset_id: str, snapshot: str, new_dataset_id: str
    ) -> DatasetInfo:
        """See :meth:`IVolumeBackend.clone`; a copy."""
        origin = await self._store.origin(dataset_id, snapshot)
        if await self._store.exists(new_dataset_id):
            raise DatasetExists(new_dataset_id)
        await self._install(
            new_dataset_id,
            origin,
            [],
            copy=True,
            maximum_size=self.capabilities.default_maximum_size,
        )
        return await self._contents.info(new_dataset_id)

    @backend_operation(SEND)
    async def send(
        self, dataset_id: str, snapshot: str, base: str | None = None
    ) -> IStreamSource:
        """See :meth:`IVolumeBackend.send`; a header, a tar and a checksum."""
        return await send_tar(
            self._store,
            self._contents.tar_argv(dataset_id, snapshot),
            backend=self.kind,
            stream_format=self.capabilities.stream_format,
            dataset_id=dataset_id,
            snapshot=snapshot,
            base=base,
        )

    @backend_operation(RECEIVE)
    async def receive(
        self, dataset_id: str, base: str | None = None, replace: bool = False
    ) -> IStreamSink:
        """
        See :meth:`IVolumeBackend.receive`: the stream is extracted under
        ``tmp/`` and only put in place by ``finish``.
        """
        check_replace(base, replace)

        async def commit(info: SnapshotInfo, tree: str, work: str, writable: bool) -> None:
            contents = await self._contents.received(tree)
            if base is None:
                await self._install(
                    dataset_id,
                    contents,
                    [(info, contents)],
                    copy=True,
                    maximum_size=self.capabilities.default_maximum_size,
                    read_only=True,
                    replace=replace,
                )
            else:
                await self._commit_incremental(dataset_id, base, info, contents, work)
            if writable:
                await self.set_read_only(dataset_id, False)

        return await receive_tar(
            self._store,
            commit,
            backend=self.kind,
            stream_format=self.capabilities.stream_format,
            dataset_id=dataset_id,
            base=base,
            replace=replace,
        )

    async def _commit_incremental(
        self, key: str, base: str, info: SnapshotInfo, contents: str, work: str
    ) -> None:
        """Put received contents after ``base``, dropping later snapshots."""
        meta = await self._store.meta(key)
        check_received(key, snapshot_infos(meta), base, info.name)
        await self._contents.restore(key, contents, recorded_read_only(meta))
        kept = await self._store.move_snapshots_after(
            key, snapshot_infos(meta), base, os.path.join(work, "trash")
        )
        await self._store.rename(contents, self._store.snapshot_path(key, info.name))
        meta["snapshots"] = snapshot_records([*kept, info])
        await self._write_meta(key, meta)
        await self._store.remove(work)
