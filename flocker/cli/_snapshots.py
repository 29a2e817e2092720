"""
``flocker snapshots ls|create|rm|rollback`` and ``flocker clone``: a
dataset's snapshots, rolling a dataset back to one, and making a new
dataset from one.

Snapshots are taken, listed and destroyed at once by the dataset agent of
the dataset's primary node, and stay on that node.  A rollback is carried
out by the agents (the application using the dataset is stopped for it);
``--wait`` polls the datasets' state until the dataset shows the request's
id as ``rolled_back``.  A clone is a new dataset on the same node;
``--wait`` waits until it is mounted there.  Every request is a method of
`IFlockerAPIV1Client`; ``--json`` prints the values as the REST API gives
them.
"""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from ..apiclient import (
    Dataset,
    origin_to_json,
    rollback_to_json,
    snapshot_to_json,
)
from ._command import Commands, Context, add_command, add_group
from ._dataset_views import dataset_view, wait_mounted
from ._errors import CLIError
from ._format import table, write_json
from ._resolve import dataset_name, node_label, resolve_dataset
from ._wait import add_wait_options, parse_timeout, wait_until

__all__ = ["check_snapshot_name", "register"]

_SNAPSHOT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


def check_snapshot_name(name: str) -> str:
    """
    ``name`` if the REST API accepts it as a snapshot name.

    :raise CLIError: if it is not 1-64 letters, digits and ``_.:-``
        starting with a letter or digit, or starts with ``flocker``
        (Flocker's own snapshots).
    """
    if not _SNAPSHOT_NAME.fullmatch(name):
        raise CLIError(
            f"bad snapshot name {name!r}: give 1-64 letters, digits and _.:-, "
            "starting with a letter or digit"
        )
    if name.lower().startswith("flocker"):
        raise CLIError(
            f"bad snapshot name {name!r}: names starting with 'flocker' are "
            "Flocker's own"
        )
    return name


async def _dataset(context: Context, text: str) -> Dataset:
    """The dataset ``text`` names (UUID, UUID prefix or name)."""
    configuration = await context.client.list_datasets_configuration()
    return resolve_dataset(configuration.datasets.values(), text)


def _label(dataset: Dataset) -> str:
    """``ID (name)`` for messages."""
    name = dataset_name(dataset)
    return f"{dataset.dataset_id}" + (f" ({name})" if name else "")


def format_time(seconds: float) -> str:
    """Seconds since the epoch as ``YYYY-MM-DD HH:MM:SS`` UTC."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


async def ls(context: Context, options: argparse.Namespace) -> None:
    """
    List a dataset's snapshots, oldest first, then those other nodes set
    aside after a failover (with the node keeping each).
    """
    dataset = await _dataset(context, options.dataset)
    snapshots = await context.client.list_snapshots(dataset.dataset_id)
    if context.json:
        write_json(context.out, [snapshot_to_json(s) for s in snapshots])
        return
    headers = ["SNAPSHOT", "CREATED (UTC)"]
    rows = [
        [s.name, None if s.created is None else format_time(s.created)]
        for s in snapshots
    ]
    # Set-aside snapshots (kept by a former primary when it rejoined after a
    # failover) live on another node: a column says which, when there are any.
    if any(s.set_aside for s in snapshots):
        addresses = {n.uuid: n.host for n in await context.client.list_nodes()}
        headers.append("SET ASIDE ON")
        for row, s in zip(rows, snapshots, strict=True):
            node = s.node_uuid if s.set_aside else None
            row.append(None if node is None else node_label(addresses, node))
    table(context.out, headers, rows)


async def create(context: Context, options: argparse.Namespace) -> None:
    """Take a snapshot of a dataset now, on its primary node."""
    name = check_snapshot_name(options.name)
    dataset = await _dataset(context, options.dataset)
    snapshot = await context.client.create_snapshot(dataset.dataset_id, name)
    if context.json:
        write_json(
            context.out,
            {"dataset_id": str(dataset.dataset_id), **snapshot_to_json(snapshot)},
        )
    else:
        context.out.write(
            f"created snapshot {snapshot.name} of dataset {_label(dataset)}\n"
        )


async def rm(context: Context, options: argparse.Namespace) -> None:
    """Destroy a snapshot (refused while clones depend on it)."""
    name = check_snapshot_name(options.name)
    dataset = await _dataset(context, options.dataset)
    snapshot = await context.client.delete_snapshot(dataset.dataset_id, name)
    if context.json:
        write_json(
            context.out,
            {
                "dataset_id": str(dataset.dataset_id),
                "deleted": True,
                **snapshot_to_json(snapshot),
            },
        )
    else:
        context.out.write(
            f"deleted snapshot {snapshot.name} of dataset {_label(dataset)}\n"
        )


async def _wait_rolled_back(
    context: Context, dataset: Dataset, request_id: UUID, timeout: float
) -> None:
    """Wait until the dataset's primary reports the rollback ``request_id`` done."""
    addresses = {n.uuid: n.host for n in await context.client.list_nodes()}
    node = node_label(addresses, dataset.primary)

    async def probe() -> tuple[bool, str]:
        states = await context.client.list_datasets_state()
        here = [
            s
            for s in states
            if s.dataset_id == dataset.dataset_id and s.primary == dataset.primary
        ]
        if not here:
            return False, f"not mounted on {node}"
        if here[0].rolled_back == request_id:
            return True, f"rolled back on {node}"
        return False, f"mounted on {node}, not rolled back yet"

    await wait_until(
        context.clock,
        context.err,
        f"dataset {str(dataset.dataset_id)[:8]} rolled back",
        probe,
        timeout,
    )


async def rollback(context: Context, options: argparse.Namespace) -> None:
    """Roll a dataset back to a snapshot (later snapshots are discarded)."""
    name = check_snapshot_name(options.name)
    timeout = parse_timeout(options.timeout)
    dataset = await _dataset(context, options.dataset)
    accepted = await context.client.rollback_dataset(dataset.dataset_id, name)
    if options.wait:
        await _wait_rolled_back(context, dataset, accepted.request_id, timeout)
    if context.json:
        write_json(
            context.out, {**rollback_to_json(accepted), "done": bool(options.wait)}
        )
    elif options.wait:
        context.out.write(f"rolled back dataset {_label(dataset)} to snapshot {name}\n")
    else:
        context.out.write(
            f"rolling back dataset {_label(dataset)} to snapshot {name} "
            f"(request {accepted.request_id})\n"
        )


async def clone(context: Context, options: argparse.Namespace) -> None:
    """Make a new dataset from a snapshot, on the same node."""
    snapshot = check_snapshot_name(options.snapshot)
    timeout = parse_timeout(options.timeout)
    if options.name is not None and not options.name.strip():
        raise CLIError("a dataset name must not be empty")
    client = context.client
    configuration = await client.list_datasets_configuration()
    datasets = configuration.datasets.values()
    dataset = resolve_dataset(datasets, options.dataset)
    if options.name is not None:
        taken = [
            d for d in datasets if not d.deleted and dataset_name(d) == options.name
        ]
        if taken:
            raise CLIError(
                f"a dataset named {options.name!r} exists already "
                f"({taken[0].dataset_id})"
            )
    made = await client.clone_dataset(
        dataset.dataset_id,
        snapshot,
        metadata=None if options.name is None else {"name": options.name},
    )
    new_id = made.dataset_id
    if options.wait:
        addresses = {n.uuid: n.host for n in await client.list_nodes()}
        where = node_label(addresses, made.primary)
        await wait_mounted(context, new_id, where, timeout)
    configuration = await client.list_datasets_configuration()
    states = await client.list_datasets_state()
    addresses = {n.uuid: n.host for n in await client.list_nodes()}
    configured = configuration.datasets.get(new_id)
    view: dict[str, Any] = (
        {"dataset_id": str(new_id), "name": None, "state": "deleting"}
        if configured is None
        else dataset_view(configured, states, addresses)
    )
    view["origin"] = (
        {"dataset_id": str(dataset.dataset_id), "snapshot": snapshot}
        if made.origin is None
        else origin_to_json(made.origin)
    )
    if context.json:
        write_json(context.out, view)
        return
    name = f" ({view['name']})" if view["name"] else ""
    where = node_label(addresses, dataset.primary)
    detail = f"mounted at {view['path']}" if view.get("path") else view["state"]
    context.out.write(
        f"cloned dataset {view['dataset_id']}{name} from {_label(dataset)} "
        f"snapshot {snapshot} on {where}, {detail}\n"
    )


def register(commands: Commands) -> None:
    """Add ``flocker snapshots …`` and ``flocker clone``."""
    group = add_group(
        commands,
        "snapshots",
        "list, take, delete a dataset's snapshots and roll back to one",
    )
    dataset_help = "the dataset: its UUID, UUID prefix or name"
    parser = add_command(group, "ls", "list a dataset's snapshots, oldest first", ls)
    parser.add_argument("dataset", metavar="DATASET", help=dataset_help)
    parser = add_command(
        group, "create", "take a snapshot of a dataset now, on its node", create
    )
    parser.add_argument("dataset", metavar="DATASET", help=dataset_help)
    parser.add_argument(
        "name",
        metavar="NAME",
        help="1-64 letters, digits and _.:-, not starting with 'flocker'",
    )
    parser = add_command(group, "rm", "delete a snapshot", rm)
    parser.add_argument("dataset", metavar="DATASET", help=dataset_help)
    parser.add_argument("name", metavar="NAME")
    parser = add_command(
        group,
        "rollback",
        "roll a dataset back to a snapshot (its application is restarted; "
        "later snapshots are discarded)",
        rollback,
    )
    parser.add_argument("dataset", metavar="DATASET", help=dataset_help)
    parser.add_argument("name", metavar="NAME", help="the snapshot")
    add_wait_options(parser, "the dataset's node has rolled it back")
    parser = add_command(
        commands,
        "clone",
        "make a new dataset from a snapshot of a dataset, on the same node",
        clone,
    )
    parser.add_argument("dataset", metavar="DATASET", help=dataset_help)
    parser.add_argument("snapshot", metavar="SNAPSHOT", help="the snapshot")
    parser.add_argument(
        "--name", help="a name to refer to the clone by (its 'name' metadata)"
    )
    add_wait_options(parser, "the clone is mounted on the node")
