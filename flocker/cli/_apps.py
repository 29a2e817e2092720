"""
``flocker apps ls|deploy|move|rm`` (and ``update|rollback``, see
`flocker.cli._apps_update`, and ``scale``, see `flocker.cli._apps_scale`):
applications (containers) and the datasets they mount.  What ``ls`` shows
of each is `flocker.cli._app_views`.
"""

from __future__ import annotations

import argparse
from uuid import UUID

from ..apiclient import Container, MountedDataset
from ._app_options import (
    add_health_options,
    check_health_port,
    parse_env,
    parse_health_options,
    parse_link,
    parse_port,
    parse_replicas,
    parse_volume,
)
from ._app_views import all_views, print_one, view_of
from ._apps_scale import register_scale
from ._apps_update import register_updates
from ._command import Commands, Context, add_command, add_group
from ._errors import CLIError
from ._format import table, write_json
from ._resolve import node_label, resolve_dataset, resolve_node
from ._wait import add_wait_options, parse_timeout, wait_until

__all__ = ["register"]


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
    views = await all_views(context)
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
    """
    Configure an application on a node, with its ports, volumes,
    environment, links, health check and number of instances.
    """
    ports = [parse_port(p) for p in options.ports]
    environment = dict(parse_env(e) for e in options.env)
    links = [parse_link(x) for x in options.link]
    volumes = [parse_volume(v) for v in options.volume]
    timeout = parse_timeout(options.timeout)
    replicas = parse_replicas(options.replicas)
    if not options.name:
        raise CLIError("an application name must not be empty")
    if replicas > 1 and volumes:
        raise CLIError(
            f"application {options.name} mounts a dataset (--volume), so it runs "
            "once: its data is on one node (--replicas is for applications "
            "without volumes)"
        )
    health = parse_health_options(options).resolve(options.name, None)
    check_health_port(options.name, health, ports)
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
        health=health,
        replicas=replicas,
    )
    await client.create_container(container)
    label = node.host or str(node.uuid)
    if options.wait:
        await _wait_running(context, options.name, node.uuid, label, timeout)
    view = await view_of(context, options.name)
    if view is not None:
        print_one(context, view, "deployed")


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
    view = await view_of(context, options.name)
    if view is not None:
        print_one(context, view, "moved" if options.wait else "moving")


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
    group = add_group(
        commands,
        "apps",
        "list, deploy, update, scale, roll back, move and remove applications",
    )
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
    add_health_options(parser, removable=False)
    parser.add_argument(
        "--replicas",
        metavar="N",
        default="1",
        help="run N instances (1-64): one on NODE, the others one per node on the "
        "nodes after it, then doubled up round them; only without --volume (default 1)",
    )
    add_wait_options(parser, "it runs on the node")
    parser = add_command(group, "move", "move an application and its datasets", move)
    parser.add_argument("name", metavar="NAME")
    parser.add_argument("--to", required=True, metavar="NODE", help="address or UUID")
    add_wait_options(parser, "it runs on the new node")
    parser = add_command(group, "rm", "remove an application (its datasets stay)", rm)
    parser.add_argument("name", metavar="NAME")
    register_updates(group)
    register_scale(group)
