"""Crash test: SIGKILL a process writing through the file store, lose nothing."""

import os
import random
import sys
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from flocker.control import FileConfigurationStore

from ._crash_writer import deployment_for

pytestmark = pytest.mark.functional


class _Writer(ProcessProtocol):
    """Collect acknowledged generations; SIGKILL after ``kill_after`` of them."""

    def __init__(self, kill_after: int, rng: random.Random) -> None:
        self.kill_after = kill_after
        self.rng = rng
        self.acknowledged: list[int] = []
        self.buffer = b""
        self.stderr = b""
        self.ended: Deferred[int | None] = Deferred()
        self.killing = False

    def outReceived(self, data: bytes) -> None:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        self.acknowledged.extend(int(line) for line in lines)
        if len(self.acknowledged) >= self.kill_after and not self.killing:
            self.killing = True
            # Land the kill at a varying point of the next save.
            reactor.callLater(self.rng.uniform(0, 0.004), self._kill)

    def errReceived(self, data: bytes) -> None:
        self.stderr += data

    def _kill(self) -> None:
        transport: Any = self.transport
        if transport.pid is not None:
            transport.signalProcess("KILL")

    def processEnded(self, reason: Failure) -> None:
        ended = reason.value
        assert isinstance(ended, (ProcessDone, ProcessTerminated))
        self.ended.callback(ended.exitCode)


@pytest_twisted.ensureDeferred
async def test_sigkill_loses_no_acknowledged_write(tmp_path: Path) -> None:
    """Every generation acknowledged before a SIGKILL is on disk afterwards, intact."""
    rng = random.Random(os.getpid())
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    last = 0
    for round_ in range(6):
        writer = _Writer(kill_after=rng.randint(1, 25), rng=rng)
        reactor.spawnProcess(
            writer,
            sys.executable,
            [sys.executable, "-m", "flocker.control.test._crash_writer", str(tmp_path)],
            env=env,
        )
        await writer.ended
        assert writer.killing, writer.stderr.decode(errors="replace")
        assert writer.acknowledged, writer.stderr.decode(errors="replace")
        assert writer.acknowledged == list(
            range(last + 1, last + 1 + len(writer.acknowledged))
        )
        acked = writer.acknowledged[-1]
        pool = reactor.getThreadPool()  # type: ignore[attr-defined]
        store = FileConfigurationStore(IReactorFromThreads(reactor), pool, tmp_path)
        stored = await store.load()
        # The last acknowledged save is there; at most one unacknowledged
        # save after it may also have become durable before the kill.
        assert acked <= stored.generation <= acked + 1, (
            round_,
            acked,
            stored.generation,
        )
        assert stored.deployment == deployment_for(stored.generation)
        last = stored.generation
    assert os.listdir(tmp_path) == ["configuration.json"]
