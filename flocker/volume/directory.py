"""
The directory backend: datasets as plain directories; no root needed.

The embedded default for development and for machines without ZFS.  Layout
under ``root``::

    datasets/<id>/meta.json           maximum size, read-only flag, snapshots
    datasets/<id>/data/               the dataset (its mount path)
    datasets/<id>/snapshots/<name>/   a full copy per snapshot
    tmp/                              receives and copies in progress

Snapshots and clones are copies (``cp -a --reflink=auto``: instant where the
filesystem can share blocks, e.g. btrfs or xfs).  Hard-link trees would be
unsafe because programs modify files in place.  The maximum size is
recorded but not enforced, and so is the read-only flag
(``enforces_read_only`` is false): plain directories have no read-only
mount, and file modes do not stop root.  A full receive records its dataset
read-only, as the interface says.

Set-aside snapshots are copies of ``data/`` under ``set_aside/<id>/``
(see :mod:`flocker.volume._files`).

Streams (format ``flocker-tar-v1``): a JSON header line (snapshot name,
creation time, base), a tar of the snapshot, and the SHA-256 of all that.
They always carry the whole snapshot; a stream sent with a base is refused
by a receiver expecting another base (``incremental_send`` is false).  A
received tree is extracted under ``tmp/`` and only moved into place by
``finish``; a replacing receive builds the whole new dataset directory
under ``tmp/`` and swaps it with the old one in one
``renameat2(RENAME_EXCHANGE)`` (see :meth:`FileStore.exchange`), then
deletes the old one.
"""

from __future__ import annotations

import os
import time

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorProcess
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

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
    Capabilities,
    DatasetExists,
    DatasetInfo,
    IStreamSink,
    IStreamSource,
    IVolumeBackend,
    MaximumSizeTooSmall,
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

STREAM_FORMAT = "flocker-tar-v1"
_KIND = "directory"


@implementer(IVolumeBackend)
class DirectoryVolumeBackend:
    """Datasets as directories under ``root``; see the module docstring."""

    #: Names the backend in the logs.
    kind = _KIND

    def __init__(
        self,
        reactor: IReactorProcess,
        root: str,
        threadpool: ThreadPool | None = None,
        default_maximum_size: int | None = None,
    ) -> None:
        """
        :param reactor: Runs ``cp``, ``tar``, ``du`` and the thread pool.
        :param root: The directory holding everything (created if needed).
        :param threadpool: For small blocking file operations (default: the
            reactor's).
        :param default_maximum_size: Recorded for datasets created without one.
        """
        self._store = FileStore(reactor, root, threadpool)
        self._reactor = reactor
        self.root = self._store.root
        self.capabilities = Capabilities(
            constant_time_clone=False,
            incremental_send=False,
            stream_format=STREAM_FORMAT,
            grow=True,
            shrink=True,
            unlimited=True,
            enforces_maximum_size=False,
            clones_depend_on_origin=False,
            default_maximum_size=default_maximum_size,
            enforces_read_only=False,
        )

    def recover(self) -> Deferred[None]:
        """Delete what interrupted operations left behind."""
        return self._store.recover()

    # -- helpers -----------------------------------------------------------

    def _data(self, dataset_id: str) -> str:
        return os.path.join(self._store.dataset_dir(dataset_id), "data")

    async def _used(self, path: str) -> int:
        result = await self._store.run("du", "-sb", path)
        return int(result.stdout.split()[0])

    async def _info(self, dataset_id: str) -> DatasetInfo:
        meta = await self._store.meta(dataset_id)
        data = self._data(dataset_id)
        return DatasetInfo(
            dataset_id=dataset_id,
            path=data,
            used=await self._used(data),
            maximum_size=meta["maximum_size"],
            read_only=meta.get("read_only", False),
        )

    async def _copy(self, source: str, destination: str) -> None:
        """Copy a tree (the contents of ``source`` into a new ``destination``)."""
        await self._store.run("cp", "-a", "--reflink=auto", source, destination)

    async def _replace_contents(self, source: str, destination: str) -> None:
        """Make ``destination``'s contents a copy of ``source``'s, in place."""
        await self._store.run("find", destination, "-mindepth", "1", "-delete")
        await self._store.run(
            "cp", "-a", "--reflink=auto", f"{source}/.", f"{destination}/"
        )

    async def _new_dataset(
        self,
        dataset_id: str,
        maximum_size: int | None,
        content: str | None,
        snapshots: list[tuple[SnapshotInfo, str]] = [],  # noqa: B006 (not mutated)
        read_only: bool = False,
        replace: bool = False,
    ) -> None:
        """
        Build a dataset in ``tmp/`` and rename it into place.

        :param content: A tree to copy as the data, or None for empty.
        :param snapshots: Snapshots with trees to *move* into the dataset.
        :param read_only: The flag the new dataset records.
        :param replace: An existing dataset of that id is swapped out
            (:meth:`FileStore.exchange`) and deleted, instead of being
            :class:`DatasetExists`.
        """
        work = self._store.temporary_dir()
        try:
            await self._store.makedirs(os.path.join(work, "snapshots"))
            if content is None:
                await self._store.makedirs(os.path.join(work, "data"))
            else:
                await self._copy(content, os.path.join(work, "data"))
            for info, tree in snapshots:
                await self._store.rename(tree, os.path.join(work, "snapshots", info.name))
            await self._store.write_meta(
                work,
                {
                    "maximum_size": maximum_size,
                    "read_only": read_only,
                    "snapshots": snapshot_records([s for s, _ in snapshots]),
                },
            )
            if not await self._store.exists(dataset_id):
                await self._store.rename(work, self._store.dataset_dir(dataset_id))
            elif replace:
                await self._store.exchange(work, dataset_id)  # work: the old one
            else:
                raise DatasetExists(dataset_id)
        finally:
            await self._store.remove(work)

    # -- IVolumeBackend ----------------------------------------------------

    @backend_operation(CREATE)
    async def create(
        self, dataset_id: str, maximum_size: int | None = None
    ) -> DatasetInfo:
        """See :meth:`IVolumeBackend.create`."""
        key = check_dataset_id(dataset_id)
        size = check_maximum_size(maximum_size)
        if size is None:
            size = self.capabilities.default_maximum_size
        if await self._store.exists(key):
            raise DatasetExists(key)
        await self._store.remove(self._store.dataset_dir(key))  # a broken one
        await self._new_dataset(key, size, None)
        return await self._info(key)

    @backend_operation(DESTROY)
    async def destroy(self, dataset_id: str) -> None:
        """See :meth:`IVolumeBackend.destroy`."""
        key = check_dataset_id(dataset_id)
        directory = self._store.dataset_dir(key)
        if await self._store.in_thread(os.path.exists, directory):
            await self._store.remove_dataset(key)

    @backend_operation(GET)
    async def get(self, dataset_id: str) -> DatasetInfo:
        """See :meth:`IVolumeBackend.get`."""
        return await self._info(check_dataset_id(dataset_id))

    @backend_operation(LIST_DATASETS)
    async def list_datasets(self) -> list[DatasetInfo]:
        """See :meth:`IVolumeBackend.list_datasets`."""
        return await self._store.infos(self._info)

    @backend_operation(SET_MAXIMUM_SIZE)
    async def set_maximum_size(
        self, dataset_id: str, maximum_size: int | None
    ) -> DatasetInfo:
        """See :meth:`IVolumeBackend.set_maximum_size` (recorded only)."""
        key = check_dataset_id(dataset_id)
        size = check_maximum_size(maximum_size)
        meta = await self._store.meta(key)
        used = await self._used(self._data(key))
        if size is not None and size < used:
            raise MaximumSizeTooSmall(f"{size} bytes is less than {used} used")
        meta["maximum_size"] = size
        await self._store.write_meta(self._store.dataset_dir(key), meta)
        return await self._info(key)

    @backend_operation(SET_READ_ONLY)
    async def set_read_only(
        self, dataset_id: str, read_only: bool
    ) -> DatasetInfo:
        """See :meth:`IVolumeBackend.set_read_only` (recorded only)."""
        key = check_dataset_id(dataset_id)
        flag = check_read_only(read_only)
        meta = await self._store.meta(key)
        if meta.get("read_only", False) != flag:
            meta["read_only"] = flag
            await self._store.write_meta(self._store.dataset_dir(key), meta)
        return await self._info(key)

    @backend_operation(SNAPSHOT_ACTION, snapshot="name")
    async def snapshot(self, dataset_id: str, name: str) -> SnapshotInfo:
        """See :meth:`IVolumeBackend.snapshot`."""
        key = check_dataset_id(dataset_id)
        check_snapshot_name(name)
        meta = await self._store.meta(key)
        if name in [s.name for s in snapshot_infos(meta)]:
            raise SnapshotExists(key, name)
        info = SnapshotInfo(name=name, created=time.time())
        work = self._store.temporary_dir()
        try:
            await self._copy(self._data(key), work)
            await self._store.rename(work, self._store.snapshot_path(key, name))
        finally:
            await self._store.remove(work)
        meta["snapshots"].append({"name": name, "created": info.created})
        await self._store.write_meta(self._store.dataset_dir(key), meta)
        return info

    @backend_operation(LIST_SNAPSHOTS)
    async def list_snapshots(self, dataset_id: str) -> list[SnapshotInfo]:
        """See :meth:`IVolumeBackend.list_snapshots`."""
        return snapshot_infos(await self._store.meta(check_dataset_id(dataset_id)))

    @backend_operation(ROLLBACK, snapshot="name")
    async def rollback(self, dataset_id: str, name: str) -> None:
        """See :meth:`IVolumeBackend.rollback`."""
        key = check_dataset_id(dataset_id)
        await self._store.require_snapshot(key, name)
        meta = await self._store.meta(key)
        await self._replace_contents(
            self._store.snapshot_path(key, name), self._data(key)
        )
        await self._store.drop_snapshots_after(key, meta, name)

    @backend_operation(SET_ASIDE, snapshot="name")
    async def set_aside(self, dataset_id: str, name: str, base: str) -> SnapshotInfo:
        """See :meth:`IVolumeBackend.set_aside` and :meth:`FileStore.set_aside`."""
        key = check_set_aside_arguments(dataset_id, name, base)
        return await self._store.set_aside(
            key,
            name,
            base,
            capture=lambda path: self._copy(self._data(key), path),
            restore=lambda snapshot: self._replace_contents(snapshot, self._data(key)),
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
        """See :meth:`IVolumeBackend.clone`; a copy."""
        key = check_dataset_id(dataset_id)
        new_key = check_dataset_id(new_dataset_id)
        origin = await self._store.origin(key, snapshot)
        if await self._store.exists(new_key):
            raise DatasetExists(new_key)
        await self._new_dataset(
            new_key, self.capabilities.default_maximum_size, origin
        )
        return await self._info(new_key)

    @backend_operation(SEND)
    async def send(
        self, dataset_id: str, snapshot: str, base: str | None = None
    ) -> IStreamSource:
        """See :meth:`IVolumeBackend.send`; a header, a tar and a checksum."""
        key = check_send_arguments(dataset_id, snapshot, base)
        tree = self._store.snapshot_path(key, snapshot)
        return await send_tar(
            self._store,
            ["tar", "-C", tree, "-cf", "-", "."],
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
            if base is None:
                await self._new_dataset(
                    key,
                    self.capabilities.default_maximum_size,
                    tree,
                    [(info, tree)],
                    read_only=True,
                    replace=replace,
                )
            else:
                await self._commit_incremental(key, base, info, tree, work)

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
        self, key: str, base: str, info: SnapshotInfo, tree: str, work: str
    ) -> None:
        """Put a received snapshot after ``base``, dropping later ones."""
        meta = await self._store.meta(key)
        check_received(key, snapshot_infos(meta), base, info.name)
        kept = await self._store.move_snapshots_after(
            key, snapshot_infos(meta), base, os.path.join(work, "trash")
        )
        snapshot = self._store.snapshot_path(key, info.name)
        await self._store.rename(tree, snapshot)
        await self._replace_contents(snapshot, self._data(key))
        meta["snapshots"] = snapshot_records([*kept, info])
        await self._store.write_meta(self._store.dataset_dir(key), meta)
        await self._store.remove(work)
