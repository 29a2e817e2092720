"""The dataset agent's deployer: datasets created, resized, moved, destroyed.

``DatasetDeployer`` discovers the node's datasets from its volume backend,
with each copy's durable role (see ``_roles``) and the progress of its move
(see ``_mover``) combined into one explicit *phase* (see ``_phases``), and
``calculate_dataset_changes`` — pure — looks up each dataset's row in a
table of (desired role, discovered phase) → rule (see
``_dataset_calculate``).  In words:

* configured here, missing, and no other node has a copy: create it — as a
  clone of its origin's snapshot for a clone (``_clones``), once the origin
  is exposed here with that snapshot;
* configured here with a rollback request not yet done: roll back once
  nothing uses it;
* an environment's snapshot that neither an environment nor a clone
  needs any more: destroy it;
* configured here with another maximum size: resize it;
* configured deleted: destroy the local copy;
* configured on another node while this node exposes (or is handing off)
  it: push it there (a move, see ``PushDataset``);
* a leftover copy of a dataset another node now exposes: destroy it;
* configured here but another node still has it: wait for its push;
* a dataset that a transfer is writing into right now: leave it alone.
* unknown to the configuration: leave it alone (never lose data).
* while the node is fenced (``_fence``: nothing heard from the control
  service for ``fence-after`` seconds), an exposed dataset that fails over
  automatically is fenced: not exposed, read-only, until a configuration
  names this node primary at the same epoch again;
* a diverged copy (a superseded primary's) named a standing replica
  rejoins: its divergence is set aside as a snapshot, and it becomes a
  replica from the newest snapshot it shares with the new primary.

Discovery also reports each copy's set-aside snapshots.  Only this agent
sets snapshots aside (and they go only with their dataset), so they are
listed once per dataset and again after a set-aside or a destroy, not on
every pass: one storage command fewer per dataset and pass.

Changes for different datasets run in parallel, so a failing dataset never
holds up the others; the convergence loop never runs two passes at once, so
no two changes for one dataset are in flight.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import attr
from eliot import write_failure
from twisted.internet.defer import Deferred, gatherResults
from twisted.python.failure import Failure

from flocker.control import (
    Deployment,
    DeploymentState,
)
from flocker.volume import (
    IListsSnapshotsAtOnce,
    IReportsPoolSpace,
    IVolumeBackend,
    SnapshotInfo,
)

from ._dataset_calculate import TABLE, calculate_dataset_changes
from ._dataset_changes import (
    CreateDataset,
    DatasetChange,
    DestroyDataset,
    ExposeDataset,
    PushDataset,
    ResizeDataset,
)
from ._local_state import (
    REPORTED_ROLE,
    DatasetLocalState,
    LocalDataset,
    phase_from,
)
from ._mover import (
    BULK_PAUSE,
    MAXIMUM_ROUNDS,
    SMALL_DELTA,
    DatasetMover,
    MoveProgress,
)
from ._replicator import Replicator
from ._roles import DIVERGED, IDatasetRoles
from ._snapshot_names import MOVE_SNAPSHOT_PREFIX


@attr.s(eq=False)
class DatasetDeployer:
    """
    Converges one node's datasets.

    :ivar node_uuid: This node's UUID.
    :ivar hostname: This node's address (others push datasets to it).
    :ivar backend: The node's volume backend.
    :ivar roles: The durable record of which datasets are exposed.
    :ivar mover: Pushes datasets for moves.
    :ivar replicator: Keeps standing replicas up to date.
    :ivar receiving: The ids of datasets a transfer is writing into now.
    :ivar fenced: Whether the node fenced itself now (``_fence``).
    """

    node_uuid: str = attr.ib()
    hostname: str = attr.ib()
    backend: IVolumeBackend = attr.ib()
    roles: IDatasetRoles = attr.ib()
    mover: DatasetMover = attr.ib()
    receiving: Callable[[], Any] = attr.ib(default=lambda: ())
    replicator: Replicator = attr.ib(default=None)
    now: Callable[[], float] = attr.ib(default=time.time)
    fenced: Callable[[], bool] = attr.ib(default=lambda: False)

    #: dataset id → the last rollback request carried out here (reported
    #: until the control service clears the request).
    rolled_back: dict[str, str] = attr.ib(factory=dict, init=False)
    #: dataset id → why its diverged copy cannot rejoin (logged once).
    cannot_rejoin: dict[str, str] = attr.ib(factory=dict, init=False)
    #: dataset id → its set-aside snapshots, as last listed.
    _set_aside: dict[str, list[SnapshotInfo]] = attr.ib(factory=dict, init=False)
    _recovered: bool = attr.ib(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        """Replicate with the mover's sender unless given a replicator."""
        if self.replicator is None:
            self.replicator = Replicator(self.backend, self.mover.send, self.now)

    def set_aside_changed(self, dataset_id: str) -> None:
        """A dataset's set-aside snapshots changed (or it went): list them again."""
        self._set_aside.pop(dataset_id, None)

    def discover_state(self, cluster_state: DeploymentState) -> Deferred[DatasetLocalState]:
        """
        List the backend's datasets with their snapshots, roles and phases.

        The first discovery first lets the backend undo what a crash left
        half done (a receive interrupted by a killed agent).
        """

        async def discover() -> DatasetLocalState:
            if not self._recovered:
                await self.backend.recover()
                self._recovered = True
            pool = None
            if IReportsPoolSpace.providedBy(self.backend):
                try:
                    pool = await self.backend.pool_space()
                except Exception:
                    # The pool is then reported unknown; the datasets'
                    # discovery says whether the backend works at all.
                    write_failure(Failure())
            if IListsSnapshotsAtOnce.providedBy(self.backend):
                # One listing of everything: discovery runs at every change
                # of the cluster, and asks the storage as little as it can.
                both = await self.backend.list_datasets_with_snapshots()
                infos = [info for info, _ in both]
                snapshots = [listed for _, listed in both]
            else:
                infos = await self.backend.list_datasets()
                # One listing per dataset, all at once: discovery time stays
                # flat as a node gains datasets.
                snapshots = await gatherResults(
                    [self.backend.list_snapshots(info.dataset_id) for info in infos],
                    consumeErrors=True,
                )
            await self._list_set_aside([info.dataset_id for info in infos])
            datasets = {
                info.dataset_id: LocalDataset(
                    info=info,
                    snapshots=listed,
                    role=self.roles.get(info.dataset_id),
                    epoch=self.roles.epoch(info.dataset_id),
                    move=self.mover.progress(info.dataset_id),
                    replication=self.replicator.progress(info.dataset_id),
                    set_aside=self._set_aside[info.dataset_id],
                )
                for info, listed in zip(infos, snapshots, strict=True)
            }
            return DatasetLocalState(
                node_uuid=self.node_uuid,
                hostname=self.hostname,
                datasets=datasets,
                receiving=set(self.receiving()),
                in_use={d for d in datasets if self.mover.in_use(d)},
                rolled_back={
                    d: r for d, r in self.rolled_back.items() if d in datasets
                },
                fenced=bool(self.fenced()),
                cannot_rejoin={
                    d: r for d, r in self.cannot_rejoin.items()
                    if d in datasets and datasets[d].role == DIVERGED
                },
                now=float(self.now()),
                pool=pool,
            )

        return Deferred.fromCoroutine(discover())

    async def _list_set_aside(self, dataset_ids: list[str]) -> None:
        """List the set-aside snapshots of the datasets not listed yet; forget gone ones."""
        for gone in set(self._set_aside) - set(dataset_ids):
            del self._set_aside[gone]
        unknown = [d for d in dataset_ids if d not in self._set_aside]
        listed = await gatherResults(
            [self.backend.list_set_aside(d) for d in unknown], consumeErrors=True
        )
        self._set_aside.update(zip(unknown, listed, strict=True))

    def calculate_changes(
        self,
        configuration: Deployment,
        cluster_state: DeploymentState,
        local_state: DatasetLocalState,
    ) -> DatasetChange:
        """See ``calculate_dataset_changes``."""
        return calculate_dataset_changes(
            self.node_uuid, configuration, cluster_state, local_state
        )


__all__ = [
    "BULK_PAUSE",
    "MAXIMUM_ROUNDS",
    "MOVE_SNAPSHOT_PREFIX",
    "SMALL_DELTA",
    "TABLE",
    "REPORTED_ROLE",
    "CreateDataset",
    "DatasetDeployer",
    "DatasetLocalState",
    "DatasetMover",
    "DestroyDataset",
    "ExposeDataset",
    "LocalDataset",
    "MoveProgress",
    "PushDataset",
    "ResizeDataset",
    "calculate_dataset_changes",
    "phase_from",
]
