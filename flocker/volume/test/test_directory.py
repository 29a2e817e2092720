"""The directory backend passes the IVolumeBackend contract on a real disk."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import reactor

from ..directory import DirectoryVolumeBackend
from ..testtools import FilesystemHarness, make_volume_backend_tests

pytestmark = pytest.mark.functional


def directory_harness(request: pytest.FixtureRequest) -> FilesystemHarness:
    """Each backend instance gets its own root under the test's tmp_path."""
    tmp_path = request.getfixturevalue("tmp_path")
    made: list[None] = []

    async def make() -> DirectoryVolumeBackend:
        made.append(None)
        return DirectoryVolumeBackend(reactor, str(tmp_path / f"node{len(made)}"))

    return FilesystemHarness(make)


_Contract: Any = make_volume_backend_tests(directory_harness)


class TestDirectoryVolumeBackend(_Contract):
    """DirectoryVolumeBackend against the contract."""
