"""
``flocker datasets ls|create|move|resize|rm``: the cluster's datasets
(``replicate``, ``unreplicate`` and ``failover`` are in
`flocker.cli._replicas`).

A dataset's state is ``pending`` (configured, no node reports it yet),
``mounted`` (its primary node reports it mounted, at PATH), ``fenced`` (its
primary node lost the control service and stopped exposing it: a failover
may follow), ``moving`` (another node still has it), or ``deleting``.  Its standing replicas are
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
from uuid import UUID

from ..apiclient import Dataset, DatasetState, DivergedCopy
from ._command import Context, add_command, add_group
from ._errors import CLIError
from ._format import format_duration, format_size, parse_size, table, write_json
from ._replicas import register_replicas
from ._resolve import dataset_name, node_label, resolve_dataset, resolve_node
from ._wait import add_wait_options, parse_timeout, wait_until

__all__ = ["dataset_view", "register"]


def _path(state: DatasetState) -> str | None:
    """Where a node mounted a dataset."""
    return None if state.path is None else str(state.path.path)


def dataset_view(
    dataset: Dataset,
    states: list[DatasetState],
    addresses: dict[UUID, str | None],
) -> dict[str, Any]:
    """A dataset as ``--json`` shows it (and the table is made from)."""
    here = [s for s in states if s.dataset_id == dataset.dataset_id]
    mounted = [s for s in here if s.primary == dataset.primary and s.path is not None]
    fenced = [s for s in here if s.primary == dataset.primary and s.fenced]
    elsewhere = [s for s in here if s.primary != dataset.primary]
    if dataset.deleted:
        state = "deleting"
    elif mounted:
        state = "mounted"
    elif fenced:
        state = "fenced"
    elif elsewhere:
        state = "moving"
    else:
        state = "pending"
    reported = {r.node_uuid: r for m in mounted for r in m.replicas}
    replicas: list[dict[str, Any]] = []
    for node in dataset.replicas:
        replica = reported.get(node)
        replicas.append(
            {
                "node_uuid": str(node),
                "address": addresses.get(node),
                "last_snapshot": None if replica is None else replica.last_snapshot,
                "lag_seconds": None if replica is None else replica.lag_seconds,
            }
        )
        if replica is not None and replica.set_aside:
            replicas[-1]["set_aside"] = list(replica.set_aside)
    diverged: dict[UUID, DivergedCopy] = {}
    for state_here in here:
        for copy in state_here.diverged:
            diverged.setdefault(copy.node_uuid, copy)
    view: dict[str, Any] = {
        "dataset_id": str(dataset.dataset_id),
        "name": dataset_name(dataset),
        "metadata": dict(dataset.metadata),
        "maximum_size": dataset.maximum_size,
        "primary": str(dataset.primary),
        "primary_address": addresses.get(dataset.primary),
        "state": state,
        "path": _path(mounted[0]) if mounted else None,
        "reported_on": sorted(str(s.primary) for s in here),
        "replicas": replicas,
        "diverged": [
            {
                "node_uuid": str(copy.node_uuid),
                "address": addresses.get(copy.node_uuid),
                "epoch": copy.epoch,
                "last_snapshot": copy.last_snapshot,
                **({"set_aside": list(copy.set_aside)} if copy.set_aside else {}),
            }
            for copy in sorted(diverged.values(), key=lambda c: str(c.node_uuid))
        ],
        "epoch": dataset.epoch,
    }
    if dataset.failover_snapshot is not None:
        view["failover_snapshot"] = dataset.failover_snapshot
    return view


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


async def _snapshot(
    context: Context,
) -> tuple[Any, list[DatasetState], dict[UUID, str | None]]:
    """The configured datasets, the reported ones and node addresses."""
    client = context.client
    configuration = await client.list_datasets_configuration()
    states = await client.list_datasets_state()
    nodes = await client.list_nodes()
    return configuration, states, {n.uuid: n.host for n in nodes}


async def _view(context: Context, dataset_id: UUID) -> dict[str, Any] | None:
    """The current view of one dataset, or ``None`` if it is gone."""
    configuration, states, addresses = await _snapshot(context)
    dataset = configuration.datasets.get(dataset_id)
    return None if dataset is None else dataset_view(dataset, states, addresses)


def _print_one(context: Context, view: dict[str, Any], verb: str) -> None:
    """Say what happened to one dataset (or print it as JSON)."""
    if context.json:
        write_json(context.out, view)
        return
    name = f" ({view['name']})" if view["name"] else ""
    where = view["primary_address"] or view["primary"]
    detail = f", mounted at {view['path']}" if view["path"] else f", {view['state']}"
    context.out.write(f"{verb} dataset {view['dataset_id']}{name} on {where}{detail}\n")


async def wait_mounted(
    context: Context, dataset_id: UUID, node: str, timeout: float
) -> None:
    """
    Wait until the dataset is mounted on its primary node, showing the
    bytes received so far and the rate while a move's stream flows.
    """
    seen: list[tuple[float, int]] = []

    async def progress() -> str:
        """Bytes received so far and the rate, while a move's stream flows."""
        if getattr(context.client, "http", None) is None:
            return ""  # an in-memory client: no transfers to ask about
        from ._snapshots import api_request

        transfers = await api_request(context, "GET", "/state/transfers")
        mine = [t for t in transfers if t["dataset_id"] == str(dataset_id)]
        if not mine:
            return ""
        received = mine[0]["bytes"]
        now = context.clock.seconds()
        rate = ""
        if seen and now > seen[-1][0] and received >= seen[-1][1]:
            rate = f" at {format_size(int((received - seen[-1][1]) / (now - seen[-1][0])))}/s"
        seen.append((now, received))
        size = mine[0]["size"]
        of = f" of {format_size(size)}" if size else ""
        return f", {format_size(received)}{of} received{rate}"

    async def probe() -> tuple[bool, str]:
        configuration, states, addresses = await _snapshot(context)
        dataset = configuration.datasets.get(dataset_id)
        if dataset is None:
            raise CLIError(f"dataset {dataset_id} disappeared from the configuration")
        view = dataset_view(dataset, states, addresses)
        if view["state"] == "mounted":
            return True, f"mounted at {view['path']}"
        where = (
            ", ".join(node_label(addresses, UUID(n)) for n in view["reported_on"])
            or "no node"
        )
        return False, f"{view['state']} (reported on {where}){await progress()}"

    await wait_until(
        context.clock,
        context.err,
        f"dataset {str(dataset_id)[:8]} mounted on {node}",
        probe,
        timeout,
    )


async def ls(context: Context, options: argparse.Namespace) -> None:
    """List the datasets: id, name, size, primary node, state and path."""
    configuration, states, addresses = await _snapshot(context)
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
    view = await _view(context, dataset.dataset_id)
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
    view = await _view(context, dataset.dataset_id)
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
    view = await _view(context, dataset.dataset_id)
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


def register(commands: Any) -> None:
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
