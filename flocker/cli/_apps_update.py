"""
``flocker apps update|rollback``.

``update`` changes an application's specification *relative to what it is
now*: ``--env`` sets variables in its current environment (``--unset-env``
removes some), the ``--health-*`` timings adjust its current health check,
and every other option replaces that one field (``--port`` replaces all its
published ports).  The control service makes a changed specification the
application's next revision and keeps the one it replaced: ``rollback``
returns to it.  An update waits for the new instance to be healthy; if it
turns unhealthy instead, the control service rolls it back by itself, and
``flocker apps ls`` says so (``--wait`` waits for either).  ``--replicas``
changes how many instances run, as ``flocker apps scale`` does (see
`flocker.cli._apps_scale`).

Every option is checked before the cluster is asked anything; a health
check must probe a port the application publishes (an internal one).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

import attrs

from ..apiclient import Container
from ._app_options import (
    HealthOptions,
    add_health_options,
    check_health_port,
    parse_command_line,
    parse_cpu_shares,
    parse_env,
    parse_health_options,
    parse_memory_limit,
    parse_port,
    parse_replicas,
    parse_restart,
)
from ._app_views import print_one, view_of
from ._command import Commands, Context, add_command
from ._errors import CLIError
from ._wait import add_wait_options, parse_timeout, wait_until

__all__ = ["current_container", "register_updates", "still_at_revision"]

@attrs.frozen
class _Update:
    """An ``update`` command line, checked: the changes, some relative to the current spec."""

    changes: Mapping[str, Any]
    set_env: Mapping[str, str]
    unset_env: tuple[str, ...]
    health: HealthOptions

    def apply(self, current: Container) -> dict[str, Any]:
        """
        The fields to send for ``current``: the environment merged, the
        health check adjusted.

        :raise CLIError: the health check would probe an unpublished port.
        """
        fields = dict(self.changes)
        if self.set_env or self.unset_env:
            environment = {
                k: v for k, v in current.environment.items() if k not in self.unset_env
            }
            environment.update(self.set_env)
            fields["environment"] = environment
        if self.health.given:
            fields["health"] = self.health.resolve(current.name, current.health)
        ports = fields.get("ports", current.ports)
        health = fields.get("health", current.health)
        if "ports" in fields and "health" not in fields and health is not None:
            if health.port not in {p.internal for p in ports}:
                raise CLIError(
                    f"the new ports leave {current.name}'s health check on port "
                    f"{health.port} unpublished: give --health-http, --health-tcp "
                    "or --no-health too"
                )
        check_health_port(current.name, health, ports)
        return fields


def _parse_update(options: argparse.Namespace) -> _Update:
    """Check every option of ``apps update`` (no request made)."""
    changes: dict[str, Any] = {}
    if options.image is not None:
        if not options.image.strip():
            raise CLIError("bad --image '': give an image name")
        changes["image"] = options.image
    if options.command is not None:
        changes["command_line"] = parse_command_line(options.command)
    elif options.no_command:
        changes["command_line"] = None
    if options.ports:
        changes["ports"] = [parse_port(p) for p in options.ports]
    if options.memory_limit is not None:
        changes["memory_limit"] = parse_memory_limit(options.memory_limit)
    if options.cpu_shares is not None:
        changes["cpu_shares"] = parse_cpu_shares(options.cpu_shares)
    if options.restart is not None:
        changes["restart_policy"] = parse_restart(options.restart)
    if options.replicas is not None:
        changes["replicas"] = parse_replicas(options.replicas)
    set_env = dict(parse_env(e) for e in options.env)
    for key in options.unset_env:
        if not key or "=" in key:
            raise CLIError(f"bad --unset-env {key!r}: give a variable's name")
        if key in set_env:
            raise CLIError(f"--env and --unset-env both name {key!r}")
    health = parse_health_options(options)
    update = _Update(changes, set_env, tuple(options.unset_env), health)
    if not (changes or set_env or update.unset_env or health.given):
        raise CLIError(
            f"nothing to update: give at least one option (flocker apps update "
            f"{options.name} --help lists them)"
        )
    return update


async def current_container(context: Context, name: str) -> Container:
    """The application's configured container; `CLIError` if there is none."""
    for container in await context.client.list_containers_configuration():
        if container.name == name:
            return container
    raise CLIError(f"unknown application {name!r}")


async def still_at_revision(context: Context, name: str, revision: int) -> Container:
    """
    The application's configured container, while it is at ``revision``;
    a `CLIError` saying why if the control service rolled that revision
    back, or it was changed meanwhile.
    """
    current = await current_container(context, name)
    if current.revision == revision:
        return current
    if current.update_failed is not None:
        raise CLIError(
            f"the update of {name} to revision {revision} was rolled back: "
            f"{current.update_failed}"
        )
    raise CLIError(
        f"application {name} was changed meanwhile (now revision {current.revision})"
    )


async def _wait_settled(
    context: Context, name: str, revision: int, timeout: float
) -> None:
    """
    Wait until the update to ``revision`` is done (its instance healthy);
    a `CLIError` if the control service rolled it back instead.
    """

    async def probe() -> tuple[bool, str]:
        current = await still_at_revision(context, name, revision)
        if not current.updating:
            return True, "healthy"
        view = await view_of(context, name)
        return False, "pending" if view is None else view["state"].split(";")[0]

    await wait_until(
        context.clock,
        context.err,
        f"application {name} revision {revision} healthy",
        probe,
        timeout,
    )


async def update(context: Context, options: argparse.Namespace) -> None:
    """
    Change an application's image, environment, command, ports, health
    check, limits or number of instances.
    """
    timeout = parse_timeout(options.timeout)
    requested = _parse_update(options)
    current = await current_container(context, options.name)
    fields = requested.apply(current)
    updated = await context.client.update_container(options.name, **fields)
    changed = updated.revision != current.revision
    if options.wait and updated.updating:
        await _wait_settled(context, options.name, updated.revision, timeout)
    view = await view_of(context, options.name)
    if view is None:
        return
    if changed:
        print_one(context, view, "updated", f"to revision {updated.revision}")
    else:
        print_one(
            context, view, "unchanged", f"(the same specification, revision {updated.revision})"
        )


async def rollback(context: Context, options: argparse.Namespace) -> None:
    """Return an application to the specification its last update replaced."""
    client = context.client
    current = await current_container(context, options.name)
    if current.previous_image is None:
        raise CLIError(
            f"application {options.name} has no previous specification to roll "
            "back to (it was not updated since it was created or last rolled back)"
        )
    rolled_back = await client.rollback_container(options.name)
    view = await view_of(context, options.name)
    if view is not None:
        print_one(
            context,
            view,
            "rolled back",
            f"to revision {rolled_back.revision} (image {rolled_back.image})",
        )


def register_updates(group: Commands) -> None:
    """Add ``flocker apps update`` and ``flocker apps rollback`` to the ``apps`` group."""
    parser = add_command(
        group,
        "update",
        "change an application (a new revision, which rollback undoes)",
        update,
        description=(
            "Change an application relative to what it is now: --env sets "
            "variables in its environment (--unset-env removes some), the "
            "--health-* timings adjust its health check, any other option "
            "replaces that field (--port replaces all its ports).  A changed "
            "specification is its next revision; the control service rolls it "
            "back by itself if the new instance turns unhealthy, and "
            "'flocker apps rollback' returns to the previous one."
        ),
    )
    parser.add_argument("name", metavar="NAME")
    parser.add_argument("--image", help="its new Docker image")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="K=V",
        help="set an environment variable, keeping the others (repeatable)",
    )
    parser.add_argument(
        "--unset-env",
        action="append",
        default=[],
        metavar="K",
        help="remove an environment variable (repeatable)",
    )
    commands = parser.add_mutually_exclusive_group()
    commands.add_argument(
        "--command",
        metavar="CMDLINE",
        help="run this (split as a shell does) instead of the image's command",
    )
    commands.add_argument(
        "--no-command", action="store_true", help="run the image's own command"
    )
    parser.add_argument(
        "--port",
        action="append",
        default=[],
        metavar="EXT:INT",
        dest="ports",
        help="publish container port INT on the node's port EXT; the ports given "
        "replace all its ports (repeatable)",
    )
    add_health_options(parser, removable=True)
    parser.add_argument(
        "--memory-limit", metavar="SIZE", help="e.g. 256M, or none to remove the limit"
    )
    parser.add_argument(
        "--cpu-shares", metavar="N", help="relative CPU weight 1-262144, or none"
    )
    parser.add_argument(
        "--restart",
        metavar="POLICY",
        help="never, always, on-failure or on-failure:N",
    )
    parser.add_argument(
        "--replicas",
        metavar="N",
        help="run N instances (1-64), spread over the nodes; only without volumes",
    )
    add_wait_options(
        parser,
        "the new revision is healthy (exit code 1 if it is rolled back instead)",
    )
    parser = add_command(
        group,
        "rollback",
        "return an application to the specification its last update replaced",
        rollback,
    )
    parser.add_argument("name", metavar="NAME")
