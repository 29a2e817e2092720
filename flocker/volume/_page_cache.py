"""
Dropping what the kernel caches of a dataset's files.

zfs-fuse's datasets are FUSE mounts, whose files the kernel keeps in its
page cache; unmounting one drops all of those pages, at about 50 ms per
GiB cached.  A move's hand-off unmounts the dataset (``set_read_only``'s
fence) while the application's clients wait for the move, so the source
drops the cache earlier, while the application still runs (`evict`): the
unmount is then left only what was read since.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

#: Seconds `evict` spends on a tree at most: a dataset of very many files
#: is left partly cached rather than holding up its move's pass.
EVICT_BUDGET = 0.5


def _advise(path: str) -> None:
    """Advise the kernel that the file's cached pages are not needed."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags | os.O_NOATIME)
    except PermissionError:
        fd = os.open(path, flags)  # O_NOATIME is the owner's (or root's) only
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def evict(
    root: str, budget: float = EVICT_BUDGET, clock: Callable[[], float] = time.monotonic
) -> int:
    """
    Have the kernel drop the cached pages of every regular file under
    ``root``, within its filesystem, following no symbolic link, for at
    most ``budget`` seconds.  What cannot be read (a file gone meanwhile,
    a directory it may not list) is passed over: dropping the cache only
    saves time later, and nothing depends on it.

    :return: How many files were advised.
    """
    deadline = clock() + budget
    device = os.lstat(root).st_dev
    advised = 0
    directories = [root]
    while directories:
        try:
            entries = os.scandir(directories.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                if clock() > deadline:
                    return advised
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if entry.stat(follow_symlinks=False).st_dev == device:
                            directories.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        _advise(entry.path)
                        advised += 1
                except OSError:
                    continue
    return advised


__all__ = ["EVICT_BUDGET", "evict"]
