"""
``--wait``: polling the cluster's state until a change has converged.

`wait_until` asks a probe for the state every `POLL_INTERVAL` seconds
and shows a progress line on stderr: the elapsed time and what the state
says now.  On a terminal the line is rewritten in place; otherwise a line
is written each time the state changes.  The REST API reports where a
dataset is mounted but not how far a transfer has got, so the progress
line shows the elapsed time and the state changes, not bytes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TextIO

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater

from ._errors import EXIT_TIMEOUT, CLIError

__all__ = [
    "DEFAULT_TIMEOUT",
    "POLL_INTERVAL",
    "Progress",
    "add_wait_options",
    "wait_until",
]

#: Seconds between two looks at the state.
POLL_INTERVAL = 0.5

#: Seconds ``--wait`` waits unless ``--timeout`` says otherwise.
DEFAULT_TIMEOUT = 300.0

#: A probe: whether the change converged, and what the state says now.
Probe = Callable[[], Awaitable[tuple[bool, str]]]


def add_wait_options(parser: object, what: str) -> None:
    """Add ``--wait`` and ``--timeout`` to an ``argparse`` parser."""
    parser.add_argument(  # type: ignore[attr-defined]
        "--wait",
        action="store_true",
        help=f"wait until {what}, showing progress on stderr",
    )
    parser.add_argument(  # type: ignore[attr-defined]
        "--timeout",
        metavar="S",
        default=str(DEFAULT_TIMEOUT),
        help=f"give up waiting after S seconds (default {DEFAULT_TIMEOUT:g}; exit code 4)",
    )


def parse_timeout(text: str) -> float:
    """``--timeout``'s value in seconds; a `CLIError` if not a positive number."""
    try:
        timeout = float(text)
    except ValueError:
        timeout = -1.0
    if not timeout > 0 or timeout == float("inf"):
        raise CLIError(f"bad timeout {text!r}: give a number of seconds above 0")
    return timeout


@attrs.define
class Progress:
    """
    The progress line on stderr.

    :ivar err: where to write it.
    :ivar what: what is awaited, e.g. ``dataset 1a2b… mounted on 10.0.0.2``.
    :ivar terminal: rewrite one line in place rather than add lines.
    """

    err: TextIO
    what: str
    terminal: bool
    _last: str | None = None

    def update(self, elapsed: float, status: str) -> None:
        """Show the state at ``elapsed`` seconds."""
        if self.terminal:
            self.err.write(
                f"\r\x1b[Kwaiting for {self.what}: {status} [{elapsed:.1f}s]"
            )
        elif status != self._last:
            self.err.write(f"waiting for {self.what}: {status} [{elapsed:.1f}s]\n")
        self._last = status
        self.err.flush()

    def finish(self, elapsed: float, status: str) -> None:
        """Say how it ended."""
        if self.terminal:
            self.err.write("\r\x1b[K")
        self.err.write(f"{self.what}: {status} after {elapsed:.1f}s\n")
        self.err.flush()


def _is_terminal(stream: TextIO) -> bool:
    """Whether ``stream`` is a terminal."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


async def wait_until(
    clock: IReactorTime,
    err: TextIO,
    what: str,
    probe: Probe,
    timeout: float,
) -> float:
    """
    Poll ``probe`` until it says done; return the seconds it took.

    :raise CLIError: with `EXIT_TIMEOUT` after ``timeout`` seconds.
    """
    progress = Progress(err, what, _is_terminal(err))
    start = clock.seconds()
    while True:
        done, status = await probe()
        elapsed = clock.seconds() - start
        if done:
            progress.finish(elapsed, status)
            return elapsed
        progress.update(elapsed, status)
        if elapsed >= timeout:
            if progress.terminal:
                err.write("\n")
            raise CLIError(
                f"timed out after {timeout:g}s waiting for {what} (state: {status}); "
                "the change is configured and the cluster may still converge",
                EXIT_TIMEOUT,
            )
        await deferLater(
            clock, min(POLL_INTERVAL, max(timeout - elapsed, 0.0)), lambda: None
        )
