"""
``admin/lab`` signals only the processes it started: a recorded pid that
now belongs to another process (its start time differs from the one
recorded at spawn) is left alone by ``down``, ``stop-node`` and ``status``.
"""

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flocker.testtools import lab


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    """A process the cluster did not start (in its own session, as agents are)."""
    process = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield process
    process.kill()
    process.wait()


def reused(tmp_path: Path, stranger: subprocess.Popen[bytes]) -> dict[str, Any]:
    """
    A ``cluster.json`` whose recorded agents and control service have the
    stranger's pid but the start time of the processes they were: the pids
    were reused.
    """
    started_at = lab._start_time(stranger.pid)
    assert started_at is not None
    started = started_at - 1
    node: dict[str, Any] = {
        "uuid": "11111111-0000-4000-8000-000000000000",
        "address": lab.node_address(0),
        "log_dir": str(tmp_path / "node1"),
        "agent_config": str(tmp_path / "node1" / "agent.yml"),
        "pool": "flocker-lab-none",
        "pids": {kind: stranger.pid for kind in lab.AGENT_KINDS},
        "started": {kind: started for kind in lab.AGENT_KINDS},
    }
    data: dict[str, Any] = {
        "dir": str(tmp_path),
        "nodes": [node],
        "control": {"pid": stranger.pid, "started": started},
    }
    lab.save(data)
    return data


def test_start_time_is_field_22_of_stat(stranger: subprocess.Popen[bytes]) -> None:
    """The recorded start time is ``/proc/PID/stat``'s field 22, and stable."""
    with open(f"/proc/{stranger.pid}/stat") as handle:
        field_22 = int(handle.read().rsplit(")", 1)[1].split()[19])
    assert lab._start_time(stranger.pid) == field_22
    assert lab._start_time(stranger.pid) == field_22
    assert lab._start_time(2**22 + 12345) is None


def test_a_reused_pid_is_not_signalled(
    tmp_path: Path, stranger: subprocess.Popen[bytes]
) -> None:
    """
    Stopping agents and the control service whose pids now belong to
    another process sends it nothing: it still runs afterwards.
    """
    cluster = reused(tmp_path, stranger)
    node = cluster["nodes"][0]
    lab.stop_node_agents(node)
    lab.stop_node_agents(node, signal.SIGKILL)
    lab._stop(cluster["control"]["pid"], cluster["control"]["started"])
    assert stranger.poll() is None
    assert not lab._agent_running(node, "dataset")


def test_the_process_started_is_stopped(tmp_path: Path) -> None:
    """With the start time recorded at spawn, the process itself is stopped."""
    pid = lab._spawn(["sleep", "60"], str(tmp_path / "out"))
    started = lab._start_time(pid)
    assert lab._ours(pid, started)
    lab._stop(pid, started, timeout=5)
    assert not lab._ours(pid, started)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def test_status_calls_a_reused_pid_stopped(
    tmp_path: Path, stranger: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``status`` reports agents whose pid was reused as stopped."""
    cluster = reused(tmp_path, stranger)
    cluster["control"]["api_url"] = "https://127.0.0.1:1"
    cluster["control"]["agent_port"] = 1
    lab.save(cluster)
    monkeypatch.setattr(
        lab, "api_request", lambda *a, **k: (_ for _ in ()).throw(OSError())
    )
    lines = lab.status(str(tmp_path))
    assert "STOPPED" in lines[0]
    assert "agents STOPPED" in lines[1]
