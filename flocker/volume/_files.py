"""
Helpers for the backends that keep datasets as files under a root directory
(``directory`` and ``loopback``): metadata, stream headers, commands.

Each dataset is ``<root>/datasets/<id>/`` with a ``meta.json`` (maximum
size, snapshots in order); temporary work happens in ``<root>/tmp/`` on the
same filesystem so results appear with one ``rename``.  Small metadata files
are read and written in a thread pool, bulk copies by ``cp``/``tar``
commands, so the reactor thread never blocks on the disk.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorProcess
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from ..common import CommandResult, run_command
from ._common import check_snapshot_name
from ._interface import BadStream, SnapshotInfo

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
    ) -> None:
        """
        :param root: Holds ``datasets/`` and ``tmp/`` (created if needed).
        :param threadpool: Runs the small blocking file operations; default
            the reactor's own pool.
        """
        self.reactor = reactor
        self.root = os.path.abspath(root)
        self._pool = threadpool
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

    def recover(self) -> Deferred[None]:
        """Delete what interrupted operations left in ``tmp/``."""

        async def run() -> None:
            tmp = os.path.join(self.root, "tmp")
            for name in await self.in_thread(os.listdir, tmp):
                await self.remove(os.path.join(tmp, name))

        return Deferred.fromCoroutine(run())


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


def _list_ids(directory: str) -> list[str]:
    return sorted(
        name
        for name in os.listdir(directory)
        if os.path.exists(os.path.join(directory, name, "meta.json"))
    )
