"""Which local datasets a node exposes: the durable record of dataset roles.

A backend only knows that a dataset exists; the dataset agent also needs to
know whether this node *exposes* it (reports it with its mount path, so
applications use it) or merely holds a copy:

``primary``
    The node's own, exposed dataset: the agent records this role before it
    creates a dataset, and when the final increment of a move arrives.
``replica``
    A copy received from another node during a move, not exposed until the
    final increment arrives.  Datasets not in the record are replicas, so a
    dataset that arrives by a full stream is never exposed by accident, even
    if the agent crashes as it arrives.
``handoff``
    This node was the primary and is sending the final increment to the new
    primary: no longer exposed, so the data is never writable on two nodes.

The record is a small JSON file replaced atomically (temporary file, fsync,
rename, fsync of the directory), so a crash never leaves a half-written role
and a role change is durable before the agent acts on it.
"""

from __future__ import annotations

import json
import os
from typing import Literal

PRIMARY: Literal["primary"] = "primary"
REPLICA: Literal["replica"] = "replica"
HANDOFF: Literal["handoff"] = "handoff"
ROLES = (PRIMARY, REPLICA, HANDOFF)


class MemoryRoles:
    """Dataset roles kept in memory (for unit tests and the in-memory agent)."""

    def __init__(self) -> None:
        """Start with no record: every dataset a replica."""
        self._roles: dict[str, str] = {}

    def get(self, dataset_id: str) -> str:
        """The dataset's role; ``replica`` unless recorded otherwise."""
        return self._roles.get(dataset_id, REPLICA)

    def set(self, dataset_id: str, role: str) -> None:
        """Record a role durably (``replica`` removes the record)."""
        if role not in ROLES:
            raise ValueError(f"unknown dataset role {role!r}")
        if role == REPLICA:
            if self._roles.pop(dataset_id, None) is None:
                return
        elif self._roles.get(dataset_id) == role:
            return
        else:
            self._roles[dataset_id] = role
        self._saved()

    def forget(self, dataset_id: str) -> None:
        """Drop the record of a dataset that no longer exists here."""
        if self._roles.pop(dataset_id, None) is not None:
            self._saved()

    def all(self) -> dict[str, str]:
        """Every recorded role (replicas are not recorded)."""
        return dict(self._roles)

    def _saved(self) -> None:
        """Hook for subclasses that persist the record."""


class FileRoles(MemoryRoles):
    """Dataset roles persisted in a JSON file, durably on every change."""

    def __init__(self, path: str) -> None:
        """
        Load the record from ``path`` (missing: no record).

        :raise ValueError: if the file exists but is not a valid record.
        """
        super().__init__()
        self.path = path
        try:
            with open(path, encoding="utf-8") as handle:
                loaded = json.load(handle)
        except FileNotFoundError:
            loaded = {}
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not a valid dataset role record: {error}") from None
        if not isinstance(loaded, dict) or not all(
            isinstance(v, str) and v in ROLES for v in loaded.values()
        ):
            raise ValueError(f"{path}: not a valid dataset role record")
        self._roles = {k: v for k, v in loaded.items() if v != REPLICA}

    def _saved(self) -> None:
        """Write the record atomically and durably."""
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        temporary = f"{self.path}.tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(self._roles, handle, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
