"""
``flocker nodes``: the nodes that reported their state, with how many
datasets and applications are configured on each and whether each
converges (its failing changes and a full pool).
"""

from __future__ import annotations

import argparse
import datetime

from ..apiclient import Node
from ._command import Commands, Context, add_command
from ._format import table, write_json

__all__ = ["register"]


async def list_nodes(context: Context, options: argparse.Namespace) -> None:
    """Print each node's UUID, address, and its datasets' and applications' counts."""
    client = context.client
    nodes = await client.list_nodes()
    datasets = await client.list_datasets_configuration()
    containers = await client.list_containers_configuration()
    rows = []
    for node in nodes:
        rows.append(
            {
                "uuid": str(node.uuid),
                "address": node.host,
                "datasets": sum(
                    1
                    for d in datasets.datasets.values()
                    if d.primary == node.uuid and not d.deleted
                ),
                "apps": sum(1 for c in containers if c.node_uuid == node.uuid),
                "last_converged": node.last_converged,
                "failing_changes": node.failing,
                "pool_full": node.pool_full,
                "state": node_condition(node),
            }
        )
    if context.json:
        write_json(context.out, rows)
        return
    table(
        context.out,
        ["NODE", "ADDRESS", "DATASETS", "APPS", "STATE"],
        [[r["uuid"], r["address"], r["datasets"], r["apps"], r["state"]] for r in rows],
    )


def node_condition(node: Node) -> str:
    """
    How a node converges, for people: "not converging since <UTC time> (N
    failing)", "pool full", both, "converging", or "-" when its dataset
    agent has not said.
    """
    parts = []
    if node.failing_since is not None:
        moment = datetime.datetime.fromtimestamp(node.failing_since, datetime.UTC)
        parts.append(
            f"not converging since {moment.strftime('%Y-%m-%d %H:%M:%S')} UTC "
            f"({node.failing} failing)"
        )
    if node.pool_full:
        parts.append("pool full")
    if parts:
        return "; ".join(parts)
    return "converging" if node.last_converged is not None else "-"


def register(commands: Commands) -> None:
    """Add ``flocker nodes``."""
    add_command(
        commands,
        "nodes",
        "list the nodes: UUID, address, datasets and applications on each, and "
        "whether each converges",
        list_nodes,
    )
