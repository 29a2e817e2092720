"""
Telling from ``/proc`` whether a container's main process has ended
(``flocker.runtime._processes``), on real processes of this machine.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .._interface import EngineError
from .._processes import ProcessMark, container_process, has_ended, in_container


def _own_group() -> str:
    """A word of this process's control group record (it is in its group)."""
    with open("/proc/self/cgroup") as cgroup:
        return cgroup.read().strip().split(":")[-1] or "/"


def test_a_running_process_has_not_ended() -> None:
    """A process that runs is found and has not ended."""
    mark = container_process(os.getpid(), _own_group())
    assert mark is not None and mark.pid == os.getpid()
    assert not has_ended(mark)


def test_an_exited_unreaped_process_has_ended() -> None:
    """A process that exited and waits to be reaped (a zombie) has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    mark = container_process(child.pid, _own_group())
    assert mark is not None
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped
    assert has_ended(mark)
    child.wait()
    assert has_ended(mark)  # gone altogether


def test_a_later_process_with_the_same_number_is_not_the_one_watched() -> None:
    """A process whose start time differs from the mark's is a later one."""
    mark = container_process(os.getpid(), _own_group())
    assert mark is not None
    assert has_ended(ProcessMark(pid=mark.pid, started=mark.started - 1))


def test_a_gone_process_is_none_and_has_ended() -> None:
    """A process number nobody has: no mark, and an old mark has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    mark = container_process(child.pid, _own_group())
    child.wait()
    assert container_process(child.pid, _own_group()) is None
    assert in_container(child.pid, _own_group()) is None
    assert mark is not None and has_ended(mark)


def test_a_process_outside_the_container_is_refused() -> None:
    """
    A process not in the container's control group (the engine runs
    elsewhere) is an EngineError, never watched as if it were the
    container's.
    """
    with pytest.raises(EngineError):
        container_process(os.getpid(), "0123456789abcdef-not-this-container")
