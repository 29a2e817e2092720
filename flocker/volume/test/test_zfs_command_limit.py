"""
The ZFS backend runs at most `COMMAND_LIMIT` zfs commands at once, however
many operations ask for them: one zfs-fuse daemon serves every pool of a
machine, and create/destroy churn running dozens of commands at once
deadlocked it.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock

from ...common import CommandResult
from .. import zfs
from ..zfs import COMMAND_LIMIT, ZFSVolumeBackend


class Commands:
    """A stand-in for ``run_command`` whose commands end when told to."""

    def __init__(self) -> None:
        """No command started yet."""
        self.running: list[Deferred[CommandResult]] = []
        self.most = 0

    def __call__(self, reactor: Any, argv: list[str], check: bool = True) -> Deferred[CommandResult]:
        """Start a command: it runs until `finish_one`."""
        done: Deferred[CommandResult] = Deferred()
        self.running.append(done)
        self.most = max(self.most, len(self.running))
        return done

    def finish_one(self) -> None:
        """End the oldest running command, successfully."""
        self.running.pop(0).callback(CommandResult(argv=(), exit_code=0, stdout=b"", stderr=b""))


def test_at_most_command_limit_zfs_commands_run_at_once(monkeypatch: Any) -> None:
    """
    Six commands asked for at once run `COMMAND_LIMIT` at a time; each
    one ending lets the next start, and all of them finish.
    """
    commands = Commands()
    monkeypatch.setattr(zfs, "run_command", commands)
    backend = ZFSVolumeBackend(Clock(), "pool")  # type: ignore[arg-type]
    asked = [ensureDeferred(backend._zfs("list", "-H")) for _ in range(6)]
    assert len(commands.running) == COMMAND_LIMIT
    finished = 0
    while commands.running:
        commands.finish_one()
        finished += 1
        assert len(commands.running) <= COMMAND_LIMIT
    assert finished == 6
    assert commands.most == COMMAND_LIMIT
    assert all(d.called for d in asked)


def test_a_failing_command_frees_its_place(monkeypatch: Any) -> None:
    """A command that fails still lets the next one run."""
    commands = Commands()
    monkeypatch.setattr(zfs, "run_command", commands)
    backend = ZFSVolumeBackend(Clock(), "pool")  # type: ignore[arg-type]
    asked = [ensureDeferred(backend._zfs("list")) for _ in range(COMMAND_LIMIT + 1)]
    commands.running.pop(0).errback(RuntimeError("zfs failed"))
    asked[0].addErrback(lambda failure: None)
    assert len(commands.running) == COMMAND_LIMIT
    while commands.running:
        commands.finish_one()
    assert all(d.called for d in asked)
