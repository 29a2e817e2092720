"""The directory backend passes the IVolumeBackend contract on a real disk."""

from __future__ import annotations

import os
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor

from .. import IVolumeBackend
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

    async def reopen(backend: IVolumeBackend) -> DirectoryVolumeBackend:
        assert isinstance(backend, DirectoryVolumeBackend)
        return DirectoryVolumeBackend(reactor, backend.root)

    return FilesystemHarness(make, reopen=reopen)


_Contract: Any = make_volume_backend_tests(directory_harness)


class TestDirectoryVolumeBackend(_Contract):
    """DirectoryVolumeBackend against the contract."""


@pytest_twisted.ensureDeferred
async def test_recover_removes_leftovers(tmp_path: Any) -> None:
    """``recover`` deletes what an interrupted receive left under tmp/."""
    backend = DirectoryVolumeBackend(reactor, str(tmp_path))
    await backend.create("6f2bb4a7-7c3a-4a7e-9b6e-0d1f1e7c2a01")
    sink = await backend.receive("0b9c1f84-1d63-4fd0-8b5a-3cc0f9f6a702")
    sink.write(b'{"half": "a header"')
    assert os.listdir(tmp_path / "tmp")
    await sink.abort()
    (tmp_path / "tmp" / "crashed-receive" / "tree").mkdir(parents=True)
    await DirectoryVolumeBackend(reactor, str(tmp_path)).recover()
    assert os.listdir(tmp_path / "tmp") == []
    listed = [d.dataset_id for d in await backend.list_datasets()]
    assert listed == ["6f2bb4a7-7c3a-4a7e-9b6e-0d1f1e7c2a01"]
