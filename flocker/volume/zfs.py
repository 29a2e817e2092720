"""
The ZFS backend: one pool per node, one filesystem per dataset.

Datasets are ``<pool>/<dataset id>``, marked with the user property
``org.flocker:dataset-id``; snapshots are ``<pool>/<id>@<name>``; the
maximum size is ``refquota``; a read-only dataset has ``readonly=on``.
Every command goes through :func:`flocker.common.run_command`, and only
commands that work with both kernel ZFS and zfs-fuse are used (``zfs get
-Hp`` rather than ``zfs list -p``; unmount before rename; retry "dataset is
busy"; mount read-only datasets with ``-o ro``).

Read-only datasets
==================

The ``readonly`` property is the record, so it survives a new backend
object, a reboot and a ``zfs rename``; ``zfs send`` (without ``-p``) does
not carry it.  Kernel ZFS mounts by it and remounts when it is set.
zfs-fuse does neither: ``zfs mount`` mounts read-write whatever the
property says, and ``zfs set readonly=on`` on a mounted filesystem refuses
new files but still lets existing ones be written.  And while a filesystem
is mounted, ``zfs get readonly`` reports how it is *mounted* (source
``temporary`` when that differs from the property).  So:

* every mount of a filesystem goes through :meth:`ZFSVolumeBackend._mount`,
  which passes ``-o ro`` when its (then unmounted, so truly stored)
  property is on;
* ``set_read_only`` sets the property, and if the mount did not follow
  (zfs-fuse), unmounts and mounts the dataset again; if it stays busy (a
  file is open) the property is set back and :class:`DatasetBusy` raised;
* ``get`` and ``list_datasets`` report ``readonly`` as ZFS gives it: the
  mount's mode, i.e. what a write through the path meets.

Snapshots, sends, receives, rollbacks and clones work on a read-only
dataset (ZFS's own operations ignore the property).  A clone does not
inherit the property of its origin, so it is writable.  A full receive's
temporary filesystem gets ``readonly=on`` before it is renamed into place;
an incremental receive by clone and promote copies the target's value onto
the temporary filesystem before the swap.

Receiving
=========

A receive never touches the target until ``finish``:

* A full stream is received unmounted into ``<pool>/flocker-recv-<random>``
  and renamed to the dataset's name on ``finish``.  A replacing full
  receive whose dataset exists swaps it out on ``finish`` as below (old
  copy renamed aside, new one renamed into place, old one destroyed),
  after checking that no clone depends on the old copy's snapshots
  (:class:`DependentClones` otherwise, before anything moved).  ZFS has no
  atomic exchange of names: between the two renames the dataset's name is
  briefly missing (zfs-fuse has it unmounted then anyway).
* An incremental stream whose base is the target's newest snapshot (every
  round of a move: replicas are never written to) is received straight
  into the target with ``zfs receive -F``.  ZFS receives it into a hidden
  clone and swaps it in only once the whole stream arrived and checked
  out, so a cut or corrupt stream leaves the target as it was, unsaved
  changes included (checked with zfs-fuse).  ZFS commits as the stream
  ends, so a stream refused after ZFS took it all would lose them:
  ``discard`` can only roll the target back to ``base``.  The transfer
  receiver therefore writes a stream's last bytes only once its trailer
  checked out (``flocker.volume._transfer_receiver.HOLD_BACK``).
  ``finish`` remounts the target (read-only if it was, writable if asked
  for), so that no cached pages of the old contents are served.  Five
  commands (receive, read ``mounted``, unmount, read ``readonly``, mount;
  a writable one sets ``readonly`` off before the mount) instead of a
  dozen: most of the time a move's final increment took.  While any receive into a
  dataset is under way, discovery (``get``, ``list_datasets``) does not
  mount it: its own mount raced the receive's and failed the receive.
* For any other incremental stream, ``<id>@<base>`` is cloned to a temporary
  dataset which is then *promoted*: it takes over the snapshots up to
  ``base`` while the target keeps its data and later snapshots.  The stream
  is received into the temporary dataset.  ``finish`` renames the old target
  aside, renames the temporary one into its place, then destroys the old
  one; ``abort`` (or a bad
  stream) promotes the target back and destroys the temporary dataset, so
  every snapshot (same GUIDs) and every byte is as before.  While the
  receive is in progress, ``list_snapshots`` of the target shows only the
  snapshots after ``base``.

Set-aside snapshots
===================

An incremental receive needs its base to be the dataset's newest snapshot,
so what comes after the base cannot stay on the dataset.  ``set_aside``
snapshots the contents as ``<id>@.aside-<name>`` (names starting with a dot
are the backend's own: the interface's cannot, and ``list_snapshots`` never
shows them), renames the dataset to a *hidden part*
``<pool>/flocker-aside-<id>-<random>`` (``canmount=off``, never mounted or
listed), clones ``<part>@<base>`` back to the dataset's name and promotes
the clone.  The dataset then holds the snapshots up to ``base`` (and their
clones), the part the later ones and the set-aside snapshot: constant time,
no data copied, nothing destroyed.  A part is a clone of a dataset snapshot,
so ZFS keeps that snapshot while the part lives; the rules that follow:

* ``list_set_aside`` lists the ``.aside-`` snapshots of the parts, oldest
  first; ``clone`` takes a set-aside name too (the clone depends on the
  part, so ``destroy`` of the dataset is :class:`DependentClones` until it
  is gone).
* ``destroy_snapshot`` of a snapshot that only parts depend on (pruning the
  base) renames it to ``<id>@.held-<random>``: no longer listed, kept until
  the dataset is destroyed, never an error (the agent's pruning does not
  catch :class:`DependentClones`).  A real clone still makes it
  :class:`DependentClones`.
* ``rollback`` past snapshots parts depend on detaches the same way into a
  new part and destroys that part's snapshots that nothing needs;
  a receive that replaces the dataset or swaps in a promoted clone keeps
  an old copy that parts depend on as a part (its other snapshots
  destroyed) instead of destroying it.  Real clones still refuse as before.
* ``destroy`` checks that no clone outside the dataset and its parts
  depends on any of them, then destroys the parts, each once nothing left
  depends on it, and the dataset last (a crash in between leaves the
  dataset, never a part without it).

Crashes.  Until the rename nothing but a hidden snapshot on the dataset
exists (a repeated call destroys and retakes it).  Between the rename and
the promote, the dataset's name is missing or held by an unpromoted clone
of the part: discovery (``list_datasets``, which reads ``origin`` with the
other properties, so this costs no command when all is well), the next
``set_aside``, ``rollback``, ``destroy``, ``list_set_aside`` and
``recover`` *undo* it (the clone goes, the part is
renamed back with ``canmount=on``): the dataset is as before the call,
which can be repeated.  After the promote the call is done: repeating it
is :class:`SnapshotExists`.  ``get`` and receives do not repair (they
cost no extra command; ``get`` sees the dataset missing for that moment,
as during a receive's swap).
Operations in flight in this process are not "repaired" under their feet
(``_detaching``).

zfs-fuse cannot rename a filesystem whose snapshots have mounted clones:
such clones are unmounted for the moment of the rename.

Keeping room in the pool
========================

A dataset may be given a ``maximum_size`` larger than the pool (or none),
and one that fills the pool would leave no room for anything else: ZFS
needs a little free space for every snapshot and property change (its own
bookkeeping, the "MOS"), so ``zfs snapshot`` failed with "out of space",
and a full node could not even be drained by moving its datasets away.  A
``reservation`` on a hidden filesystem does not help (it counts as used
space for that bookkeeping too).  So the backend puts a ``quota`` on the
pool's top filesystem (``pool_name``): the pool less `reserve_for`'s room
(1/32 of it, at least 4 MiB, at most 1 GiB).  A quota limits what the
datasets, their snapshots and receives take together, while ZFS's own
bookkeeping is charged to the pool, not to the quota: once the datasets
fill the quota, snapshots, sends, property changes and destroys still
work (checked with zfs-fuse).  The top filesystem also gets a
``refreservation`` of `TOP_ROOM`, so that the mountpoints of new datasets
can still be made in it when the datasets fill the quota.

`pool_space` does this the first time it is called (by the agent's first
discovery), recording the room kept as the user property
``org.flocker:reserve`` beside the quota; later calls only read.  A quota
someone else set (no such property) is left as it is.  A pool grown later
keeps the old quota until ``zfs inherit quota`` on its top filesystem.
If the datasets already use more than the pool less the room, the quota is
what they use: they cannot grow, but the room is only there once they
shrink.

A process that dies mid receive leaves ``flocker-recv-*`` (or, mid
``finish``, ``flocker-old-*``) filesystems that are never listed;
:meth:`ZFSVolumeBackend.recover` undoes the receive (or completes a
``finish`` that had already swapped the names).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import cast

from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.internet.interfaces import IReactorProcess, IReactorThreads, IReactorTime
from twisted.internet.threads import deferToThreadPool
from zope.interface import implementer

from ..common import CommandFailed, CommandResult, retry_failure, run_command
from ._common import (
    backend_operation,
    check_replace,
    check_send_names,
    check_set_aside,
    check_snapshot_name,
)
from ._interface import (
    Capabilities,
    DatasetBusy,
    DatasetExists,
    DatasetInfo,
    DependentClones,
    IEvictsCache,
    IListsSnapshotsAtOnce,
    IReportsPoolSpace,
    IStreamSink,
    IStreamSource,
    IVolumeBackend,
    MaximumSizeTooSmall,
    PoolSpace,
    SnapshotExists,
    SnapshotInfo,
    UnknownDataset,
    UnknownSnapshot,
)
from ._logging import (
    CLONE,
    CREATE,
    DESTROY,
    DESTROY_SNAPSHOT,
    EVICT_CACHE,
    GET,
    LEFTOVER,
    LIST_DATASETS,
    LIST_SET_ASIDE,
    LIST_SNAPSHOTS,
    LIST_WITH_SNAPSHOTS,
    POOL_SPACE,
    RECEIVE,
    ROLLBACK,
    ROOM_KEPT,
    SEND,
    SET_ASIDE,
    SET_MAXIMUM_SIZE,
    SET_READ_ONLY,
    SNAPSHOT_ACTION,
)
from ._page_cache import evict
from ._streams import ProcessStreamSink, ProcessStreamSource

STREAM_FORMAT = "zfs"
ID_PROPERTY = "org.flocker:dataset-id"
TEMPORARY_PREFIX = "flocker-recv-"
OLD_PREFIX = "flocker-old-"
TARGET_PROPERTY = "org.flocker:receiving-into"
#: ``<pool>/flocker-aside-<id>-<random>``: a hidden part of dataset ``<id>``.
PART_PREFIX = "flocker-aside-"
#: Snapshots whose names start with this are the backend's own, never listed
#: (the interface's names cannot start with a dot).
HIDDEN = "."
#: ``<part>@.aside-<name>``: the set-aside snapshot ``<name>``.
SET_ASIDE_PREFIX = ".aside-"
#: ``<id>@.held-<random>``: a snapshot destroyed while a part needed it.
HELD_PREFIX = ".held-"
_KIND = "zfs"
#: How many zfs commands one backend (one dataset agent) runs at once.  One
#: zfs-fuse daemon serves every pool of a machine, and dozens of concurrent
#: commands (create and destroy churn) deadlocked it; streams (send,
#: receive) run beside these and are not counted.
COMMAND_LIMIT = 2
_PROPERTIES = f"mountpoint,mounted,referenced,refquota,readonly,origin,{ID_PROPERTY}"
#: Records, on the top filesystem, the room the backend keeps (bytes).
RESERVE_PROPERTY = "org.flocker:reserve"
#: The top filesystem's ``refreservation``: room for new mountpoints in it.
TOP_ROOM = 1024 * 1024
_MIB = 1024 * 1024


def _oldest_first(values: dict[str, dict[str, int]]) -> list[tuple[str, int, float]]:
    """
    Snapshots listed with their ``createtxg`` and ``creation`` (full name →
    property → value), oldest first: ``(filesystem@name, createtxg, creation)``.
    """
    ordered = sorted(values, key=lambda s: values[s]["createtxg"])
    return [(s, values[s]["createtxg"], float(values[s]["creation"])) for s in ordered]


def _without_hidden(snapshots: list[tuple[str, int, float]]) -> list[SnapshotInfo]:
    """What :meth:`ZFSVolumeBackend.list_snapshots` shows of a dataset's snapshots."""
    named = [(full.split("@", 1)[1], created) for full, _, created in snapshots]
    return [SnapshotInfo(name=n, created=c) for n, c in named if not n.startswith(HIDDEN)]


def reserve_for(total: int) -> int:
    """
    The room kept in a pool of ``total`` bytes for snapshots, sends and
    property changes: 1/32 of it, at least 4 MiB, at most 1 GiB.
    """
    return max(4 * _MIB, min(total // 32, 1024 * _MIB))


def _busy(error: BaseException) -> bool:
    """Whether a failed zfs command said the dataset was busy (zfs-fuse)."""
    return isinstance(error, CommandFailed) and b"busy" in error.stderr


def _missing(error: CommandFailed) -> bool:
    return b"does not exist" in error.stderr or b"could not find" in error.stderr


def _is_part(name: str) -> bool:
    """Whether a filesystem is the hidden part of some dataset."""
    return name.rsplit("/", 1)[-1].startswith(PART_PREFIX)


def _rows(result: CommandResult) -> list[list[str]]:
    """The tab-separated lines of a ``zfs ... -H`` output."""
    return [
        line.split("\t")
        for line in result.stdout.decode("utf-8").splitlines()
        if line.strip()
    ]


@implementer(IVolumeBackend, IReportsPoolSpace, IListsSnapshotsAtOnce, IEvictsCache)
class ZFSVolumeBackend:
    """Datasets as filesystems of one ZFS pool; see the module docstring."""

    #: Names the backend in the logs.
    kind = _KIND

    def __init__(
        self,
        reactor: IReactorProcess,
        pool_name: str,
        default_maximum_size: int | None = None,
    ) -> None:
        """
        :param reactor: Runs the ``zfs`` commands (and their retries).
        :param pool_name: The pool (or a parent filesystem) holding datasets.
        :param default_maximum_size: The limit of datasets created without one.
        """
        self._reactor = reactor
        self.pool_name = pool_name
        #: Dataset ids a receive is in progress into (see `_receiving`).
        self._receiving_now: set[str] = set()
        #: Dataset ids a `_detach` is under way on (not to be repaired).
        self._detaching: set[str] = set()
        #: At most `COMMAND_LIMIT` zfs commands at once (see `_zfs`).
        self._commands = DeferredSemaphore(COMMAND_LIMIT)
        #: Whether `pool_space` made sure the room is kept (see `_keep_room`).
        self._room_kept = False
        #: Whether a mounted filesystem follows ``readonly`` when it is set
        #: (kernel ZFS) or not (zfs-fuse), once `set_read_only` has seen it.
        self._mount_follows_read_only: bool | None = None
        self.capabilities = Capabilities(
            constant_time_clone=True,
            incremental_send=True,
            stream_format=STREAM_FORMAT,
            grow=True,
            shrink=True,
            unlimited=True,
            enforces_maximum_size=True,
            clones_depend_on_origin=True,
            default_maximum_size=default_maximum_size,
            enforces_read_only=True,
        )

    # -- helpers -----------------------------------------------------------

    def _name(self, dataset_id: str) -> str:
        return f"{self.pool_name}/{dataset_id}"

    async def _zfs(self, *args: str, check: bool = True) -> CommandResult:
        """Run one zfs command, waiting while `COMMAND_LIMIT` others run."""
        await self._commands.acquire()
        try:
            return await run_command(self._reactor, ["zfs", *args], check=check)
        finally:
            self._commands.release()

    async def _retrying(self, *args: str) -> CommandResult:
        """Run a zfs command, again while zfs-fuse says "busy"."""
        return await retry_failure(
            cast(IReactorTime, self._reactor),
            lambda: Deferred.fromCoroutine(self._zfs(*args)),
            expected=(CommandFailed,),
            steps=[0.1] * 5 + [0.5] * 20,
            should_retry=_busy,
        )

    async def _exists(self, name: str) -> bool:
        result = await self._zfs("list", "-H", "-o", "name", name, check=False)
        return result.exit_code == 0

    async def _require(self, dataset_id: str) -> str:
        """The dataset's ZFS name, or UnknownDataset."""
        name = self._name(dataset_id)
        if not await self._exists(name):
            raise UnknownDataset(dataset_id)
        return name

    async def _snapshot_names(self, dataset_id: str) -> list[str]:
        return [s.name for s in await self._list_snapshots(dataset_id)]

    async def _require_snapshot(
        self, dataset_id: str, snapshot: str, listed: list[tuple[str, int, float]] | None = None
    ) -> str:
        """
        The snapshot's ZFS name, or UnknownDataset / UnknownSnapshot: one
        command (the listing's refusal tells a missing dataset), none given
        the dataset's snapshots ``listed`` (`_all_snapshots`).
        """
        check_snapshot_name(snapshot)
        if listed is None:
            listed = await self._all_snapshots(dataset_id)
        if snapshot not in [s.name for s in _without_hidden(listed)]:
            raise UnknownSnapshot(dataset_id, snapshot)
        return f"{self._name(dataset_id)}@{snapshot}"

    async def _origins(self) -> dict[str, str]:
        """Every filesystem of the pool that is a clone, with its origin."""
        result = await self._zfs(
            "get", "-H", "-r", "-o", "name,value", "origin", self.pool_name
        )
        return {row[0]: row[1] for row in _rows(result) if row[1] not in ("-", "")}

    async def _clones_of(self, snapshots: Sequence[str]) -> list[str]:
        """The filesystems cloned from any of ``snapshots`` (full names)."""
        wanted = set(snapshots)
        return sorted(n for n, origin in (await self._origins()).items() if origin in wanted)

    async def _destroy_name(self, name: str) -> None:
        """Unmount and destroy a filesystem and its snapshots, if it exists."""
        if not await self._exists(name):
            return
        await self._zfs("unmount", name, check=False)
        await self._retrying("destroy", "-r", name)

    async def _rename(self, old: str, new: str, mount: bool = True) -> None:
        """
        Rename a filesystem, and mount it (unless not ``mount``: a hidden
        part).

        zfs-fuse renames only unmounted filesystems whose snapshots have no
        mounted clones, so those clones are unmounted meanwhile (hidden
        parts never are mounted).
        """
        clones = [
            clone
            for clone, origin in (await self._origins()).items()
            if origin.startswith(f"{old}@") and not _is_part(clone)
        ]
        for name in [*clones, old]:
            await self._zfs("unmount", name, check=False)
        try:
            await self._retrying("rename", old, new)
        finally:
            for name in clones:
                await self._mount(name, check=False)
            # A failed mount is not a failed rename; get() mounts it later.
            renamed = not await self._exists(old)
            if mount or not renamed:
                await self._mount(new if renamed else old, check=False)

    # -- hidden parts (set-aside snapshots) ----------------------------------

    def _part_name(self, key: str) -> str:
        return f"{self.pool_name}/{PART_PREFIX}{key}-{uuid.uuid4().hex[:12]}"

    async def _parts(self, key: str) -> list[str]:
        """The hidden parts of dataset ``key``."""
        result = await self._zfs(
            "list", "-H", "-r", "-t", "filesystem", "-o", "name", self.pool_name
        )
        prefix = f"{self.pool_name}/{PART_PREFIX}{key}-"
        return [row[0] for row in _rows(result) if row[0].startswith(prefix)]

    async def _list_set_aside(self, key: str) -> list[tuple[str, SnapshotInfo]]:
        """``(full snapshot name, info)`` of each set-aside snapshot, oldest first."""
        found = await self._snapshots_of(await self._parts(key))
        marker = f"@{SET_ASIDE_PREFIX}"
        return [
            (s, SnapshotInfo(name=s.split(marker, 1)[1], created=created))
            for s, _, created in found
            if marker in s
        ]

    async def _detach(self, key: str, base: str) -> str:
        """
        Return the dataset to its snapshot ``base`` and keep everything
        else in a new hidden part: rename the dataset to the part, clone
        ``<part>@<base>`` back to the dataset's name and promote the clone,
        which takes over the snapshots up to ``base`` (and their clones).
        The part keeps the later snapshots, hidden ones included, and the
        contents of the moment.  Any failure before the promote puts the
        dataset back as it was (:meth:`_undo_detach`).

        :return: The part's name.
        """
        name = self._name(key)
        info = await self._info(key)
        part = self._part_name(key)
        await self._rename(name, part, mount=False)
        try:
            await self._zfs("set", "canmount=off", part)
            options = ["-o", f"{ID_PROPERTY}={key}", "-o", f"refquota={info.maximum_size or 'none'}"]
            if info.read_only:
                options += ["-o", "readonly=on"]
            await self._zfs("clone", *options, f"{part}@{base}", name)
            await self._retrying("promote", name)
        except BaseException:
            await self._undo_detach(key, part)
            raise
        if info.read_only:  # zfs-fuse mounted the clone read-write
            await self._retrying("unmount", name)
            await self._mount(name, read_only=True)
        return part

    async def _undo_detach(self, key: str, part: str) -> None:
        """
        Put back the dataset that a :meth:`_detach` cut short (before its
        promote) left as ``part``: a fresh clone of it that took the
        dataset's name goes, and the part is renamed back.
        """
        name = self._name(key)
        if (await self._origins()).get(name, "").startswith(f"{part}@"):
            await self._destroy_name(name)
        await self._rename(part, name, mount=False)
        await self._zfs("set", "canmount=on", name)
        await self._mount(name, check=False)

    async def _repair(self, key: str) -> None:
        """
        Undo a :meth:`_detach` that a dead process cut short, so the
        dataset is as before that ``set_aside`` (or ``rollback``), which
        can then be repeated.  Such a detach left the dataset's name
        missing, or held by an unpromoted clone of a part; a finished one
        left the dataset as the origin of its parts.
        """
        if key in self._detaching or key in self._receiving_now:
            # Our own operation under way: a receive's swap leaves the
            # dataset's name missing for a moment, which is no detach
            # cut short.
            return
        parts = await self._parts(key)
        if not parts:
            return
        name = self._name(key)
        origins = await self._origins()
        cut_short = [p for p in parts if origins.get(name, "").startswith(f"{p}@")]
        if not cut_short and not await self._exists(name):
            # The part that took the dataset's name is no clone of another part.
            cut_short = [
                p
                for p in parts
                if origins.get(p, "@").split("@", 1)[0] not in parts
            ][:1]
        for part in cut_short:
            LEFTOVER.log(dataset_id=key, reason=f"undoing an interrupted set_aside: {part}")
            await self._undo_detach(key, part)

    async def _keep_pinned(self, key: str, old: str) -> None:
        """
        Dispose of ``old``, a copy of dataset ``key`` that was replaced or
        rolled back past: destroyed, unless a hidden part still depends on
        its snapshots; then it becomes a hidden part itself, keeping only
        those snapshots.
        """
        if not await self._clones_of_dataset(old):
            await self._destroy_name(old)
            return
        part = old if _is_part(old) else self._part_name(key)
        if part != old:
            await self._rename(old, part, mount=False)
            await self._zfs("set", "canmount=off", part)
        needed = set((await self._origins()).values())
        for snapshot, _, _ in await self._snapshots_of([part]):
            if snapshot not in needed:
                await self._retrying("destroy", snapshot)

    async def _mount(
        self, name: str, check: bool = True, read_only: bool | None = None
    ) -> None:
        """
        Mount an unmounted filesystem, with ``-o ro`` if ``read_only`` (when
        not given, read from its ``readonly`` property: zfs-fuse's ``zfs
        mount`` ignores the property).
        """
        if read_only is None:
            got = await self._zfs("get", "-H", "-o", "value", "readonly", name, check=False)
            read_only = got.stdout.strip() == b"on"
        options = ["-o", "ro"] if read_only else []
        mounted = await self._zfs("mount", *options, name, check=False)
        if mounted.exit_code == 0 or not check:
            return
        # Another operation (a discovery finding it unmounted a moment
        # ago) may have mounted it meanwhile: that is what was wanted.
        if await self._mounted(name):
            return
        # zfs-fuse calls a filesystem it has just received or unmounted
        # "busy" for a moment: try again for a few seconds.
        try:
            await self._retrying("mount", *options, name)
        except CommandFailed:
            if not await self._mounted(name):
                raise

    async def _mounted(self, name: str) -> bool:
        """Whether a filesystem is mounted."""
        now = await self._zfs("get", "-H", "-o", "value", "mounted", name, check=False)
        return now.stdout.strip() == b"yes"

    async def _info(self, dataset_id: str) -> DatasetInfo:
        name = self._name(dataset_id)
        result = await self._zfs(
            "get", "-Hp", "-o", "property,value", _PROPERTIES, name, check=False
        )
        if result.exit_code != 0:
            raise UnknownDataset(dataset_id)
        values = {row[0]: row[1] for row in _rows(result)}
        await self._ensure_mounted(name, values)
        return self._to_info(dataset_id, values)

    async def _ensure_mounted(self, name: str, values: dict[str, str]) -> None:
        """
        Mount a dataset found unmounted (zfs-fuse restarts leave them so),
        read-only if its ``readonly`` (stored, as it is unmounted) is on;
        not one a receive is completing (it mounts it itself).
        """
        key = name.rsplit("/", 1)[-1]
        if values.get("mounted") == "no" and key not in self._receiving_now:
            await self._mount(name, check=False, read_only=values.get("readonly") == "on")

    def _to_info(self, dataset_id: str, values: dict[str, str]) -> DatasetInfo:
        quota = int(values.get("refquota", "0") or 0)
        return DatasetInfo(
            dataset_id=dataset_id,
            path=values.get("mountpoint", ""),
            used=int(values.get("referenced", "0") or 0),
            maximum_size=quota or None,
            read_only=values.get("readonly") == "on",
        )

    async def _list_snapshots(self, dataset_id: str) -> list[SnapshotInfo]:
        """
        The dataset's snapshots, oldest first, without the hidden ones: one
        command (discovery lists every dataset's).
        """
        return _without_hidden(await self._all_snapshots(dataset_id))

    async def _all_snapshots(self, dataset_id: str) -> list[tuple[str, int, float]]:
        """
        `_snapshots_of` the dataset, hidden ones too, or UnknownDataset (as
        the listing's refusal says).
        """
        try:
            return await self._snapshots_of([self._name(dataset_id)])
        except CommandFailed as error:
            if b"does not exist" in error.stderr:
                raise UnknownDataset(dataset_id) from None
            raise

    async def _snapshots_of(self, filesystems: list[str]) -> list[tuple[str, int, float]]:
        """
        Every snapshot of the ``filesystems`` (hidden ones too), oldest
        first: ``(filesystem@name, createtxg, creation)``.  One command:
        the properties of each filesystem and what lies one level under it
        (its snapshots, and child filesystems, which are left out).
        """
        if not filesystems:
            return []
        got = await self._zfs(
            "get", "-Hp", "-d", "1", "-o", "name,property,value", "createtxg,creation",
            *filesystems,
        )  # fmt: skip
        values: dict[str, dict[str, int]] = {}
        for full, prop, value in _rows(got):
            filesystem, at, _ = full.partition("@")
            if at and filesystem in filesystems:
                values.setdefault(full, {})[prop] = int(value)
        return _oldest_first(values)

    async def _raw_names(self, dataset_id: str) -> list[str]:
        """Every snapshot of the dataset, hidden ones too, oldest first."""
        found = await self._snapshots_of([self._name(dataset_id)])
        return [s.split("@", 1)[1] for s, _, _ in found]

    # -- room in the pool (see the module docstring) ------------------------

    async def _top_values(self) -> dict[str, str]:
        result = await self._zfs(
            "get", "-Hp", "-o", "property,value",
            f"used,available,quota,refreservation,usedbyrefreservation,{RESERVE_PROPERTY}",
            self.pool_name,
        )  # fmt: skip
        return {row[0]: row[1] for row in _rows(result)}

    async def _keep_room(self) -> None:
        """Put the quota (and the top's refreservation) in place, once."""
        values = await self._top_values()

        def number(name: str) -> int:
            value = values.get(name, "-")
            return int(value) if value.isdigit() else 0

        quota, used = number("quota"), number("used")
        if quota and not values.get(RESERVE_PROPERTY, "-").isdigit():
            ROOM_KEPT.log(
                backend=_KIND, pool=self.pool_name, quota=quota, reserve=0,
                reason="left the quota someone else set as it is",
            )  # fmt: skip
            return
        if quota:
            return  # set by an earlier agent
        if not number("refreservation"):
            room = await self._zfs("set", f"refreservation={TOP_ROOM}", self.pool_name, check=False)
            if room.exit_code == 0:
                values = await self._top_values()
                used = number("used")
        total = used + number("available")
        quota = max(total - reserve_for(total), used)
        try:
            await self._zfs("set", f"quota={quota}", self.pool_name)
            await self._zfs("set", f"{RESERVE_PROPERTY}={total - quota}", self.pool_name)
        except CommandFailed as error:
            # Never a reason to stop converging: the pool is only less safe.
            ROOM_KEPT.log(
                backend=_KIND, pool=self.pool_name, quota=None, reserve=0,
                reason=f"could not set the quota: {error}",
            )  # fmt: skip
            return
        ROOM_KEPT.log(
            backend=_KIND, pool=self.pool_name, quota=quota, reserve=total - quota,
            reason="set a quota on the pool's top filesystem",
        )  # fmt: skip

    @backend_operation(POOL_SPACE)
    async def pool_space(self) -> PoolSpace:
        """
        See :meth:`IReportsPoolSpace.pool_space`: the quota less the top's
        own room, and what of it is not used.
        """
        if not self._room_kept:
            await self._keep_room()
            self._room_kept = True
        values = await self._top_values()

        def number(name: str) -> int:
            value = values.get(name, "-")
            return int(value) if value.isdigit() else 0

        unused_room = number("usedbyrefreservation")
        available = max(0, number("available") - unused_room)
        quota = number("quota")
        if quota:
            size = max(0, quota - number("refreservation"))
        else:
            size = number("used") + number("available") - unused_room
        return PoolSpace(size=size, free=min(available, size))

    # -- IVolumeBackend ----------------------------------------------------

    @backend_operation(CREATE)
    async def create(
        self, dataset_id: str, maximum_size: int | None = None
    ) -> DatasetInfo:
        """See :meth:`IVolumeBackend.create`."""
        if maximum_size is None:
            maximum_size = self.capabilities.default_maximum_size
        name = self._name(dataset_id)
        if await self._exists(name):
            raise DatasetExists(dataset_id)
        options = ["-o", f"{ID_PROPERTY}={dataset_id}"]
        if maximum_size is not None:
            options += ["-o", f"refquota={maximum_size}"]
        try:
            await self._zfs("create", *options, name)
        except CommandFailed as error:
            if b"exists" in error.stderr:
                raise DatasetExists(dataset_id) from None
            raise
        return await self._info(dataset_id)

    @backend_operation(DESTROY)
    async def destroy(self, dataset_id: str) -> None:
        """See :meth:`IVolumeBackend.destroy`."""
        name = self._name(dataset_id)
        await self._repair(dataset_id)
        if not await self._exists(name):
            return
        family = [name, *await self._parts(dataset_id)]
        origins = await self._origins()

        def owner(origin: str) -> str:
            return origin.split("@", 1)[0]

        clones = [
            clone
            for clone, origin in origins.items()
            if owner(origin) in family and clone not in family
        ]
        if clones:
            raise DependentClones(f"{dataset_id} has clones: {', '.join(clones)}")
        # Parts first, each once nothing left depends on it; the dataset last.
        left = family
        while left:
            leaves = [
                member
                for member in left
                if not any(
                    owner(origins.get(other, "@")) == member for other in left
                )
            ]
            for member in leaves or left:
                await self._destroy_name(member)
            left = [member for member in left if member not in (leaves or left)]

    @backend_operation(GET)
    async def get(self, dataset_id: str) -> DatasetInfo:
        """See :meth:`IVolumeBackend.get`."""
        return await self._info(dataset_id)

    @backend_operation(EVICT_CACHE)
    async def evict_cache(self, dataset_id: str) -> None:
        """
        See :meth:`IEvictsCache.evict_cache`: each file of the mounted
        dataset is advised ``POSIX_FADV_DONTNEED`` (``_page_cache``), from
        a thread.
        """
        info = await self._info(dataset_id)
        if info.path:
            reactor = cast(IReactorThreads, self._reactor)
            await deferToThreadPool(reactor, reactor.getThreadPool(), evict, info.path)

    @backend_operation(LIST_DATASETS)
    async def list_datasets(self) -> list[DatasetInfo]:
        """
        See :meth:`IVolumeBackend.list_datasets`; hidden parts are not
        listed, and a ``set_aside`` a dead process cut short is undone
        first (see the module docstring).
        """
        found, _ = await self._top_level()
        if await self._repair_found(found):
            found, _ = await self._top_level()
        return [info for _, info in await self._infos(found)]

    @backend_operation(LIST_WITH_SNAPSHOTS)
    async def list_datasets_with_snapshots(
        self,
    ) -> list[tuple[DatasetInfo, list[SnapshotInfo]]]:
        """
        See :meth:`IListsSnapshotsAtOnce.list_datasets_with_snapshots`: one
        ``zfs get`` two levels deep (the filesystems right under the pool,
        and their snapshots), as :meth:`list_datasets` and
        :meth:`list_snapshots` would list them.
        """
        found, snapshots = await self._top_level(snapshots=True)
        if await self._repair_found(found):
            found, snapshots = await self._top_level(snapshots=True)
        return [
            (info, _without_hidden(_oldest_first(snapshots.get(name, {}))))
            for name, info in await self._infos(found)
        ]

    async def _infos(self, found: dict[str, dict[str, str]]) -> list[tuple[str, DatasetInfo]]:
        """
        The datasets among the filesystems ``found`` (their properties by
        name), mounted if they were not, by id: ``(name, info)``.
        """
        infos = []
        prefix = f"{self.pool_name}/"
        for name, values in found.items():
            key = name[len(prefix) :] if name.startswith(prefix) else None
            if key is not None and values.get(ID_PROPERTY) == key:
                await self._ensure_mounted(name, values)
                infos.append((name, self._to_info(key, values)))
        return sorted(infos, key=lambda found: found[1].dataset_id)

    async def _top_level(
        self, snapshots: bool = False
    ) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, dict[str, int]]]]:
        """
        The properties of every filesystem right under the pool, by name;
        with ``snapshots``, in the same command, those filesystems'
        snapshots too: filesystem → snapshot's full name → its
        ``createtxg`` and ``creation`` (else nothing).
        """
        result = await self._zfs(
            "get", "-Hp", "-d", "2" if snapshots else "1", "-o", "name,property,value",
            f"{_PROPERTIES},createtxg,creation" if snapshots else _PROPERTIES,
            self.pool_name,
        )  # fmt: skip
        depth = self.pool_name.count("/") + 1
        found: dict[str, dict[str, str]] = {}
        listed: dict[str, dict[str, dict[str, int]]] = {}
        for name, prop, value in _rows(result):
            filesystem, at, _ = name.partition("@")
            if filesystem.count("/") > depth:
                continue  # two levels down: a filesystem under a dataset
            if not at:
                found.setdefault(name, {})[prop] = value
            elif prop in ("createtxg", "creation") and filesystem.count("/") == depth:
                listed.setdefault(filesystem, {}).setdefault(name, {})[prop] = int(value)
        return found, listed

    async def _repair_found(self, found: dict[str, dict[str, str]]) -> bool:
        """
        :meth:`_repair` the datasets whose parts show a detach cut short:
        the dataset's name missing, or held by a clone of the part.
        Nothing to do costs no command.

        :return: Whether anything was repaired.
        """
        prefix = f"{self.pool_name}/{PART_PREFIX}"
        keys = set()
        for part in found:
            if not part.startswith(prefix):
                continue
            key = part[len(prefix) :][:36]
            values = found.get(self._name(key))
            if values is None or values.get("origin", "").startswith(f"{part}@"):
                keys.add(key)
        busy = self._detaching | self._receiving_now
        for key in sorted(keys - busy):
            await self._repair(key)
        return bool(keys - busy)

    @backend_operation(SET_MAXIMUM_SIZE)
    async def set_maximum_size(
        self, dataset_id: str, maximum_size: int | None
    ) -> DatasetInfo:
        """See :meth:`IVolumeBackend.set_maximum_size`."""
        name = await self._require(dataset_id)
        if maximum_size is not None:
            used = (await self._info(dataset_id)).used
            if maximum_size < used:
                raise MaximumSizeTooSmall(f"{maximum_size} bytes is less than {used} used")
        try:
            await self._zfs("set", f"refquota={maximum_size or 'none'}", name)
        except CommandFailed as error:
            if b"less than" in error.stderr or b"too small" in error.stderr:
                raise MaximumSizeTooSmall(str(error)) from None
            raise
        return await self._info(dataset_id)

    @backend_operation(SET_READ_ONLY)
    async def set_read_only(
        self, dataset_id: str, read_only: bool
    ) -> DatasetInfo:
        """See :meth:`IVolumeBackend.set_read_only` and the module docstring."""
        before = await self._info(dataset_id)  # or UnknownDataset
        if before.read_only == read_only:
            return before
        name = self._name(dataset_id)
        await self._zfs("set", f"readonly={'on' if read_only else 'off'}", name)
        if self._mount_follows_read_only is not False:
            info = await self._info(dataset_id)
            self._mount_follows_read_only = info.read_only == read_only
            if self._mount_follows_read_only:
                return info
        # zfs-fuse: the mount does not follow the property (seen once, this
        # backend's ZFS is known not to: no need to read it again).
        try:
            await self._retrying("unmount", name)
        except BaseException as error:
            # Keep the property true to the mount.
            old = "on" if before.read_only else "off"
            await self._zfs("set", f"readonly={old}", name)
            if _busy(error):
                raise DatasetBusy(dataset_id) from None
            raise
        await self._mount(name, read_only=read_only)  # the property just set
        return before.set(read_only=read_only)  # mounted so: nothing else changed

    @backend_operation(SNAPSHOT_ACTION, snapshot="name")
    async def snapshot(self, dataset_id: str, name: str) -> SnapshotInfo:
        """
        See :meth:`IVolumeBackend.snapshot`: two commands (a move's final
        increment waits for them), ZFS's refusal telling a missing dataset
        from a taken name.
        """
        full = self._name(dataset_id)
        try:
            await self._zfs("snapshot", f"{full}@{name}")
        except CommandFailed as error:
            if b"does not exist" in error.stderr or not await self._exists(full):
                raise UnknownDataset(dataset_id) from None
            if b"exists" in error.stderr:
                raise SnapshotExists(dataset_id, name) from None
            raise
        got = await self._zfs(
            "get", "-Hp", "-o", "value", "creation", f"{full}@{name}", check=False
        )
        if got.exit_code != 0:
            raise UnknownSnapshot(dataset_id, name)  # destroyed meanwhile
        return SnapshotInfo(name=name, created=float(got.stdout.strip()))

    @backend_operation(LIST_SNAPSHOTS)
    async def list_snapshots(self, dataset_id: str) -> list[SnapshotInfo]:
        """See :meth:`IVolumeBackend.list_snapshots`."""
        return await self._list_snapshots(dataset_id)

    @backend_operation(ROLLBACK, snapshot="name")
    async def rollback(self, dataset_id: str, name: str) -> None:
        """See :meth:`IVolumeBackend.rollback`."""
        await self._repair(dataset_id)
        full = await self._require_snapshot(dataset_id, name)
        names = await self._raw_names(dataset_id)
        later = [f"{self._name(dataset_id)}@{n}" for n in names[names.index(name) + 1 :]]
        clones = await self._clones_of(later)
        if any(not _is_part(clone) for clone in clones):
            raise DependentClones(
                f"later snapshots of {dataset_id} have clones: {', '.join(clones)}"
            )
        if not clones:
            await self._retrying("rollback", "-r", full)
            return
        # Set-aside snapshots need later snapshots: those go to a part.
        self._detaching.add(dataset_id)
        try:
            part = await self._detach(dataset_id, name)
            await self._keep_pinned(dataset_id, part)
        finally:
            self._detaching.discard(dataset_id)

    @backend_operation(SET_ASIDE, snapshot="name")
    async def set_aside(self, dataset_id: str, name: str, base: str) -> SnapshotInfo:
        """See :meth:`IVolumeBackend.set_aside` and the module docstring."""
        await self._repair(dataset_id)
        full = await self._require(dataset_id)
        check_set_aside(
            dataset_id,
            await self._snapshot_names(dataset_id),
            [info.name for _, info in await self._list_set_aside(dataset_id)],
            name,
            base,
        )
        hidden = f"{full}@{SET_ASIDE_PREFIX}{name}"
        if await self._exists(hidden):  # an interrupted call's, not yet detached
            await self._retrying("destroy", hidden)
        self._detaching.add(dataset_id)
        try:
            await self._zfs("snapshot", hidden)
            await self._detach(dataset_id, base)
        finally:
            self._detaching.discard(dataset_id)
        for _, info in await self._list_set_aside(dataset_id):
            if info.name == name:
                return info
        raise UnknownSnapshot(dataset_id, name)  # destroyed meanwhile

    @backend_operation(LIST_SET_ASIDE)
    async def list_set_aside(self, dataset_id: str) -> list[SnapshotInfo]:
        """See :meth:`IVolumeBackend.list_set_aside`."""
        await self._repair(dataset_id)
        await self._require(dataset_id)
        return [info for _, info in await self._list_set_aside(dataset_id)]

    @backend_operation(DESTROY_SNAPSHOT, snapshot="name")
    async def destroy_snapshot(self, dataset_id: str, name: str) -> None:
        """See :meth:`IVolumeBackend.destroy_snapshot`."""
        full = f"{self._name(dataset_id)}@{name}"
        if not await self._exists(full):
            return
        clones = await self._clones_of([full])
        if any(not _is_part(clone) for clone in clones):
            raise DependentClones(f"{full} has clones: {', '.join(clones)}")
        if clones:
            # Only set-aside snapshots need it: it is no longer listed
            # and goes with the dataset.
            held = f"{self._name(dataset_id)}@{HELD_PREFIX}{uuid.uuid4().hex[:12]}"
            await self._retrying("rename", full, held)
            return
        await self._retrying("destroy", full)

    @backend_operation(CLONE)
    async def clone(
        self, dataset_id: str, snapshot: str, new_dataset_id: str
    ) -> DatasetInfo:
        """See :meth:`IVolumeBackend.clone`."""
        new_name = self._name(new_dataset_id)
        options = ["-o", f"{ID_PROPERTY}={new_dataset_id}"]
        size = self.capabilities.default_maximum_size
        if size is not None:
            options += ["-o", f"refquota={size}"]
        # Try at once (two commands in all when it works, which keeps
        # clones fast); only a failure looks for what was wrong.
        try:
            await self._zfs(
                "clone", *options, f"{self._name(dataset_id)}@{snapshot}", new_name
            )
        except CommandFailed:
            if await self._exists(new_name):
                raise DatasetExists(new_dataset_id) from None
            await self._require(dataset_id)
            aside = [s for s, info in await self._list_set_aside(dataset_id) if info.name == snapshot]
            if not aside:
                await self._require_snapshot(dataset_id, snapshot)
                raise
            await self._zfs("clone", *options, aside[0], new_name)
        return await self._info(new_dataset_id)

    @backend_operation(SEND)
    async def send(
        self, dataset_id: str, snapshot: str, base: str | None = None
    ) -> IStreamSource:
        """
        See :meth:`IVolumeBackend.send`; the stream is ``zfs send``'s.  One
        listing checks the names (its refusal tells a missing dataset).
        """
        name = self._name(dataset_id)
        check_send_names(dataset_id, await self._list_snapshots(dataset_id), snapshot, base)
        argv = ["zfs", "send"]
        if base is not None:
            argv += ["-i", f"{name}@{base}"]
        argv.append(f"{name}@{snapshot}")
        return ProcessStreamSource(
            self._reactor,
            argv,
            backend=_KIND,
            dataset_id=dataset_id,
            snapshot=snapshot,
            base=base,
            stream_format=STREAM_FORMAT,
        )

    @backend_operation(RECEIVE)
    async def receive(
        self, dataset_id: str, base: str | None = None, replace: bool = False
    ) -> IStreamSink:
        """See :meth:`IVolumeBackend.receive` and the module docstring."""
        check_replace(base, replace)
        if base is None:
            return await self._receive_full(dataset_id, replace)
        return await self._receive_incremental(dataset_id, base)

    def _temporary_name(self) -> str:
        return f"{self.pool_name}/{TEMPORARY_PREFIX}{uuid.uuid4().hex[:12]}"

    async def _mark(
        self, key: str, temporary: str, quota: int | None, read_only: bool
    ) -> None:
        """Give a received temporary filesystem the dataset's properties."""
        await self._zfs("set", f"{ID_PROPERTY}={key}", temporary)
        await self._zfs("set", f"refquota={quota or 'none'}", temporary)
        await self._zfs("set", f"readonly={'on' if read_only else 'off'}", temporary)

    async def _receive_full(self, key: str, replace: bool) -> IStreamSink:
        name = self._name(key)
        if not replace and await self._exists(name):
            raise DatasetExists(key)
        temporary = self._temporary_name()

        async def commit(header: bytes, writable: bool) -> None:
            exists = await self._exists(name)
            if exists and not replace:
                raise DatasetExists(key)
            if exists:
                # Checked before anything moves: the old copy must be
                # destroyed once the new one has its name (or, where set-aside
                # snapshots need its snapshots, become a hidden part).
                clones = [c for c in await self._clones_of_dataset(name) if not _is_part(c)]
                if clones:
                    raise DependentClones(
                        f"{key} is not replaced: its snapshots have clones: "
                        f"{', '.join(clones)}"
                    )
            # A copy from another node, not yet exposed: read-only (unless
            # it is exposed at once).
            await self._mark(
                key,
                temporary,
                self.capabilities.default_maximum_size,
                read_only=not writable,
            )
            if exists:
                await self._swap(key, temporary)
            else:
                await self._rename(temporary, name)

        async def discard() -> None:
            await self._destroy_name(temporary)

        return self._receiving(["-u", temporary], key, None, commit, discard)

    def _receiving(
        self,
        arguments: list[str],
        key: str,
        base: str | None,
        commit: Callable[[bytes, bool], Awaitable[None]],
        discard: Callable[[], Awaitable[None]],
    ) -> IStreamSink:
        """
        A sink feeding ``zfs receive <arguments>``.  Until it is committed
        or discarded the dataset counts as receiving: discovery does not
        mount it meanwhile (the receive's own unmount, swap and mount would
        race that mount and fail).
        """
        self._receiving_now.add(key)

        async def committed(header: bytes, writable: bool) -> None:
            try:
                await commit(header, writable)
            finally:
                self._receiving_now.discard(key)

        async def discarded() -> None:
            try:
                await discard()
            finally:
                self._receiving_now.discard(key)

        return ProcessStreamSink(
            self._reactor,
            ["zfs", "receive", *arguments],
            backend=_KIND,
            dataset_id=key,
            base=base,
            stream_format=STREAM_FORMAT,
            commit=committed,
            discard=discarded,
        )

    def _receive_in_place(self, key: str, base: str) -> IStreamSink:
        """Receive onto the target itself (``base`` is its newest snapshot)."""
        name = self._name(key)

        async def commit(header: bytes, writable: bool) -> None:
            # ZFS swapped the contents in as the stream ended; remounting
            # drops what the kernel cached of the old ones (zfs-fuse's page
            # cache otherwise serves stale file contents).  A writable
            # result comes back writable from this one remount.
            # One command for both: what is mounted, and how read-only it was.
            got = await self._zfs(
                "get", "-H", "-o", "property,value", "mounted,readonly", name, check=False
            )
            values = {row[0]: row[1] for row in _rows(got)}
            if values.get("mounted") == "yes":
                await self._retrying("unmount", name)
            if not writable:
                known = values.get("readonly")
                await self._mount(name, read_only=None if known is None else known == "on")
                return
            await self._zfs("set", "readonly=off", name)
            try:
                await self._mount(name, read_only=False)
            except BaseException:
                # Left as it was (the receive is discarded): a copy that
                # was read-only must not be mounted writable later.
                old = values.get("readonly") or "off"
                await self._zfs("set", f"readonly={old}", name, check=False)
                raise

        async def discard() -> None:
            names = await self._snapshot_names(key)
            if base in names and names[-1] != base:
                await self._retrying("rollback", "-r", f"{name}@{base}")

        return self._receiving(["-F", name], key, base, commit, discard)

    async def _receive_incremental(self, key: str, base: str) -> IStreamSink:
        listed = await self._all_snapshots(key)
        origin = await self._require_snapshot(key, base, listed)
        name = self._name(key)
        names = [s.split("@", 1)[1] for s, _, _ in listed]  # a held one may be the newest
        if names[-1] == base:
            return self._receive_in_place(key, base)
        later = [f"{name}@{n}" for n in names[names.index(base) + 1 :]]
        clones = [c for c in await self._clones_of(later) if not _is_part(c)]
        if clones:
            raise DependentClones(
                f"snapshots after {base!r} have clones: {', '.join(clones)}"
            )
        target = await self._info(key)
        temporary = self._temporary_name()
        await self._zfs("clone", "-o", f"{TARGET_PROPERTY}={key}", origin, temporary)
        try:
            await self._retrying("promote", temporary)
        except BaseException:
            await self._destroy_name(temporary)
            raise

        async def commit(header: bytes, writable: bool) -> None:
            read_only = target.read_only and not writable
            await self._mark(key, temporary, target.maximum_size, read_only)
            await self._swap(key, temporary)

        async def discard() -> None:
            await self._retrying("promote", name)
            await self._destroy_name(temporary)

        return self._receiving(["-F", temporary], key, base, commit, discard)

    async def _clones_of_dataset(self, name: str) -> list[str]:
        """The filesystems cloned from any snapshot of ``name``."""
        return sorted(
            clone
            for clone, origin in (await self._origins()).items()
            if origin.startswith(f"{name}@")
        )

    async def _swap(self, key: str, temporary: str) -> None:
        """
        Put the filesystem ``temporary`` in the place of the dataset ``key``
        and destroy the old one.

        The old dataset steps aside as ``flocker-old-<id>`` and is only
        destroyed once ``temporary`` has its name, so a failure before that
        puts it back (and ``discard`` can still undo the receive), and
        :meth:`recover` after a crash keeps whichever whole copy holds the
        name, or renames the old one back.
        """
        name = self._name(key)
        old = f"{self.pool_name}/{OLD_PREFIX}{key}"
        await self._destroy_name(old)  # garbage of an earlier crash
        await self._rename(name, old)
        try:
            await self._rename(temporary, name)
        except BaseException:
            await self._rename(old, name)
            raise
        try:
            await self._keep_pinned(key, old)
        except CommandFailed as error:  # recover() finishes the job
            LEFTOVER.log(dataset_id=key, reason=str(error))

    def recover(self) -> Deferred[None]:
        """
        See :meth:`IVolumeBackend.recover`: undo receives that a dead
        process left half done.

        A ``flocker-old-<id>`` (a swap of names cut short: an incremental
        receive's or a replacing full receive's ``finish``) is destroyed if
        the dataset's name is taken (the new copy got in) and renamed back
        otherwise, so one whole copy remains.  Then every
        ``flocker-recv-*`` filesystem is destroyed, after promoting back
        any dataset that became its clone, so the datasets are as they
        were before those receives; last, a ``set_aside`` cut short is
        undone (see the module docstring).  Run it before using the backend.
        """

        async def run() -> None:
            result = await self._zfs(
                "list", "-H", "-r", "-t", "filesystem", "-o", "name", self.pool_name
            )
            names = [row[0] for row in _rows(result)]
            old_prefix = f"{self.pool_name}/{OLD_PREFIX}"
            for old in names:
                if old.startswith(old_prefix):
                    # A commit stopped mid-swap: finish or undo the swap.
                    key = old[len(old_prefix) :]
                    name = self._name(key)
                    if await self._exists(name):
                        await self._keep_pinned(key, old)
                    else:
                        await self._rename(old, name)
            prefix = f"{self.pool_name}/{TEMPORARY_PREFIX}"
            for temporary in names:
                if not temporary.startswith(prefix):
                    continue
                got = await self._zfs(
                    "get", "-H", "-o", "value", TARGET_PROPERTY, temporary
                )
                target = self._name(got.stdout.decode().strip())
                origins = await self._origins()
                if origins.get(target, "").startswith(f"{temporary}@"):
                    await self._retrying("promote", target)
                await self._destroy_name(temporary)
            part_prefix = f"{self.pool_name}/{PART_PREFIX}"
            for key in sorted({n[len(part_prefix) :][:36] for n in names if n.startswith(part_prefix)}):
                await self._repair(key)

        return Deferred.fromCoroutine(run())
