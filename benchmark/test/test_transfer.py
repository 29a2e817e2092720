"""
Tests for the transfer benchmark's helpers that need no ZFS: the socat
baseline cleans up after itself when sending fails.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest


def _fake_tools(directory: Path) -> Path:
    """Fake ``socat`` and ``zfs`` that record their pids (no ZFS touched)."""
    bin_dir = directory / "bin"
    bin_dir.mkdir()
    pids = directory / "pids"
    scripts = {
        # The listening socat waits for its one connection; the connecting
        # one fails (e.g. connection refused, or a handshake it rejects).
        "socat": (
            "#!/bin/bash\n"
            f'echo $$ >> "{pids}"\n'
            'case "$*" in\n'
            "  *OPENSSL-LISTEN*) exec sleep 120 ;;\n"
            "  *) cat > /dev/null; echo 'socat: connect failed' >&2; exit 1 ;;\n"
            "esac\n"
        ),
        "zfs": (
            "#!/bin/bash\n"
            f'echo $$ >> "{pids}"\n'
            'case "$1" in\n'
            "  send) echo stream; exit 0 ;;\n"
            "  recv) exec cat > /dev/null ;;\n"
            "  *) echo 'fake zfs: not here' >&2; exit 2 ;;\n"
            "esac\n"
        ),
    }
    for name, text in scripts.items():
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return pids


def _gone(pids: list[int], bound: float = 30.0) -> list[int]:
    """
    The pids still alive once each has had ``bound`` seconds to die: a
    SIGKILL is delivered when the process is next scheduled, which on a
    loaded machine is not at once.
    """
    deadline = time.monotonic() + bound
    left = [pid for pid in pids if _alive(pid)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [pid for pid in left if _alive(pid)]
    return left


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_tls_pipe_kills_its_receiver_when_sending_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    If the ``zfs send | socat`` side fails, ``tls_pipe`` fails (promptly)
    and leaves no process of its receiving side running.
    """
    import benchmark.transfer as bench

    pids = _fake_tools(tmp_path)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setattr(bench, "listening", lambda port: True)
    # The 600 s wait, shortened to keep the test quick.
    original_wait = subprocess.Popen.wait

    def short_wait(self: Any, timeout: float | None = None) -> Any:
        return original_wait(self, None if timeout is None else min(timeout, 3))

    monkeypatch.setattr(subprocess.Popen, "wait", short_wait)
    directories = [tmp_path / "node-a", tmp_path / "node-b"]
    certificates = SimpleNamespace(node_directories=directories)
    try:
        with pytest.raises(Exception):  # noqa: B017 - any failure will do
            bench.tls_pipe("pool-a/ds@s1", "pool-b/tls-copy", 1, certificates)
        started = [int(line) for line in pids.read_text().split()]
        assert started, "the fake tools never ran"
        assert _gone(started) == [], "processes left running"
    finally:
        for line in pids.read_text().split() if pids.exists() else []:
            try:
                os.kill(int(line), signal.SIGKILL)
            except ProcessLookupError:
                pass
