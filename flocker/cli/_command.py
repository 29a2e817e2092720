"""
What every ``flocker`` command group module uses: the `Context` a command
runs in and `add_command` (or `add_group`) to declare its commands.

A command group is a module with ``register(commands)``, listed in
`flocker.cli.script.COMMAND_MODULES`; ``register`` adds its parsers with
`add_command` (or `add_group` for ``flocker GROUP VERB``).  A command is
``async def run(context, options) -> None``: it checks its input first (a
`CLIError` with `EXIT_ERROR` before any request), then uses
``context.client``, prints with ``context.out`` (or `write_json` when
``context.json``) and raises `CLIError` for anything to report.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import TextIO, TypeAlias

import attrs
from twisted.internet.interfaces import IReactorTime

from ..apiclient import IFlockerAPIV1Client
from ._connect import add_connection_options

__all__ = [
    "Command",
    "Commands",
    "Context",
    "add_command",
    "add_group",
    "common_options",
]

#: The coroutine function that runs a command.
Command = Callable[["Context", argparse.Namespace], Awaitable[None]]

#: The subparsers a command group's ``register`` adds its commands to.
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


@attrs.define
class Context:
    """
    What a command runs with.

    :ivar clock: the time, for ``--wait``.
    :ivar out: standard output: the command's result.
    :ivar err: standard error: progress lines.
    :ivar json: print JSON rather than tables.
    :ivar make_client: makes the REST API client (on first use of
        `client`, so that input is checked before certificates are loaded).
    """

    clock: IReactorTime
    out: TextIO
    err: TextIO
    json: bool
    make_client: Callable[[], IFlockerAPIV1Client]
    _client: IFlockerAPIV1Client | None = None

    @property
    def client(self) -> IFlockerAPIV1Client:
        """The REST API client, made on first use."""
        if self._client is None:
            self._client = self.make_client()
        return self._client


def common_options(default: str | None = None) -> argparse.ArgumentParser:
    """
    A parent parser with ``--json`` and the options naming the cluster.

    :param default: ``argparse.SUPPRESS`` for subcommands, so that options
        given before the command keep their value.
    """
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--json",
        action="store_true",
        default=False if default is None else default,
        help="print JSON (stable, for scripts) instead of a table",
    )
    add_connection_options(parent, default)
    return parent


def add_group(commands: Commands, name: str, help: str) -> Commands:
    """Add ``flocker NAME VERB…``: returns the subparsers to `add_command` to."""
    group = commands.add_parser(name, help=help, description=help)
    return group.add_subparsers(
        dest=f"{name}_command", metavar="COMMAND", required=True, title="commands"
    )


def add_command(
    commands: Commands,
    name: str,
    help: str,
    run: Command,
    description: str | None = None,
) -> argparse.ArgumentParser:
    """
    Add a command that ``run`` runs; returns its parser, to add arguments to.

    The command also accepts ``--json`` and the cluster options after its
    name.
    """
    parser = commands.add_parser(
        name,
        help=help,
        description=description or help,
        parents=[common_options(argparse.SUPPRESS)],
    )
    parser.set_defaults(run=run)
    return parser
