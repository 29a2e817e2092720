"""The ZFS backend passes the IVolumeBackend contract on real zfs-fuse pools."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import reactor

from ..testtools import FilesystemHarness, make_volume_backend_tests
from ..zfs import ZFSVolumeBackend

pytestmark = pytest.mark.functional


def zfs_harness(request: pytest.FixtureRequest) -> FilesystemHarness:
    """Each backend instance gets its own fresh file-backed pool."""
    make_pool = request.getfixturevalue("make_zfs_pool")

    async def make() -> ZFSVolumeBackend:
        return ZFSVolumeBackend(reactor, make_pool(size="1G").name)

    return FilesystemHarness(make)


_Contract: Any = make_volume_backend_tests(zfs_harness)


class TestZFSVolumeBackend(_Contract):
    """ZFSVolumeBackend against the contract."""
