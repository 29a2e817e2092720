"""
``flocker``: manage a Flocker cluster's datasets and applications from the
command line, through the control service's REST API and a user certificate.

Commands: ``flocker nodes``; ``flocker datasets ls|create|move|resize|rm``;
``flocker apps ls|deploy|update|rollback|move|rm``; ``flocker snapshots
ls|create|rm|rollback``; ``flocker clone``; ``flocker env
clone|ls|reset|rm``.  Tables by default, ``--json`` for scripts.  See `flocker.cli._connect` for how the cluster is found.

Exit codes (also in ``flocker --help``):

* 0 — success;
* 1 — the cluster refused the request, or bad input (unknown dataset or
  node, bad size, ambiguous name…), reported before anything changes;
* 2 — usage error (unknown command or option, missing argument, no
  cluster named);
* 3 — the control service cannot be reached, or a TLS, certificate or
  cluster file problem;
* 4 — a ``--wait`` timed out (the change was made and may still complete);
* 130 — interrupted (Ctrl-C).

Every error is one line on stderr, ``flocker: error: …``; never a traceback.

Command groups are modules listed in `COMMAND_MODULES`, each with a
``register(commands)`` function (see `flocker.cli._command`); adding a group
is adding its module's name there.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn, Protocol, TextIO

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import react

from .. import __version__
from ..apiclient import FlockerClient, IFlockerAPIV1Client
from ..common import TCPTimeReactor
from ._command import Context, common_options
from ._connect import cluster_address, connect
from ._errors import (
    EXIT_CODES_HELP,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CLIError,
    describe,
)

__all__ = ["COMMAND_MODULES", "build_parser", "main", "run"]

#: The modules that add the command groups, in ``--help`` order.  Each has
#: ``register(commands)``, ``commands`` being the top-level subparsers.
COMMAND_MODULES: tuple[str, ...] = (
    "flocker.cli._nodes",
    "flocker.cli._datasets",
    "flocker.cli._apps",
    "flocker.cli._snapshots",
    "flocker.cli._environments",
)


class _Reactor(TCPTimeReactor, Protocol):
    """What ``flocker`` uses of the reactor: TCP, time, and ``callFromThread``."""

    def callFromThread(  # noqa: N802 - Twisted's name
        self, callable: Callable[..., object], *args: object, **kwargs: object
    ) -> None:
        """Call ``callable`` in the reactor thread (``IReactorFromThreads``)."""


class _Parser(argparse.ArgumentParser):
    """An ``argparse`` parser that reports usage errors as a `CLIError`."""

    def error(self, message: str) -> NoReturn:
        """Raise rather than print the usage and exit."""
        raise CLIError(f"{message} (see '{self.prog} --help')", EXIT_USAGE)


def build_parser(modules: Sequence[str] = COMMAND_MODULES) -> argparse.ArgumentParser:
    """The ``flocker`` command line, with the command groups of ``modules``."""
    parser = _Parser(
        prog="flocker",
        description="Manage a Flocker cluster's datasets and applications "
        "through its REST API.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common_options()],
    )
    parser.add_argument("--version", action="version", version=f"flocker {__version__}")
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, title="commands"
    )
    for name in modules:
        importlib.import_module(name).register(commands)
    return parser


async def run(
    argv: Sequence[str],
    clock: IReactorTime,
    out: TextIO,
    err: TextIO,
    make_client: Callable[[argparse.Namespace], IFlockerAPIV1Client],
    modules: Sequence[str] = COMMAND_MODULES,
    interrupted: Callable[[], bool] = lambda: False,
) -> int:
    """
    Run one ``flocker`` command line; its exit code.

    Errors are written to ``err`` as one line.

    :param make_client: the REST API client for the parsed options (made
        only once the command needs it).
    """
    api_url = ""
    try:
        try:
            options = build_parser(modules).parse_args(list(argv))
        except SystemExit as e:  # --help, --version
            return EXIT_OK if e.code in (None, 0) else EXIT_USAGE

        def client() -> IFlockerAPIV1Client:
            nonlocal api_url
            made = make_client(options)
            if isinstance(made, FlockerClient):  # the URLs it tries, for errors
                api_url = ", ".join(made.base_urls)
            return made

        context = Context(
            clock=clock, out=out, err=err, json=options.json, make_client=client
        )
        await options.run(context, options)
    except Exception as e:
        error = (
            CLIError("interrupted", EXIT_INTERRUPTED)
            if interrupted()
            else describe(e, api_url)
        )
        err.write(f"flocker: error: {error.message}\n")
        return error.code
    return EXIT_OK


def real_client(
    reactor: TCPTimeReactor, environ: Mapping[str, str]
) -> Callable[[argparse.Namespace], IFlockerAPIV1Client]:
    """Make clients of the cluster the options (or ``environ``) name."""

    def make(options: argparse.Namespace) -> IFlockerAPIV1Client:
        return connect(reactor, cluster_address(options, environ))

    return make


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The ``flocker`` console script."""
    arguments = sys.argv[1:] if argv is None else list(argv)

    interrupted: list[bool] = []

    async def react_main(reactor: _Reactor) -> None:
        code = await run(
            arguments,
            IReactorTime(reactor),  # the reactor itself, as its time
            sys.stdout,
            sys.stderr,
            real_client(reactor, os.environ),
            interrupted=lambda: bool(interrupted),
        )
        sys.stdout.flush()
        if code != EXIT_OK:
            raise SystemExit(code)

    def start(reactor: _Reactor) -> Deferred[None]:
        running = Deferred.fromCoroutine(react_main(reactor))

        def interrupt(signum: int, frame: Any) -> None:
            # Ctrl-C: stop the request or the wait; run() says "interrupted".
            interrupted.append(True)
            reactor.callFromThread(running.cancel)

        signal.signal(signal.SIGINT, interrupt)
        return running

    react(start)
