"""
``flocker datasets ls|create|move|resize|rm``: the cluster's datasets
(``replicate``, ``unreplicate`` and ``failover`` are in
`flocker.cli._replicas`).

A dataset's state (see `flocker.cli._dataset_views`) is ``pending``,
``mounted``, ``fenced``, ``moving`` or ``deleting``.  Its standing replicas are
shown with their lag: the age of the newest snapshot each holds, which is
how much data a failover to it would lose now.  So are its *diverged*
copies: a former primary's copy of an older epoch, kept after a failover
(never exposed, never overwritten; it may hold writes the new primary
lacks).  The ``REPLICAS`` column shows both, and appears only when some
dataset has one, so a cluster that does not replicate sees the same table
as before; a copy that set snapshots aside (what it held when a failover
superseded it, kept when it rejoined) says how many.  The ``EPOCH`` column
(failovers so far) appears only when some dataset failed over.
"""

from __future__ import annotations

import argparse
from typing import Any

from ._command import Commands, Context, add_command, add_group
from ._dataset_views import cluster_view, current_view, dataset_view, wait_mounted
from ._errors import CLIError
from ._format import format_duration, format_size, parse_size, table, write_json
from ._replicas import register_replicas
from ._resolve import dataset_name, resolve_dataset, resolve_node
from ._wait import add_wait_options, parse_timeout

__all__ = ["register"]


def _replica_cell(replica: dict[str, Any]) -> str:
    """One replica for the table: its node and lag (or why there is none)."""
    node = replica["address"] or replica["node_uuid"][:8]
    aside = _set_aside_words(replica)
    if replica["lag_seconds"] is not None:
        return f"{node} (lag {format_duration(replica['lag_seconds'])}{aside})"
    if replica["last_snapshot"] is None:
        return f"{node} (no data yet{aside})"
    return f"{node} (lag unknown{aside})"


def _set_aside_words(copy: dict[str, Any]) -> str:
    """``, N set aside`` for a copy that kept set-aside snapshots, else nothing."""
    count = len(copy.get("set_aside", []))
    return f", {count} set aside" if count else ""


def _diverged_cell(copy: dict[str, Any]) -> str:
    """One diverged copy for the table: its node and the epoch it stayed at."""
    node = copy["address"] or copy["node_uuid"][:8]
    aside = _set_aside_words(copy)
    if copy["epoch"] is None:
        return f"{node} (diverged{aside})"
    return f"{node} (diverged, epoch {copy['epoch']}{aside})"


def _print_one(context: Context, view: dict[str, Any], verb: str) -> None:
    """Say what happened to one dataset (or print it as JSON)."""
    if context.json:
        write_json(context.out, view)
        return
    name = f" ({view['name']})" if view["name"] else ""
    where = view["primary_address"] or view["primary"]
    detail = f", mounted at {view['path']}" if view["path"] else f", {view['state']}"
    context.out.write(f"{verb} dataset {view['dataset_id']}{name} on {where}{detail}\n")


async def ls(context: Context, options: argparse.Namespace) -> None:
    """List the datasets: id, name, size, primary node, state and path."""
    configuration, states, addresses = await cluster_view(context)
    views = sorted(
        (dataset_view(d, states, addresses) for d in configuration.datasets.values()),
        key=lambda v: (v["name"] is None, v["name"] or "", v["dataset_id"]),
    )
    if context.json:
        write_json(context.out, views)
        return
    headers = ["DATASET", "NAME", "SIZE", "NODE", "STATE", "PATH"]
    rows = [
        [
            v["dataset_id"],
            v["name"],
            format_size(v["maximum_size"]),
            v["primary_address"] or v["primary"],
            v["state"],
            v["path"],
        ]
        for v in views
    ]
    # The EPOCH column appears only once some dataset has failed over.
    if any(v["epoch"] for v in views):
        headers.append("EPOCH")
        for row, v in zip(rows, views, strict=True):
            row.append(str(v["epoch"]))
    # The REPLICAS column appears only in clusters that replicate (or have
    # failed over and kept a diverged copy).
    if any(v["replicas"] or v["diverged"] for v in views):
        headers.append("REPLICAS")
        for row, v in zip(rows, views, strict=True):
            # A node named a replica whose copy is still diverged (it will
            # rejoin) is shown once, as diverged.
            diverged_on = {d["node_uuid"] for d in v["diverged"]}
            cells = [
                *(_replica_cell(r) for r in v["replicas"] if r["node_uuid"] not in diverged_on),
                *map(_diverged_cell, v["diverged"]),
            ]
            row.append(", ".join(cells) or None)
    table(context.out, headers, rows)


async def create(context: Context, options: argparse.Namespace) -> None:
    """Create a dataset on a node, optionally waiting until it is mounted."""
    size = None if options.size is None else parse_size(options.size)
    timeout = parse_timeout(options.timeout)
    if options.name is not None and not options.name.strip():
        raise CLIError("a dataset name must not be empty")
    client = context.client
    node = resolve_node(await client.list_nodes(), options.node)
    if options.name is not None:
        configuration = await client.list_datasets_configuration()
        taken = [
            d
            for d in configuration.datasets.values()
            if not d.deleted and dataset_name(d) == options.name
        ]
        if taken:
            raise CLIError(
                f"a dataset named {options.name!r} exists already "
                f"({taken[0].dataset_id})"
            )
    dataset = await client.create_dataset(
        primary=node.uuid,
        maximum_size=size,
        metadata=None if options.name is None else {"name": options.name},
    )
    if options.wait:
        await wait_mounted(
            context, dataset.dataset_id, node.host or str(node.uuid), timeout
        )
    view = await current_view(context, dataset.dataset_id)
    _print_one(context, view or dataset_view(dataset, [], {}), "created")


async def move(context: Context, options: argparse.Namespace) -> None:
    """Make another node a dataset's primary, optionally waiting for it there."""
    timeout = parse_timeout(options.timeout)
    client = context.client
    configuration = await client.list_datasets_configuration()
    dataset = resolve_dataset(configuration.datasets.values(), options.dataset)
    node = resolve_node(await client.list_nodes(), options.to)
    await client.move_dataset(node.uuid, dataset.dataset_id)
    if options.wait:
        await wait_mounted(
            context, dataset.dataset_id, node.host or str(node.uuid), timeout
        )
    view = await current_view(context, dataset.dataset_id)
    if view is not None:
        _print_one(context, view, "moved" if options.wait else "moving")


async def resize(context: Context, options: argparse.Namespace) -> None:
    """Set a dataset's maximum size (``unlimited`` for none)."""
    if options.size.lower() in ("unlimited", "none"):
        size = None
    else:
        size = parse_size(options.size)
    client = context.client
    configuration = await client.list_datasets_configuration()
    dataset = resolve_dataset(configuration.datasets.values(), options.dataset)
    await client.update_dataset(dataset.dataset_id, maximum_size=size)
    view = await current_view(context, dataset.dataset_id)
    if view is not None:
        if context.json:
            write_json(context.out, view)
        else:
            context.out.write(
                f"resized dataset {view['dataset_id']} to "
                f"{format_size(view['maximum_size'])}\n"
            )


async def rm(context: Context, options: argparse.Namespace) -> None:
    """Delete a dataset (refused while an application uses it)."""
    client = context.client
    configuration = await client.list_datasets_configuration()
    dataset = resolve_dataset(configuration.datasets.values(), options.dataset)
    deleted = await client.delete_dataset(dataset.dataset_id)
    if context.json:
        write_json(
            context.out,
            {"dataset_id": str(deleted.dataset_id), "deleted": deleted.deleted},
        )
    else:
        context.out.write(f"deleted dataset {deleted.dataset_id}\n")


def register(commands: Commands) -> None:
    """Add ``flocker datasets …``."""
    group = add_group(
        commands,
        "datasets",
        "list, create, move, resize, delete, replicate and fail over datasets",
    )
    add_command(
        group,
        "ls",
        "list the datasets: id, name, size, node, state",
        ls,
    )
    parser = add_command(group, "create", "create a dataset on a node", create)
    parser.add_argument("--node", required=True, help="its node: address or UUID")
    parser.add_argument("--size", help="its maximum size, e.g. 512M, 1G, 1073741824")
    parser.add_argument("--name", help="a name to refer to it by (its 'name' metadata)")
    add_wait_options(parser, "it is mounted on the node")
    parser = add_command(group, "move", "move a dataset to another node", move)
    parser.add_argument(
        "dataset", metavar="DATASET", help="its UUID, UUID prefix or name"
    )
    parser.add_argument("--to", required=True, metavar="NODE", help="address or UUID")
    add_wait_options(parser, "it is mounted on the new node")
    parser = add_command(group, "resize", "change a dataset's maximum size", resize)
    parser.add_argument(
        "dataset", metavar="DATASET", help="its UUID, UUID prefix or name"
    )
    parser.add_argument("size", metavar="SIZE", help="e.g. 2G, or 'unlimited'")
    parser = add_command(group, "rm", "delete a dataset", rm)
    parser.add_argument(
        "dataset", metavar="DATASET", help="its UUID, UUID prefix or name"
    )
    register_replicas(group)
