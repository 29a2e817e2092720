"""
What the parts of the :class:`IVolumeBackend` contract share: the ids and
sizes they use, the harness protocol, and helpers to move stream bytes and
to expect failures.

:mod:`flocker.volume.testtools` builds the contract's test class from the
parts (``_read_only_contract``, ``_replace_contract``, ``_set_aside_contract``,
``_recover_contract``), which import only this module, not ``testtools``;
``testtools`` offers these names to other tests too.
"""

from __future__ import annotations

from typing import Any, Protocol

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer
from zope.interface import implementer

from ._interface import DatasetInfo, IStreamSink, IStreamSource, IVolumeBackend

MiB = 1024 * 1024

Files = dict[str, bytes]


@implementer(IConsumer)
class BytesConsumer:
    """
    A consumer that keeps what it is given, optionally pausing its producer.

    :ivar chunks: Everything written, in order.
    :ivar producer: The registered producer, if any.
    """

    def __init__(self, pause_after: int | None = None) -> None:
        """:param pause_after: Pause the producer after this many writes."""
        self.chunks: list[bytes] = []
        self.producer: Any = None
        self.unregistered = False
        self._pause_after = pause_after

    def registerProducer(self, producer: Any, streaming: bool) -> None:  # noqa: N802
        """Remember the producer."""
        self.producer = producer

    def unregisterProducer(self) -> None:  # noqa: N802
        """Note that the producer is done."""
        self.producer = None
        self.unregistered = True

    def write(self, data: bytes) -> None:
        """Keep ``data``; pause the producer when told to."""
        self.chunks.append(bytes(data))
        if self._pause_after is not None and len(self.chunks) == self._pause_after:
            self.producer.pauseProducing()

    def value(self) -> bytes:
        """All the bytes written so far."""
        return b"".join(self.chunks)


async def stream_bytes(source: IStreamSource) -> bytes:
    """Run ``source`` to its end and return its bytes."""
    consumer = BytesConsumer()
    await source.start(consumer)
    return consumer.value()


def feed(sink: IStreamSink, data: bytes, chunk_size: int = 65536) -> None:
    """Write ``data`` into ``sink`` in chunks (no producer)."""
    for offset in range(0, len(data), chunk_size):
        sink.write(data[offset : offset + chunk_size])


def corrupt(data: bytes) -> bytes:
    """``data`` with bytes in its middle inverted."""
    middle = len(data) // 2
    spoiled = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    return data[:middle] + spoiled + data[middle + 16 :]


class VolumeHarness(Protocol):
    """What the contract suite needs beyond the interface."""

    async def make_backend(self) -> IVolumeBackend:
        """A new, empty backend instance (another "node")."""

    async def reopen(self, backend: IVolumeBackend) -> IVolumeBackend:
        """A new backend object on the same storage as ``backend``."""

    def write_file(
        self, backend: IVolumeBackend, info: DatasetInfo, path: str, data: bytes
    ) -> None:
        """Write a file into a dataset."""

    def delete_file(self, backend: IVolumeBackend, info: DatasetInfo, path: str) -> None:
        """Delete a file from a dataset."""

    def read_files(self, backend: IVolumeBackend, info: DatasetInfo) -> Files:
        """Every file of a dataset, by relative path."""

    async def cleanup(self) -> None:
        """Remove everything the backends made."""


ID1 = "6f2bb4a7-7c3a-4a7e-9b6e-0d1f1e7c2a01"
ID2 = "0b9c1f84-1d63-4fd0-8b5a-3cc0f9f6a702"
UNKNOWN = "e3b0c442-98fc-4c14-9afb-f4c8996fb924"


async def fails(deferred: Deferred[Any], error: type[BaseException]) -> BaseException:
    """Await ``deferred``, which must fail with ``error``; the exception."""
    with pytest.raises(error) as caught:
        await deferred
    return caught.value


async def snapshot_names(backend: IVolumeBackend, dataset_id: str) -> list[str]:
    """The names of a dataset's snapshots, oldest first."""
    return [s.name for s in await backend.list_snapshots(dataset_id)]
