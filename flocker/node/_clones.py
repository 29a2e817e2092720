"""
Dataset changes for clones and rollbacks (see `flocker.node.datasets`).

* `CloneDataset` creates a configured clone (`Dataset.origin`) from its
  origin's snapshot, on the node that holds the origin as primary.
* `RollbackDataset` returns an exposed dataset to one of its snapshots once
  nothing uses it (the container agent stops the application that mounts
  it while the request is pending).  The deployer remembers the request as
  done and reports it (``DatasetState.rolled_back``); the control service
  then clears the request, and the application starts again.  An agent
  that restarts before reporting rolls back again, which changes nothing
  since the application has stayed stopped.
"""

from __future__ import annotations

from typing import Any

from eliot import Field, MessageType
from pyrsistent import PClass, field
from twisted.internet.defer import Deferred
from zope.interface import implementer

from flocker.volume._interface import DependentClones, UnknownSnapshot

from ._dataset_changes import DatasetAgentContext
from ._deploy import IStateChange
from ._roles import PRIMARY

#: A rollback request this node cannot carry out (and counts as done).
ROLLBACK_REFUSED = MessageType(
    "flocker:node:dataset:rollback_refused",
    [
        Field.for_types("dataset_id", [str], "The dataset."),
        Field.for_types("snapshot", [str], "The snapshot asked for."),
        Field.for_types("request_id", [str], "The rollback request."),
        Field.for_types("reason", [str], "Why it cannot be done."),
    ],
    "A rollback could not be carried out; the application starts again unchanged.",
)


@implementer(IStateChange)
class CloneDataset(PClass):
    """Create a dataset from a snapshot of a local exposed dataset."""

    dataset_id = field(type=str, mandatory=True)
    origin = field(type=str, mandatory=True)
    snapshot = field(type=str, mandatory=True)
    maximum_size = field(type=(int, type(None)), mandatory=True, initial=None)
    action_type = "flocker:node:dataset:clone"

    def log_fields(self) -> dict[str, Any]:
        """The clone, its origin and snapshot."""
        return {
            "dataset_id": self.dataset_id,
            "origin": self.origin,
            "snapshot": self.snapshot,
            "maximum_size": self.maximum_size,
        }

    def run(self, deployer: DatasetAgentContext) -> Deferred[None]:
        """Record it as primary, clone it, then give it its maximum size."""

        async def clone() -> None:
            deployer.roles.set(self.dataset_id, PRIMARY)
            info = await deployer.backend.clone(self.origin, self.snapshot, self.dataset_id)
            if info.maximum_size != self.maximum_size:
                await deployer.backend.set_maximum_size(self.dataset_id, self.maximum_size)

        return Deferred.fromCoroutine(clone())


@implementer(IStateChange)
class RollbackDataset(PClass):
    """Roll an exposed, unused dataset back to a snapshot."""

    dataset_id = field(type=str, mandatory=True)
    snapshot = field(type=str, mandatory=True)
    request_id = field(type=str, mandatory=True)
    action_type = "flocker:node:dataset:rollback"

    def log_fields(self) -> dict[str, Any]:
        """The dataset, the snapshot and the request."""
        return {
            "dataset_id": self.dataset_id,
            "snapshot": self.snapshot,
            "request_id": self.request_id,
        }

    def run(self, deployer: DatasetAgentContext) -> Deferred[None]:
        """
        Roll back, then remember the request as done.

        A request that cannot be carried out here — the snapshot is not on
        this node (it stayed behind on a node the dataset moved away from),
        or later snapshots have clones — is logged as refused and counted
        as done all the same: its application must not stay stopped for ever.
        """

        async def rollback() -> None:
            try:
                await deployer.backend.rollback(self.dataset_id, self.snapshot)
            except (UnknownSnapshot, DependentClones) as error:
                ROLLBACK_REFUSED.log(
                    dataset_id=self.dataset_id,
                    snapshot=self.snapshot,
                    request_id=self.request_id,
                    reason=str(error),
                )
            deployer.rolled_back[self.dataset_id] = self.request_id

        return Deferred.fromCoroutine(rollback())


@implementer(IStateChange)
class DestroySnapshot(PClass):
    """Destroy a snapshot Flocker took and no longer needs (an environment's)."""

    dataset_id = field(type=str, mandatory=True)
    snapshot = field(type=str, mandatory=True)
    action_type = "flocker:node:dataset:destroy_snapshot"

    def log_fields(self) -> dict[str, Any]:
        """The dataset and the snapshot."""
        return {"dataset_id": self.dataset_id, "snapshot": self.snapshot}

    def run(self, deployer: DatasetAgentContext) -> Deferred[None]:
        """Destroy it in the backend."""
        return deployer.backend.destroy_snapshot(self.dataset_id, self.snapshot)


#: Environments' snapshots start with this (see `flocker.control._rest._routes_environments`).
ENVIRONMENT_SNAPSHOT_PREFIX = "flocker-env-"

#: An environment's snapshot is taken before the environment is in the
#: configuration: younger ones are never destroyed, however unneeded they
#: look (the configuration naming them may not have arrived yet).
ENVIRONMENT_SNAPSHOT_GRACE = 600.0


def unneeded_environment_snapshots(
    configuration: Any, dataset_id: str, snapshots: Any, now: float
) -> list[str]:
    """
    The environment snapshots of a dataset that nothing needs any more: no
    environment in the configuration was cloned from them, no dataset in
    it (deleted ones included, until every node has destroyed them) was
    cloned from them, and they are older than `ENVIRONMENT_SNAPSHOT_GRACE`
    seconds at ``now`` (seconds since the epoch).
    """
    wanted = {e.snapshot for e in configuration.environments.values()}
    for node in configuration.nodes.values():
        for manifestation in node.manifestations.values():
            origin = manifestation.dataset.origin
            if origin is not None and origin.dataset_id == dataset_id:
                wanted.add(origin.snapshot)
    return [
        s.name
        for s in snapshots
        if s.name.startswith(ENVIRONMENT_SNAPSHOT_PREFIX)
        and s.name not in wanted
        and s.created is not None
        and now - s.created > ENVIRONMENT_SNAPSHOT_GRACE
    ]


__all__ = [
    "CloneDataset",
    "DestroySnapshot",
    "RollbackDataset",
    "unneeded_environment_snapshots",
]
