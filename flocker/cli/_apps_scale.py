"""
``flocker apps scale NAME N``: how many instances of an application run.

An application without volumes may run up to 64 instances: the first on
its configured node, the others one per node on the nodes after it in the
order of their UUIDs, and with more instances than nodes the extra ones
double up round the same nodes; every node's router spreads connections to
its ports over the healthy ones.  An application with volumes runs once: its data is on one node, and
the control service refuses more (its reason is the error).

A new number of instances is an update like any other (``flocker apps
update NAME --replicas N`` does the same): the application's next
revision, which ``flocker apps rollback`` undoes.  ``--wait`` waits until
all N instances are reported running (healthy, where their nodes probe
them) and the control service has confirmed the revision (it does once
every instance is healthy).
"""

from __future__ import annotations

import argparse

from ..apiclient import MAXIMUM_INSTANCES, BadRequest, ContainerConflict
from ._app_options import parse_replicas
from ._app_views import counted_instances, print_one, view_of
from ._apps_update import current_container, still_at_revision
from ._command import Commands, Context, add_command
from ._errors import CLIError
from ._wait import add_wait_options, parse_timeout, wait_until

__all__ = ["register_scale"]


def _instances(count: int) -> str:
    """``1 instance``, ``3 instances``."""
    return f"{count} instance{'' if count == 1 else 's'}"


async def _wait_scaled(
    context: Context, name: str, revision: int, replicas: int, timeout: float
) -> None:
    """
    Wait until all ``replicas`` instances are reported running (the
    control service lists each instance; a node listed once without
    health counts for the instances placed on it: `counted_instances`),
    none of them starting or unhealthy, and the revision is confirmed
    (every instance healthy); a `CLIError` if the control service rolled
    it back instead.
    """
    client = context.client

    async def probe() -> tuple[bool, str]:
        current = await still_at_revision(context, name, revision)
        nodes = [n.uuid for n in await client.list_nodes()]
        reported = [
            s
            for s in await client.list_containers_state()
            if s.container.name == name and s.running
        ]
        counted = counted_instances(current, reported, nodes)
        running = sum(n for _, n in counted)
        ready = all(s.health in (None, "healthy") for s, _ in counted)
        done = ready and running == replicas and not current.updating
        view = await view_of(context, name)
        state = "pending" if view is None else view["state"].split(";")[0]
        return done, f"{state} ({running} of {replicas} instances running)"

    await wait_until(
        context.clock,
        context.err,
        f"{_instances(replicas)} of application {name}",
        probe,
        timeout,
    )


async def scale(context: Context, options: argparse.Namespace) -> None:
    """Run N instances of an application (1 to 64, spread over the nodes; only without volumes)."""
    replicas = parse_replicas(options.instances, "number of instances")
    timeout = parse_timeout(options.timeout)
    name = options.name
    current = await current_container(context, name)
    try:
        updated = await context.client.update_container(name, replicas=replicas)
    except (BadRequest, ContainerConflict) as e:
        raise CLIError(
            f"cannot run {_instances(replicas)} of application {name}: "
            f"{e.description or e}"
        ) from None
    if options.wait:
        await _wait_scaled(context, name, updated.revision, replicas, timeout)
    view = await view_of(context, name)
    if view is None:
        return
    if updated.revision == current.revision:
        print_one(context, view, "unchanged", f"(already {_instances(replicas)})")
    else:
        print_one(
            context,
            view,
            "scaled",
            f"to {_instances(replicas)} (revision {updated.revision})",
        )


def register_scale(group: Commands) -> None:
    """Add ``flocker apps scale`` to the ``apps`` group."""
    parser = add_command(
        group,
        "scale",
        "run N instances of an application, spread over the nodes (only without volumes)",
        scale,
        description=(
            "Run N instances of an application (1 to "
            f"{MAXIMUM_INSTANCES}): one on its node, the others one per node "
            "on the nodes after it in UUID order, then doubled up round them "
            "again when there are more instances than nodes; every node's "
            "router spreads connections over the healthy ones.  An "
            "application with volumes runs once.  The new number is the "
            "application's next revision, which 'flocker apps rollback' "
            "undoes."
        ),
    )
    parser.add_argument("name", metavar="NAME")
    parser.add_argument(
        "instances", metavar="N", help=f"how many instances (1-{MAXIMUM_INSTANCES})"
    )
    add_wait_options(
        parser,
        "every instance is running and healthy (exit code 1 "
        "if the control service rolls the change back)",
    )
