"""File-backed ZFS pools for tests, benchmarks and the local cluster.

A pool lives in a sparse file, so a test can have an 8 GiB pool for the cost
of the blocks it writes.  Names are unique per call, and :func:`destroy_pool`
retries through zfs-fuse's transient "busy" errors so nothing is left behind.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid

from pyrsistent import PClass, field


class FilePool(PClass):
    """
    A ZFS pool on a sparse file.

    :ivar name: The pool's name.
    :ivar image: The file backing the pool.
    :ivar mountpoint: Where the pool's root dataset is mounted.
    """

    name = field(type=str, mandatory=True)
    image = field(type=str, mandatory=True)
    mountpoint = field(type=str, mandatory=True)


def zfs_available() -> str | None:
    """``None`` if ZFS answers here, else a sentence saying why not."""
    if shutil.which("zpool") is None:
        return "the zpool command is not installed (admin/install-system-deps)"
    result = subprocess.run(["zpool", "list"], capture_output=True, text=True)
    if result.returncode != 0:
        return f"ZFS does not answer: {result.stderr.strip()}"
    return None


def create_pool(
    directory: str, size: str = "4G", prefix: str = "flk", name: str | None = None
) -> FilePool:
    """
    Create a pool on a sparse file in ``directory``.

    :param directory: Holds the image file and the mountpoint.
    :param size: The file's size, as ``truncate -s`` takes it.
    :param prefix: The start of the generated pool name.
    :param name: A name to use instead of a generated one.
    """
    name = name or f"{prefix}-{uuid.uuid4().hex[:10]}"
    image = os.path.join(directory, f"{name}.img")
    mountpoint = os.path.join(directory, f"{name}-mnt")
    os.makedirs(mountpoint, exist_ok=True)
    subprocess.run(["truncate", "-s", size, image], check=True)
    subprocess.run(
        ["zpool", "create", "-f", "-m", mountpoint, name, image],
        check=True,
        capture_output=True,
    )
    return FilePool(name=name, image=image, mountpoint=mountpoint)


def destroy_pool(pool: FilePool, attempts: int = 50) -> None:
    """
    Destroy ``pool`` and delete its file, retrying while ZFS says it is busy.

    A pool that no longer exists is fine.
    """
    for _ in range(attempts):
        exists = subprocess.run(
            ["zpool", "list", pool.name], capture_output=True
        ).returncode == 0
        if not exists:
            break
        result = subprocess.run(
            ["zpool", "destroy", "-f", pool.name], capture_output=True, text=True
        )
        if result.returncode == 0:
            break
        _unmount_all(pool.name)
        time.sleep(0.1)
    else:
        raise RuntimeError(f"could not destroy ZFS pool {pool.name}")
    for path in (pool.image,):
        if os.path.exists(path):
            os.remove(path)
    shutil.rmtree(pool.mountpoint, ignore_errors=True)


def _unmount_all(pool_name: str) -> None:
    """
    Force-unmount every dataset of a pool, deepest first (best effort);
    then detach what the kernel still mounts of it (`pool_mounts`): the
    mounts a zfs-fuse that is gone left behind answer every call with
    "Transport endpoint is not connected" and keep the pool from being
    destroyed by the zfs-fuse serving it now.
    """
    listing = subprocess.run(
        ["zfs", "list", "-H", "-r", "-o", "name", pool_name],
        capture_output=True,
        text=True,
    )
    for name in reversed(listing.stdout.split()):
        subprocess.run(["zfs", "unmount", "-f", name], capture_output=True)
    try:
        with open("/proc/mounts") as mounts:
            table = mounts.read()
    except OSError:
        return
    for path in pool_mounts(table, pool_name):
        subprocess.run(["umount", "-l", path], capture_output=True)


def pool_mounts(table: str, pool_name: str) -> list[str]:
    """
    The mount points of ``pool_name``'s datasets in ``table`` (as
    ``/proc/mounts`` gives it: source, mount point, type…, with octal
    escapes in paths), deepest first.
    """
    found = []
    for line in table.splitlines():
        fields = line.split()
        if len(fields) < 3 or fields[2] != "fuse.zfs":
            continue
        source = fields[0]
        if source == pool_name or source.startswith(pool_name + "/"):
            path = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1])
            found.append(path)
    return sorted(found, key=lambda path: path.count("/"), reverse=True)
