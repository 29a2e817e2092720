"""Logging set-up for Flocker daemons: eliot JSON lines, Twisted bridged in.

Each daemon calls :func:`start_daemon_logging` once from its ``main``: its
eliot messages go as JSON lines to ``<log_dir>/<name>.log`` (and to standard
output when run in the foreground), and events logged through Twisted's own
logging system (connection errors, unhandled errors in Deferreds) become
eliot messages in the same file, so ``eliot-tree`` reads one complete story.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import IO, Any

from eliot import FileDestination, add_destinations, remove_destination, write_failure
from twisted.logger import (
    ILogObserver,
    LogLevel,
    formatEvent,
    globalLogBeginner,
    globalLogPublisher,
)
from zope.interface import provider

from ._logging import TWISTED_LOG


@provider(ILogObserver)
def twisted_to_eliot(event: dict[str, Any]) -> None:
    """
    Turn one Twisted log event into an eliot message.

    Failures logged through Twisted (``log.failure``, unhandled errors in
    Deferreds) are written as eliot tracebacks; everything else becomes a
    ``flocker:common:twisted_log`` message with the formatted text.
    """
    failure = event.get("log_failure")
    if failure is not None:
        write_failure(failure)
        return
    level = event.get("log_level", LogLevel.info)
    TWISTED_LOG.log(
        message=formatEvent(event) or "",
        log_level=getattr(level, "name", str(level)),
        log_namespace=str(event.get("log_namespace", "")),
    )


def start_daemon_logging(
    name: str,
    log_dir: str | None,
    stdout: IO[str] | None = None,
    begin_twisted: bool = True,
) -> Callable[[], None]:
    """
    Send eliot's messages to ``<log_dir>/<name>.log`` and Twisted's to eliot.

    :param name: The daemon's name, e.g. ``flocker-control``.
    :param log_dir: The directory for the log file, made if missing;
        ``None`` writes no file.
    :param stdout: A text stream that also receives every message (standard
        output when the daemon runs in the foreground), or ``None``.
    :param begin_twisted: Whether to route Twisted's global log publisher to
        eliot via ``globalLogBeginner`` (a daemon's ``main`` wants this; a
        test that must not touch global state does not).

    :return: A function that removes the destinations again.
    """
    destinations = []
    handles: list[IO[str]] = []
    if log_dir is not None:
        os.makedirs(log_dir, exist_ok=True)
        handle = open(os.path.join(log_dir, f"{name}.log"), "a", buffering=1)  # noqa: SIM115
        handles.append(handle)
        destinations.append(FileDestination(file=handle))
    if stdout is not None:
        destinations.append(FileDestination(file=stdout))
    add_destinations(*destinations)
    if begin_twisted:
        globalLogBeginner.beginLoggingTo(
            [twisted_to_eliot], discardBuffer=False, redirectStandardIO=False
        )
    else:
        globalLogPublisher.addObserver(twisted_to_eliot)

    def stop() -> None:
        for destination in destinations:
            remove_destination(destination)
        if not begin_twisted:
            globalLogPublisher.removeObserver(twisted_to_eliot)
        for handle in handles:
            handle.close()

    return stop


def foreground_stream() -> IO[str]:
    """Standard output, for daemons run in the foreground."""
    return sys.stdout
