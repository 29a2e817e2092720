"""
Tests for ``flocker.volume._page_cache``: dropping what the kernel caches
of a tree's files, checked with ``fincore`` (util-linux) against the real
page cache.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from flocker.volume._page_cache import evict

MIB = 1024 * 1024


def cached_bytes(path: str | Path) -> int:
    """How much of the file the kernel holds in its page cache now."""
    out = subprocess.run(
        ["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return int(out.strip())


def cached_file(path: Path, size: int = 4 * MIB) -> Path:
    """A file of ``size`` bytes, written, flushed and read back (so cached)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(os.urandom(size))
        f.flush()
        os.fsync(f.fileno())
    path.read_bytes()
    return path


def test_every_file_of_the_tree_is_dropped_from_the_cache(tmp_path: Path) -> None:
    """
    The cached pages of every regular file under the root, however deep,
    are dropped, and each file is counted once; the files are unchanged.
    """
    top = cached_file(tmp_path / "top")
    deep = cached_file(tmp_path / "a" / "b" / "deep")
    before = deep.read_bytes()
    assert cached_bytes(top) > 0 and cached_bytes(deep) > 0
    assert evict(str(tmp_path)) == 2
    assert cached_bytes(top) == 0 and cached_bytes(deep) == 0
    assert deep.read_bytes() == before


def test_links_and_special_files_are_passed_over(tmp_path: Path) -> None:
    """
    A symbolic link is not followed (a file outside the tree keeps its
    cache), and a FIFO is not opened (which would wait for a writer).
    """
    outside = cached_file(tmp_path / "outside" / "file")
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "link").symlink_to(outside)
    (tree / "dir-link").symlink_to(outside.parent)
    os.mkfifo(tree / "fifo")
    assert evict(str(tree)) == 0
    assert cached_bytes(outside) > 0


def test_a_spent_budget_stops_the_walk(tmp_path: Path) -> None:
    """Once its time is spent, the walk stops, leaving the rest cached."""
    for name in "abc":
        cached_file(tmp_path / name, MIB)
    ticks = iter(range(100))
    assert evict(str(tmp_path), budget=1.5, clock=lambda: float(next(ticks))) == 1
    assert sorted(cached_bytes(tmp_path / n) > 0 for n in "abc") == [False, True, True]
