"""
Naming nodes and datasets on the command line.

A node is named by its address, its UUID, or a prefix of its UUID that no
other node shares.  A dataset is named by its UUID, a prefix of its UUID,
or its ``name`` metadata; the name or prefix must pick exactly one dataset
that is not deleted.  Anything else is a `CLIError` with `EXIT_ERROR`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from uuid import UUID

from ..apiclient import Dataset, Node
from ._errors import EXIT_ERROR, CLIError

__all__ = ["dataset_name", "node_label", "resolve_dataset", "resolve_node"]


def _as_uuid(text: str) -> UUID | None:
    """``text`` as a UUID, or ``None`` if it is not one."""
    try:
        return UUID(text)
    except ValueError:
        return None


def resolve_node(nodes: Iterable[Node], text: str) -> Node:
    """
    The node ``text`` names among ``nodes``.

    :raise CLIError: if none or several match.
    """
    nodes = list(nodes)
    exact = _as_uuid(text)
    for node in nodes:
        if node.uuid == exact or node.host == text:
            return node
    lowered = text.lower()
    matches = [n for n in nodes if lowered and str(n.uuid).startswith(lowered)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise CLIError(
            f"node {text!r} is ambiguous: it starts {len(matches)} node UUIDs",
            EXIT_ERROR,
        )
    known = ", ".join(n.host or str(n.uuid) for n in nodes) or "none has reported"
    raise CLIError(f"unknown node {text!r} (nodes: {known})", EXIT_ERROR)


def dataset_name(dataset: Dataset) -> str | None:
    """A dataset's ``name`` metadata, if it has one."""
    return dataset.metadata.get("name")


def resolve_dataset(datasets: Iterable[Dataset], text: str) -> Dataset:
    """
    The dataset ``text`` names among ``datasets`` (deleted ones are ignored).

    :raise CLIError: if none or several match.
    """
    live = [d for d in datasets if not d.deleted]
    exact = _as_uuid(text)
    for dataset in live:
        if dataset.dataset_id == exact:
            return dataset
    lowered = text.lower()
    matches = [
        d
        for d in live
        if dataset_name(d) == text
        or (lowered and str(d.dataset_id).startswith(lowered))
    ]
    if len(matches) == 1:
        return matches[0]
    if matches:
        ids = ", ".join(sorted(str(d.dataset_id)[:8] for d in matches))
        raise CLIError(
            f"dataset {text!r} is ambiguous: it matches {len(matches)} datasets ({ids}); "
            "give more of the UUID",
            EXIT_ERROR,
        )
    raise CLIError(f"unknown dataset {text!r}", EXIT_ERROR)


def node_label(addresses: Mapping[UUID, str | None], uuid: UUID) -> str:
    """A node's address, or its UUID if it reported none."""
    return addresses.get(uuid) or str(uuid)
