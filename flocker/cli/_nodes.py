"""
``flocker nodes``: the nodes that reported their state, with how many
datasets and applications are configured on each.
"""

from __future__ import annotations

import argparse
from typing import Any

from ._command import Context, add_command
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
            }
        )
    if context.json:
        write_json(context.out, rows)
        return
    table(
        context.out,
        ["NODE", "ADDRESS", "DATASETS", "APPS"],
        [[r["uuid"], r["address"], r["datasets"], r["apps"]] for r in rows],
    )


def register(commands: Any) -> None:
    """Add ``flocker nodes``."""
    add_command(
        commands,
        "nodes",
        "list the nodes: UUID, address, datasets and applications on each",
        list_nodes,
    )
