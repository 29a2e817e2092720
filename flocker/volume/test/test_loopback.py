"""The loopback backend passes the IVolumeBackend contract with real loop devices."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest
from twisted.internet import reactor

from ..loopback import LoopbackVolumeBackend
from ..testtools import FilesystemHarness, MiB, make_volume_backend_tests

pytestmark = pytest.mark.functional


def release_loop_devices(root: str) -> None:
    """Unmount and detach whatever a test left under ``root`` (a safety net)."""
    with open("/proc/self/mounts") as f:
        mounts = [line.split()[1] for line in f]
    for mount in mounts:
        if mount.startswith(root + os.sep):
            subprocess.run(["umount", "-l", mount], capture_output=True)
    listed = subprocess.run(["losetup", "-a"], capture_output=True, text=True)
    for line in listed.stdout.splitlines():
        if root in line:
            subprocess.run(["losetup", "-d", line.split(":", 1)[0]], capture_output=True)


def loopback_harness(request: pytest.FixtureRequest) -> FilesystemHarness:
    """Each backend instance gets its own root; images are 64 MiB."""
    if os.geteuid() != 0:
        pytest.skip("the loopback backend needs root for losetup and mount")
    tmp_path = request.getfixturevalue("tmp_path")
    request.addfinalizer(lambda: release_loop_devices(str(tmp_path)))
    made: list[None] = []

    async def make() -> LoopbackVolumeBackend:
        made.append(None)
        return LoopbackVolumeBackend(
            reactor, str(tmp_path / f"node{len(made)}"), default_maximum_size=64 * MiB
        )

    return FilesystemHarness(make)


_Contract: Any = make_volume_backend_tests(loopback_harness)


class TestLoopbackVolumeBackend(_Contract):
    """LoopbackVolumeBackend against the contract."""
