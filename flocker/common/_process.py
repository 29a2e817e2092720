"""Run external commands (``zfs``, ``losetup``, ``mount``…) on the reactor.

Every daemon runs its external commands through :func:`run_command`: the
reactor is never blocked, each run is an eliot action naming the command
line, a non-zero exit becomes a :class:`CommandFailed` carrying the command
line and its standard error, and a command that runs past its timeout is
killed and reported as :class:`CommandTimedOut`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import cast

from eliot.twisted import DeferredContext
from pyrsistent import PClass, field
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IReactorProcess
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from ._logging import RUN_COMMAND

#: How long a command may run when the caller does not say, in seconds.
DEFAULT_TIMEOUT = 120.0


class CommandResult(PClass):
    """
    The outcome of a command that exited.

    :ivar argv: The command line that was run.
    :ivar exit_code: Its exit status (0 unless ``check=False`` was given).
    :ivar stdout: Everything it wrote to standard output.
    :ivar stderr: Everything it wrote to standard error.
    """

    argv = field(type=tuple, mandatory=True)
    exit_code = field(type=int, mandatory=True)
    stdout = field(type=bytes, mandatory=True)
    stderr = field(type=bytes, mandatory=True)


class CommandFailed(Exception):
    """
    A command exited with a non-zero status (or was killed by a signal).

    :ivar argv: The command line.
    :ivar exit_code: The exit status, or ``None`` if a signal ended it.
    :ivar stdout: What it wrote to standard output.
    :ivar stderr: What it wrote to standard error.
    """

    def __init__(
        self,
        argv: Sequence[str],
        exit_code: int | None,
        stdout: bytes,
        stderr: bytes,
    ) -> None:
        """Record the details of the failed command."""
        self.argv = tuple(argv)
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(str(self))

    def __str__(self) -> str:
        """One line naming the command, its status and its standard error."""
        detail = self.stderr.decode("utf-8", "replace").strip()
        how = (
            f"exited with status {self.exit_code}"
            if self.exit_code is not None
            else "was killed by a signal"
        )
        text = f"{' '.join(self.argv)!s} {how}"
        return f"{text}: {detail}" if detail else text


class CommandTimedOut(CommandFailed):
    """A command ran longer than its timeout and was killed."""

    def __init__(
        self, argv: Sequence[str], timeout: float, stdout: bytes, stderr: bytes
    ) -> None:
        """Record the command and the timeout it exceeded."""
        self.timeout = timeout
        super().__init__(argv, None, stdout, stderr)

    def __str__(self) -> str:
        """One line naming the command and the timeout."""
        return f"{' '.join(self.argv)} timed out after {self.timeout:g} seconds"


class _Collector(ProcessProtocol):
    """Collect a process's output and fire a Deferred when it ends."""

    def __init__(self, stdin: bytes | None) -> None:
        self.ended: Deferred[int | None] = Deferred()
        self._stdin = stdin
        self.stdout: list[bytes] = []
        self.stderr: list[bytes] = []

    def connectionMade(self) -> None:  # noqa: N802 (Twisted's name)
        assert self.transport is not None
        if self._stdin is not None:
            self.transport.write(self._stdin)
        self.transport.closeStdin()

    def outReceived(self, data: bytes) -> None:  # noqa: N802
        self.stdout.append(data)

    def errReceived(self, data: bytes) -> None:  # noqa: N802
        self.stderr.append(data)

    def processEnded(self, reason: Failure) -> None:  # noqa: N802
        if reason.check(ProcessDone):
            self.ended.callback(0)
        elif reason.check(ProcessTerminated):
            self.ended.callback(cast(ProcessTerminated, reason.value).exitCode)
        else:  # pragma: no cover - Twisted reports only those two
            self.ended.errback(reason)


def run_command(
    reactor: IReactorProcess,
    argv: Sequence[str],
    *,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
    path: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    check: bool = True,
) -> Deferred[CommandResult]:
    """
    Run ``argv`` as a child process without blocking the reactor.

    :param reactor: Provider of ``IReactorProcess`` and ``IReactorTime``.
    :param argv: The command line; ``argv[0]`` is looked up on ``PATH``.
    :param stdin: Bytes written to the command's standard input, which is
        then closed.  ``None`` closes it at once.
    :param env: The environment; by default this process's own.
    :param path: The working directory.
    :param timeout: Seconds after which the command is killed with SIGKILL
        and the result fails with :class:`CommandTimedOut`.
    :param check: When true (the default) a non-zero exit fails the result
        with :class:`CommandFailed`; when false it is reported in
        :attr:`CommandResult.exit_code`.

    :return: A ``Deferred`` firing with a :class:`CommandResult`.  A command
        that cannot be found fails with :class:`CommandFailed` (exit 127).
    """
    argv = tuple(argv)
    executable = _which(argv[0], env)
    action = RUN_COMMAND(argv=list(argv))
    with action.context():
        if executable is None:
            failed: Deferred[CommandResult] = Deferred()
            failed.errback(
                CommandFailed(argv, 127, b"", f"{argv[0]}: command not found".encode())
            )
            refused: Deferred[CommandResult] = DeferredContext(failed).addActionFinish()
            return refused

        collector = _Collector(stdin)
        reactor.spawnProcess(
            collector,
            executable,
            argv,
            env=dict(os.environ if env is None else env),
            path=path,
        )
        timed_out: list[bool] = []

        def kill() -> None:
            timed_out.append(True)
            try:
                collector.transport.signalProcess("KILL")  # type: ignore[union-attr]
            except Exception:  # the process already ended
                pass

        killer = reactor.callLater(timeout, kill)  # type: ignore[attr-defined]

        def finished(exit_code: int | None) -> CommandResult:
            if killer.active():
                killer.cancel()
            out, err = b"".join(collector.stdout), b"".join(collector.stderr)
            action.add_success_fields(exit_code=exit_code, stderr=_tail(err))
            if timed_out:
                raise CommandTimedOut(argv, timeout, out, err)
            if exit_code != 0 and check:
                raise CommandFailed(argv, exit_code, out, err)
            return CommandResult(
                argv=argv,
                exit_code=-1 if exit_code is None else exit_code,
                stdout=out,
                stderr=err,
            )

        ended = DeferredContext(collector.ended)
        ended.addCallback(finished)
        result: Deferred[CommandResult] = ended.addActionFinish()
        return result


def _which(name: str, env: Mapping[str, str] | None) -> str | None:
    """Find ``name`` on the ``PATH`` of ``env`` (or of this process)."""
    if os.sep in name:
        return name if os.access(name, os.X_OK) else None
    search = (env if env is not None else os.environ).get("PATH", os.defpath)
    for directory in search.split(os.pathsep) + ["/usr/sbin", "/sbin"]:
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _tail(data: bytes, limit: int = 2000) -> str:
    """The last ``limit`` characters of ``data`` as text, for the log."""
    return data[-limit:].decode("utf-8", "replace")
