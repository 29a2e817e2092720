"""
The interface every Flocker storage backend provides, its values and errors.

A backend keeps the datasets of one node.  A dataset is named by a UUID
(its canonical lower-case text form), has a filesystem mounted at
:attr:`DatasetInfo.path`, an optional maximum size, and an ordered list of
named snapshots.  Snapshots can be rolled back to, cloned into new datasets
and sent to another node as a byte stream, in full or (where the backend
can) as the difference from an earlier snapshot.

Read-only datasets
==================

Only a dataset's primary copy may change through its path: a standing
replica, or a copy being moved in, must not.  A dataset can therefore be
*read-only* (:meth:`IVolumeBackend.set_read_only`,
:attr:`DatasetInfo.read_only`): writes through its path are refused
(``EROFS``/``EACCES``, even for root) where the backend's
:attr:`Capabilities.enforces_read_only` says so, and only recorded
otherwise.  The flag belongs to the dataset on disk, so a new backend
object (a restarted agent) sees it.  It never stands in the way of the
backend's own operations: snapshots, ``send``, an incremental ``receive``,
``rollback``, ``destroy``, ``destroy_snapshot`` and ``clone`` work as
usual.  A full ``receive`` makes a read-only dataset (a copy from another
node, not yet exposed); an incremental one keeps the flag as it was;
``create`` and ``clone`` make writable datasets.

Streams
=======

``send`` gives an :class:`IStreamSource`; ``receive`` gives an
:class:`IStreamSink`.  A transfer pumps one into the other (locally, or with
a network connection in the middle)::

    source = await backend.send(dataset_id, "s2", base="s1")
    sink = await other.receive(dataset_id, base="s1")
    await source.start(sink)    # sink is an IConsumer; back-pressure works
    await sink.finish()         # only now does the result become visible

Until :meth:`IStreamSink.finish` succeeds, the receiving dataset keeps
exactly the state it had before ``receive`` was called: a half-received
stream is never visible, :meth:`IStreamSink.abort` returns to the previous
state, and so does a stream that turns out to be truncated or corrupt (then
``finish`` fails with :class:`BadStream`).  A process that crashes mid
stream leaves at most a temporary object behind that is not listed and
never becomes a dataset.

Streams are only meaningful between backends whose
:attr:`Capabilities.stream_format` is the same.

Replacing a copy
================

A standing replica that shares no snapshot with the primary any more (the
primary moved to a node that held no replica) can only be brought up to
date by a full stream.  ``receive(dataset_id, replace=True)`` takes one even
though the dataset exists: the stream is received beside the old copy,
which stays as it is (data, snapshots, ``read_only`` flag) until
:meth:`IStreamSink.finish` succeeds; then the received dataset takes its
place, with only the received snapshot, read-only.  The swap is as atomic
as the backend can make it (a reader sees the old or the new copy), and a
crash in the middle leaves one whole copy, old or new, once
:meth:`IVolumeBackend.recover` ran.  ``abort``, a bad stream or a failed ``finish`` leave the
old copy exactly as it was.  Where ``clones_depend_on_origin``, an old copy
whose snapshots have clones cannot go: ``finish`` fails with
:class:`DependentClones` and the old copy stays.
"""

from __future__ import annotations

from pyrsistent import PClass, field
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer
from zope.interface import Attribute, Interface

# --------------------------------------------------------------------------
# Values


class DatasetInfo(PClass):
    """
    What a backend knows about one dataset.

    :ivar dataset_id: The dataset's UUID, canonical lower-case text.
    :ivar path: Where the dataset's filesystem is mounted on this node
        (a fake path for the in-memory backend).
    :ivar used: Bytes the dataset's current contents occupy (snapshots not
        counted; ZFS's ``referenced``).
    :ivar maximum_size: The size limit in bytes, or ``None`` for no limit.
    :ivar read_only: Whether writes through ``path`` are refused (see
        :meth:`IVolumeBackend.set_read_only`; where the backend does not
        enforce it, only that the flag is set).
    """

    dataset_id = field(type=str, mandatory=True)
    path = field(type=str, mandatory=True)
    used = field(type=int, mandatory=True, initial=0)
    maximum_size = field(type=(int, type(None)), mandatory=True, initial=None)
    read_only = field(type=bool, mandatory=True, initial=False)


class SnapshotInfo(PClass):
    """
    One snapshot of a dataset.

    :ivar name: The snapshot's name, unique within its dataset.
    :ivar created: When it was taken, in POSIX seconds.  The resolution is
        backend-specific (one second on ZFS): order snapshots by their
        position in :meth:`IVolumeBackend.list_snapshots`, not by this.
    """

    name = field(type=str, mandatory=True)
    created = field(type=float, mandatory=True)


class PoolSpace(PClass):
    """
    The room a backend's datasets have on their node, in bytes.

    :ivar size: What the datasets may use in all: the storage less the room
        the backend keeps for its own operations (see
        :class:`IReportsPoolSpace`).
    :ivar free: What of ``size`` is not used yet.
    """

    size = field(type=int, mandatory=True)
    free = field(type=int, mandatory=True)


class Capabilities(PClass):
    """
    What a backend can honestly do; callers and the contract tests use it.

    :ivar constant_time_clone: ``clone`` takes the same time whatever the
        size of the data (ZFS clones); otherwise it copies.
    :ivar incremental_send: ``send(..., base=...)`` produces a stream
        carrying only the changes since ``base``.  When false, a stream with
        a base still works with the same semantics but carries everything.
    :ivar stream_format: Names the stream's bytes; a sink accepts only
        streams of its own format.
    :ivar grow: ``set_maximum_size`` can raise the limit.
    :ivar shrink: ``set_maximum_size`` can lower the limit (not below what
        is used).  When false a lower limit fails with
        :class:`ResizeNotSupported`.
    :ivar unlimited: a dataset may have no maximum size (``None``).
    :ivar enforces_maximum_size: writes beyond the maximum size fail.  When
        false the maximum size is only recorded.
    :ivar clones_depend_on_origin: a clone keeps its origin snapshot alive,
        so destroying that snapshot (or its dataset, or rolling back past
        it) fails with :class:`DependentClones` until the clone is gone.
    :ivar default_maximum_size: the maximum size a dataset created without
        one gets (``None``: unlimited).
    :ivar enforces_read_only: writes through the path of a read-only
        dataset fail with ``EROFS`` or ``EACCES``, even for root.  When
        false the flag is only recorded and reported.
    """

    constant_time_clone = field(type=bool, mandatory=True)
    incremental_send = field(type=bool, mandatory=True)
    stream_format = field(type=str, mandatory=True)
    grow = field(type=bool, mandatory=True)
    shrink = field(type=bool, mandatory=True)
    unlimited = field(type=bool, mandatory=True)
    enforces_maximum_size = field(type=bool, mandatory=True)
    clones_depend_on_origin = field(type=bool, mandatory=True)
    default_maximum_size = field(type=(int, type(None)), mandatory=True)
    enforces_read_only = field(type=bool, mandatory=True)


# --------------------------------------------------------------------------
# Errors


class VolumeError(Exception):
    """The base of every error a backend reports on purpose."""


class InvalidName(VolumeError, ValueError):
    """A dataset id is not a UUID, or a snapshot name has bad characters."""


class UnknownDataset(VolumeError):
    """The dataset does not exist on this backend."""

    def __init__(self, dataset_id: str) -> None:
        """Name the missing dataset."""
        self.dataset_id = dataset_id
        super().__init__(f"no dataset {dataset_id}")


class UnknownSnapshot(VolumeError):
    """The dataset exists but has no snapshot of that name."""

    def __init__(self, dataset_id: str, snapshot: str) -> None:
        """Name the missing snapshot."""
        self.dataset_id = dataset_id
        self.snapshot = snapshot
        super().__init__(f"dataset {dataset_id} has no snapshot {snapshot!r}")


class DatasetExists(VolumeError):
    """A dataset with that id already exists."""

    def __init__(self, dataset_id: str) -> None:
        """Name the existing dataset."""
        self.dataset_id = dataset_id
        super().__init__(f"dataset {dataset_id} already exists")


class SnapshotExists(VolumeError):
    """The dataset already has a snapshot of that name."""

    def __init__(self, dataset_id: str, snapshot: str) -> None:
        """Name the existing snapshot."""
        self.dataset_id = dataset_id
        self.snapshot = snapshot
        super().__init__(f"dataset {dataset_id} already has snapshot {snapshot!r}")


class InvalidBase(VolumeError, ValueError):
    """
    An incremental send's base is not older than the snapshot sent, or a
    replacing receive was given a base.
    """


class MaximumSizeTooSmall(VolumeError):
    """The requested maximum size is below what the dataset already uses."""


class ResizeNotSupported(VolumeError):
    """The backend cannot make this change of maximum size (see capabilities)."""


class DependentClones(VolumeError):
    """The operation would destroy a snapshot that a clone depends on."""


class DatasetBusy(VolumeError):
    """
    The dataset's filesystem is in use (e.g. a file is open for writing), so
    it cannot be remounted read-only; nothing changed.  Try again later.
    """

    def __init__(self, dataset_id: str) -> None:
        """Name the busy dataset."""
        self.dataset_id = dataset_id
        super().__init__(f"dataset {dataset_id} is busy")


class BadStream(VolumeError):
    """A received stream was truncated, corrupt, of the wrong format or base.

    The receiving dataset keeps its previous state.
    """


class SendFailed(VolumeError):
    """Producing a stream failed (the ``zfs send`` or ``tar`` failed)."""


class StreamStopped(SendFailed):
    """The stream was stopped with :meth:`IStreamSource.stop` before its end."""


# --------------------------------------------------------------------------
# Streams


class IStreamSource(Interface):
    """
    The bytes of one snapshot (or of the changes between two), ready to flow.

    Nothing is read before :meth:`start`.  Each source can be started once.
    """

    dataset_id: str = Attribute("The dataset the stream comes from.")
    snapshot: str = Attribute("The snapshot the stream carries.")
    base: str | None = Attribute("The base snapshot, or None for a full stream.")
    stream_format: str = Attribute("The backend's stream format.")

    def start(consumer: IConsumer) -> Deferred[None]:
        """
        Write the whole stream into ``consumer``.

        The source registers itself on the consumer as a streaming (push)
        producer, honours ``pauseProducing`` / ``resumeProducing``, and
        unregisters itself when done.  ``consumer.stopProducing`` on the
        source (e.g. the consumer's connection was lost) stops the stream.

        :return: A Deferred firing with ``None`` once every byte was written
            and the underlying producer (``zfs send``, ``tar``) succeeded;
            failing with :class:`SendFailed` if it failed, or with
            :class:`StreamStopped` after :meth:`stop` or ``stopProducing``.
        """

    def stop() -> None:
        """Abort the stream: kill whatever produces it; nothing more is written."""


class IStreamSink(IConsumer):
    """
    Receives one stream into a dataset; see the module docstring.

    The sink is an ``IConsumer``: register a producer (streaming or not) and
    the sink pauses it while its own buffers are full.  If the receiving end
    fails before the stream has ended (e.g. ``zfs recv`` rejects the stream
    header), the sink calls ``stopProducing`` on its producer, discards
    further writes, and :meth:`finish` reports the failure.
    """

    dataset_id: str = Attribute("The dataset that receives the stream.")
    base: str | None = Attribute("The base snapshot, or None for a full stream.")
    stream_format: str = Attribute("The only stream format this sink accepts.")

    def finish(writable: bool = False) -> Deferred[None]:
        """
        The stream has ended: complete the receive and make it visible.

        After success the dataset holds the received snapshot as its newest
        snapshot and its contents equal that snapshot's.  For an
        incremental receive, snapshots after ``base`` and changes not in a
        snapshot are discarded; earlier snapshots stay.  A full receive
        creates the dataset with just the received snapshot, read-only;
        an incremental receive keeps the dataset's ``read_only`` flag.
        With ``writable`` (a move's final increment, about to be exposed)
        the dataset is writable instead, as :meth:`set_read_only` would
        make it afterwards, but in the same step (zfs-fuse remounts it
        once instead of twice).

        A replacing receive (``receive(..., replace=True)``) replaces the
        dataset if it exists, old snapshots and flag included; see
        "Replacing a copy" in the module docstring.

        :return: A Deferred firing with ``None``, or failing with
            :class:`BadStream` (truncated, corrupt or mismatched stream), or,
            for a replacing receive, with :class:`DependentClones` (clones
            depend on the old copy's snapshots); in those cases the dataset
            is exactly as before ``receive``.
        """

    def abort() -> Deferred[None]:
        """
        Give up: discard everything received so far.

        :return: A Deferred firing with ``None`` when the dataset is back to
            exactly its state before ``receive`` (for a full receive: no
            such dataset; for a replacing one: the old copy, if there was
            one).  Aborting after ``finish`` ended, or twice, does
            nothing.
        """


# --------------------------------------------------------------------------
# The backend


class IReportsPoolSpace(Interface):
    """
    A backend whose datasets share one pool of storage, which says how much
    of it they have: where writes can fill the pool, it keeps room that the
    datasets cannot take, so that a full pool can still be snapshotted,
    sent from and drained.
    """

    def pool_space() -> Deferred[PoolSpace]:
        """The datasets' room now (the first call may first set the room aside)."""


class IListsSnapshotsAtOnce(Interface):
    """
    A backend that lists every dataset together with its snapshots more
    cheaply than a listing of the datasets and then one of each dataset's
    snapshots (on ZFS, one command instead of one per dataset and one
    more): a node's discovery, which runs at every change of the cluster,
    asks the storage less.
    """

    def list_datasets_with_snapshots() -> Deferred[list[tuple[DatasetInfo, list[SnapshotInfo]]]]:
        """
        Every dataset, as :meth:`IVolumeBackend.list_datasets` lists them,
        each with its snapshots as :meth:`IVolumeBackend.list_snapshots`
        lists them, from one listing.
        """


class IEvictsCache(Interface):
    """
    A backend whose datasets' files the kernel caches in a way that makes
    them slow to make read-only (zfs-fuse's FUSE mounts drop their whole
    cache when unmounted): a move drops the cache ahead of its hand-off,
    while the application still runs.
    """

    def evict_cache(dataset_id: str) -> Deferred[None]:
        """
        Have the kernel drop what it caches of the dataset's files, as far
        as it can in a bounded time; the dataset is otherwise untouched.
        :class:`UnknownDataset` if there is no such dataset.
        """


class IVolumeBackend(Interface):
    """
    The datasets of one node.

    Dataset ids are UUID strings (any case; reported canonical lower case);
    anything else fails with :class:`InvalidName`.  Snapshot names are 1-200
    characters of ``A-Z a-z 0-9 _ - . :`` not starting with ``-`` or ``.``.
    Errors an operation is documented to raise come as failed Deferreds.
    Operations on one dataset are not meant to run concurrently.
    """

    capabilities: Capabilities = Attribute("What this backend can do.")

    def recover() -> Deferred[None]:
        """
        Put right what operations of an earlier process, cut short by its
        death, left half done: afterwards every dataset is whole (as before
        or as after each such operation, as its documentation says), and
        the temporary objects they made (half-received streams, copies
        stepping aside for a replacement) are gone.

        Run it once, before other operations, whenever a process starts
        using the backend's storage (the dataset agent's first discovery;
        ``flocker-volume receive``); not while operations of this backend
        are under way.  With nothing half done it changes nothing, so it
        may run again; a backend where nothing can be half done (the
        in-memory fake, whose datasets die with the process) does nothing.

        :return: A Deferred firing with ``None`` once done.
        """

    def create(
        dataset_id: str, maximum_size: int | None = None
    ) -> Deferred[DatasetInfo]:
        """
        Create an empty, mounted, writable dataset.

        :param maximum_size: The size limit in bytes; ``None`` means the
            backend's ``capabilities.default_maximum_size``.
        :return: Its :class:`DatasetInfo`; fails with
            :class:`DatasetExists` if the id is taken (nothing changes).
        """

    def destroy(dataset_id: str) -> Deferred[None]:
        """
        Destroy a dataset, its data and all its snapshots.

        Idempotent: destroying an unknown dataset succeeds and does nothing.
        Fails with :class:`DependentClones` if a clone depends on one of
        its snapshots (only where ``clones_depend_on_origin``).
        """

    def get(dataset_id: str) -> Deferred[DatasetInfo]:
        """One dataset's :class:`DatasetInfo`, or :class:`UnknownDataset`."""

    def list_datasets() -> Deferred[list[DatasetInfo]]:
        """Every dataset of this backend, sorted by id (temporary ones not)."""

    def set_maximum_size(
        dataset_id: str, maximum_size: int | None
    ) -> Deferred[DatasetInfo]:
        """
        Change a dataset's size limit (``None``: unlimited).

        :return: The new :class:`DatasetInfo`.  Fails, changing nothing,
            with :class:`UnknownDataset`; :class:`MaximumSizeTooSmall` if
            the limit is below what the dataset uses; or
            :class:`ResizeNotSupported` for a change the capabilities rule
            out.
        """

    def set_read_only(dataset_id: str, read_only: bool) -> Deferred[DatasetInfo]:
        """
        Make the dataset's mounted filesystem read-only, or writable again.

        See "Read-only datasets" in the module docstring.  Idempotent:
        setting the flag it already has changes nothing.

        :return: The new :class:`DatasetInfo` (its ``read_only`` is
            ``read_only``).  Fails, changing nothing, with
            :class:`UnknownDataset`, or with :class:`DatasetBusy` where the
            backend must remount and a process holds a file of the dataset
            open for writing.
        """

    def snapshot(dataset_id: str, name: str) -> Deferred[SnapshotInfo]:
        """
        Take a snapshot of the dataset's current contents.

        :return: The new :class:`SnapshotInfo`; fails with
            :class:`UnknownDataset` or :class:`SnapshotExists`.
        """

    def list_snapshots(dataset_id: str) -> Deferred[list[SnapshotInfo]]:
        """The dataset's snapshots, oldest first, or :class:`UnknownDataset`."""

    def rollback(dataset_id: str, name: str) -> Deferred[None]:
        """
        Return the dataset's contents to snapshot ``name``.

        Snapshots newer than ``name`` and changes made since it are
        discarded.  Fails, changing nothing, with :class:`UnknownDataset`,
        :class:`UnknownSnapshot`, or :class:`DependentClones`.
        """

    def set_aside(dataset_id: str, name: str, base: str) -> Deferred[SnapshotInfo]:
        """
        Keep the dataset's current contents as the set-aside snapshot
        ``name``, and return the dataset to its snapshot ``base``,
        destroying nothing.

        This is how a primary superseded by a failover rejoins as a
        replica: what it wrote after ``base`` (the newest snapshot it
        shares with the new primary), snapshotted or not, is kept, and the
        dataset can then receive an incremental stream from ``base``.

        Afterwards the dataset's contents and :meth:`list_snapshots` are
        what :meth:`rollback` to ``base`` would leave; the set-aside
        snapshot (the contents at the time of the call) is listed by
        :meth:`list_set_aside`, never by :meth:`list_snapshots`, survives
        later receives, rollbacks and snapshot pruning, and goes only when
        the dataset is destroyed.

        Where ``clones_depend_on_origin``, a clone of a set-aside snapshot
        depends on the dataset: :meth:`destroy` fails with
        :class:`DependentClones` until the clone is gone.

        :return: The set-aside :class:`SnapshotInfo`; fails, changing
            nothing, with :class:`UnknownDataset`, :class:`UnknownSnapshot`
            (no snapshot ``base``), :class:`SnapshotExists` (``name`` is a
            snapshot or set-aside snapshot already) or :class:`InvalidName`.
        """

    def list_set_aside(dataset_id: str) -> Deferred[list[SnapshotInfo]]:
        """
        The dataset's set-aside snapshots (see :meth:`set_aside`), oldest
        first, or :class:`UnknownDataset`.
        """

    def destroy_snapshot(dataset_id: str, name: str) -> Deferred[None]:
        """
        Destroy one snapshot; the dataset's contents are unchanged.

        Idempotent: an unknown snapshot or dataset is not an error.  Fails
        with :class:`DependentClones` if a clone depends on it.  The
        dataset's own set-aside snapshots are not clones: a snapshot they
        still need (the ``base`` of a :meth:`set_aside`, where
        ``clones_depend_on_origin``) is no longer listed and its blocks are
        kept until the dataset is destroyed.
        """

    def clone(
        dataset_id: str, snapshot: str, new_dataset_id: str
    ) -> Deferred[DatasetInfo]:
        """
        Create a new dataset whose contents are those of a snapshot, or of
        a set-aside snapshot (see :meth:`set_aside`; a snapshot of that name
        comes first) — how an operator looks at what was set aside.

        The clone is independent: writes to either do not show in the
        other.  It is writable (even if the origin is read-only), has no
        snapshots and the default maximum size (where the
        size is part of the data, as with loopback images, the origin's).
        Fails
        with :class:`UnknownDataset`, :class:`UnknownSnapshot` or
        :class:`DatasetExists` (for ``new_dataset_id``).
        """

    def send(
        dataset_id: str, snapshot: str, base: str | None = None
    ) -> Deferred[IStreamSource]:
        """
        Prepare the stream of a snapshot, full or since ``base``.

        :return: An :class:`IStreamSource` (not yet started).  Fails with
            :class:`UnknownDataset`, :class:`UnknownSnapshot` (for either
            name) or :class:`InvalidBase` if ``base`` is not older than
            ``snapshot``.
        """

    def receive(
        dataset_id: str, base: str | None = None, replace: bool = False
    ) -> Deferred[IStreamSink]:
        """
        Prepare to receive a stream into a dataset.

        With ``base=None`` (a full stream) the dataset must not exist, else
        :class:`DatasetExists`, unless ``replace`` is true: then an
        existing dataset is replaced on a successful ``finish`` (see
        "Replacing a copy" in the module docstring), and a missing one is
        created as by a plain full receive.  With a base, the dataset must
        exist and have that snapshot, else :class:`UnknownDataset` /
        :class:`UnknownSnapshot`; ``replace`` with a base is refused with
        :class:`InvalidBase` (an incremental stream never replaces a
        copy), and a ``replace`` that is not a bool with
        :class:`InvalidName`.  The dataset is unchanged until
        :meth:`IStreamSink.finish` succeeds.
        """
