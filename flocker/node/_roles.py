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
``diverged``
    This node was the primary, and a replica elsewhere was promoted over it
    (a failover raised the dataset's epoch): its copy may hold writes the
    new primary never received, so it is kept, never exposed, never pushed
    and never destroyed or overwritten automatically.  When the
    configuration names this node a standing replica it *rejoins*: what it
    holds is set aside as a snapshot, it returns to the newest snapshot it
    shares with the new primary and becomes a replica again.
``fenced``
    This node was the primary of a dataset that fails over automatically
    and fenced itself (it heard nothing from the control service for
    ``fence-after`` seconds): not exposed, read-only, until a configuration
    names it primary at the same epoch again (or a newer epoch makes it
    diverged).  Durable, so an agent restarted while fenced stays fenced
    until it hears the control service.

Each role comes with the dataset's *epoch* the node holds its copy at
(every promotion raises it): a replica records the epoch of the streams it
received, a primary the epoch it was made primary at.  An agent exposes a
dataset only while its configuration names it primary at that epoch.

The record is a small JSON file replaced atomically (temporary file, fsync,
rename, fsync of the directory), so a crash never leaves a half-written role
and a role change is durable before the agent acts on it.
"""

from __future__ import annotations

import json
import os
from typing import Literal

from zope.interface import Interface, implementer

PRIMARY: Literal["primary"] = "primary"
REPLICA: Literal["replica"] = "replica"
HANDOFF: Literal["handoff"] = "handoff"
DIVERGED: Literal["diverged"] = "diverged"
FENCED: Literal["fenced"] = "fenced"
ROLES = (PRIMARY, REPLICA, HANDOFF, DIVERGED, FENCED)


class IDatasetRoles(Interface):
    """
    The record of this node's role and epoch for each local dataset.

    A dataset not in the record is a replica at epoch 0.  A change returns
    only once it is as durable as the implementation makes it (in memory,
    or on disk for `FileRoles`).
    """

    def get(dataset_id: str) -> str:
        """The dataset's role: one of `ROLES`, ``replica`` unless recorded."""

    def epoch(dataset_id: str) -> int:
        """The epoch this node holds the dataset at (0 unless recorded)."""

    def set(dataset_id: str, role: str, epoch: int | None = None) -> None:
        """
        Record ``role`` at ``epoch`` (``None``: keep the recorded epoch).

        Idempotent: recording the role and epoch already recorded changes
        nothing.  A replica at epoch 0 is the same as no record.

        :raise ValueError: if ``role`` is not one of `ROLES`.
        """

    def forget(dataset_id: str) -> None:
        """Drop the record of a dataset (nothing happens if there is none)."""

    def all() -> dict[str, str]:
        """Every recorded role by dataset id (replicas at epoch 0 are not)."""


@implementer(IDatasetRoles)
class MemoryRoles:
    """Dataset roles kept in memory (for unit tests and the in-memory agent)."""

    def __init__(self) -> None:
        """Start with no record: every dataset a replica at epoch 0."""
        self._roles: dict[str, str] = {}
        self._epochs: dict[str, int] = {}

    def get(self, dataset_id: str) -> str:
        """The dataset's role; ``replica`` unless recorded otherwise."""
        return self._roles.get(dataset_id, REPLICA)

    def epoch(self, dataset_id: str) -> int:
        """The epoch this node holds the dataset at (0 unless recorded)."""
        return self._epochs.get(dataset_id, 0)

    def set(self, dataset_id: str, role: str, epoch: int | None = None) -> None:
        """
        Record a role durably, at ``epoch`` (``None``: the recorded one);
        a replica at epoch 0 is the same as no record.
        """
        if role not in ROLES:
            raise ValueError(f"unknown dataset role {role!r}")
        epoch = self.epoch(dataset_id) if epoch is None else epoch
        if self.get(dataset_id) == role and self.epoch(dataset_id) == epoch:
            return
        if role == REPLICA and epoch == 0:
            self._roles.pop(dataset_id, None)
            self._epochs.pop(dataset_id, None)
        else:
            self._roles[dataset_id] = role
            self._epochs[dataset_id] = epoch
        self._saved()

    def forget(self, dataset_id: str) -> None:
        """Drop the record of a dataset that no longer exists here."""
        self._epochs.pop(dataset_id, None)
        if self._roles.pop(dataset_id, None) is not None:
            self._saved()

    def all(self) -> dict[str, str]:
        """Every recorded role (replicas at epoch 0 are not recorded)."""
        return dict(self._roles)

    def _saved(self) -> None:
        """Hook for subclasses that persist the record."""


@implementer(IDatasetRoles)
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
        if not isinstance(loaded, dict) or not all(map(_valid_entry, loaded.values())):
            raise ValueError(f"{path}: not a valid dataset role record")
        for dataset_id, entry in loaded.items():
            # Records of earlier releases are a bare role (epoch 0).
            if isinstance(entry, str):
                entry = {"role": entry, "epoch": 0}
            if entry["role"] != REPLICA or entry["epoch"] != 0:
                self._roles[dataset_id] = entry["role"]
                self._epochs[dataset_id] = entry["epoch"]

    def _saved(self) -> None:
        """Write the record atomically and durably."""
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        temporary = f"{self.path}.tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(
                {
                    dataset_id: {"role": role, "epoch": self.epoch(dataset_id)}
                    for dataset_id, role in self._roles.items()
                },
                handle,
                sort_keys=True,
            )
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _valid_entry(entry: object) -> bool:
    """A record entry: a role (earlier releases), or a role with its epoch."""
    if isinstance(entry, str):
        return entry in ROLES
    return (
        isinstance(entry, dict)
        and entry.get("role") in ROLES
        and isinstance(entry.get("epoch"), int)
        and not isinstance(entry.get("epoch"), bool)
        and entry["epoch"] >= 0
        and set(entry) == {"role", "epoch"}
    )
