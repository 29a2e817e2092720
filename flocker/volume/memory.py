"""
An in-memory :class:`IVolumeBackend` for the unit tests of other packages.

It passes the same contract suite as the real backends.  A dataset's
contents are a mapping of relative file paths to bytes, read and written
with :meth:`MemoryVolumeBackend.read_files` and
:meth:`MemoryVolumeBackend.write_file` (the fake's stand-in for writing
under the mount path, which is a made-up path here).  Like a real
filesystem mounted read-only, a read-only dataset refuses
:meth:`~MemoryVolumeBackend.write_file` and
:meth:`~MemoryVolumeBackend.delete_file` with ``OSError(EROFS)``
(``enforces_read_only``), while the backend's own operations still work.
:meth:`~MemoryVolumeBackend.reopened` gives a second backend object over the
same datasets, as a restarted agent process would find them.  Every Deferred
it returns has already fired, so it works under ``SynchronousTestCase``.

Set-aside snapshots are copies of the files kept with the dataset (receives
carry them over; only ``destroy`` drops them), readable through ``clone`` or
:meth:`~MemoryVolumeBackend.read_set_aside`.

Its streams (format ``flocker-memory-v1``) are JSON followed by a SHA-256
trailer; an incremental stream carries only changed and deleted files.
"""

from __future__ import annotations

import base64
import errno
import json
import time
from collections.abc import Callable

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from ..common import logged
from ._common import (
    backend_operation,
    check_dataset_id,
    check_replace,
    check_send_names,
    check_set_aside,
    check_snapshot_name,
)
from ._interface import (
    BadStream,
    Capabilities,
    DatasetExists,
    DatasetInfo,
    IListsSnapshotsAtOnce,
    IStreamSink,
    IStreamSource,
    IVolumeBackend,
    MaximumSizeTooSmall,
    SnapshotExists,
    SnapshotInfo,
    UnknownDataset,
    UnknownSnapshot,
)
from ._logging import (
    BAD_STREAM,
    CLONE,
    CREATE,
    DESTROY,
    DESTROY_SNAPSHOT,
    GET,
    LIST_DATASETS,
    LIST_SET_ASIDE,
    LIST_SNAPSHOTS,
    LIST_WITH_SNAPSHOTS,
    RECEIVE,
    RECEIVE_ABORT,
    RECEIVE_FINISH,
    ROLLBACK,
    SEND,
    SET_ASIDE,
    SET_MAXIMUM_SIZE,
    SET_READ_ONLY,
    SNAPSHOT_ACTION,
)
from ._streams import DIGEST_SIZE, BytesStreamSource, DigestTrailer

STREAM_FORMAT = "flocker-memory-v1"
_KIND = "memory"

Files = dict[str, bytes]


@attrs.define
class _Snapshot:
    """A snapshot: its description and a copy of the files."""

    info: SnapshotInfo
    files: Files


@attrs.define
class _Dataset:
    """
    One dataset's files, size limit, snapshots, read-only flag and
    set-aside snapshots (which receives carry over).
    """

    files: Files
    maximum_size: int | None
    snapshots: list[_Snapshot] = attrs.Factory(list)
    read_only: bool = False
    set_aside: list[_Snapshot] = attrs.Factory(list)

    def snapshot(self, name: str) -> _Snapshot | None:
        """The snapshot called ``name``, if any."""
        for snapshot in self.snapshots:
            if snapshot.info.name == name:
                return snapshot
        return None


def _used(files: Files) -> int:
    return sum(len(data) for data in files.values())


def _encode(files: Files) -> dict[str, str]:
    return {path: base64.b64encode(data).decode("ascii") for path, data in files.items()}


def _decode(files: dict[str, str]) -> Files:
    return {path: base64.b64decode(data) for path, data in files.items()}


@implementer(IVolumeBackend, IListsSnapshotsAtOnce)
class MemoryVolumeBackend:
    """Datasets kept in this process's memory; see the module docstring."""

    #: Names the backend in the logs.
    kind = _KIND

    def __init__(
        self,
        clock: IReactorTime | None = None,
        default_maximum_size: int | None = None,
    ) -> None:
        """
        :param clock: Gives snapshot creation times (default: the real time).
        :param default_maximum_size: The limit of a dataset created without one.
        """
        self._clock = clock
        self._now: Callable[[], float] = (
            clock.seconds if clock is not None else time.time
        )
        self._datasets: dict[str, _Dataset] = {}
        self.capabilities = Capabilities(
            constant_time_clone=False,
            incremental_send=True,
            stream_format=STREAM_FORMAT,
            grow=True,
            shrink=True,
            unlimited=True,
            enforces_maximum_size=True,
            clones_depend_on_origin=False,
            default_maximum_size=default_maximum_size,
            enforces_read_only=True,
        )

    # -- the fake's own API ------------------------------------------------

    def reopened(self) -> MemoryVolumeBackend:
        """
        A new backend object over the same datasets (shared, not copied),
        with the same clock and default size: what an agent process
        restarted after a crash finds on the node.
        """
        other = MemoryVolumeBackend(
            self._clock, self.capabilities.default_maximum_size
        )
        other._datasets = self._datasets
        return other

    def _writable(self, dataset_id: str, path: str) -> _Dataset:
        """The dataset, or ``OSError(EROFS)`` if it is read-only."""
        dataset = self._dataset(check_dataset_id(dataset_id))
        if dataset.read_only:
            raise OSError(errno.EROFS, "Read-only file system", path)
        return dataset

    def write_file(self, dataset_id: str, path: str, data: bytes) -> None:
        """
        Write a file into a dataset, honouring its maximum size; fails with
        ``OSError(EROFS)`` if the dataset is read-only.
        """
        dataset = self._writable(dataset_id, path)
        files = dict(dataset.files)
        files[path] = data
        if dataset.maximum_size is not None and _used(files) > dataset.maximum_size:
            raise OSError(errno.EDQUOT, "Disk quota exceeded", path)
        dataset.files = files

    def delete_file(self, dataset_id: str, path: str) -> None:
        """
        Delete a file from a dataset; fails with ``OSError(EROFS)`` if the
        dataset is read-only.
        """
        del self._writable(dataset_id, path).files[path]

    def read_files(self, dataset_id: str) -> Files:
        """A copy of a dataset's files."""
        return dict(self._dataset(check_dataset_id(dataset_id)).files)

    # -- helpers -----------------------------------------------------------

    def _dataset(self, dataset_id: str) -> _Dataset:
        try:
            return self._datasets[dataset_id]
        except KeyError:
            raise UnknownDataset(dataset_id) from None

    def _snapshot(self, dataset_id: str, name: str) -> _Snapshot:
        snapshot = self._dataset(dataset_id).snapshot(name)
        if snapshot is None:
            raise UnknownSnapshot(dataset_id, name)
        return snapshot

    def _origin(self, dataset_id: str, name: str) -> _Snapshot:
        """The snapshot ``name``, else the set-aside snapshot ``name``."""
        dataset = self._dataset(dataset_id)
        for snapshot in [*dataset.snapshots, *dataset.set_aside]:
            if snapshot.info.name == name:
                return snapshot
        raise UnknownSnapshot(dataset_id, name)

    def _info(self, dataset_id: str) -> DatasetInfo:
        dataset = self._dataset(dataset_id)
        return DatasetInfo(
            dataset_id=dataset_id,
            path=f"/flocker-memory/{dataset_id}",
            used=_used(dataset.files),
            maximum_size=dataset.maximum_size,
            read_only=dataset.read_only,
        )

    # -- IVolumeBackend ----------------------------------------------------

    def recover(self) -> Deferred[None]:
        """
        See :meth:`IVolumeBackend.recover`: nothing to do, as an operation
        is never cut short half done here.
        """
        return succeed(None)

    @backend_operation(CREATE)
    async def create(
        self, dataset_id: str, maximum_size: int | None = None
    ) -> DatasetInfo:
        """See :meth:`IVolumeBackend.create`."""
        if dataset_id in self._datasets:
            raise DatasetExists(dataset_id)
        if maximum_size is None:
            maximum_size = self.capabilities.default_maximum_size
        self._datasets[dataset_id] = _Dataset(files={}, maximum_size=maximum_size)
        return self._info(dataset_id)

    @backend_operation(DESTROY)
    async def destroy(self, dataset_id: str) -> None:
        """See :meth:`IVolumeBackend.destroy`."""
        self._datasets.pop(dataset_id, None)

    @backend_operation(GET)
    async def get(self, dataset_id: str) -> DatasetInfo:
        """See :meth:`IVolumeBackend.get`."""
        return self._info(dataset_id)

    @backend_operation(LIST_DATASETS)
    async def list_datasets(self) -> list[DatasetInfo]:
        """See :meth:`IVolumeBackend.list_datasets`."""
        return [self._info(key) for key in sorted(self._datasets)]

    @backend_operation(SET_MAXIMUM_SIZE)
    async def set_maximum_size(
        self, dataset_id: str, maximum_size: int | None
    ) -> DatasetInfo:
        """See :meth:`IVolumeBackend.set_maximum_size`."""
        dataset = self._dataset(dataset_id)
        if maximum_size is not None and maximum_size < _used(dataset.files):
            raise MaximumSizeTooSmall(
                f"{maximum_size} bytes is less than the {_used(dataset.files)} used"
            )
        dataset.maximum_size = maximum_size
        return self._info(dataset_id)

    @backend_operation(SET_READ_ONLY)
    async def set_read_only(
        self, dataset_id: str, read_only: bool
    ) -> DatasetInfo:
        """See :meth:`IVolumeBackend.set_read_only`."""
        self._dataset(dataset_id).read_only = read_only
        return self._info(dataset_id)

    @backend_operation(SNAPSHOT_ACTION, snapshot="name")
    async def snapshot(self, dataset_id: str, name: str) -> SnapshotInfo:
        """See :meth:`IVolumeBackend.snapshot`."""
        dataset = self._dataset(dataset_id)
        if dataset.snapshot(name) is not None:
            raise SnapshotExists(dataset_id, name)
        info = SnapshotInfo(name=name, created=float(self._now()))
        dataset.snapshots.append(_Snapshot(info=info, files=dict(dataset.files)))
        return info

    @backend_operation(LIST_WITH_SNAPSHOTS)
    async def list_datasets_with_snapshots(
        self,
    ) -> list[tuple[DatasetInfo, list[SnapshotInfo]]]:
        """See :meth:`IListsSnapshotsAtOnce.list_datasets_with_snapshots`."""
        return [
            (self._info(key), [s.info for s in self._datasets[key].snapshots])
            for key in sorted(self._datasets)
        ]

    @backend_operation(LIST_SNAPSHOTS)
    async def list_snapshots(self, dataset_id: str) -> list[SnapshotInfo]:
        """See :meth:`IVolumeBackend.list_snapshots`."""
        dataset = self._dataset(dataset_id)
        return [snapshot.info for snapshot in dataset.snapshots]

    @backend_operation(ROLLBACK, snapshot="name")
    async def rollback(self, dataset_id: str, name: str) -> None:
        """See :meth:`IVolumeBackend.rollback`."""
        target = self._snapshot(dataset_id, name)
        dataset = self._dataset(dataset_id)
        index = dataset.snapshots.index(target)
        del dataset.snapshots[index + 1 :]
        dataset.files = dict(target.files)

    @backend_operation(SET_ASIDE, snapshot="name")
    async def set_aside(self, dataset_id: str, name: str, base: str) -> SnapshotInfo:
        """See :meth:`IVolumeBackend.set_aside`."""
        dataset = self._dataset(dataset_id)
        index = check_set_aside(
            dataset_id,
            [s.info.name for s in dataset.snapshots],
            [s.info.name for s in dataset.set_aside],
            name,
            base,
        )
        info = SnapshotInfo(name=name, created=float(self._now()))
        dataset.set_aside.append(_Snapshot(info=info, files=dict(dataset.files)))
        dataset.files = dict(dataset.snapshots[index].files)
        del dataset.snapshots[index + 1 :]
        return info

    @backend_operation(LIST_SET_ASIDE)
    async def list_set_aside(self, dataset_id: str) -> list[SnapshotInfo]:
        """See :meth:`IVolumeBackend.list_set_aside`."""
        dataset = self._dataset(dataset_id)
        return [snapshot.info for snapshot in dataset.set_aside]

    def read_set_aside(self, dataset_id: str, name: str) -> Files:
        """A copy of the files of a dataset's set-aside snapshot ``name``."""
        key = check_dataset_id(dataset_id)
        for snapshot in self._dataset(key).set_aside:
            if snapshot.info.name == name:
                return dict(snapshot.files)
        raise UnknownSnapshot(key, name)

    @backend_operation(DESTROY_SNAPSHOT, snapshot="name")
    async def destroy_snapshot(self, dataset_id: str, name: str) -> None:
        """See :meth:`IVolumeBackend.destroy_snapshot`."""
        dataset = self._datasets.get(dataset_id)
        if dataset is None:
            return
        dataset.snapshots = [s for s in dataset.snapshots if s.info.name != name]

    @backend_operation(CLONE)
    async def clone(
        self, dataset_id: str, snapshot: str, new_dataset_id: str
    ) -> DatasetInfo:
        """See :meth:`IVolumeBackend.clone`."""
        origin = self._origin(dataset_id, snapshot)
        if new_dataset_id in self._datasets:
            raise DatasetExists(new_dataset_id)
        self._datasets[new_dataset_id] = _Dataset(
            files=dict(origin.files),
            maximum_size=self.capabilities.default_maximum_size,
        )
        return self._info(new_dataset_id)

    @backend_operation(SEND)
    async def send(
        self, dataset_id: str, snapshot: str, base: str | None = None
    ) -> IStreamSource:
        """See :meth:`IVolumeBackend.send`."""
        dataset = self._dataset(dataset_id)
        check_send_names(dataset_id, [s.info for s in dataset.snapshots], snapshot, base)
        target = self._snapshot(dataset_id, snapshot)
        if base is None:
            changed, deleted = target.files, []
        else:
            old = self._snapshot(dataset_id, base).files
            changed = {
                path: data
                for path, data in target.files.items()
                if old.get(path) != data
            }
            deleted = sorted(set(old) - set(target.files))
        body = json.dumps(
            {
                "format": STREAM_FORMAT,
                "snapshot": snapshot,
                "created": target.info.created,
                "base": base,
                "files": _encode(changed),
                "deleted": deleted,
            }
        ).encode("utf-8")
        data = body + DigestTrailer.digest(body)
        return BytesStreamSource(
            data,
            dataset_id=dataset_id,
            snapshot=snapshot,
            base=base,
            stream_format=STREAM_FORMAT,
        )

    @backend_operation(RECEIVE)
    async def receive(
        self, dataset_id: str, base: str | None = None, replace: bool = False
    ) -> IStreamSink:
        """
        See :meth:`IVolumeBackend.receive`; a replacing receive swaps the
        dataset's record in one step on ``finish``.
        """
        check_replace(base, replace)
        if base is None:
            if dataset_id in self._datasets and not replace:
                raise DatasetExists(dataset_id)
        else:
            self._snapshot(dataset_id, base)
        return _MemorySink(self, dataset_id, base, replace)

    def _apply(
        self, dataset_id: str, base: str | None, stream: bytes, replace: bool = False
    ) -> None:
        """
        Check a received stream and make it visible (or raise BadStream);
        with ``replace``, a full stream replaces an existing dataset.
        """
        trailer = DigestTrailer()
        trailer.feed(stream)
        problem = trailer.problem()
        if problem is not None:
            raise BadStream(problem)
        try:
            document = json.loads(stream[:-DIGEST_SIZE])
            if document["format"] != STREAM_FORMAT:
                raise BadStream(f"not a {STREAM_FORMAT} stream")
            name = check_snapshot_name(document["snapshot"])
            created = float(document["created"])
            changed = _decode(document["files"])
            deleted = list(document["deleted"])
        except BadStream:
            raise
        except Exception as error:
            raise BadStream(f"unreadable stream: {error!r}") from None
        if document["base"] != base:
            raise BadStream(f"stream's base {document['base']!r} is not {base!r}")
        previous = self._datasets.get(dataset_id)
        set_aside = list(previous.set_aside) if previous is not None else []
        if base is None:
            if dataset_id in self._datasets and not replace:
                raise BadStream(f"dataset {dataset_id} appeared meanwhile")
            kept: list[_Snapshot] = []
            files: Files = {}
            maximum_size = self.capabilities.default_maximum_size
            read_only = True  # a copy from another node, not yet exposed
        else:
            dataset = self._datasets.get(dataset_id)
            origin = dataset.snapshot(base) if dataset is not None else None
            if dataset is None or origin is None:
                raise BadStream(f"dataset {dataset_id} lost snapshot {base!r}")
            kept = dataset.snapshots[: dataset.snapshots.index(origin) + 1]
            files = dict(origin.files)
            maximum_size = dataset.maximum_size
            read_only = dataset.read_only
        if any(s.info.name == name for s in kept):
            raise BadStream(f"dataset {dataset_id} already has snapshot {name!r}")
        for path in deleted:
            files.pop(path, None)
        files.update(changed)
        snapshot = _Snapshot(
            info=SnapshotInfo(name=name, created=created), files=dict(files)
        )
        self._datasets[dataset_id] = _Dataset(
            files=files,
            maximum_size=maximum_size,
            snapshots=[*kept, snapshot],
            read_only=read_only,
            set_aside=set_aside,
        )


@implementer(IStreamSink)
class _MemorySink:
    """Buffers a stream; applies it on finish."""

    def __init__(
        self,
        backend: MemoryVolumeBackend,
        dataset_id: str,
        base: str | None,
        replace: bool = False,
    ) -> None:
        self._backend = backend
        self.dataset_id = dataset_id
        self.base = base
        self._replace = replace
        self.stream_format = STREAM_FORMAT
        self._chunks: list[bytes] = []
        self._state = "open"
        self._producer: object | None = None

    def registerProducer(self, producer: object, streaming: bool) -> None:  # noqa: N802
        """Remember the producer; memory never needs to pause it."""
        if self._state != "open":
            producer.stopProducing()  # type: ignore[attr-defined]
            return
        self._producer = producer

    def unregisterProducer(self) -> None:  # noqa: N802
        """Forget the producer."""
        self._producer = None

    def write(self, data: bytes) -> None:
        """Buffer stream bytes."""
        if self._state == "open":
            self._chunks.append(bytes(data))

    def finish(self, writable: bool = False) -> Deferred[None]:
        """Check and apply the stream, or fail with BadStream."""

        async def run() -> None:
            if self._state != "open":
                raise BadStream(f"cannot finish a receive that is {self._state}")
            self._state = "finishing"
            stream = b"".join(self._chunks)
            self._chunks = []
            try:
                self._backend._apply(
                    self.dataset_id, self.base, stream, self._replace
                )
                if writable:
                    self._backend._dataset(self.dataset_id).read_only = False
            except BadStream as error:
                self._state = "aborted"
                BAD_STREAM.log(dataset_id=self.dataset_id, reason=str(error))
                raise
            self._state = "done"

        return logged(
            RECEIVE_FINISH, run, backend=_KIND, dataset_id=self.dataset_id, base=self.base
        )

    def abort(self) -> Deferred[None]:
        """Discard what was received."""

        async def run() -> None:
            if self._state == "open":
                self._state = "aborted"
                self._chunks = []

        return logged(
            RECEIVE_ABORT, run, backend=_KIND, dataset_id=self.dataset_id, base=self.base
        )
