"""
Per-node storage for datasets and the snapshot streams between nodes.

:class:`IVolumeBackend` is what the node agents use; the backends are in
``flocker.volume.zfs``, ``flocker.volume.loopback``,
``flocker.volume.directory`` and (in memory, for tests of other packages)
``flocker.volume.memory``.
"""

from ._interface import (
    BadStream,
    Capabilities,
    DatasetBusy,
    DatasetExists,
    DatasetInfo,
    DependentClones,
    IEvictsCache,
    IListsSnapshotsAtOnce,
    InvalidBase,
    InvalidName,
    IReportsPoolSpace,
    IStreamSink,
    IStreamSource,
    IVolumeBackend,
    MaximumSizeTooSmall,
    PoolSpace,
    ResizeNotSupported,
    SendFailed,
    SnapshotExists,
    SnapshotInfo,
    StreamStopped,
    UnknownDataset,
    UnknownSnapshot,
    VolumeError,
)
from .directory import DirectoryVolumeBackend
from .loopback import LoopbackVolumeBackend
from .memory import MemoryVolumeBackend
from .zfs import ZFSVolumeBackend

__all__ = [
    "BadStream",
    "Capabilities",
    "DatasetBusy",
    "DatasetExists",
    "DatasetInfo",
    "DependentClones",
    "DirectoryVolumeBackend",
    "IEvictsCache",
    "IListsSnapshotsAtOnce",
    "IReportsPoolSpace",
    "IStreamSink",
    "IStreamSource",
    "IVolumeBackend",
    "InvalidBase",
    "InvalidName",
    "LoopbackVolumeBackend",
    "MaximumSizeTooSmall",
    "MemoryVolumeBackend",
    "PoolSpace",
    "ResizeNotSupported",
    "SendFailed",
    "SnapshotExists",
    "SnapshotInfo",
    "StreamStopped",
    "UnknownDataset",
    "UnknownSnapshot",
    "VolumeError",
    "ZFSVolumeBackend",
]
