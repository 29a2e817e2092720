"""
The contract every :class:`IVolumeBackend` passes, and stream test helpers.

:func:`make_volume_backend_tests` builds a pytest test class from a harness
factory; each backend (real and fake) subclasses it in one line.  A harness
makes backend instances (two of them act as two nodes for send/receive),
reopens a backend's storage with a new backend object (as a restarted agent
would), writes and reads the files of a dataset, and cleans up afterwards.

:class:`BytesConsumer`, :func:`stream_bytes` and :func:`feed` move stream
bytes in tests (of this package and of the transfer protocol).  They, the
harness protocol and the ids live in ``_contract_tools``, which the parts
of the contract (``_read_only_contract``, ``_recover_contract``,
``_replace_contract``, ``_set_aside_contract``, ``_stream_contract``)
import; this module imports the parts.
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IListeningPort
from twisted.internet.task import deferLater
from zope.interface.interface import Method
from zope.interface.verify import verifyObject

from ..transport.testtools import RecordingProducer
from ._contract_tools import (
    ID1,
    ID2,
    UNKNOWN,
    BytesConsumer,
    Files,
    MiB,
    VolumeHarness,
    corrupt,
    fails,
    feed,
    snapshot_names,
    stream_bytes,
)
from ._interface import (
    Capabilities,
    DatasetExists,
    DatasetInfo,
    DependentClones,
    InvalidName,
    IVolumeBackend,
    MaximumSizeTooSmall,
    ResizeNotSupported,
    SnapshotExists,
    UnknownDataset,
    UnknownSnapshot,
)
from ._lists_at_once_contract import ListsAtOnceContract
from ._read_only_contract import ReadOnlyContract
from ._recover_contract import RecoverContract
from ._replace_contract import ReplaceContract
from ._set_aside_contract import SetAsideContract
from ._stream_contract import StreamContract
from .memory import MemoryVolumeBackend

__all__ = [
    "ID1",
    "ID2",
    "UNKNOWN",
    "BytesConsumer",
    "FilesystemHarness",
    "Files",
    "MemoryHarness",
    "MiB",
    "RecordingProducer",
    "VolumeHarness",
    "corrupt",
    "feed",
    "make_volume_backend_tests",
    "port_number",
    "stop_listening",
    "stream_bytes",
]


def port_number(port: IListeningPort) -> int:
    """The TCP port number a transfer receiver's ``port`` listens on."""
    address = port.getHost()
    assert isinstance(address, IPv4Address | IPv6Address), address
    return address.port


async def stop_listening(port: IListeningPort) -> None:
    """Stop ``port`` listening; return once it has."""
    await maybeDeferred(port.stopListening)


# --------------------------------------------------------------------------
# Harnesses


class MemoryHarness:
    """Harness for :class:`MemoryVolumeBackend`."""

    async def make_backend(self) -> IVolumeBackend:
        """A new in-memory backend."""
        return MemoryVolumeBackend()

    async def reopen(self, backend: IVolumeBackend) -> IVolumeBackend:
        """A new in-memory backend over the same datasets."""
        assert isinstance(backend, MemoryVolumeBackend)
        return backend.reopened()

    def write_file(
        self, backend: IVolumeBackend, info: DatasetInfo, path: str, data: bytes
    ) -> None:
        """Write through the fake's own API."""
        assert isinstance(backend, MemoryVolumeBackend)
        backend.write_file(info.dataset_id, path, data)

    def delete_file(self, backend: IVolumeBackend, info: DatasetInfo, path: str) -> None:
        """Delete through the fake's own API."""
        assert isinstance(backend, MemoryVolumeBackend)
        backend.delete_file(info.dataset_id, path)

    def read_files(self, backend: IVolumeBackend, info: DatasetInfo) -> Files:
        """Read through the fake's own API."""
        assert isinstance(backend, MemoryVolumeBackend)
        return backend.read_files(info.dataset_id)

    async def cleanup(self) -> None:
        """Nothing to clean."""


class FilesystemHarness:
    """Harness for backends whose datasets are mounted filesystems."""

    def __init__(
        self,
        make: Callable[[], Awaitable[IVolumeBackend]],
        cleanup: Callable[[list[IVolumeBackend]], Awaitable[None]] | None = None,
        *,
        reopen: Callable[[IVolumeBackend], Awaitable[IVolumeBackend]],
    ) -> None:
        """
        :param make: Makes a new backend instance.
        :param cleanup: Called with every backend made, after the test.
        :param reopen: Makes a new backend object on the storage of one
            that ``make`` made (same pool, same root directory).
        """
        self._make = make
        self._reopen = reopen
        self._cleanup = cleanup
        self.backends: list[IVolumeBackend] = []

    async def make_backend(self) -> IVolumeBackend:
        """A new backend from the factory."""
        backend = await self._make()
        self.backends.append(backend)
        return backend

    async def reopen(self, backend: IVolumeBackend) -> IVolumeBackend:
        """A new backend object on ``backend``'s storage."""
        again = await self._reopen(backend)
        self.backends.append(again)
        return again

    def write_file(
        self, backend: IVolumeBackend, info: DatasetInfo, path: str, data: bytes
    ) -> None:
        """Write under the dataset's mount path."""
        full = os.path.join(info.path, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(data)

    def delete_file(self, backend: IVolumeBackend, info: DatasetInfo, path: str) -> None:
        """Delete under the dataset's mount path."""
        os.remove(os.path.join(info.path, path))

    def read_files(self, backend: IVolumeBackend, info: DatasetInfo) -> Files:
        """Read every regular file under the mount path (not ext4's lost+found)."""
        files: Files = {}
        for directory, subdirs, names in os.walk(info.path):
            if directory == info.path and "lost+found" in subdirs:
                subdirs.remove("lost+found")
            for name in names:
                full = os.path.join(directory, name)
                with open(full, "rb") as f:
                    files[os.path.relpath(full, info.path)] = f.read()
        return files

    async def cleanup(self) -> None:
        """Destroy every dataset the backends have, then the custom clean-up."""
        try:
            for backend in self.backends:
                for info in await backend.list_datasets():
                    try:
                        await backend.destroy(info.dataset_id)
                    except DependentClones:
                        pass
                for info in await backend.list_datasets():
                    await backend.destroy(info.dataset_id)
        finally:
            if self._cleanup is not None:
                await self._cleanup(self.backends)


# --------------------------------------------------------------------------
# The contract

async def _wait_used(
    backend: IVolumeBackend, dataset_id: str, at_least: int
) -> DatasetInfo:
    """
    Wait (up to ~20 s) for ``used`` to show writes.

    ZFS counts writes when it commits a transaction group, which a snapshot
    forces; so one is taken first.
    """
    from twisted.internet import reactor

    await backend.snapshot(dataset_id, "count-used")
    for _ in range(100):
        info = await backend.get(dataset_id)
        if info.used >= at_least:
            return info
        await deferLater(reactor, 0.2, lambda: None)
    return info


def make_volume_backend_tests(
    make_harness: Callable[[pytest.FixtureRequest], VolumeHarness],
    lists_at_once: bool = False,
) -> type:
    """
    Build the test class every ``IVolumeBackend`` provider passes.

    :param make_harness: Called with pytest's ``request`` for each test (so
        it can use fixtures such as ``make_zfs_pool`` or ``tmp_path``);
        returns a :class:`VolumeHarness`.
    :param lists_at_once: The backend provides ``IListsSnapshotsAtOnce``:
        its contract (``ListsAtOnceContract``) is part of the class.
    """
    optional: tuple[type, ...] = (ListsAtOnceContract,) if lists_at_once else ()

    class _StateContracts(ReadOnlyContract, RecoverContract, *optional):  # type: ignore[misc]
        """What a dataset's flag is, and what ``recover`` keeps (and the optional parts)."""

    class _CopyContracts(ReplaceContract, SetAsideContract):
        """How copies of a dataset are replaced, or set their contents aside."""

    class _StreamContracts(StreamContract, _CopyContracts):
        """How streams make copies of a dataset on another backend, and more."""

    class VolumeBackendTests(_StateContracts, _StreamContracts):
        """
        The IVolumeBackend contract (read-only datasets, ``recover``,
        streams, replacing full receives and set-aside snapshots: the base
        classes).
        """

        @pytest_twisted.async_yield_fixture
        async def harness(self, request: pytest.FixtureRequest, eliot_logger: Any) -> Any:
            """A harness for the test; cleaned up afterwards; logs validated."""
            harness = make_harness(request)
            yield harness
            await harness.cleanup()

        @pytest_twisted.async_fixture
        async def backend(self, harness: VolumeHarness) -> IVolumeBackend:
            """One backend instance."""
            return await harness.make_backend()

        @pytest_twisted.async_fixture
        async def origin(
            self, harness: VolumeHarness, backend: IVolumeBackend
        ) -> DatasetInfo:
            """A dataset with two files and snapshot ``s1`` of them."""
            info = await backend.create(ID1)
            harness.write_file(backend, info, "a.txt", b"alpha")
            harness.write_file(backend, info, "dir/b.bin", os.urandom(MiB))
            await backend.snapshot(ID1, "s1")
            return info

        # -- basics ----------------------------------------------------------

        @pytest_twisted.ensureDeferred
        async def test_interface(self, backend: IVolumeBackend) -> None:
            """The backend provides IVolumeBackend and describes itself."""
            assert verifyObject(IVolumeBackend, backend)
            assert isinstance(backend.capabilities, Capabilities)
            # verifyObject cannot see through a decorator's wrapper; the
            # signature (of the method it wraps) takes the interface's
            # arguments.
            for name, description in IVolumeBackend.namesAndDescriptions():
                if isinstance(description, Method):
                    parameters = inspect.signature(getattr(backend, name)).parameters
                    assert list(parameters) == list(description.positional), name

        @pytest_twisted.ensureDeferred
        async def test_create(self, backend: IVolumeBackend) -> None:
            """A created dataset is empty, listed and found by ``get``."""
            info = await backend.create(ID1.upper())
            assert info.dataset_id == ID1
            assert info.read_only is False
            assert info.maximum_size == backend.capabilities.default_maximum_size
            assert await backend.get(ID1) == info
            assert [d.dataset_id for d in await backend.list_datasets()] == [ID1]
            assert await backend.list_snapshots(ID1) == []

        @pytest_twisted.ensureDeferred
        async def test_list_sorted(self, backend: IVolumeBackend) -> None:
            """Datasets are listed sorted by id."""
            await backend.create(ID1)
            await backend.create(ID2)
            listed = [d.dataset_id for d in await backend.list_datasets()]
            assert listed == sorted([ID1, ID2])

        @pytest_twisted.ensureDeferred
        async def test_create_existing(
            self, harness: VolumeHarness, backend: IVolumeBackend, origin: DatasetInfo
        ) -> None:
            """Creating an existing dataset fails and leaves its data alone."""
            before = harness.read_files(backend, origin)
            await fails(backend.create(ID1), DatasetExists)
            assert harness.read_files(backend, await backend.get(ID1)) == before
            assert await snapshot_names(backend, ID1) == ["s1"]

        @pytest_twisted.ensureDeferred
        async def test_invalid_names(self, backend: IVolumeBackend) -> None:
            """Ids that are not UUIDs and bad snapshot names are refused."""
            await fails(backend.create("not-a-uuid"), InvalidName)
            await fails(backend.create(ID1, maximum_size=-1), InvalidName)
            await fails(backend.set_read_only("not-a-uuid", True), InvalidName)
            await backend.create(ID1)
            await fails(backend.set_read_only(ID1, "yes"), InvalidName)  # type: ignore[arg-type]
            for name in ["", "-x", "a/b", "a@b", "a b", "x" * 300]:
                await fails(backend.snapshot(ID1, name), InvalidName)
            assert await backend.list_snapshots(ID1) == []

        @pytest_twisted.ensureDeferred
        async def test_destroy(self, backend: IVolumeBackend, origin: DatasetInfo) -> None:
            """Destroy removes a dataset; it is idempotent."""
            await backend.destroy(ID1)
            assert await backend.list_datasets() == []
            await fails(backend.get(ID1), UnknownDataset)
            await backend.destroy(ID1)
            await backend.destroy(UNKNOWN)
            info = await backend.create(ID1)
            assert await backend.list_snapshots(ID1) == []
            assert info.dataset_id == ID1

        @pytest_twisted.ensureDeferred
        async def test_unknown_dataset(self, backend: IVolumeBackend) -> None:
            """Operations on an unknown dataset fail with UnknownDataset."""
            calls: list[Callable[[], Deferred[Any]]] = [
                lambda: backend.get(UNKNOWN),
                lambda: backend.set_maximum_size(UNKNOWN, 64 * MiB),
                lambda: backend.set_read_only(UNKNOWN, True),
                lambda: backend.set_read_only(UNKNOWN, False),
                lambda: backend.snapshot(UNKNOWN, "s"),
                lambda: backend.list_snapshots(UNKNOWN),
                lambda: backend.rollback(UNKNOWN, "s"),
                lambda: backend.clone(UNKNOWN, "s", ID2),
                lambda: backend.send(UNKNOWN, "s"),
                lambda: backend.receive(UNKNOWN, base="s"),
            ]
            for call in calls:
                await fails(call(), UnknownDataset)
            await backend.destroy_snapshot(UNKNOWN, "s")
            assert await backend.list_datasets() == []

        @pytest_twisted.ensureDeferred
        async def test_unknown_snapshot(
            self, backend: IVolumeBackend, origin: DatasetInfo
        ) -> None:
            """Operations naming an unknown snapshot fail with UnknownSnapshot."""
            calls: list[Callable[[], Deferred[Any]]] = [
                lambda: backend.rollback(ID1, "nope"),
                lambda: backend.clone(ID1, "nope", ID2),
                lambda: backend.send(ID1, "nope"),
                lambda: backend.send(ID1, "s1", base="nope"),
                lambda: backend.receive(ID1, base="nope"),
            ]
            for call in calls:
                await fails(call(), UnknownSnapshot)
            await backend.destroy_snapshot(ID1, "nope")
            assert await snapshot_names(backend, ID1) == ["s1"]
            assert [d.dataset_id for d in await backend.list_datasets()] == [ID1]

        # -- sizes -----------------------------------------------------------

        @pytest_twisted.ensureDeferred
        async def test_maximum_size(self, backend: IVolumeBackend) -> None:
            """A maximum size given at creation is reported."""
            info = await backend.create(ID1, maximum_size=64 * MiB)
            assert info.maximum_size == 64 * MiB
            assert (await backend.get(ID1)).maximum_size == 64 * MiB

        @pytest_twisted.ensureDeferred
        async def test_grow(self, harness: VolumeHarness, backend: IVolumeBackend) -> None:
            """The maximum size grows where the backend can, else it is refused."""
            info = await backend.create(ID1, maximum_size=64 * MiB)
            harness.write_file(backend, info, "kept", b"data survives resizing")
            change = backend.set_maximum_size(ID1, 96 * MiB)
            if backend.capabilities.grow:
                assert (await change).maximum_size == 96 * MiB
                assert (await backend.get(ID1)).maximum_size == 96 * MiB
            else:
                await fails(change, ResizeNotSupported)
                assert (await backend.get(ID1)).maximum_size == 64 * MiB
            info = await backend.get(ID1)
            assert harness.read_files(backend, info) == {
                "kept": b"data survives resizing"
            }

        @pytest_twisted.ensureDeferred
        async def test_shrink(self, harness: VolumeHarness, backend: IVolumeBackend) -> None:
            """Shrinking works where the backend can, never below what is used."""
            info = await backend.create(ID1, maximum_size=64 * MiB)
            data = os.urandom(3 * MiB)
            harness.write_file(backend, info, "big", data)
            await _wait_used(backend, ID1, 3 * MiB)
            await backend.destroy_snapshot(ID1, "count-used")
            smaller = backend.set_maximum_size(ID1, 48 * MiB)
            if backend.capabilities.shrink:
                assert (await smaller).maximum_size == 48 * MiB
                await fails(backend.set_maximum_size(ID1, MiB), MaximumSizeTooSmall)
                assert (await backend.get(ID1)).maximum_size == 48 * MiB
            else:
                await fails(smaller, ResizeNotSupported)
                assert (await backend.get(ID1)).maximum_size == 64 * MiB
            assert harness.read_files(backend, info) == {"big": data}

        @pytest_twisted.ensureDeferred
        async def test_unlimited(self, backend: IVolumeBackend) -> None:
            """Removing the limit works where the backend allows no limit."""
            await backend.create(ID1, maximum_size=64 * MiB)
            change = backend.set_maximum_size(ID1, None)
            if backend.capabilities.unlimited:
                assert (await change).maximum_size is None
            else:
                await fails(change, ResizeNotSupported)
                assert (await backend.get(ID1)).maximum_size == 64 * MiB

        @pytest_twisted.ensureDeferred
        async def test_used(self, harness: VolumeHarness, backend: IVolumeBackend) -> None:
            """``used`` counts the bytes written."""
            info = await backend.create(ID1)
            harness.write_file(backend, info, "f", os.urandom(2 * MiB))
            assert (await _wait_used(backend, ID1, 2 * MiB)).used >= 2 * MiB

        @pytest_twisted.ensureDeferred
        async def test_maximum_size_enforced(
            self, harness: VolumeHarness, backend: IVolumeBackend
        ) -> None:
            """Where claimed, writing far beyond the maximum size fails."""
            info = await backend.create(ID1, maximum_size=8 * MiB)
            data = os.urandom(24 * MiB)
            if backend.capabilities.enforces_maximum_size:
                with pytest.raises(OSError):
                    harness.write_file(backend, info, "big", data)
            else:
                harness.write_file(backend, info, "big", data)
                assert harness.read_files(backend, info) == {"big": data}

        # -- snapshots -------------------------------------------------------

        @pytest_twisted.ensureDeferred
        async def test_snapshots_ordered(self, backend: IVolumeBackend) -> None:
            """Snapshots are listed oldest first with their creation times."""
            before = time.time()
            await backend.create(ID1)
            names = ["s1", "b2", "a3", "z4"]
            taken = [await backend.snapshot(ID1, name) for name in names]
            after = time.time()
            listed = await backend.list_snapshots(ID1)
            assert [s.name for s in listed] == names
            assert [s.name for s in taken] == names
            times = [s.created for s in listed]
            assert times == sorted(times)
            assert before - 2 <= times[0] and times[-1] <= after + 2

        @pytest_twisted.ensureDeferred
        async def test_snapshot_exists(
            self, backend: IVolumeBackend, origin: DatasetInfo
        ) -> None:
            """A second snapshot of the same name is refused."""
            await fails(backend.snapshot(ID1, "s1"), SnapshotExists)
            assert await snapshot_names(backend, ID1) == ["s1"]

        @pytest_twisted.ensureDeferred
        async def test_rollback(
            self, harness: VolumeHarness, backend: IVolumeBackend, origin: DatasetInfo
        ) -> None:
            """Rollback restores a snapshot and discards later snapshots and data."""
            expected = harness.read_files(backend, origin)
            harness.write_file(backend, origin, "a.txt", b"changed")
            harness.write_file(backend, origin, "new", b"new")
            await backend.snapshot(ID1, "s2")
            harness.delete_file(backend, origin, "dir/b.bin")
            await backend.snapshot(ID1, "s3")
            harness.write_file(backend, origin, "unsaved", b"x")
            await backend.rollback(ID1, "s1")
            info = await backend.get(ID1)
            assert harness.read_files(backend, info) == expected
            assert await snapshot_names(backend, ID1) == ["s1"]

        @pytest_twisted.ensureDeferred
        async def test_rollback_latest(
            self, harness: VolumeHarness, backend: IVolumeBackend, origin: DatasetInfo
        ) -> None:
            """Rolling back to the newest snapshot discards unsaved changes only."""
            expected = harness.read_files(backend, origin)
            harness.write_file(backend, origin, "a.txt", b"changed")
            await backend.rollback(ID1, "s1")
            assert harness.read_files(backend, await backend.get(ID1)) == expected
            assert await snapshot_names(backend, ID1) == ["s1"]

        @pytest_twisted.ensureDeferred
        async def test_destroy_snapshot(
            self, harness: VolumeHarness, backend: IVolumeBackend, origin: DatasetInfo
        ) -> None:
            """Destroying a snapshot keeps the data and the other snapshots."""
            harness.write_file(backend, origin, "c", b"c")
            await backend.snapshot(ID1, "s2")
            expected = harness.read_files(backend, origin)
            await backend.destroy_snapshot(ID1, "s1")
            await backend.destroy_snapshot(ID1, "s1")
            assert await snapshot_names(backend, ID1) == ["s2"]
            assert harness.read_files(backend, await backend.get(ID1)) == expected

        # -- clones ----------------------------------------------------------

        @pytest_twisted.ensureDeferred
        async def test_clone(
            self, harness: VolumeHarness, backend: IVolumeBackend, origin: DatasetInfo
        ) -> None:
            """A clone has the snapshot's contents and is independent."""
            expected = harness.read_files(backend, origin)
            harness.write_file(backend, origin, "later", b"not in s1")
            clone = await backend.clone(ID1, "s1", ID2)
            assert clone.dataset_id == ID2
            assert clone.path != origin.path
            assert harness.read_files(backend, clone) == expected
            assert await backend.list_snapshots(ID2) == []
            harness.write_file(backend, clone, "a.txt", b"clone's")
            harness.write_file(backend, origin, "dir/b.bin", b"origin's")
            assert harness.read_files(backend, clone)["a.txt"] == b"clone's"
            assert harness.read_files(backend, origin)["a.txt"] == b"alpha"
            assert harness.read_files(backend, clone)["dir/b.bin"] != b"origin's"
            listed = [d.dataset_id for d in await backend.list_datasets()]
            assert listed == sorted([ID1, ID2])
            await fails(backend.clone(ID1, "s1", ID2), DatasetExists)

        @pytest_twisted.ensureDeferred
        async def test_clone_origin_destroyed(
            self, harness: VolumeHarness, backend: IVolumeBackend, origin: DatasetInfo
        ) -> None:
            """Destroying a clone's origin is refused or leaves the clone intact."""
            expected = harness.read_files(backend, origin)
            clone = await backend.clone(ID1, "s1", ID2)
            if backend.capabilities.clones_depend_on_origin:
                await fails(backend.destroy(ID1), DependentClones)
                await fails(backend.destroy_snapshot(ID1, "s1"), DependentClones)
                assert await snapshot_names(backend, ID1) == ["s1"]
                assert harness.read_files(backend, origin) == expected
                await backend.destroy(ID2)
                await backend.destroy(ID1)
            else:
                await backend.destroy(ID1)
                assert harness.read_files(backend, clone) == expected
            assert [d.dataset_id for d in await backend.list_datasets()] == (
                [] if backend.capabilities.clones_depend_on_origin else [ID2]
            )

    return VolumeBackendTests
