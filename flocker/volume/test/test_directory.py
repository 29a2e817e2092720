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


class TestDirectoryVolumeBackend(_Contract):  # type: ignore[misc]  # made at runtime
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


ID1 = "6f2bb4a7-7c3a-4a7e-9b6e-0d1f1e7c2a01"


async def _dataset_with(backend: DirectoryVolumeBackend, content: bytes) -> str:
    """Create ``ID1`` holding the file ``f`` with ``content``; its path."""
    info = await backend.create(ID1)
    with open(os.path.join(info.path, "f"), "wb") as f:
        f.write(content)
    return info.path


def _content(path: str) -> bytes:
    """The contents of the file ``f`` of a dataset at ``path``."""
    with open(os.path.join(path, "f"), "rb") as f:
        return f.read()


@pytest_twisted.ensureDeferred
async def test_replacing_receive_leaves_nothing_in_tmp(tmp_path: Any) -> None:
    """A replacing receive swaps the dataset and leaves nothing under tmp/."""
    sender = DirectoryVolumeBackend(reactor, str(tmp_path / "sender"))
    receiver = DirectoryVolumeBackend(reactor, str(tmp_path / "receiver"))
    await _dataset_with(sender, b"new")
    await sender.snapshot(ID1, "s1")
    path = await _dataset_with(receiver, b"old")
    sink = await receiver.receive(ID1, replace=True)
    await (await sender.send(ID1, "s1")).start(sink)
    await sink.finish()
    assert _content(path) == b"new"
    assert os.listdir(tmp_path / "receiver" / "tmp") == []


@pytest_twisted.ensureDeferred
async def test_recover_puts_back_copy_left_aside(tmp_path: Any) -> None:
    """
    A replacement cut short after the old dataset stepped aside to
    ``tmp/old-<id>`` (where renameat2 cannot exchange) and before the new
    one moved in: ``recover`` renames the old one back and deletes the new.
    """
    backend = DirectoryVolumeBackend(reactor, str(tmp_path))
    path = await _dataset_with(backend, b"old")
    os.rename(tmp_path / "datasets" / ID1, tmp_path / "tmp" / f"old-{ID1}")
    (tmp_path / "tmp" / "new-copy" / "data").mkdir(parents=True)
    assert await backend.list_datasets() == []
    await DirectoryVolumeBackend(reactor, str(tmp_path)).recover()
    assert [d.dataset_id for d in await backend.list_datasets()] == [ID1]
    assert _content(path) == b"old"
    assert os.listdir(tmp_path / "tmp") == []


@pytest_twisted.ensureDeferred
async def test_recover_drops_old_copy_once_new_is_in(tmp_path: Any) -> None:
    """
    A replacement cut short after the new dataset moved in, with the old
    one still at ``tmp/old-<id>``: ``recover`` keeps the new one.
    """
    backend = DirectoryVolumeBackend(reactor, str(tmp_path))
    await _dataset_with(backend, b"old")
    os.rename(tmp_path / "datasets" / ID1, tmp_path / "tmp" / f"old-{ID1}")
    path = await _dataset_with(backend, b"new")
    await DirectoryVolumeBackend(reactor, str(tmp_path)).recover()
    assert [d.dataset_id for d in await backend.list_datasets()] == [ID1]
    assert _content(path) == b"new"
    assert os.listdir(tmp_path / "tmp") == []
