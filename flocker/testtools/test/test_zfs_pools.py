"""Tests for the file-backed pools' clean-up helpers."""

from __future__ import annotations

from flocker.testtools.zfs import pool_mounts

_MOUNTS = """\
/dev/vda1 / ext4 rw,relatime 0 0
flk-1 /tmp/lab/flk-1-mnt fuse.zfs rw,relatime,user_id=0 0 0
flk-1/a0b1 /tmp/lab/flk-1-mnt/a0b1 fuse.zfs ro,relatime,user_id=0 0 0
flk-10/c9e7 /tmp/lab/flk-10-mnt/c9e7 fuse.zfs rw,relatime,user_id=0 0 0
flk-1/with\\040space /tmp/my\\040lab/flk-1-mnt/x fuse.zfs rw 0 0
flk-1/elsewhere /tmp/lab/flk-1-mnt/b2 ext4 rw 0 0
"""


def test_a_pools_fuse_mounts_are_found_deepest_first() -> None:
    """
    The zfs-fuse mounts of a pool's datasets are listed deepest first, with
    the kernel's escapes undone; another pool whose name starts the same,
    and mounts of other kinds, are not.
    """
    assert pool_mounts(_MOUNTS, "flk-1") == [
        "/tmp/lab/flk-1-mnt/a0b1",
        "/tmp/my lab/flk-1-mnt/x",
        "/tmp/lab/flk-1-mnt",
    ]
    assert pool_mounts(_MOUNTS, "flk-2") == []
