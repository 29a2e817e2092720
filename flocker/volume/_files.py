"""
Helpers for the backends that keep datasets as files under a root directory
(``directory`` and ``loopback``): metadata, snapshot bookkeeping, commands,
and their streams (a header line, a tar, a SHA-256 trailer).

Each dataset is ``<root>/datasets/<id>/`` with a ``meta.json`` (maximum
size, snapshots in order); temporary work happens in ``<root>/tmp/`` on the
same filesystem so results appear with one ``rename``.

Set-aside snapshots (:meth:`FileStore.set_aside`) live apart from the
dataset's directory, in ``<root>/set_aside/<id>/<name>/``: a ``meta.json``
(name, creation time), ``current`` (the contents set aside: a tree or an
image, with the backend's snapshot suffix) and ``snapshots/`` (the copies
of the snapshots after the base that the dataset gave up).  Being apart,
they need no care from receives (a replacing receive swaps only the
dataset's directory); ``destroy`` removes them before the dataset.  Each
one appears with a single ``rename`` from ``tmp/``, which is the commit:
a crash before it leaves only ``tmp/`` garbage and the dataset as it was
(the call can be repeated); a crash after it leaves the set-aside listed
(a repeated call is :class:`SnapshotExists`: recognisably done) with the
dataset possibly not yet back at its base, which the incremental receive
from the base that follows puts right (it drops later snapshots and
replaces the contents).  Small metadata files
are read and written in a thread pool, bulk copies by ``cp``/``tar``
commands, so the reactor thread never blocks on the disk.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorProcess
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from ..common import CommandResult, run_command
from ._common import check_send_names, check_set_aside, check_snapshot_name
from ._interface import (
    BadStream,
    DatasetExists,
    DatasetInfo,
    IStreamSink,
    IStreamSource,
    SnapshotInfo,
    UnknownDataset,
    UnknownSnapshot,
)
from ._streams import ProcessStreamSink, ProcessStreamSource

T = TypeVar("T")


def make_header(stream_format: str, snapshot: SnapshotInfo, base: str | None) -> bytes:
    """The header line of a stream of ``snapshot`` (since ``base``)."""
    document = {
        "format": stream_format,
        "snapshot": snapshot.name,
        "created": snapshot.created,
        "base": base,
    }
    return json.dumps(document).encode("utf-8") + b"\n"


def parse_header(header: bytes, stream_format: str, base: str | None) -> SnapshotInfo:
    """The snapshot a header announces; BadStream if it is not for us."""
    try:
        document = json.loads(header)
        found_format = document["format"]
        name = check_snapshot_name(document["snapshot"])
        created = float(document["created"])
        found_base = document["base"]
    except Exception as error:
        raise BadStream(f"unreadable stream header: {error!r}") from None
    if found_format != stream_format:
        raise BadStream(f"stream format {found_format!r} is not {stream_format!r}")
    if found_base != base:
        raise BadStream(f"the stream's base {found_base!r} is not {base!r}")
    return SnapshotInfo(name=name, created=created)


class FileStore:
    """The directory layout and metadata of a file-based backend."""

    def __init__(
        self,
        reactor: IReactorProcess,
        root: str,
        threadpool: ThreadPool | None = None,
        snapshot_suffix: str = "",
    ) -> None:
        """
        :param root: Holds ``datasets/`` and ``tmp/`` (created if needed).
        :param threadpool: Runs the small blocking file operations; default
            the reactor's own pool.
        :param snapshot_suffix: Ends the name of a snapshot's copy in
            ``datasets/<id>/snapshots/``.
        """
        self.reactor = reactor
        self.root = os.path.abspath(root)
        self._pool = threadpool
        self._snapshot_suffix = snapshot_suffix
        os.makedirs(os.path.join(self.root, "datasets"), exist_ok=True)
        os.makedirs(os.path.join(self.root, "tmp"), exist_ok=True)

    def in_thread(self, function: Callable[..., T], *args: Any) -> Deferred[T]:
        """Run a blocking ``function(*args)`` in the thread pool."""
        pool = self._pool or self.reactor.getThreadPool()  # type: ignore[attr-defined]
        return deferToThreadPool(self.reactor, pool, function, *args)  # type: ignore[arg-type]

    async def run(self, *argv: str) -> CommandResult:
        """Run a command, failing on a non-zero exit."""
        return await run_command(self.reactor, argv)

    def dataset_dir(self, dataset_id: str) -> str:
        """Where a dataset's files live."""
        return os.path.join(self.root, "datasets", dataset_id)

    def snapshot_path(self, dataset_id: str, name: str) -> str:
        """Where the copy of a dataset's snapshot ``name`` lives."""
        return os.path.join(
            self.dataset_dir(dataset_id), "snapshots", name + self._snapshot_suffix
        )

    def temporary_dir(self) -> str:
        """A new, unique path under ``tmp/`` (not yet created)."""
        return os.path.join(self.root, "tmp", uuid.uuid4().hex)

    async def exists(self, dataset_id: str) -> bool:
        """Whether the dataset exists (its metadata is there)."""
        path = os.path.join(self.dataset_dir(dataset_id), "meta.json")
        return await self.in_thread(os.path.exists, path)

    async def read_meta(self, dataset_id: str) -> dict[str, Any] | None:
        """A dataset's metadata, or ``None`` if it does not exist."""
        return await self.in_thread(_read_json, self.dataset_dir(dataset_id))

    async def meta(self, dataset_id: str) -> dict[str, Any]:
        """A dataset's metadata, or :class:`UnknownDataset`."""
        meta = await self.read_meta(dataset_id)
        if meta is None:
            raise UnknownDataset(dataset_id)
        return meta

    async def require_snapshot(self, dataset_id: str, name: str) -> list[SnapshotInfo]:
        """A dataset's snapshots, which must include ``name``."""
        check_snapshot_name(name)
        snapshots = snapshot_infos(await self.meta(dataset_id))
        if name not in [s.name for s in snapshots]:
            raise UnknownSnapshot(dataset_id, name)
        return snapshots

    async def forget_snapshot(self, dataset_id: str, name: str) -> None:
        """Drop snapshot ``name`` from the metadata, then delete its copy."""
        meta = await self.read_meta(dataset_id)
        if meta is None or name not in [s.name for s in snapshot_infos(meta)]:
            return
        meta["snapshots"] = [s for s in meta["snapshots"] if s["name"] != name]
        await self.write_meta(self.dataset_dir(dataset_id), meta)
        await self.remove(self.snapshot_path(dataset_id, name))

    async def move_snapshots_after(
        self, dataset_id: str, snapshots: list[SnapshotInfo], name: str, trash: str
    ) -> list[SnapshotInfo]:
        """
        Move the copies of the ``snapshots`` after ``name`` into a new
        directory ``trash``.

        :return: The snapshots up to and including ``name``.
        """
        index = [s.name for s in snapshots].index(name)
        await self.makedirs(trash)
        for later in snapshots[index + 1 :]:
            path = self.snapshot_path(dataset_id, later.name)
            await self.rename(path, os.path.join(trash, os.path.basename(path)))
        return snapshots[: index + 1]

    async def drop_snapshots_after(
        self, dataset_id: str, meta: dict[str, Any], name: str
    ) -> None:
        """Forget and delete the snapshots after ``name`` (for a rollback)."""
        trash = self.temporary_dir()
        try:
            kept = await self.move_snapshots_after(
                dataset_id, snapshot_infos(meta), name, trash
            )
            meta["snapshots"] = snapshot_records(kept)
            await self.write_meta(self.dataset_dir(dataset_id), meta)
        finally:
            await self.remove(trash)

    async def remove_dataset(self, dataset_id: str) -> None:
        """
        Delete a dataset's set-aside snapshots, then move its directory
        into ``tmp/`` at once and delete it.
        """
        await self.remove(self._set_aside_dir(dataset_id))
        trash = self.temporary_dir()
        await self.rename(self.dataset_dir(dataset_id), trash)
        await self.remove(trash)

    # -- set-aside snapshots -------------------------------------------------

    def _set_aside_dir(self, dataset_id: str, name: str | None = None) -> str:
        """Where a dataset's set-aside snapshots (or the one ``name``) live."""
        directory = os.path.join(self.root, "set_aside", dataset_id)
        return directory if name is None else os.path.join(directory, name)

    def set_aside_contents(self, dataset_id: str, name: str) -> str:
        """Where the contents of the set-aside snapshot ``name`` are kept."""
        return os.path.join(
            self._set_aside_dir(dataset_id, name), "current" + self._snapshot_suffix
        )

    async def list_set_aside(self, dataset_id: str) -> list[SnapshotInfo]:
        """A dataset's set-aside snapshots, oldest first, or UnknownDataset."""
        await self.meta(dataset_id)
        records = await self.in_thread(_read_set_aside, self._set_aside_dir(dataset_id))
        return [
            SnapshotInfo(name=r["name"], created=float(r["created"])) for r in records
        ]

    async def origin(self, dataset_id: str, name: str) -> str:
        """
        The copy a clone of ``name`` starts from: the snapshot's, else the
        set-aside snapshot's contents; UnknownDataset / UnknownSnapshot.
        """
        check_snapshot_name(name)
        meta = await self.meta(dataset_id)
        if name in [s.name for s in snapshot_infos(meta)]:
            return self.snapshot_path(dataset_id, name)
        if name in [s.name for s in await self.list_set_aside(dataset_id)]:
            return self.set_aside_contents(dataset_id, name)
        raise UnknownSnapshot(dataset_id, name)

    async def set_aside(
        self,
        dataset_id: str,
        name: str,
        base: str,
        capture: Callable[[str], Awaitable[None]],
        restore: Callable[[str], Awaitable[None]],
    ) -> SnapshotInfo:
        """
        Set the dataset's contents aside as ``name`` and return it to its
        snapshot ``base`` (see the module docstring for the steps).

        :param capture: Copies the dataset's current contents to a new path.
        :param restore: Makes the dataset's contents a copy of a snapshot's
            (given by its path).
        """
        meta = await self.meta(dataset_id)
        snapshots = snapshot_infos(meta)
        index = check_set_aside(
            dataset_id,
            [s.name for s in snapshots],
            [s.name for s in await self.list_set_aside(dataset_id)],
            name,
            base,
        )
        info = SnapshotInfo(name=name, created=time.time())
        place = self._set_aside_dir(dataset_id, name)
        await self.remove(place)  # not listed (no meta.json): an earlier crash's
        work = self.temporary_dir()
        try:
            await self.makedirs(os.path.join(work, "snapshots"))
            await capture(os.path.join(work, "current" + self._snapshot_suffix))
            await self.in_thread(_write_json, work, snapshot_records([info])[0])
            await self.makedirs(os.path.dirname(place))
            await self.rename(work, place)  # the commit
        finally:
            await self.remove(work)
        kept, later = snapshots[: index + 1], snapshots[index + 1 :]
        meta["snapshots"] = snapshot_records(kept)
        await self.write_meta(self.dataset_dir(dataset_id), meta)
        for snapshot in later:
            path = self.snapshot_path(dataset_id, snapshot.name)
            if await self.in_thread(os.path.exists, path):
                destination = os.path.join(place, "snapshots", os.path.basename(path))
                await self.rename(path, destination)
        await restore(self.snapshot_path(dataset_id, base))
        return info

    async def infos(
        self, info: Callable[[str], Awaitable[DatasetInfo]]
    ) -> list[DatasetInfo]:
        """``info`` of every dataset, skipping those destroyed meanwhile."""
        infos = []
        for key in await self.list_ids():
            try:
                infos.append(await info(key))
            except UnknownDataset:
                pass
        return infos

    async def write_meta(self, directory: str, meta: dict[str, Any]) -> None:
        """Atomically replace the metadata in a dataset directory."""
        await self.in_thread(_write_json, directory, meta)

    async def list_ids(self) -> list[str]:
        """The ids of every dataset, sorted."""
        return await self.in_thread(_list_ids, os.path.join(self.root, "datasets"))

    async def remove(self, path: str) -> None:
        """Delete a file or tree if it exists."""
        await self.run("rm", "-rf", "--one-file-system", path)

    async def rename(self, old: str, new: str) -> None:
        """Rename (``os.rename``) in the thread pool."""
        await self.in_thread(os.rename, old, new)

    async def makedirs(self, path: str) -> None:
        """Create a directory and its parents."""
        await self.in_thread(_makedirs, path)

    async def exchange(self, work: str, dataset_id: str) -> None:
        """
        Swap the directory ``work`` (under ``tmp/``, a complete dataset) with
        the existing dataset ``dataset_id``: afterwards the dataset is what
        ``work`` held and ``work`` holds the old dataset, for the caller to
        delete.

        One ``renameat2(RENAME_EXCHANGE)`` where the kernel and filesystem
        have it, so every lookup of the dataset's path finds the old or the
        new copy.  Elsewhere three renames through ``tmp/old-<id>``; a
        crash between them leaves one whole copy that :meth:`recover`
        keeps (the dataset's name missing: the old copy is renamed back).
        """
        target = self.dataset_dir(dataset_id)
        if await self.in_thread(_exchange, work, target):
            return
        aside = os.path.join(self.root, "tmp", f"{_OLD_PREFIX}{dataset_id}")
        await self.remove(aside)  # garbage of an earlier crash
        await self.rename(target, aside)
        try:
            await self.rename(work, target)
        except BaseException:
            await self.rename(aside, target)
            raise
        await self.rename(aside, work)

    def recover(self) -> Deferred[None]:
        """
        Delete what interrupted operations left in ``tmp/``; a dataset an
        interrupted :meth:`exchange` left only as ``tmp/old-<id>`` is
        renamed back into place first.
        """

        async def run() -> None:
            tmp = os.path.join(self.root, "tmp")
            for name in await self.in_thread(os.listdir, tmp):
                path = os.path.join(tmp, name)
                if name.startswith(_OLD_PREFIX):
                    dataset_id = name[len(_OLD_PREFIX) :]
                    target = self.dataset_dir(dataset_id)
                    if not await self.in_thread(os.path.exists, target):
                        await self.rename(path, target)
                        continue
                await self.remove(path)

        return Deferred.fromCoroutine(run())


#: ``tmp/old-<id>``: a dataset stepping aside for its replacement.
_OLD_PREFIX = "old-"

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(first: str, second: str) -> bool:
    """
    Atomically swap two paths with ``renameat2(RENAME_EXCHANGE)``.

    :return: Whether it was done; false where the C library, kernel or
        filesystem does not offer it (nothing changed then).  Other
        errors are raised as ``OSError``.
    """
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except AttributeError:
        return False
    result = renameat2(
        _AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE
    )
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), first, None, second)


def snapshot_infos(meta: dict[str, Any]) -> list[SnapshotInfo]:
    """The snapshots recorded in metadata, oldest first."""
    return [
        SnapshotInfo(name=s["name"], created=float(s["created"]))
        for s in meta["snapshots"]
    ]


def snapshot_records(snapshots: list[SnapshotInfo]) -> list[dict[str, Any]]:
    """Snapshots as metadata records."""
    return [{"name": s.name, "created": s.created} for s in snapshots]


def _makedirs(path: str) -> None:
    os.makedirs(path, exist_ok=True)


def _read_json(directory: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(directory, "meta.json")) as f:
            result: dict[str, Any] = json.load(f)
            return result
    except FileNotFoundError:
        return None


def _write_json(directory: str, meta: dict[str, Any]) -> None:
    path = os.path.join(directory, "meta.json")
    temporary = f"{path}.{uuid.uuid4().hex}"
    with open(temporary, "w") as f:
        json.dump(meta, f)
        f.flush()
        os.fsync(f.fileno())
    os.rename(temporary, path)


def _read_set_aside(directory: str) -> list[dict[str, Any]]:
    """The records of the set-aside snapshots under ``directory``, oldest first."""
    if not os.path.isdir(directory):
        return []
    records = [_read_json(os.path.join(directory, name)) for name in os.listdir(directory)]
    found = [r for r in records if r is not None]
    return sorted(found, key=lambda r: (float(r["created"]), r["name"]))


def _list_ids(directory: str) -> list[str]:
    return sorted(
        name
        for name in os.listdir(directory)
        if os.path.exists(os.path.join(directory, name, "meta.json"))
    )


def check_received(
    dataset_id: str, snapshots: list[SnapshotInfo], base: str, name: str
) -> None:
    """BadStream unless snapshot ``name`` can follow ``base`` (of ``snapshots``)."""
    names = [s.name for s in snapshots]
    if base not in names:
        raise BadStream(f"dataset {dataset_id} lost snapshot {base!r} meanwhile")
    if name in names[: names.index(base) + 1]:
        raise BadStream(f"dataset {dataset_id} already has snapshot {name!r}")


async def send_tar(
    store: FileStore,
    argv: list[str],
    *,
    backend: str,
    stream_format: str,
    dataset_id: str,
    snapshot: str,
    base: str | None,
) -> IStreamSource:
    """
    A stream of a header line, the output of the ``tar`` command ``argv``
    (which archives ``snapshot``) and a SHA-256 trailer.
    """
    snapshots = snapshot_infos(await store.meta(dataset_id))
    check_send_names(dataset_id, snapshots, snapshot, base)
    info = next(s for s in snapshots if s.name == snapshot)
    return ProcessStreamSource(
        store.reactor,
        argv,
        backend=backend,
        dataset_id=dataset_id,
        snapshot=snapshot,
        base=base,
        stream_format=stream_format,
        add_digest=True,
        header=make_header(stream_format, info, base),
    )


async def receive_tar(
    store: FileStore,
    commit: Callable[[SnapshotInfo, str, str, bool], Awaitable[None]],
    *,
    backend: str,
    stream_format: str,
    dataset_id: str,
    base: str | None,
    replace: bool = False,
) -> IStreamSink:
    """
    Receive a stream of :func:`send_tar`: the tar is extracted into a new
    ``tree`` directory in a ``work`` directory under ``tmp/``.

    :param commit: Called on ``finish`` with the snapshot the header
        announces, ``tree``, ``work`` and ``finish``'s ``writable``, to make
        the dataset (``work`` is deleted afterwards, and on failure or
        abort).
    :param replace: A full stream may replace an existing dataset (which
        ``commit`` does); otherwise an existing one is DatasetExists.
    """
    if base is None:
        if not replace and await store.exists(dataset_id):
            raise DatasetExists(dataset_id)
    else:
        await store.require_snapshot(dataset_id, base)
    work = store.temporary_dir()
    tree = os.path.join(work, "tree")
    await store.makedirs(tree)

    async def commit_header(header: bytes, writable: bool) -> None:
        await commit(parse_header(header, stream_format, base), tree, work, writable)
        await store.remove(work)  # what is left of it: empty directories

    return ProcessStreamSink(
        store.reactor,
        ["tar", "-C", tree, "-xf", "-"],
        backend=backend,
        dataset_id=dataset_id,
        base=base,
        stream_format=stream_format,
        commit=commit_header,
        discard=lambda: store.remove(work),
        check_digest=True,
        header=True,
    )
