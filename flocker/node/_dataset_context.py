"""
What a dataset change uses of the dataset agent's deployer.

The dataset agent's changes (``_dataset_changes``, ``_clones``,
``_replicator``) run with its ``DatasetDeployer``; ``datasets``, which
defines the deployer, imports them all to calculate its plans.  So the
changes do not name the deployer: they run with a ``DatasetContext``, which
says exactly what they use of it and imports none of them.
``DatasetDeployer`` provides it structurally; mypy checks that wherever a
deployer is passed to a change's ``run`` (``run_state_change(change,
deployer)`` in the tests), since a change runnable with the context is one
runnable with the deployer only if the deployer provides it.

Two changes are requests their deployer's services carry out: the mover
pushes a ``PushDataset`` and the replicator runs a ``ReplicateDataset``.
Both are defined in the change modules, above this one, so the context
takes them as type parameters; ``_dataset_changes.DatasetAgentContext`` is
the context with both filled in, the one the dataset agent's changes run
with.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from flocker.volume import IVolumeBackend

from ._roles import IDatasetRoles

#: The request the mover pushes (``PushDataset``).
PushT_contra = TypeVar("PushT_contra", contravariant=True)
#: The request the replicator runs (``ReplicateDataset``).
RoundT_contra = TypeVar("RoundT_contra", contravariant=True)


class DatasetMoves(Protocol[PushT_contra]):
    """What the dataset changes use of the deployer's mover."""

    def forget(self, dataset_id: str) -> None:
        """Drop a move's progress (the copy will not be moved from here)."""
        ...

    async def push(self, change: PushT_contra) -> None:
        """Push the dataset towards its new primary (one pass of a move)."""
        ...


class DatasetReplication(Protocol[RoundT_contra]):
    """What the dataset changes use of the deployer's replicator."""

    async def replicate(self, change: RoundT_contra) -> None:
        """Run one replication round."""
        ...


class DatasetContext(Protocol[PushT_contra, RoundT_contra]):
    """
    What the dataset agent's changes use of the deployer they run with.

    All of it is read, never replaced: the changes call the services and
    update the deployer's records in place.
    """

    @property
    def backend(self) -> IVolumeBackend:
        """The node's volume backend."""
        ...

    @property
    def roles(self) -> IDatasetRoles:
        """The durable record of which datasets are exposed."""
        ...

    @property
    def mover(self) -> DatasetMoves[PushT_contra]:
        """Pushes datasets for moves."""
        ...

    @property
    def replicator(self) -> DatasetReplication[RoundT_contra]:
        """Keeps standing replicas up to date."""
        ...

    @property
    def rolled_back(self) -> dict[str, str]:
        """Dataset id → the last rollback request carried out here (reported)."""
        ...

    @property
    def cannot_rejoin(self) -> dict[str, str]:
        """Dataset id → why its diverged copy cannot rejoin (logged once)."""
        ...

    def set_aside_changed(self, dataset_id: str) -> None:
        """A dataset's set-aside snapshots changed (or it went): list them again."""
        ...


__all__ = ["DatasetContext", "DatasetMoves", "DatasetReplication"]
