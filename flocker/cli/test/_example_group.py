"""A command group module for tests: ``flocker example`` prints the version."""

from flocker.cli._command import add_command


async def example(context, options):
    """Print the control service's version."""
    context.out.write(await context.client.version() + "\n")


def register(commands):
    """Add ``flocker example``."""
    add_command(commands, "example", "print the control service's version", example)
