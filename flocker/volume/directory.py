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

from twisted.internet.interfaces import IReactorProcess
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from ._file_backend import FileVolumeBackend
from ._files import FileStore
from ._interface import Capabilities, DatasetInfo, IVolumeBackend, MaximumSizeTooSmall

STREAM_FORMAT = "flocker-tar-v1"


class _Trees:
    """
    The :class:`~flocker.volume._file_backend.Contents` of the directory
    backend: a dataset's contents are the tree ``data/`` (its path), and a
    snapshot's copy is a tree too; nothing is mounted.
    """

    records_maximum_size = True

    def __init__(self, store: FileStore) -> None:
        """:param store: The backend's layout."""
        self._store = store

    def _data(self, dataset_id: str) -> str:
        return os.path.join(self._store.dataset_dir(dataset_id), "data")

    async def _used(self, path: str) -> int:
        result = await self._store.run("du", "-sb", path)
        return int(result.stdout.split()[0])

    async def _copy(self, source: str, destination: str) -> None:
        """Copy a tree (the contents of ``source`` into a new ``destination``)."""
        await self._store.run("cp", "-a", "--reflink=auto", source, destination)

    async def info(self, dataset_id: str) -> DatasetInfo:
        """The recorded maximum size and flag; ``du`` says what is used."""
        meta = await self._store.meta(dataset_id)
        data = self._data(dataset_id)
        return DatasetInfo(
            dataset_id=dataset_id,
            path=data,
            used=await self._used(data),
            maximum_size=meta["maximum_size"],
            read_only=meta.get("read_only", False),
        )

    async def create(
        self, dataset_id: str, maximum_size: int | None, work: str
    ) -> str | None:
        """Nothing to make (an empty ``data/``); a broken directory goes."""
        await self._store.remove(self._store.dataset_dir(dataset_id))
        return None

    async def place(self, contents: str | None, directory: str, copy: bool) -> None:
        """``data/``: empty, a copy of the tree ``contents``, or it moved."""
        data = os.path.join(directory, "data")
        if contents is None:
            await self._store.makedirs(data)
        elif copy:
            await self._copy(contents, data)
        else:
            await self._store.rename(contents, data)

    async def capture(self, dataset_id: str, destination: str) -> None:
        """Copy ``data/``."""
        await self._copy(self._data(dataset_id), destination)

    async def restore(self, dataset_id: str, source: str, read_only: bool) -> None:
        """Make ``data/``'s contents a copy of ``source``'s, in place."""
        destination = self._data(dataset_id)
        await self._store.run("find", destination, "-mindepth", "1", "-delete")
        await self._store.run(
            "cp", "-a", "--reflink=auto", f"{source}/.", f"{destination}/"
        )

    async def resize(self, dataset_id: str, maximum_size: int | None) -> None:
        """Record the new maximum size, if not below what is used."""
        meta = await self._store.meta(dataset_id)
        used = await self._used(self._data(dataset_id))
        if maximum_size is not None and maximum_size < used:
            raise MaximumSizeTooSmall(f"{maximum_size} bytes is less than {used} used")
        meta["maximum_size"] = maximum_size
        await self._store.write_meta(self._store.dataset_dir(dataset_id), meta)

    async def mount(self, dataset_id: str, read_only: bool) -> None:
        """Nothing to mount: the flag is only recorded."""

    async def mount_replacement(self, directory: str, read_only: bool) -> None:
        """Nothing to mount."""

    async def unmount(self, dataset_id: str) -> None:
        """Nothing to unmount."""

    async def release(self, directory: str) -> None:
        """Delete the directory."""
        await self._store.remove(directory)

    async def received(self, tree: str) -> str:
        """The extracted tree itself."""
        return tree

    def tar_argv(self, dataset_id: str, snapshot: str) -> list[str]:
        """A tar of the snapshot's tree."""
        tree = self._store.snapshot_path(dataset_id, snapshot)
        return ["tar", "-C", tree, "-cf", "-", "."]

    async def recover(self) -> None:
        """Nothing is ever mounted under ``tmp/``."""


@implementer(IVolumeBackend)
class DirectoryVolumeBackend(FileVolumeBackend):
    """Datasets as directories under ``root``; see the module docstring."""

    kind = "directory"

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
        store = FileStore(reactor, root, threadpool)
        super().__init__(
            store,
            _Trees(store),
            Capabilities(
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
            ),
        )
