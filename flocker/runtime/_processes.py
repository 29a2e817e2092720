"""
A container's processes as this machine's kernel sees them, from ``/proc``.

The Docker runtime reads them where the Engine's own answers come late:
a killed container's processes are gone within milliseconds, while the
Engine reports the container stopped only once it has tidied up after it
(its network, its mounts), a tenth of a second or more later.  Nothing
here is taken from the Engine's word alone: a process is first checked
to be in the container's control group, so that an engine on another
machine (whose process numbers mean nothing here) is noticed instead of
another process being read.
"""

from __future__ import annotations

import attrs

from ._interface import EngineError


@attrs.frozen
class ProcessMark:
    """
    One process, told apart from a later one given the same number.

    :ivar pid: Its process number.
    :ivar started: When it started (clock ticks since boot, as ``/proc``
        says): a process given the same number later started later.
    """

    pid: int
    started: int


def _stat(pid: int) -> tuple[str, int] | None:
    """
    The state letter and start time of process ``pid`` (``None`` if it is
    gone or its record cannot be read).
    """
    try:
        with open(f"/proc/{pid}/stat") as stat:
            record = stat.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # "pid (command) state ppid ...": the command may hold spaces and
    # parentheses, so the fields are those after the last ")".
    fields = record[record.rfind(")") + 2 :].split()
    if len(fields) < 20 or not fields[19].isdigit():
        return None
    return fields[0], int(fields[19])


def in_container(pid: int, container_id: str) -> bool | None:
    """
    Whether process ``pid`` here is in the container ``container_id``'s
    control group; ``None`` if the process is gone.
    """
    try:
        with open(f"/proc/{pid}/cgroup") as cgroup:
            return container_id in cgroup.read()
    except (FileNotFoundError, ProcessLookupError):
        return None


def container_process(pid: int, container_id: str) -> ProcessMark | None:
    """
    The container's main process, ``pid`` as the engine reports it;
    ``None`` if it is gone already.

    :raise EngineError: if process ``pid`` here is not the container's (an
        engine on another machine, a rootless one, or this agent in a
        container of its own).
    """
    mine = in_container(pid, container_id)
    stat = _stat(pid)
    if mine is None or stat is None:
        return None
    if not mine:
        raise EngineError(
            "the container's processes are not visible to this agent: its"
            " engine does not run on this machine"
        )
    return ProcessMark(pid=pid, started=stat[1])


def has_ended(process: ProcessMark) -> bool:
    """
    Whether the process has ended: gone, a zombie (it exited and is
    waiting to be reaped), or its number taken by a later process.

    The main process of a container is the first of its own process
    namespace: the kernel ends it only after every other process in the
    namespace ended, so once it has, the container's processes are all
    gone, and with them their mounts.
    """
    stat = _stat(process.pid)
    if stat is None:
        return True
    state, started = stat
    return started != process.started or state in ("Z", "X", "x")
