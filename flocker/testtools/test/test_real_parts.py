"""
Functional tests: the real ZFS and Docker that Flocker drives, driven from
Flocker's own code (``run_command``, ``retry_failure``) and fixtures.
"""

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred

from flocker.common import CommandFailed, CommandResult, retry_failure, run_command
from flocker.testtools.images import BUSYBOX_IMAGE, ensure_busybox_image
from flocker.testtools.zfs import FilePool, create_pool, destroy_pool

pytestmark = pytest.mark.functional


def zfs(*args: str) -> Deferred[CommandResult]:
    """Run ``zfs`` with ``args`` through Flocker's command helper."""
    return run_command(reactor, ["zfs", *args])


def busy(error: BaseException) -> bool:
    """Whether a failed zfs command says the dataset is busy (zfs-fuse)."""
    return isinstance(error, CommandFailed) and b"busy" in error.stderr


def destroy(name: str, *flags: str) -> Deferred[CommandResult]:
    """Destroy a dataset, retrying through zfs-fuse's "dataset is busy"."""
    return retry_failure(
        reactor,
        lambda: zfs("destroy", *flags, name),
        expected=(CommandFailed,),
        should_retry=busy,
        steps=[0.1] * 50,
    )


@pytest_twisted.ensureDeferred
async def test_create_snapshot_clone_destroy(zfs_pool: FilePool) -> None:
    """A dataset, a snapshot of it and a clone work and are independent."""
    origin = f"{zfs_pool.name}/origin"
    await zfs("create", origin)
    answer = await zfs("get", "-Hp", "-o", "value", "mountpoint", origin)
    mount = answer.stdout.decode().strip()
    with open(os.path.join(mount, "data"), "w") as handle:
        handle.write("before")
    await zfs("snapshot", f"{origin}@s1")
    with open(os.path.join(mount, "data"), "w") as handle:
        handle.write("after")
    await zfs("clone", f"{origin}@s1", f"{zfs_pool.name}/copy")
    copy_mount = os.path.join(zfs_pool.mountpoint, "copy")
    with open(os.path.join(copy_mount, "data")) as handle:
        assert handle.read() == "before"
    with open(os.path.join(copy_mount, "extra"), "w") as handle:
        handle.write("only in the clone")
    assert not os.path.exists(os.path.join(mount, "extra"))

    await destroy(f"{zfs_pool.name}/copy")
    await destroy(origin, "-r")
    listing = (await zfs("list", "-H", "-o", "name", "-r", zfs_pool.name)).stdout
    assert listing.decode().split() == [zfs_pool.name]


@pytest_twisted.ensureDeferred
async def test_destroy_busy_dataset_retried(zfs_pool: FilePool) -> None:
    """
    Destroying a dataset that a process holds open fails with "busy" while it
    is held, and the retry succeeds once the process lets go.
    """
    name = f"{zfs_pool.name}/held"
    await zfs("create", name)
    holder = subprocess.Popen(
        ["sh", "-c", "exec 3>data; exec sleep 30"],
        cwd=os.path.join(zfs_pool.mountpoint, "held"),
    )
    try:
        with pytest.raises(CommandFailed) as info:
            await zfs("destroy", name)
        assert busy(info.value)
        retried = destroy(name)
        reactor.callLater(0.3, holder.kill)
        await retried
    finally:
        holder.kill()
        holder.wait()
    result = await run_command(reactor, ["zfs", "list", name], check=False)
    assert result.exit_code != 0


@pytest_twisted.ensureDeferred
async def test_unknown_dataset_error() -> None:
    """A zfs command on a missing dataset raises CommandFailed with its stderr."""
    with pytest.raises(CommandFailed) as info:
        await zfs("snapshot", "flocker-no-such-pool/x@y")
    assert b"does not exist" in info.value.stderr or b"no such" in info.value.stderr.lower()


def test_pool_fixture_leaves_nothing(tmp_path: Path) -> None:
    """create_pool/destroy_pool leave no pool, file or mountpoint behind."""
    pool = create_pool(str(tmp_path), size="256M")
    assert subprocess.run(["zpool", "list", pool.name]).returncode == 0
    destroy_pool(pool)
    assert subprocess.run(["zpool", "list", pool.name], capture_output=True).returncode != 0
    assert not os.path.exists(pool.image)
    assert not os.path.exists(pool.mountpoint)
    destroy_pool(pool)  # destroying again is harmless


def test_busybox_image_cached(docker_client: Any, busybox_image: str) -> None:
    """The busybox image exists and a second ensure finds it by tag."""
    assert busybox_image == BUSYBOX_IMAGE
    image_id = docker_client.images.get(busybox_image).id
    assert ensure_busybox_image(docker_client) == busybox_image
    assert docker_client.images.get(busybox_image).id == image_id


@pytest_twisted.ensureDeferred
async def test_container_writes_into_dataset(
    zfs_pool: FilePool,
    docker_client: Any,
    docker_test_labels: dict[str, str],
    busybox_image: str,
) -> None:
    """A container with a ZFS dataset bind-mounted writes a file we read back."""
    name = f"{zfs_pool.name}/app"
    await zfs("create", name)
    mount = os.path.join(zfs_pool.mountpoint, "app")
    output = docker_client.containers.run(
        busybox_image,
        ["sh", "-c", "echo written-by-container > /data/file; cat /data/file"],
        volumes={mount: {"bind": "/data", "mode": "rw"}},
        labels=docker_test_labels,
        remove=False,
    )
    assert output == b"written-by-container\n"
    with open(os.path.join(mount, "file")) as handle:
        assert handle.read() == "written-by-container\n"


def test_docker_fixture_removes_containers(docker_client: Any, busybox_image: str) -> None:
    """Containers a test labelled are gone after the fixture's clean-up."""
    from flocker.testtools.pytest_plugin import TEST_LABEL

    labels = {TEST_LABEL: "cleanup-check"}
    docker_client.containers.create(busybox_image, ["true"], labels=labels)
    for container in docker_client.containers.list(
        all=True, filters={"label": f"{TEST_LABEL}=cleanup-check"}
    ):
        container.remove(force=True)
    assert not docker_client.containers.list(
        all=True, filters={"label": f"{TEST_LABEL}=cleanup-check"}
    )
