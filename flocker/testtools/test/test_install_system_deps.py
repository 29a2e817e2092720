"""
``admin/install-system-deps`` never kills or unmounts what the project did
not start: a wedged zfs-fuse is reported in one line with how to recover
(exit 3), while a zfs-fuse that is not running (a fresh machine) is
started as before.  Run against stand-in commands on ``PATH`` that record
every call, so the machine's own zfs-fuse is never touched.
"""

import os
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "admin" / "install-system-deps"

#: Stand-ins, driven by flag files in $STATE: ``running`` (zfs-fuse runs),
#: ``silent`` (it runs but does not answer), ``wedged`` (pools cannot be made).
STUBS = {
    "zpool": """
case "$1" in
  list)
    if [ "$#" -eq 1 ]; then
      [ -e "$STATE/running" ] && [ ! -e "$STATE/silent" ]; exit
    fi
    case "$2" in -H) exit 0 ;; *) [ -e "$STATE/pool" ]; exit ;; esac ;;
  create)
    [ -e "$STATE/wedged" ] && exit 1
    mkdir -p "$4/probe" && touch "$STATE/pool" ;;
  destroy) rm -f "$STATE/pool" ;;
esac
""",
    "zfs": "exit 0",
    "zfs-fuse": 'touch "$STATE/running"',
    "pgrep": '[ -e "$STATE/running" ] && echo 4242',
    "pkill": "exit 0",
    "killall": "exit 0",
    "umount": "exit 0",
    "curl": "exit 0",
    "dockerd": "exit 0",
    "busybox": "exit 0",
    "socat": "exit 0",
    "iptables": "exit 0",
    "mkfs.ext4": "exit 0",
    "losetup": "exit 0",
}

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="the script runs as root only"
)


def run(
    tmp_path: Path, *flags: str
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run the script with the stand-ins and ``flags`` set; (result, calls)."""
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    for name, body in STUBS.items():
        stub = bin_dir / name
        stub.write_text(f'#!/bin/bash\necho "{name} $*" >> "$STATE/calls"\n{body}\n')
        stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    for flag in flags:
        (state / flag).touch()
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "STATE": str(state),
        "FLOCKER_SYSTEM_LOG_DIR": str(tmp_path / "log"),
    }
    result = subprocess.run(
        [str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120
    )
    calls = (state / "calls").read_text().splitlines()
    return result, calls


def destructive(calls: list[str]) -> list[str]:
    """Calls that kill or unmount."""
    return [c for c in calls if c.split()[0] in ("pkill", "killall", "umount")]


def test_a_wedged_zfs_is_reported_not_killed(tmp_path: Path) -> None:
    """
    zfs-fuse runs but a probe pool cannot be made: the script says so in
    one line naming the daemon's pid and how to recover, exits 3, and
    neither kills nor unmounts anything, nor starts a second daemon.
    """
    result, calls = run(tmp_path, "running", "wedged")
    assert result.returncode == 3
    [line] = result.stderr.strip().splitlines()
    assert (
        "wedged" in line and "kill 4242" in line and "install-system-deps again" in line
    )
    assert destructive(calls) == []
    assert not [c for c in calls if c.startswith("zfs-fuse")]


def test_a_silent_zfs_is_reported_not_killed(tmp_path: Path) -> None:
    """zfs-fuse runs but never answers ``zpool list``: reported, not killed."""
    result, calls = run(tmp_path, "running", "silent")
    assert result.returncode == 3
    assert "does not answer" in result.stderr
    assert destructive(calls) == []
    assert not [c for c in calls if c.startswith("zfs-fuse")]


def test_a_fresh_machine_gets_zfs_fuse_started(tmp_path: Path) -> None:
    """zfs-fuse installed but not running is started once, and all is well."""
    result, calls = run(tmp_path)
    assert result.returncode == 0, result.stderr
    assert len([c for c in calls if c.startswith("zfs-fuse")]) == 1
    assert destructive(calls) == []


def test_a_working_zfs_is_left_alone(tmp_path: Path) -> None:
    """A running, working zfs-fuse: nothing started, killed or unmounted."""
    result, calls = run(tmp_path, "running")
    assert result.returncode == 0, result.stderr
    assert not [c for c in calls if c.startswith("zfs-fuse")]
    assert destructive(calls) == []
