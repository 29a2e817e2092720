"""A command group module for tests: ``flocker example`` prints the version."""

import argparse

from flocker.cli._command import Commands, Context, add_command


async def example(context: Context, options: argparse.Namespace) -> None:
    """Print the control service's version."""
    context.out.write(await context.client.version() + "\n")


def register(commands: Commands) -> None:
    """Add ``flocker example``."""
    add_command(commands, "example", "print the control service's version", example)
