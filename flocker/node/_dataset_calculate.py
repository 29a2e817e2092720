"""The dataset calculator: a table of (desired role, discovered phase) → rule.

Pure: from the configuration, the cluster state and this node's discovered
datasets it returns the changes that bring each dataset a step towards the
configuration, and the same arguments always give an equal plan.  Read
`TABLE` as a state diagram: each row says what this node does with one
dataset when the configuration wants its copy in one role (`Desired`) and
discovery found it in one phase (`Phase`).  Rows not in the table do
nothing.  Two guards come first: a dataset unknown to the configuration is
left alone (never lose data), and so is one a transfer is writing into.

Fencing and failback read as rows too: while the node is fenced (see
``_fence``), a dataset that fails over automatically is `Desired.FENCED`
and an exposed copy of it becomes `Phase.FENCED`; once a configuration
arrives, a fenced copy still named primary at its epoch is exposed again,
one of a superseded epoch diverges, and a diverged copy named a standing
replica rejoins (`RejoinAsReplica`: its divergence set aside, back to the
newest snapshot it shares with the new primary, then only increments).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pyrsistent import PClass, field

from flocker.control import Dataset, DatasetState, Deployment, DeploymentState

from ._clones import (
    CloneDataset,
    DestroySnapshot,
    RollbackDataset,
    unneeded_environment_snapshots,
)
from ._dataset_changes import (
    CreateDataset,
    DatasetChange,
    DestroyDataset,
    DivergeDataset,
    ExposeDataset,
    FenceDataset,
    KeepAsReplica,
    KeepDiverged,
    PromoteDataset,
    ProtectDataset,
    PushDataset,
    RejoinAsReplica,
    ResizeDataset,
    UnfenceDataset,
)
from ._deploy import in_parallel, sequentially
from ._phases import Desired, Phase, desired_role
from ._replicator import (
    ReplicaTarget,
    ReplicateDataset,
    newest_common,
    prunable_on_primary,
    prunable_on_replica,
    replication_due,
)
from ._snapshot_names import diverged_at

if TYPE_CHECKING:
    from ._local_state import DatasetLocalState, LocalDataset


class Situation(PClass):
    """
    Everything a rule may look at for one dataset on this node.

    :ivar node_uuid: This node.
    :ivar dataset: The configured dataset.
    :ivar primary: The UUID of its configured primary.
    :ivar configuration: The whole configuration.
    :ivar cluster_state: What the nodes last reported.
    :ivar local_state: This node's discovered datasets.
    """

    node_uuid = field(type=str, mandatory=True)
    dataset = field(type=Dataset, mandatory=True)
    primary = field(type=str, mandatory=True)
    configuration = field(type=Deployment, mandatory=True)
    cluster_state = field(type=DeploymentState, mandatory=True)
    local_state: DatasetLocalState = field(mandatory=True)

    @property
    def dataset_id(self) -> str:
        """The dataset's id."""
        dataset_id: str = self.dataset.dataset_id
        return dataset_id

    @property
    def local(self) -> LocalDataset:
        """The local copy (rules for the phase ``ABSENT`` never ask)."""
        local: LocalDataset = self.local_state.datasets[self.dataset_id]
        return local

    def exposed_elsewhere(self) -> list[str]:
        """Other nodes that report the dataset with a mount path."""
        found = []
        for uuid_, state in self.cluster_state.nodes.items():
            if uuid_ == self.node_uuid or state.datasets is None:
                continue
            copy = state.datasets.get(self.dataset_id)
            if copy is not None and copy.path is not None:
                found.append(uuid_)
        return found

    def held_elsewhere(self) -> bool:
        """
        Whether a copy may exist on another node: one reports it; the
        configuration names another copy that is not a standing replica (a
        move leaves the old primary as a configured transient copy, which
        covers the time its state is unknown); or a standing replica's node
        has not reported its datasets yet (it may hold the data).
        """
        if any(u != self.node_uuid for u in self.cluster_state.holders(self.dataset_id)):
            return True
        for uuid_, node in self.configuration.nodes.items():
            manifestation = node.manifestations.get(self.dataset_id)
            if uuid_ == self.node_uuid or manifestation is None:
                continue
            if not manifestation.standing:
                return True
            if self.cluster_state.get_node(uuid_).datasets is None:
                return True
        return False


    def epoch_held_elsewhere(self) -> bool:
        """
        Whether another node reports a copy at the configured epoch or a
        newer one: the data of this epoch is there, not here.
        """
        for uuid_, state in self.cluster_state.nodes.items():
            if uuid_ == self.node_uuid or state.datasets is None:
                continue
            copy = state.datasets.get(self.dataset_id)
            if copy is not None and copy.epoch is not None and copy.epoch >= self.dataset.epoch:
                return True
        return False

    def current_copy_elsewhere(self) -> DatasetState | None:
        """
        The copy of the configured epoch another node reports: the
        primary's, or, when this node is the configured primary (a move
        here asked for right after a failover elsewhere), the move's
        source's; ``None`` if no other node reports one yet.
        """
        holders = [self.primary] if self.primary != self.node_uuid else []
        holders += sorted(u for u in self.cluster_state.nodes if u not in (self.node_uuid, self.primary))
        for uuid_ in holders:
            copy = self.reported_copy(uuid_)
            if (
                copy is not None
                and copy.role not in ("diverged", "fenced")
                and (copy.epoch or 0) >= self.dataset.epoch
            ):
                return copy
        return None

    def reported_role(self, node_uuid: str) -> str | None:
        """The role a node reports holding its copy in, if it reports one."""
        copy = self.reported_copy(node_uuid)
        return None if copy is None else copy.role

    def reported_copy(self, node_uuid: str) -> DatasetState | None:
        """The copy a node reports, if it reports one."""
        state = self.cluster_state.nodes.get(node_uuid)
        copy: DatasetState | None = (
            (state.datasets if state is not None else None) or {}
        ).get(self.dataset_id)
        return copy

    def refuses_streams(self, node_uuid: str) -> bool:
        """
        Whether a node's reported copy turns every stream away: diverged or
        fenced, or a primary or hand-off of an older epoch (a superseded
        primary that has not heard of the failover yet).
        """
        copy = self.reported_copy(node_uuid)
        if copy is None:
            return False
        if copy.role in ("diverged", "fenced"):
            return True
        return copy.role in ("primary", "handoff") and (copy.epoch or 0) < self.dataset.epoch

    def failover_snapshot_needed(self) -> bool:
        """
        Whether the primary keeps the dataset's ``failover_snapshot``: some
        node reports a copy of an older epoch that is not a replica (a
        superseded primary: diverged, fenced, or not aware of the failover
        yet), or a configured replica has confirmed nothing from this
        primary and reports no copy of the configured epoch (the old
        primary named a replica, perhaps still down).  Either may rejoin
        from it.
        """
        dataset = self.dataset
        if dataset.failover_snapshot is None:
            return False
        for uuid_ in self.cluster_state.nodes:
            copy = self.reported_copy(uuid_)
            if uuid_ == self.node_uuid or copy is None:
                continue
            if copy.role != "replica" and (copy.epoch or 0) < dataset.epoch:
                return True
        local = self.local
        for replica in self.configuration.replicas_of(self.dataset_id):
            progress = local.replication.get(replica)
            if progress is not None and progress.confirmed is not None:
                continue
            copy = self.reported_copy(replica)
            if copy is None or (copy.epoch or 0) < dataset.epoch:
                return True
        return False


Rule = Callable[[Situation], list[DatasetChange]]


def nothing(situation: Situation) -> list[DatasetChange]:
    """Nothing to do (also: wait for another node to act)."""
    return []


def destroy_unless_in_use(situation: Situation) -> list[DatasetChange]:
    """
    A deleted dataset goes, but not while a container still mounts it (a
    reset environment copy's old clone, until its container is replaced).
    """
    if situation.dataset_id in situation.local_state.in_use:
        return []
    return [DestroyDataset(dataset_id=situation.dataset_id)]


def create_or_wait(situation: Situation) -> list[DatasetChange]:
    """
    Create only a dataset that exists nowhere, as a clone of its origin's
    snapshot for a clone (once the origin is exposed here with that
    snapshot); wait where another node holds or is configured to hold a copy.
    """
    dataset = situation.dataset
    if situation.held_elsewhere():
        return []
    if dataset.origin is None:
        return [CreateDataset(dataset_id=dataset.dataset_id, maximum_size=dataset.maximum_size)]
    origin = situation.local_state.datasets.get(dataset.origin.dataset_id)
    if (
        origin is not None
        and origin.phase in (Phase.PRIMARY, Phase.MOVING)
        and dataset.origin.snapshot in {s.name for s in origin.snapshots}
    ):
        return [
            CloneDataset(
                dataset_id=dataset.dataset_id,
                origin=dataset.origin.dataset_id,
                snapshot=dataset.origin.snapshot,
                maximum_size=dataset.maximum_size,
            )
        ]
    return []


def maintain(situation: Situation) -> list[DatasetChange]:
    """
    Keep an exposed primary as configured: superseded by a newer epoch,
    it diverges; else a pending rollback once nothing uses it, else its
    maximum size; drop environment snapshots nobody needs any more; and
    keep its standing replicas current.
    """
    dataset, local, local_state = situation.dataset, situation.local, situation.local_state
    dataset_id = dataset.dataset_id
    if superseded(situation):
        # A copy of an older epoch is never exposed again: the configured
        # epoch's data is elsewhere (a failover, perhaps followed by a move
        # back here before this agent heard of it), and this copy may hold
        # writes that epoch never received.
        return diverge(situation)
    changes: list[DatasetChange] = []
    request = dataset.rollback
    if (
        request is not None
        and local_state.rolled_back.get(dataset_id) != request.request_id
        and dataset_id not in local_state.in_use
    ):
        changes.append(
            RollbackDataset(
                dataset_id=dataset_id, snapshot=request.snapshot, request_id=request.request_id
            )
        )
    elif local.info.maximum_size != dataset.maximum_size:
        changes.append(ResizeDataset(dataset_id=dataset_id, maximum_size=dataset.maximum_size))
    # Replication first: a snapshot that cannot be destroyed must not hold
    # it up (one dataset's changes run in order, stopping at a failure).
    changes.extend(replicate(situation))
    changes.extend(
        DestroySnapshot(dataset_id=dataset_id, snapshot=name)
        for name in unneeded_environment_snapshots(
            situation.configuration,
            dataset_id,
            local.snapshots,
            local_state.now,
        )
    )
    return changes


def _reported_snapshots(situation: Situation, node_uuid: str) -> tuple[str, ...]:
    """The snapshots a node reports for its copy of the dataset."""
    node = situation.cluster_state.nodes.get(node_uuid)
    copy = ((node.datasets if node is not None else None) or {}).get(situation.dataset_id)
    return tuple(s.name for s in copy.snapshots) if copy is not None else ()


def replicate(situation: Situation) -> list[DatasetChange]:
    """
    On a primary with standing replicas: a round to the replicas that are
    due (whose address is known), and the replication snapshots no replica
    needs any more pruned.
    """
    dataset, local = situation.dataset, situation.local
    replicas = situation.configuration.replicas_of(dataset.dataset_id)
    if not replicas:
        return []
    names = [s.name for s in local.snapshots]
    targets, shared = [], []
    for replica in replicas:
        if situation.refuses_streams(replica):
            # Its copy refuses every stream until it rejoins: neither a
            # target nor a reason to keep snapshots (but see
            # `failover_snapshot_needed`).
            continue
        node = situation.cluster_state.nodes.get(replica)
        progress = local.replication.get(replica)
        confirmed = progress.confirmed if progress is not None else None
        # What it reports, and what it confirmed since (a report may be
        # older than the last round, or taken while a receive swapped its
        # copy in); a confirmed snapshot that is gone (the replica was
        # removed and added again) fails the round, which forgets it.
        known = set(_reported_snapshots(situation, replica))
        if confirmed is not None:
            known.add(confirmed)
        base = newest_common(names, known)
        shared.append(base)
        if node is None or node.hostname is None:
            continue
        if replication_due(
            dataset.replication.interval_seconds, progress, situation.local_state.now
        ):
            targets.append(ReplicaTarget(node_uuid=replica, host=node.hostname, base=base))
    changes: list[DatasetChange] = []
    if targets:
        changes.append(
            ReplicateDataset(
                dataset_id=dataset.dataset_id,
                epoch=dataset.epoch,
                targets=tuple(targets),
                replicas=tuple(replicas),
            )
        )
    keep = []
    if dataset.failover_snapshot is not None and situation.failover_snapshot_needed():
        keep.append(dataset.failover_snapshot)
    changes.extend(
        DestroySnapshot(dataset_id=dataset.dataset_id, snapshot=name)
        for name in prunable_on_primary(names, shared, keep=keep)
    )
    return changes


def prune_replica(situation: Situation) -> list[DatasetChange]:
    """
    On a standing replica: replication snapshots older than the newest one
    the primary also reports go (the primary keeps that one too).
    """
    names = [s.name for s in situation.local.snapshots]
    primary = _reported_snapshots(situation, situation.primary)
    return [
        DestroySnapshot(dataset_id=situation.dataset_id, snapshot=name)
        for name in prunable_on_replica(names, primary)
    ]


def superseded(situation: Situation) -> bool:
    """Whether a newer epoch than this node's copy's is configured."""
    return situation.dataset.epoch > situation.local.epoch


def promote_or_wait(situation: Situation) -> list[DatasetChange]:
    """
    A replica configured as primary: at a newer epoch that no other node
    holds a copy of, a failover chose it, so it is promoted at once;
    otherwise it is a move's destination (a move may follow a failover
    before this replica received anything of the new epoch), which waits
    for the final increment.
    """
    if superseded(situation) and not situation.epoch_held_elsewhere():
        return [PromoteDataset(dataset_id=situation.dataset_id, epoch=situation.dataset.epoch)]
    return []


def diverge(situation: Situation) -> list[DatasetChange]:
    """Stop exposing a primary copy that a newer epoch superseded; keep it."""
    return [
        DivergeDataset(
            dataset_id=situation.dataset_id,
            epoch=situation.local.epoch,
            configured_epoch=situation.dataset.epoch,
        )
    ]


def push_or_diverge(situation: Situation) -> list[DatasetChange]:
    """
    An exposed copy configured elsewhere: moved away at the same epoch
    (push it to the new primary), or superseded by a failover (diverged).
    """
    if superseded(situation):
        return diverge(situation)
    return push(situation)


def swap_or_diverge(situation: Situation) -> list[DatasetChange]:
    """
    An exposed copy now configured as a standing replica: the primary moved
    to one of its replicas (push the final increment there and keep this
    copy as a replica), or a failover superseded it (diverged).
    """
    if superseded(situation):
        return diverge(situation)
    return [change.set(keep=True) for change in push(situation)]  # type: ignore[attr-defined]


def finish_swap(situation: Situation) -> list[DatasetChange]:
    """
    A hand-off towards a replica node: once the new primary exposes the
    dataset this copy is a replica again; until then, send the final
    increment (and keep the copy).
    """
    if superseded(situation):
        return diverge(situation)
    if situation.primary in situation.exposed_elsewhere():
        return [KeepAsReplica(dataset_id=situation.dataset_id)]
    return [change.set(keep=True) for change in push(situation)]  # type: ignore[attr-defined]


def expose_if_called_off(situation: Situation) -> list[DatasetChange]:
    """A hand-off whose move was called off before the destination took over."""
    if situation.exposed_elsewhere():
        return []
    return [ExposeDataset(dataset_id=situation.dataset_id)]


def push(situation: Situation) -> list[DatasetChange]:
    """Push the dataset to its configured primary, once its address is known."""
    destination = situation.cluster_state.nodes.get(situation.primary)
    if destination is None or destination.hostname is None:
        return []
    copy = (destination.datasets or {}).get(situation.dataset_id)
    snapshots = tuple(s.name for s in copy.snapshots) if copy else ()
    return [
        PushDataset(
            dataset_id=situation.dataset_id,
            destination=situation.primary,
            host=destination.hostname,
            remote_snapshots=snapshots,
            epoch=situation.local.epoch,
        )
    ]


def finish_handoff(situation: Situation) -> list[DatasetChange]:
    """
    Once the new primary exposes the dataset it has the final increment (it
    is exposed only once that arrived): the move is over even if this node
    never heard back, so never push again; until then, send it.
    """
    if superseded(situation):
        # A failover overtook the move: this copy may hold the only
        # writes since the move began.
        return diverge(situation)
    if situation.primary in situation.exposed_elsewhere():
        return [DestroyDataset(dataset_id=situation.dataset_id)]
    return push(situation)


def promote_to_move_on(situation: Situation) -> list[DatasetChange]:
    """
    A replica left as a move's source: when a failover made this node the
    primary of a newer epoch and a move was asked for before this agent
    acted on the failover, the copy is promoted first (the next pass pushes
    it on); otherwise it is a leftover like any other.
    """
    if superseded(situation) and not situation.epoch_held_elsewhere():
        return [PromoteDataset(dataset_id=situation.dataset_id, epoch=situation.dataset.epoch)]
    return destroy_once_primary_exposes(situation)


def fence(situation: Situation) -> list[DatasetChange]:
    """
    The node fenced itself: an exposed copy of a dataset that fails over
    automatically is exposed no more (read-only, not reported mounted).
    """
    return [FenceDataset(dataset_id=situation.dataset_id, epoch=situation.local.epoch)]


def unfence_or_diverge(situation: Situation) -> list[DatasetChange]:
    """
    A fenced copy that the configuration, heard again, still names primary:
    at the same epoch it is exposed again; a newer epoch (a failover while
    this node was cut off) makes it diverged.
    """
    if superseded(situation):
        return diverge(situation)
    return [UnfenceDataset(dataset_id=situation.dataset_id, expose=True)]


def hand_off_or_diverge(situation: Situation) -> list[DatasetChange]:
    """
    A fenced copy that the configuration, heard again, places elsewhere:
    superseded by a failover, it diverges (named a standing replica, it
    then rejoins); at the same epoch (a move asked for meanwhile) it is not
    exposed again but handed off, and the next passes send the final
    increment.
    """
    if superseded(situation):
        return diverge(situation)
    return [UnfenceDataset(dataset_id=situation.dataset_id, expose=False)]


def rejoin(situation: Situation) -> list[DatasetChange]:
    """
    A diverged copy named a standing replica (or the primary, by a move
    asked for right after the failover) rejoins once another node reports
    its copy of the configured epoch (the new primary, or the move's source): back to the dataset's ``failover_snapshot`` if both
    hold it, else to the newest snapshot they share, its divergence set
    aside (`RejoinAsReplica`).  Sharing none, it stays diverged, said once
    (`KeepDiverged`): its data is never destroyed.
    """
    dataset, local = situation.dataset, situation.local
    theirs = situation.current_copy_elsewhere()
    if not superseded(situation) or theirs is None:
        return []  # wait for the new primary to report its copy
    names = [s.name for s in local.snapshots]
    shared = {s.name for s in theirs.snapshots}
    chosen = dataset.failover_snapshot
    base = chosen if chosen in names and chosen in shared else newest_common(names, shared)
    if base is None:
        reason = (
            f"the copy of epoch {local.epoch} shares no snapshot with the primary of "
            f"epoch {dataset.epoch}: kept as diverged (a full copy would be needed)"
        )
        if situation.local_state.cannot_rejoin.get(situation.dataset_id) == reason:
            return []
        return [KeepDiverged(dataset_id=situation.dataset_id, reason=reason)]
    # An attempt that crashed after setting aside and before recording the
    # replica role left the copy at ``base``, read-only, with a set-aside
    # snapshot of this epoch: nothing to set aside again.
    done = (
        names[-1] == base
        and local.info.read_only
        and any(diverged_at(s.name) == local.epoch for s in local.set_aside)
    )
    return [
        RejoinAsReplica(
            dataset_id=situation.dataset_id,
            epoch=local.epoch,
            configured_epoch=dataset.epoch,
            base=base,
            set_aside=not done,
        )
    ]


def destroy_once_primary_exposes(situation: Situation) -> list[DatasetChange]:
    """A leftover copy goes once the configured primary exposes the dataset."""
    if situation.primary in situation.exposed_elsewhere():
        return [DestroyDataset(dataset_id=situation.dataset_id)]
    return []


#: (desired role, discovered phase) → what this node does.  Pairs not
#: listed do nothing: a diverged copy in particular is only ever destroyed
#: with its dataset, or set aside when it rejoins as a replica.
TABLE: dict[tuple[Desired, Phase], Rule] = {
    (Desired.DELETED, Phase.PRIMARY): destroy_unless_in_use,
    (Desired.DELETED, Phase.MOVING): destroy_unless_in_use,
    (Desired.DELETED, Phase.HANDOFF): destroy_unless_in_use,
    (Desired.DELETED, Phase.REPLICA): destroy_unless_in_use,
    (Desired.DELETED, Phase.DIVERGED): destroy_unless_in_use,
    (Desired.DELETED, Phase.FENCED): destroy_unless_in_use,
    (Desired.PRIMARY, Phase.ABSENT): create_or_wait,
    (Desired.PRIMARY, Phase.PRIMARY): maintain,
    (Desired.PRIMARY, Phase.MOVING): maintain,
    (Desired.PRIMARY, Phase.HANDOFF): expose_if_called_off,
    (Desired.PRIMARY, Phase.REPLICA): promote_or_wait,
    # Never exposed: a move here right after a failover rejoins first, then
    # receives the final increment from the move's source.
    (Desired.PRIMARY, Phase.DIVERGED): rejoin,
    (Desired.PRIMARY, Phase.FENCED): unfence_or_diverge,
    (Desired.REPLICA, Phase.ABSENT): nothing,  # the primary's rounds bring it
    (Desired.REPLICA, Phase.PRIMARY): swap_or_diverge,
    (Desired.REPLICA, Phase.MOVING): swap_or_diverge,
    (Desired.REPLICA, Phase.HANDOFF): finish_swap,
    (Desired.REPLICA, Phase.REPLICA): prune_replica,
    (Desired.REPLICA, Phase.DIVERGED): rejoin,
    (Desired.REPLICA, Phase.FENCED): hand_off_or_diverge,
    (Desired.ELSEWHERE, Phase.PRIMARY): push_or_diverge,
    (Desired.ELSEWHERE, Phase.MOVING): push_or_diverge,
    (Desired.ELSEWHERE, Phase.HANDOFF): finish_handoff,
    (Desired.ELSEWHERE, Phase.REPLICA): destroy_once_primary_exposes,
    (Desired.ELSEWHERE, Phase.DIVERGED): nothing,
    (Desired.ELSEWHERE, Phase.FENCED): hand_off_or_diverge,
    (Desired.SOURCE, Phase.PRIMARY): push_or_diverge,
    (Desired.SOURCE, Phase.MOVING): push_or_diverge,
    (Desired.SOURCE, Phase.HANDOFF): finish_handoff,
    (Desired.SOURCE, Phase.REPLICA): promote_to_move_on,
    (Desired.SOURCE, Phase.DIVERGED): nothing,
    (Desired.SOURCE, Phase.FENCED): hand_off_or_diverge,
    # While fenced, the configuration held may be stale: exposed copies
    # stop being exposed, and nothing else is done to the dataset.
    (Desired.FENCED, Phase.PRIMARY): fence,
    (Desired.FENCED, Phase.MOVING): fence,
    (Desired.FENCED, Phase.HANDOFF): nothing,
    (Desired.FENCED, Phase.REPLICA): nothing,
    (Desired.FENCED, Phase.DIVERGED): nothing,
    (Desired.FENCED, Phase.FENCED): nothing,
}


def phase_of(local: LocalDataset | None) -> Phase:
    """A local copy's phase (`Phase.ABSENT` for none)."""
    return Phase.ABSENT if local is None else local.phase


def calculate_dataset_changes(
    node_uuid: str,
    configuration: Deployment,
    cluster_state: DeploymentState,
    local_state: DatasetLocalState,
) -> DatasetChange:
    """
    The changes that bring this node's datasets towards the configuration:
    each dataset's row of `TABLE`.  One dataset's changes run one after
    the other (no two storage commands on one dataset at once, which
    zfs-fuse does not always survive); different datasets' run in parallel
    (a failing dataset never holds up the others).
    """
    configured = {d.dataset_id: (d, p) for d, p in configuration.all_datasets()}
    changes: list[DatasetChange] = []
    for dataset_id in sorted(set(configured) | set(local_state.datasets)):
        if dataset_id not in configured or dataset_id in local_state.receiving:
            continue
        dataset, primary = configured[dataset_id]
        desired = desired_role(configuration, node_uuid, dataset_id, local_state.fenced)
        assert desired is not None
        phase = phase_of(local_state.datasets.get(dataset_id))
        rule = TABLE.get((desired, phase), nothing)
        planned = rule(
            Situation(
                node_uuid=node_uuid,
                dataset=dataset,
                primary=primary,
                configuration=configuration,
                cluster_state=cluster_state,
                local_state=local_state,
            )
        )
        changes.append(
            sequentially(planned + protection(local_state.datasets.get(dataset_id), planned))
        )
    return in_parallel(changes)


#: Phases in which a copy is not exposed, and so must not be writable.
UNEXPOSED = (Phase.HANDOFF, Phase.REPLICA, Phase.DIVERGED, Phase.FENCED)


def protection(local: LocalDataset | None, planned: list[DatasetChange]) -> list[DatasetChange]:
    """
    A copy in an unexposed phase that is still writable is made read-only,
    unless this pass exposes or destroys it anyway.
    """
    if local is None or local.phase not in UNEXPOSED or local.info.read_only:
        return []
    if any(
        isinstance(c, (PromoteDataset, ExposeDataset, DestroyDataset, RejoinAsReplica))
        or (isinstance(c, UnfenceDataset) and c.expose)
        for c in planned
    ):
        return []
    return [ProtectDataset(dataset_id=local.info.dataset_id)]


__all__ = ["TABLE", "Situation", "calculate_dataset_changes", "phase_of"]
