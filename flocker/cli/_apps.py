"""
``flocker apps ls|deploy|move|rm``: applications (containers) and the
datasets they mount.

An application's state is ``running`` or ``stopped`` as its node reports
it, ``pending`` while no node reports it, or ``moving`` while only another
node does.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from ..apiclient import (
    Container,
    ContainerPort,
    ContainerState,
    ImagePullState,
    Link,
    MountedDataset,
)
from ._command import Commands, Context, add_command, add_group
from ._errors import CLIError
from ._format import table, write_json
from ._resolve import dataset_name, node_label, resolve_dataset, resolve_node
from ._wait import add_wait_options, parse_timeout, wait_until

__all__ = ["app_view", "parse_env", "parse_link", "parse_port", "register"]

_VOLUME = re.compile(r"^(?P<dataset>[^:]+):(?P<path>/.*)$")


def _port_number(text: str, what: str, spec: str) -> int:
    """A TCP port number, or a `CLIError` naming the option."""
    try:
        number = int(text)
    except ValueError:
        number = 0
    if not 0 < number < 65536:
        raise CLIError(f"bad {what} {spec!r}: {text!r} is not a port number (1-65535)")
    return number


def parse_port(text: str) -> ContainerPort:
    """``EXTERNAL:INTERNAL`` (``--port 8080:80``) as a `ContainerPort`."""
    external, sep, internal = text.partition(":")
    if not sep:
        raise CLIError(f"bad --port {text!r}: give EXTERNAL:INTERNAL, e.g. 8080:80")
    return ContainerPort(
        external=_port_number(external, "--port", text),
        internal=_port_number(internal, "--port", text),
    )


def parse_env(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` (``--env``) as a pair."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise CLIError(f"bad --env {text!r}: give KEY=VALUE")
    return key, value


def parse_link(text: str) -> Link:
    """``ALIAS:LOCAL_PORT:REMOTE_PORT`` (``--link``) as a `Link`."""
    parts = text.split(":")
    if len(parts) != 3 or not parts[0]:
        raise CLIError(f"bad --link {text!r}: give ALIAS:LOCAL_PORT:REMOTE_PORT")
    return Link(
        alias=parts[0],
        local_port=_port_number(parts[1], "--link", text),
        remote_port=_port_number(parts[2], "--link", text),
    )


def parse_volume(text: str) -> tuple[str, str]:
    """``DATASET:/path`` (``--volume``) as (dataset, mountpoint)."""
    match = _VOLUME.match(text)
    if match is None:
        raise CLIError(f"bad --volume {text!r}: give DATASET:/absolute/path")
    return match["dataset"], match["path"]


def app_view(
    container: Container,
    states: list[ContainerState],
    addresses: dict[UUID, str | None],
    names: dict[UUID, str | None],
    pulls: Mapping[tuple[UUID, str], ImagePullState] | None = None,
) -> dict[str, Any]:
    """
    An application as ``--json`` shows it (and the table is made from).

    :param pulls: (node, application name) → the pull of its image there,
        for the images being pulled or that failed to be.
    """
    reported = [s for s in states if s.container.name == container.name]
    here = [s for s in reported if s.container.node_uuid == container.node_uuid]
    pull = (pulls or {}).get((container.node_uuid, container.name))
    if here:
        state = "running" if here[0].running else "stopped"
    elif pull is not None:
        state = "pulling image" if pull.pulling else f"image pull failed: {pull.reason}"
    elif reported:
        state = "moving"
    else:
        state = "pending"
    return {
        "image_pull": None
        if pull is None or here
        else {
            "pulling": pull.pulling,
            "reason": pull.reason,
            "attempts": pull.attempts,
        },
        "name": container.name,
        "node": str(container.node_uuid),
        "node_address": addresses.get(container.node_uuid),
        "image": container.image,
        "running": bool(here and here[0].running),
        "state": state,
        "ports": [
            {"external": p.external, "internal": p.internal} for p in container.ports
        ],
        "volumes": [
            {
                "dataset_id": str(v.dataset_id),
                "name": names.get(v.dataset_id),
                "mountpoint": v.mountpoint,
            }
            for v in container.volumes
        ],
        "environment": dict(container.environment),
        "links": [
            {"alias": x.alias, "local_port": x.local_port, "remote_port": x.remote_port}
            for x in container.links
        ],
    }


async def _views(context: Context) -> list[dict[str, Any]]:
    """Every configured application's view."""
    client = context.client
    containers = await client.list_containers_configuration()
    states = await client.list_containers_state()
    nodes = await client.list_nodes()
    addresses = {n.uuid: n.host for n in nodes}
    pulls = {(n.uuid, name): pull for n in nodes for name, pull in n.image_pulls.items()}
    datasets = (await client.list_datasets_configuration()).datasets
    names = {k: dataset_name(v) for k, v in datasets.items()}
    return [app_view(c, states, addresses, names, pulls) for c in containers]


async def _view(context: Context, name: str) -> dict[str, Any] | None:
    """One application's view, or ``None`` if it is not configured."""
    for view in await _views(context):
        if view["name"] == name:
            return view
    return None


def _print_one(context: Context, view: dict[str, Any], verb: str) -> None:
    """Say what happened to an application (or print it as JSON)."""
    if context.json:
        write_json(context.out, view)
        return
    where = view["node_address"] or view["node"]
    context.out.write(
        f"{verb} application {view['name']} on {where}, {view['state']}\n"
    )


async def _wait_running(
    context: Context, name: str, node: UUID, label: str, timeout: float
) -> None:
    """Wait until the application runs on ``node``."""
    client = context.client

    async def probe() -> tuple[bool, str]:
        states = await client.list_containers_state()
        addresses = {n.uuid: n.host for n in await client.list_nodes()}
        reported = [s for s in states if s.container.name == name]
        for s in reported:
            if s.container.node_uuid == node and s.running:
                return True, "running"
        if not reported:
            return False, "not running on any node"
        return False, ", ".join(
            f"{'running' if s.running else 'stopped'} on "
            f"{node_label(addresses, s.container.node_uuid)}"
            for s in reported
        )

    await wait_until(
        context.clock,
        context.err,
        f"application {name} running on {label}",
        probe,
        timeout,
    )


async def ls(context: Context, options: argparse.Namespace) -> None:
    """List the applications: name, node, image, running, ports."""
    views = await _views(context)
    if context.json:
        write_json(context.out, views)
        return
    table(
        context.out,
        ["NAME", "NODE", "IMAGE", "STATE", "PORTS", "VOLUMES"],
        [
            [
                v["name"],
                v["node_address"] or v["node"],
                v["image"],
                v["state"],
                ",".join(f"{p['external']}->{p['internal']}" for p in v["ports"]),
                ",".join(
                    f"{x['name'] or x['dataset_id'][:8]}:{x['mountpoint']}"
                    for x in v["volumes"]
                ),
            ]
            for v in views
        ],
    )


async def deploy(context: Context, options: argparse.Namespace) -> None:
    """Configure an application on a node, with its ports, volumes, environment, links."""
    ports = [parse_port(p) for p in options.ports]
    environment = dict(parse_env(e) for e in options.env)
    links = [parse_link(x) for x in options.link]
    volumes = [parse_volume(v) for v in options.volume]
    timeout = parse_timeout(options.timeout)
    if not options.name:
        raise CLIError("an application name must not be empty")
    client = context.client
    nodes = await client.list_nodes()
    node = resolve_node(nodes, options.node)
    mounted = []
    if volumes:
        datasets = (await client.list_datasets_configuration()).datasets.values()
        for text, mountpoint in volumes:
            dataset = resolve_dataset(datasets, text)
            if dataset.primary != node.uuid:
                where = node_label({n.uuid: n.host for n in nodes}, dataset.primary)
                raise CLIError(
                    f"dataset {text!r} is on {where}, not {options.node}: move it "
                    f"first (flocker datasets move {text} --to {options.node})"
                )
            mounted.append(
                MountedDataset(dataset_id=dataset.dataset_id, mountpoint=mountpoint)
            )
    container = Container(
        node_uuid=node.uuid,
        name=options.name,
        image=options.image,
        ports=ports,
        environment=environment,
        volumes=mounted,
        links=links,
    )
    await client.create_container(container)
    label = node.host or str(node.uuid)
    if options.wait:
        await _wait_running(context, options.name, node.uuid, label, timeout)
    view = await _view(context, options.name)
    if view is not None:
        _print_one(context, view, "deployed")


async def move(context: Context, options: argparse.Namespace) -> None:
    """Move an application, and the datasets it mounts, to another node."""
    timeout = parse_timeout(options.timeout)
    client = context.client
    names = [c.name for c in await client.list_containers_configuration()]
    if options.name not in names:
        raise CLIError(f"unknown application {options.name!r}")
    node = resolve_node(await client.list_nodes(), options.to)
    await client.move_container(options.name, node.uuid)
    label = node.host or str(node.uuid)
    if options.wait:
        await _wait_running(context, options.name, node.uuid, label, timeout)
    view = await _view(context, options.name)
    if view is not None:
        _print_one(context, view, "moved" if options.wait else "moving")


async def rm(context: Context, options: argparse.Namespace) -> None:
    """Remove an application (its datasets stay)."""
    client = context.client
    names = [c.name for c in await client.list_containers_configuration()]
    if options.name not in names:
        raise CLIError(f"unknown application {options.name!r}")
    removed = await client.delete_container(options.name)
    if context.json:
        write_json(context.out, {"name": removed.name, "removed": True})
    else:
        context.out.write(f"removed application {removed.name}\n")


def register(commands: Commands) -> None:
    """Add ``flocker apps …``."""
    group = add_group(commands, "apps", "list, deploy, move and remove applications")
    add_command(
        group, "ls", "list the applications: name, node, image, state, ports", ls
    )
    parser = add_command(group, "deploy", "run an application on a node", deploy)
    parser.add_argument("name", metavar="NAME")
    parser.add_argument("--image", required=True, help="its Docker image")
    parser.add_argument("--node", required=True, help="its node: address or UUID")
    parser.add_argument(
        "--port",
        action="append",
        default=[],
        metavar="EXT:INT",
        dest="ports",
        help="publish container port INT on the node's port EXT (repeatable)",
    )
    parser.add_argument(
        "--volume",
        action="append",
        default=[],
        metavar="DATASET:/path",
        help="mount a dataset on the same node at /path (repeatable)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="K=V",
        help="an environment variable (repeatable)",
    )
    parser.add_argument(
        "--link",
        action="append",
        default=[],
        metavar="ALIAS:LOCAL:REMOTE",
        help="reach another application's REMOTE port as ALIAS:LOCAL (repeatable)",
    )
    add_wait_options(parser, "it runs on the node")
    parser = add_command(group, "move", "move an application and its datasets", move)
    parser.add_argument("name", metavar="NAME")
    parser.add_argument("--to", required=True, metavar="NODE", help="address or UUID")
    add_wait_options(parser, "it runs on the new node")
    parser = add_command(group, "rm", "remove an application (its datasets stay)", rm)
    parser.add_argument("name", metavar="NAME")
