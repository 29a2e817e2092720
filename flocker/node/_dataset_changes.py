"""The state changes a dataset agent runs (see `flocker.node.datasets`).

Each is a value: the calculator returns them, plans compare with ``==``,
and each runs inside an eliot action named by its ``action_type``.  Clones,
rollbacks and environment snapshots have theirs in ``_clones``.
"""

from __future__ import annotations

from typing import Any

from eliot import log_message
from pyrsistent import PClass, field
from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from ._dataset_context import DatasetContext
from ._deploy import IStateChange, StateChange
from ._replicator import ReplicateDataset
from ._roles import DIVERGED, FENCED, HANDOFF, PRIMARY, REPLICA
from ._snapshot_names import diverged_snapshot_name

#: What the dataset agent's changes run with: its deployer, as far as they
#: use it (its mover pushes a ``PushDataset``, its replicator runs a
#: ``ReplicateDataset``; see ``_dataset_context``).
DatasetAgentContext = DatasetContext["PushDataset", ReplicateDataset]

#: A change of the dataset agent: it runs with the agent's deployer.
DatasetChange = StateChange[DatasetAgentContext]


def change_fields(change: PClass) -> dict[str, Any]:
    """A change's fields as eliot log fields."""
    return {
        name: list(value) if isinstance(value, tuple) else value
        for name, value in change.serialize().items()
    }


@implementer(IStateChange)
class CreateDataset(PClass):
    """Create an empty dataset for which this node is primary."""

    dataset_id = field(type=str, mandatory=True)
    maximum_size = field(type=(int, type(None)), mandatory=True, initial=None)
    action_type = "flocker:node:dataset:create"

    def log_fields(self) -> dict[str, Any]:
        """Dataset id and maximum size."""
        return change_fields(self)

    def run(self, deployer: DatasetAgentContext) -> Deferred[Any]:
        """Record it as primary, then create it in the backend."""
        deployer.roles.set(self.dataset_id, PRIMARY, epoch=0)
        return deployer.backend.create(self.dataset_id, self.maximum_size)


@implementer(IStateChange)
class ResizeDataset(PClass):
    """Give an exposed dataset its configured maximum size."""

    dataset_id = field(type=str, mandatory=True)
    maximum_size = field(type=(int, type(None)), mandatory=True, initial=None)
    action_type = "flocker:node:dataset:resize"

    def log_fields(self) -> dict[str, Any]:
        """Dataset id and the new maximum size."""
        return change_fields(self)

    def run(self, deployer: DatasetAgentContext) -> Deferred[Any]:
        """Set the backend's limit."""
        return deployer.backend.set_maximum_size(self.dataset_id, self.maximum_size)


@implementer(IStateChange)
class DestroyDataset(PClass):
    """Destroy the local copy of a dataset (deleted, or moved away)."""

    dataset_id = field(type=str, mandatory=True)
    action_type = "flocker:node:dataset:destroy"

    def log_fields(self) -> dict[str, Any]:
        """The dataset id."""
        return change_fields(self)

    def run(self, deployer: DatasetAgentContext) -> Deferred[None]:
        """Forget its role, then destroy it."""

        async def destroy() -> None:
            # Forget the role first: a copy that cannot be destroyed (ZFS,
            # with clones) stays a mere replica, never exposed or pushed.
            deployer.roles.forget(self.dataset_id)
            await deployer.backend.destroy(self.dataset_id)
            deployer.set_aside_changed(self.dataset_id)

        return Deferred.fromCoroutine(destroy())


@implementer(IStateChange)
class ExposeDataset(PClass):
    """Expose a local copy again (a move was called off before its end)."""

    dataset_id = field(type=str, mandatory=True)
    action_type = "flocker:node:dataset:expose"

    def log_fields(self) -> dict[str, Any]:
        """The dataset id."""
        return change_fields(self)

    def run(self, deployer: DatasetAgentContext) -> Deferred[None]:
        """Make it writable again, then record it as primary."""

        async def expose() -> None:
            await deployer.backend.set_read_only(self.dataset_id, False)
            deployer.roles.set(self.dataset_id, PRIMARY)

        return Deferred.fromCoroutine(expose())


@implementer(IStateChange)
class PushDataset(PClass):
    """
    Move a dataset this node holds to its new primary.

    :ivar destination: The new primary's UUID.
    :ivar host: The new primary's address.
    :ivar remote_snapshots: Snapshots the destination reported for its copy
        (incremental sends start from the newest one both sides have).
    :ivar keep: Keep this node's copy as a standing replica once the
        destination has the final increment (a move to a replica node swaps
        the two), instead of destroying it.
    :ivar epoch: The dataset's epoch (carried by every stream).
    """

    dataset_id = field(type=str, mandatory=True)
    destination = field(type=str, mandatory=True)
    host = field(type=str, mandatory=True)
    remote_snapshots = field(type=tuple, mandatory=True, initial=())
    keep = field(type=bool, initial=False)
    epoch = field(type=int, initial=0)
    action_type = "flocker:node:dataset:push"

    def log_fields(self) -> dict[str, Any]:
        """Dataset, destination and what the destination already has."""
        return change_fields(self)

    def run(self, deployer: DatasetAgentContext) -> Deferred[None]:
        """Run the move with the deployer's mover."""
        return Deferred.fromCoroutine(deployer.mover.push(self))


@implementer(IStateChange)
class KeepAsReplica(PClass):
    """Record a copy this node no longer exposes as a replica (after a swap move)."""

    dataset_id = field(type=str, mandatory=True)
    action_type = "flocker:node:dataset:keep_as_replica"

    def log_fields(self) -> dict[str, Any]:
        """The dataset."""
        return change_fields(self)

    def run(self, deployer: DatasetAgentContext) -> Deferred[None]:
        """Record the replica role (same epoch)."""
        deployer.roles.set(self.dataset_id, REPLICA)
        return succeed(None)


@implementer(IStateChange)
class ProtectDataset(PClass):
    """
    Make a copy this node does not expose read-only: a replica, a copy
    being moved in or out, a diverged copy (one that arrived before
    received copies were read-only, or whose first attempt failed because
    a file was still open for writing).
    """

    dataset_id = field(type=str, mandatory=True)
    action_type = "flocker:node:dataset:protect"

    def log_fields(self) -> dict[str, Any]:
        """The dataset."""
        return change_fields(self)

    def run(self, deployer: DatasetAgentContext) -> Deferred[None]:
        """Set the backend's read-only flag."""
        return deployer.backend.set_read_only(self.dataset_id, True).addCallback(
            lambda _: None
        )


@implementer(IStateChange)
class PromoteDataset(PClass):
    """
    Expose a replica as the primary of a newer epoch: a failover chose it.
    The replica holds the newest snapshot it received; nothing is sent.
    """

    dataset_id = field(type=str, mandatory=True)
    epoch = field(type=int, mandatory=True)
    action_type = "flocker:node:dataset:promote"

    def log_fields(self) -> dict[str, Any]:
        """The dataset and its new epoch."""
        return change_fields(self)

    def run(self, deployer: DatasetAgentContext) -> Deferred[None]:
        """Make the replica writable, then record it as primary at the new epoch."""

        async def promote() -> None:
            await deployer.backend.set_read_only(self.dataset_id, False)
            deployer.roles.set(self.dataset_id, PRIMARY, epoch=self.epoch)

        return Deferred.fromCoroutine(promote())


@implementer(IStateChange)
class DivergeDataset(PClass):
    """
    Stop exposing a copy at once: a replica elsewhere was promoted over it
    (a newer epoch names another primary).  The copy may hold writes the
    new primary never received, so it is kept as *diverged*: never exposed,
    pushed, overwritten or destroyed automatically.
    """

    dataset_id = field(type=str, mandatory=True)
    epoch = field(type=int, mandatory=True)
    configured_epoch = field(type=int, mandatory=True)
    action_type = "flocker:node:dataset:diverge"

    def log_fields(self) -> dict[str, Any]:
        """The dataset, the epoch of this copy and the configuration's."""
        return change_fields(self)

    def run(self, deployer: DatasetAgentContext) -> Deferred[None]:
        """
        Record the copy as diverged (at its own epoch), which stops its
        exposure at once, drop its move, then make it read-only.
        """
        deployer.roles.set(self.dataset_id, DIVERGED)
        deployer.mover.forget(self.dataset_id)
        return deployer.backend.set_read_only(self.dataset_id, True).addCallback(
            lambda _: None
        )


@implementer(IStateChange)
class FenceDataset(PClass):
    """
    Stop exposing a primary's copy while this node is fenced (it heard
    nothing from the control service for ``fence-after`` seconds, and the
    dataset fails over automatically: a replica may be promoted elsewhere).
    """

    dataset_id = field(type=str, mandatory=True)
    epoch = field(type=int, mandatory=True)
    action_type = "flocker:node:dataset:fence"

    def log_fields(self) -> dict[str, Any]:
        """The dataset and the epoch this node holds it at."""
        return change_fields(self)

    def run(self, deployer: DatasetAgentContext) -> Deferred[None]:
        """
        Record the copy as fenced (durably: a restarted agent stays fenced
        until it hears the control service), which stops its exposure at
        once, drop its move, then make it read-only.
        """
        deployer.roles.set(self.dataset_id, FENCED)
        deployer.mover.forget(self.dataset_id)
        return deployer.backend.set_read_only(self.dataset_id, True).addCallback(
            lambda _: None
        )


@implementer(IStateChange)
class UnfenceDataset(PClass):
    """
    A fenced copy once the control service is heard again, at the epoch
    the copy was fenced at: exposed again where the configuration still
    names this node primary (``expose``); else the move asked for
    meanwhile goes on without exposing it (it becomes a hand-off, whose
    final increment the next passes send).
    """

    dataset_id = field(type=str, mandatory=True)
    expose = field(type=bool, mandatory=True)
    action_type = "flocker:node:dataset:unfence"

    def log_fields(self) -> dict[str, Any]:
        """The dataset and whether it is exposed again."""
        return change_fields(self)

    def run(self, deployer: DatasetAgentContext) -> Deferred[None]:
        """Writable, then primary; or recorded as a hand-off, read-only."""

        async def unfence() -> None:
            if self.expose:
                await deployer.backend.set_read_only(self.dataset_id, False)
                deployer.roles.set(self.dataset_id, PRIMARY)
            else:
                deployer.roles.set(self.dataset_id, HANDOFF)

        return Deferred.fromCoroutine(unfence())


@implementer(IStateChange)
class RejoinAsReplica(PClass):
    """
    A superseded primary's copy (diverged) that the configuration names a
    standing replica rejoins without a full resend: what it holds is set
    aside as the snapshot ``flocker-diverged-<epoch>-<ns>`` (never pruned,
    never exposed), the copy returns to ``base`` — the newest snapshot it
    shares with the new primary — and becomes a read-only replica at the
    configured epoch, to which the new primary sends only increments.

    :ivar epoch: The stale epoch the copy held (named in the set-aside
        snapshot).
    :ivar configured_epoch: The epoch it rejoins at.
    :ivar base: The snapshot it returns to.
    :ivar set_aside: Whether to set the divergence aside; ``False`` when an
        earlier attempt did so and crashed before recording the replica
        role (the copy's newest snapshot is ``base``, it is read-only, and
        a set-aside snapshot of ``epoch`` exists).
    """

    dataset_id = field(type=str, mandatory=True)
    epoch = field(type=int, mandatory=True)
    configured_epoch = field(type=int, mandatory=True)
    base = field(type=str, mandatory=True)
    set_aside = field(type=bool, initial=True)
    action_type = "flocker:node:dataset:rejoin"

    def log_fields(self) -> dict[str, Any]:
        """The dataset, both epochs, the base and whether it is set aside now."""
        return change_fields(self)

    def run(self, deployer: DatasetAgentContext) -> Deferred[None]:
        """
        Set aside, read-only, then record the replica role: until the
        role is recorded the copy stays diverged, and the receiver refuses
        every stream into it.
        """

        async def rejoin() -> None:
            if self.set_aside:
                name = diverged_snapshot_name(self.epoch)
                kept = await deployer.backend.set_aside(self.dataset_id, name, self.base)
                deployer.set_aside_changed(self.dataset_id)
                log_message(
                    message_type="flocker:node:dataset:set_aside",
                    dataset_id=self.dataset_id,
                    snapshot=kept.name,
                    base=self.base,
                )
            await deployer.backend.set_read_only(self.dataset_id, True)
            deployer.mover.forget(self.dataset_id)
            deployer.roles.set(self.dataset_id, REPLICA, epoch=self.configured_epoch)

        return Deferred.fromCoroutine(rejoin())


@implementer(IStateChange)
class KeepDiverged(PClass):
    """
    A diverged copy named a standing replica that cannot rejoin (it shares
    no snapshot with the new primary): it stays diverged, kept as it is —
    never destroyed nor replaced by a full stream.  Logged once per reason.
    """

    dataset_id = field(type=str, mandatory=True)
    reason = field(type=str, mandatory=True)
    action_type = "flocker:node:dataset:keep_diverged"

    def log_fields(self) -> dict[str, Any]:
        """The dataset and why it cannot rejoin."""
        return change_fields(self)

    def run(self, deployer: DatasetAgentContext) -> Deferred[None]:
        """Remember the reason was logged (discovery reports it to the calculator)."""
        deployer.cannot_rejoin[self.dataset_id] = self.reason
        return succeed(None)


__all__ = [
    "CreateDataset",
    "DivergeDataset",
    "PromoteDataset",
    "ProtectDataset",
    "DestroyDataset",
    "ExposeDataset",
    "FenceDataset",
    "KeepAsReplica",
    "KeepDiverged",
    "PushDataset",
    "RejoinAsReplica",
    "ResizeDataset",
    "UnfenceDataset",
    "change_fields",
]
