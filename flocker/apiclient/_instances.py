"""
Where a container's instances run, as the control service places them
(`flocker.control.instance_placement`, on the API's `Container` values):
the first on the container's node, the others one per node on the nodes
after it in the order of their UUIDs (wrapping around), and the instances
beyond the number of nodes doubled up round the same ring, the k-th on a
node named ``name..k``.
"""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

from ._interface import Container

__all__ = ["instance_nodes", "instance_placement"]


def instance_placement(container: Container, nodes: Iterable[UUID]) -> list[tuple[UUID, str]]:
    """
    (node, instance name) for each of a container's instances, in order:
    its own node first, one per node round the ring, then the extra ones
    round it again (5 instances on nodes A, B, C: A, B, C, A, B).

    :param nodes: the nodes that can run instances; the container's own
        node counts whether or not it is among them.
    """
    ring = sorted(set(nodes) | {container.node_uuid})
    start = ring.index(container.node_uuid)
    ordered = ring[start:] + ring[:start]
    placed = []
    for i in range(container.replicas):
        k = i // len(ordered) + 1
        placed.append((ordered[i % len(ordered)], container.name if k == 1 else f"{container.name}..{k}"))
    return placed


def instance_nodes(container: Container, nodes: Iterable[UUID]) -> list[UUID]:
    """
    The distinct nodes a container's instances run on, in the order of
    their first instance (`instance_placement`): its own node first.
    """
    return list(dict.fromkeys(node for node, _ in instance_placement(container, nodes)))
