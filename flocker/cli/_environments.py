"""
``flocker env clone|ls|reset|rm``: environments, groups of applications
cloned with their data into named copies (staging copies, one per
developer…).

``env clone`` snapshots every dataset of the applications and, for each
copy, runs ``APP-ENV-COPY`` on the same node on clones of those datasets, with
free external ports (or those ``--port COPY:APP:ORIG=NEW`` gives) and links
rewired within the copy.  ``env reset`` gives a copy fresh clones of the
environment's snapshot; ``env rm`` removes one copy or all of them.

``--wait`` polls the cluster until every application of the copies runs on
its node (the containers' state) and each copy's datasets are mounted
there (the datasets' state).  An application's state in ``env ls`` is
``running`` or ``pending`` as its node reports it, ``moving`` while only
another node does, or ``missing`` if it was removed from the configuration.
"""

from __future__ import annotations

import argparse
import re
from typing import Any
from uuid import UUID

from ..apiclient import environment_copy_to_json, environment_to_json
from ._command import Commands, Context, add_command, add_group
from ._errors import CLIError
from ._format import table, write_json
from ._resolve import node_label
from ._wait import add_wait_options, parse_timeout, wait_until

__all__ = ["parse_copy_port", "register"]

_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}")

#: The most applications in an environment and copies of it.
MAXIMUM_APPLICATIONS = 32
MAXIMUM_COPIES = 50


def _check_name(text: str, what: str) -> str:
    """``text`` if it can name an application, environment or copy."""
    if not _NAME.fullmatch(text):
        raise CLIError(
            f"bad {what} {text!r}: give 1-128 letters, digits and _.-, starting "
            "with a letter or digit"
        )
    return text


def parse_applications(text: str) -> list[str]:
    """``--apps web,db`` as a list of distinct application names."""
    names = [n.strip() for n in text.split(",")]
    for name in names:
        _check_name(name, "application name in --apps")
    if len(set(names)) != len(names):
        raise CLIError(f"bad --apps {text!r}: an application is named twice")
    if len(names) > MAXIMUM_APPLICATIONS:
        raise CLIError(
            f"bad --apps {text!r}: at most {MAXIMUM_APPLICATIONS} applications"
        )
    return names


def parse_copies(count: str | None, names: list[str]) -> int | list[str]:
    """``--copies N`` as a number, or the ``--copy NAME`` list."""
    if count is not None:
        try:
            number = int(count)
        except ValueError:
            number = 0
        if not 0 < number <= MAXIMUM_COPIES:
            raise CLIError(
                f"bad --copies {count!r}: give a number from 1 to {MAXIMUM_COPIES}"
            )
        return number
    for name in names:
        _check_name(name, "copy name")
    if len(set(names)) != len(names):
        raise CLIError("bad --copy: a copy is named twice")
    if len(names) > MAXIMUM_COPIES:
        raise CLIError(f"bad --copy: at most {MAXIMUM_COPIES} copies")
    return names


def _copy_names(copies: int | list[str]) -> list[str]:
    """The copies' names: "1", "2"… for a number."""
    if isinstance(copies, int):
        return [str(n) for n in range(1, copies + 1)]
    return copies


def _port_number(text: str, spec: str) -> int:
    """A TCP port number from ``--port``."""
    try:
        number = int(text)
    except ValueError:
        number = 0
    if not 0 < number < 65536:
        raise CLIError(f"bad --port {spec!r}: {text!r} is not a port number (1-65535)")
    return number


def parse_copy_port(text: str) -> tuple[str, str, int, int]:
    """``COPY:APP:ORIG=NEW`` as (copy, application, original port, new port)."""
    where, sep, new = text.partition("=")
    parts = where.split(":")
    if not sep or len(parts) != 3 or not parts[0] or not parts[1]:
        raise CLIError(
            f"bad --port {text!r}: give COPY:APP:ORIGINAL=NEW, e.g. 1:web:8080=18080"
        )
    copy, application, original = parts
    return copy, application, _port_number(original, text), _port_number(new, text)


def _ports(
    texts: list[str], applications: list[str], copies: list[str]
) -> dict[str, dict[str, dict[int, int]]]:
    """
    The ports to ask for, from the ``--port`` options: copy → application
    → original external port → new one.
    """
    ports: dict[str, dict[str, dict[int, int]]] = {}
    chosen: set[int] = set()
    for text in texts:
        copy, application, original, new = parse_copy_port(text)
        if copy not in copies:
            raise CLIError(
                f"bad --port {text!r}: {copy!r} is not one of the copies "
                f"({', '.join(copies)})"
            )
        if application not in applications:
            raise CLIError(f"bad --port {text!r}: {application!r} is not in --apps")
        mapping = ports.setdefault(copy, {}).setdefault(application, {})
        if original in mapping:
            raise CLIError(f"bad --port {text!r}: port {original} is given twice")
        if new in chosen:
            raise CLIError(f"bad --port {text!r}: port {new} is given twice")
        mapping[original] = new
        chosen.add(new)
    return ports


async def _cluster(
    context: Context,
) -> tuple[dict[UUID, str | None], dict[tuple[str, str], bool], set[str]]:
    """Node addresses; (application, node) → running; the names reported anywhere."""
    client = context.client
    addresses = {n.uuid: n.host for n in await client.list_nodes()}
    states = await client.list_containers_state()
    running = {
        (s.container.name, str(s.container.node_uuid)): s.running for s in states
    }
    return addresses, running, {s.container.name for s in states}


def _application_state(
    application: dict[str, Any],
    running: dict[tuple[str, str], bool],
    reported: set[str],
) -> str:
    """An environment application's state: running, stopped, pending, moving, missing."""
    node = application.get("node_uuid")
    if node is None:
        return "missing"
    here = running.get((application["name"], node))
    if here is not None:
        return "running" if here else "stopped"
    return "moving" if application["name"] in reported else "pending"


def _enrich_copy(
    copy: dict[str, Any],
    addresses: dict[UUID, str | None],
    running: dict[tuple[str, str], bool],
    reported: set[str],
) -> dict[str, Any]:
    """A copy as the API gives it, each application with its node's address and state."""
    applications = []
    for application in copy["applications"]:
        node = application.get("node_uuid")
        applications.append(
            {
                **application,
                "ports": application.get("ports", []),
                "node_address": None if node is None else addresses.get(UUID(node)),
                "state": _application_state(application, running, reported),
            }
        )
    return {**copy, "applications": applications}


def _rows(environment: str, copy: dict[str, Any]) -> list[list[Any]]:
    """The table rows of one (enriched) copy."""
    return [
        [
            environment,
            copy["name"],
            a["name"],
            a["node_address"] or a.get("node_uuid"),
            a["state"],
            ",".join(f"{p['external']}->{p['internal']}" for p in a["ports"]),
        ]
        for a in copy["applications"]
    ]


_HEADERS = ["ENVIRONMENT", "COPY", "APPLICATION", "NODE", "STATE", "PORTS"]


async def _print_environments(
    context: Context, environments: list[dict[str, Any]]
) -> None:
    """Print environments: a row per application of each copy, or JSON."""
    addresses, running, reported = await _cluster(context)
    views = [
        {
            **e,
            "copies": [
                _enrich_copy(c, addresses, running, reported) for c in e["copies"]
            ],
        }
        for e in environments
    ]
    if context.json:
        write_json(context.out, views)
        return
    table(
        context.out,
        _HEADERS,
        [row for e in views for c in e["copies"] for row in _rows(e["name"], c)],
    )


async def _wait_copies(
    context: Context, what: str, copies: list[dict[str, Any]], timeout: float
) -> None:
    """Wait until the copies' applications run and their datasets are mounted."""
    client = context.client
    applications = [a for c in copies for a in c["applications"]]
    datasets = [UUID(d["dataset_id"]) for c in copies for d in c["datasets"]]

    async def probe() -> tuple[bool, str]:
        configuration = await client.list_datasets_configuration()
        states = await client.list_datasets_state()
        mounted = {(s.dataset_id, s.primary) for s in states if s.path is not None}
        ready = [
            d
            for d in datasets
            if d in configuration.datasets
            and (d, configuration.datasets[d].primary) in mounted
        ]
        addresses, running, reported = await _cluster(context)
        # A reset copy's old container runs on its old clone until it is
        # replaced: an application is ready once it runs on the datasets
        # the configuration gives it.
        wanted = {
            c.name: {v.dataset_id for v in c.volumes}
            for c in await client.list_containers_configuration()
        }
        actual = {
            (s.container.name, str(s.container.node_uuid)): {
                v.dataset_id for v in s.container.volumes
            }
            for s in await client.list_containers_state()
        }
        waiting = [
            a
            for a in applications
            if _application_state(a, running, reported) != "running"
            or actual.get((a["name"], a.get("node_uuid") or ""))
            != wanted.get(a["name"], set())
        ]
        status = (
            f"{len(applications) - len(waiting)}/{len(applications)} applications "
            f"running, {len(ready)}/{len(datasets)} datasets mounted"
        )
        if waiting:
            first = waiting[0]
            node = first.get("node_uuid")
            where = "no node" if node is None else node_label(addresses, UUID(node))
            status += (
                f" ({first['name']} on {where}: "
                f"{_application_state(first, running, reported)})"
            )
        return not waiting and len(ready) == len(datasets), status

    await wait_until(context.clock, context.err, what, probe, timeout)


async def clone(context: Context, options: argparse.Namespace) -> None:
    """Clone a group of applications, with their data, into copies."""
    name = _check_name(options.name, "environment name")
    applications = parse_applications(options.apps)
    copies = parse_copies(options.copies, options.copy)
    names = _copy_names(copies)
    for copy in names:
        for application in applications:
            # The copy's application is named APP-ENVIRONMENT-COPY.
            _check_name(
                f"{application}-{name}-{copy}", f"copy {copy!r}: application name"
            )
    ports = _ports(options.ports, applications, names)
    timeout = parse_timeout(options.timeout)
    configured = {c.name for c in await context.client.list_containers_configuration()}
    for application in applications:
        if application not in configured:
            raise CLIError(f"unknown application {application!r}")
    environment = environment_to_json(
        await context.client.create_environment(name, applications, copies, ports)
    )
    if options.wait:
        await _wait_copies(
            context,
            f"environment {name}'s {len(names)} copies running",
            environment["copies"],
            timeout,
        )
    await _print_environments(context, [environment])


async def ls(context: Context, options: argparse.Namespace) -> None:
    """List the environments (or one): a row per application of each copy."""
    if options.name is None:
        listed = await context.client.list_environments()
    else:
        name = _check_name(options.name, "environment name")
        listed = [await context.client.get_environment(name)]
    environments = [environment_to_json(e) for e in listed]
    await _print_environments(context, environments)


async def reset(context: Context, options: argparse.Namespace) -> None:
    """Give a copy fresh clones of the environment's snapshot."""
    name = _check_name(options.name, "environment name")
    copy_name = _check_name(options.copy, "copy name")
    timeout = parse_timeout(options.timeout)
    copy = environment_copy_to_json(
        await context.client.reset_environment_copy(name, copy_name)
    )
    if options.wait:
        await _wait_copies(
            context, f"copy {copy_name} of environment {name} running", [copy], timeout
        )
    addresses, running, reported = await _cluster(context)
    view = _enrich_copy(copy, addresses, running, reported)
    if context.json:
        write_json(context.out, view)
        return
    context.out.write(
        f"reset copy {copy_name} of environment {name} "
        f"({len(copy['datasets'])} datasets cloned afresh)\n"
    )
    table(context.out, _HEADERS, _rows(name, view))


async def rm(context: Context, options: argparse.Namespace) -> None:
    """Remove one copy of an environment, or the environment and all its copies."""
    name = _check_name(options.name, "environment name")
    if options.copy is None:
        removed = environment_to_json(await context.client.delete_environment(name))
        message = f"removed environment {name}\n"
    else:
        copy_name = _check_name(options.copy, "copy name")
        removed = environment_copy_to_json(
            await context.client.delete_environment_copy(name, copy_name)
        )
        applications = ", ".join(a["name"] for a in removed["applications"])
        message = (
            f"removed copy {copy_name} of environment {name}"
            + (f" ({applications})" if applications else "")
            + "\n"
        )
    if context.json:
        write_json(context.out, removed)
    else:
        context.out.write(message)


def register(commands: Commands) -> None:
    """Add ``flocker env …``."""
    group = add_group(
        commands,
        "env",
        "clone groups of applications with their data into copies; list, "
        "reset and remove them",
    )
    parser = add_command(
        group,
        "clone",
        "clone applications and their datasets into copies (APP-NAME-COPY, on "
        "the same nodes, with their own ports)",
        clone,
    )
    parser.add_argument("name", metavar="NAME", help="the environment's name")
    parser.add_argument(
        "--apps",
        required=True,
        metavar="A,B,...",
        help="the applications to clone, with their datasets",
    )
    copies = parser.add_mutually_exclusive_group(required=True)
    copies.add_argument("--copies", metavar="N", help='N copies, named "1", "2", ...')
    copies.add_argument(
        "--copy",
        action="append",
        default=[],
        metavar="NAME",
        help="a copy named NAME (repeatable)",
    )
    parser.add_argument(
        "--port",
        action="append",
        default=[],
        dest="ports",
        metavar="COPY:APP:ORIG=NEW",
        help="publish APP's port ORIG as NEW in COPY (repeatable; other ports "
        "are chosen free)",
    )
    add_wait_options(parser, "every copy's applications run")
    parser = add_command(
        group,
        "ls",
        "list environments: a row per application of each copy, with its "
        "node, state and ports",
        ls,
    )
    parser.add_argument("name", metavar="NAME", nargs="?", help="only this environment")
    parser = add_command(
        group,
        "reset",
        "give a copy fresh clones of the environment's snapshot (its "
        "applications restart on them; its changes are lost)",
        reset,
    )
    parser.add_argument("name", metavar="NAME", help="the environment")
    parser.add_argument("copy", metavar="COPY", help="the copy")
    add_wait_options(parser, "the copy's applications run again")
    parser = add_command(
        group,
        "rm",
        "remove one copy, or the environment with all its copies (their "
        "applications and clones)",
        rm,
    )
    parser.add_argument("name", metavar="NAME", help="the environment")
    parser.add_argument("copy", metavar="COPY", nargs="?", help="only this copy")
