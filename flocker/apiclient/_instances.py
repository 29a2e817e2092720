"""
Where a container's instances run, as the control service places them
(`flocker.control.instance_placement`, on the API's `Container` values):
the first on the container's node, the others one per node on the nodes
after it in the order of their UUIDs (wrapping around), and the instances
beyond the number of nodes doubled up round the same ring, the k-th on a
node named ``name..k``; a container whose name leaves no room for
``..k`` (longer than 124 characters, which only an earlier release let a
replicated container have) runs at most one instance per node.
"""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

from ._interface import MAXIMUM_INSTANCES, Container

__all__ = ["instance_nodes", "instance_placement"]

#: Separates a container's name from the number of one of its extra
#: instances on a node (``web..2``).
INSTANCE_SEPARATOR = ".."

#: The longest name whose extra instances' names (``..k``) are valid too.
LONGEST_REPLICATED_NAME = 128 - len(f"{INSTANCE_SEPARATOR}{MAXIMUM_INSTANCES}")


def instance_placement(container: Container, nodes: Iterable[UUID]) -> list[tuple[UUID, str]]:
    """
    (node, instance name) for each of a container's instances, in order:
    its own node first, one per node round the ring, then the extra ones
    round it again (5 instances on nodes A, B, C: A, B, C, A, B).  A
    container whose name is longer than `LONGEST_REPLICATED_NAME` runs at
    most one per node (replicas 3 on 2 nodes: 2 instances).

    :param nodes: the nodes that can run instances; the container's own
        node counts whether or not it is among them.
    """
    ring = sorted(set(nodes) | {container.node_uuid})
    start = ring.index(container.node_uuid)
    ordered = ring[start:] + ring[:start]
    count = container.replicas
    if len(container.name) > LONGEST_REPLICATED_NAME:
        count = min(count, len(ordered))
    placed = []
    for i in range(count):
        k = i // len(ordered) + 1
        name = container.name if k == 1 else f"{container.name}{INSTANCE_SEPARATOR}{k}"
        placed.append((ordered[i % len(ordered)], name))
    return placed


def instance_nodes(container: Container, nodes: Iterable[UUID]) -> list[UUID]:
    """
    The distinct nodes a container's instances run on, in the order of
    their first instance (`instance_placement`): its own node first.
    """
    return list(dict.fromkeys(node for node, _ in instance_placement(container, nodes)))
