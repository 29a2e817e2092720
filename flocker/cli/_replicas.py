"""
``flocker datasets replicate|unreplicate|failover``: standing replicas.

A standing replica is a copy of a dataset the primary keeps up to date on
another node (at most 4), never mounted, that ``failover`` can promote to
primary when the primary's node is lost.  ``failover`` refuses while the
primary's node was heard from recently, unless ``--force``: promoting a
replica while the primary still serves would split the data in two.  The
control service's refusal says to "pass force" (the REST request's field);
here it says ``--force``, the option that sets it.
"""

from __future__ import annotations

import argparse
import datetime
import re
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from ..apiclient import Dataset, FailoverRefused, Node
from ._command import Commands, Context, add_command
from ._errors import EXIT_ERROR, CLIError
from ._format import format_duration, write_json
from ._resolve import dataset_name, node_label, resolve_dataset, resolve_node

__all__ = ["register_replicas"]


def _interval(text: str | None) -> int | None:
    """Seconds between increments from ``--interval``; ``None`` if not given."""
    if text is None:
        return None
    try:
        seconds = int(text)
    except ValueError:
        seconds = -1
    if seconds < 0:
        raise CLIError(
            f"bad interval {text!r}: give whole seconds, 0 or more "
            "(0: replicate continuously)",
            EXIT_ERROR,
        )
    return seconds


async def _targets(
    context: Context, options: argparse.Namespace, node: str
) -> tuple[Dataset, Node, dict[UUID, str | None]]:
    """The dataset, the node named, and the node addresses."""
    client = context.client
    configuration = await client.list_datasets_configuration()
    dataset = resolve_dataset(configuration.datasets.values(), options.dataset)
    nodes = await client.list_nodes()
    return dataset, resolve_node(nodes, node), {n.uuid: n.host for n in nodes}


def _say(
    context: Context, dataset: Dataset, addresses: Mapping[UUID, str | None]
) -> None:
    """Print a dataset's replicas after a change (or the dataset as JSON)."""
    replicas = [node_label(addresses, u) for u in dataset.replicas]
    if context.json:
        write_json(
            context.out,
            {
                "dataset_id": str(dataset.dataset_id),
                "primary": str(dataset.primary),
                "replicas": [str(u) for u in dataset.replicas],
                "interval_seconds": dataset.replication.interval_seconds,
                "failover": dataset.replication.failover,
            },
        )
        return
    name = dataset_name(dataset)
    label = f"{dataset.dataset_id}" + (f" ({name})" if name else "")
    if not replicas:
        context.out.write(f"dataset {label} has no standing replicas\n")
        return
    interval = dataset.replication.interval_seconds
    how = "continuously" if interval == 0 else f"every {interval}s"
    failover = (
        "fails over by itself" if dataset.replication.failover == "automatic"
        else "fails over by hand"
    )
    context.out.write(
        f"dataset {label} is replicated {how} to {', '.join(replicas)}; {failover}\n"
    )


async def replicate(context: Context, options: argparse.Namespace) -> None:
    """Keep a standing replica of a dataset on another node."""
    interval = _interval(options.interval)
    dataset, node, addresses = await _targets(context, options, options.to)
    if node.uuid == dataset.primary:
        raise CLIError(
            f"node {node_label(addresses, node.uuid)} is the dataset's primary; "
            "a replica must be on another node",
            EXIT_ERROR,
        )
    if node.uuid in dataset.replicas and interval is None and options.failover is None:
        raise CLIError(
            f"node {node_label(addresses, node.uuid)} already holds a standing "
            f"replica of dataset {dataset.dataset_id}",
            EXIT_ERROR,
        )
    replicas = list(dataset.replicas)
    if node.uuid not in replicas:
        replicas.append(node.uuid)
    changes: dict[str, Any] = {"replicas": replicas}
    replication: dict[str, Any] = {}
    if interval is not None:
        replication["interval_seconds"] = interval
    if options.failover is not None:
        replication["failover"] = options.failover
    if replication:
        changes["replication"] = replication
    updated = await context.client.update_dataset(dataset.dataset_id, **changes)
    _say(context, updated, addresses)


async def unreplicate(context: Context, options: argparse.Namespace) -> None:
    """Stop keeping a dataset's standing replica on a node (its copy is destroyed)."""
    dataset, node, addresses = await _targets(context, options, options.from_)
    if node.uuid not in dataset.replicas:
        raise CLIError(
            f"node {node_label(addresses, node.uuid)} holds no standing replica "
            f"of dataset {dataset.dataset_id}",
            EXIT_ERROR,
        )
    replicas = [u for u in dataset.replicas if u != node.uuid]
    updated = await context.client.update_dataset(dataset.dataset_id, replicas=replicas)
    _say(context, updated, addresses)


def _when(timestamp: float | None) -> str:
    """A POSIX time as UTC for people."""
    if timestamp is None:
        return "at an unknown time"
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def cli_wording(refusal: FailoverRefused) -> FailoverRefused:
    """
    A failover refusal as the CLI user must read it: the REST API's "pass
    force" (the request's ``force`` field) becomes "pass --force".
    """
    description = re.sub(r"\bpass force\b", "pass --force", refusal.description)
    return FailoverRefused(refusal.code, description)


async def failover(context: Context, options: argparse.Namespace) -> None:
    """Promote a standing replica to primary (with its application's datasets)."""
    dataset, node, addresses = await _targets(context, options, options.to)
    try:
        result = await context.client.failover_dataset(
            dataset.dataset_id, node.uuid, force=options.force
        )
    except FailoverRefused as refusal:
        raise cli_wording(refusal) from None
    if context.json:
        write_json(
            context.out,
            {
                "dataset_id": str(result.dataset_id),
                "primary": str(result.primary),
                "epoch": result.epoch,
                "datasets": [str(d) for d in result.datasets],
                "snapshot": result.snapshot,
                "snapshot_created": result.snapshot_created,
                "data_loss_window_seconds": result.data_loss_window_seconds,
            },
        )
        return
    window = result.data_loss_window_seconds
    lost = "unknown" if window is None else format_duration(window)
    others = [str(d) for d in result.datasets if d != result.dataset_id]
    also = f" (with {', '.join(others)})" if others else ""
    context.out.write(
        f"failed over dataset {result.dataset_id}{also} to "
        f"{node_label(addresses, result.primary)}: epoch {result.epoch}\n"
        f"starting from snapshot {result.snapshot} taken "
        f"{_when(result.snapshot_created)}; data-loss window {lost}\n"
    )


def _dataset_and_node(
    parser: argparse.ArgumentParser, flag: str, **node: Any
) -> None:
    """The DATASET argument and the required NODE option ``flag`` of a command."""
    parser.add_argument("dataset", metavar="DATASET", help="its UUID, UUID prefix or name")
    parser.add_argument(flag, required=True, metavar="NODE", help="address or UUID", **node)


def register_replicas(group: Commands) -> None:
    """Add ``replicate``, ``unreplicate`` and ``failover`` to ``flocker datasets``."""
    parser = add_command(
        group,
        "replicate",
        "keep a standing replica of a dataset on another node",
        replicate,
    )
    _dataset_and_node(parser, "--to")
    parser.add_argument(
        "--interval",
        metavar="SECONDS",
        help="seconds between the primary's increments (0: continuously, the default)",
    )
    parser.add_argument(
        "--failover",
        choices=["manual", "automatic"],
        help=(
            "automatic: the control service fails the dataset over by itself "
            "when its primary's node goes silent; manual (the default): only "
            "flocker datasets failover does"
        ),
    )
    parser = add_command(
        group,
        "unreplicate",
        "stop keeping a dataset's standing replica on a node (its copy is destroyed)",
        unreplicate,
    )
    _dataset_and_node(parser, "--from", dest="from_")
    parser = add_command(
        group,
        "failover",
        "promote a standing replica to primary, with its application",
        failover,
        description=(
            "Promote the standing replica on NODE to primary: every dataset of "
            "the application using this one goes with it, and the application "
            "moves there.  Refused while the primary's node was heard from "
            "recently (it may still be writing) unless --force.  Prints the "
            "snapshot the new primary starts from and the data-loss window."
        ),
    )
    _dataset_and_node(parser, "--to")
    parser.add_argument(
        "--force",
        action="store_true",
        help="fail over even if the primary's node was heard from recently",
    )
