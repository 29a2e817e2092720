"""The per-dataset operations of the REST API v1: ``/v1/datasets/{id}/...``.

Snapshots (taken, listed and destroyed at once by the dataset agent of the
dataset's primary, `flocker.control._rest._agents`), rollback and clones
(configuration changes the agents converge on, see
`flocker.control._cloning`: a clone is created by the node holding its
origin, a rollback happens once the application using the dataset has
stopped and is reported done as ``rolled_back`` in ``/v1/state/datasets``),
and manual failover to a standing replica.

``POST /v1/datasets/{dataset_id}/failover`` promotes the standing replica
on a node to primary (`Deployment.failover_dataset`: every dataset of the
application using this one goes with it, and the application moves).  It is
a configuration change through the same compare-and-swap path as every
write, and it is refused (409) when it could not give the user usable data
or could split the brain:

* the node holds no standing replica of the dataset, or of one of the
  application's other datasets;
* the node has reported no snapshot of one of these datasets yet (its copy
  has no consistent point to start from);
* without ``force``: the primary's dataset agent was heard from within the
  last ``failover_after`` seconds (it may still be writing).

Silence is a hint, not a guarantee.  Agents fence themselves after
``fence-after`` seconds without the control service, but only for datasets
that fail over automatically and have a standing replica; for the others,
a primary cut off from the control service, or whose agents alone died,
may go on serving its clients until it hears of the newer epoch this
change records.  Whoever fails over must know the old primary is down;
``force`` is for when they do.  (Automatic failover, `._failover`, waits
``failover_after``, longer than any agent's fence.)

The answer names the snapshot the new primary starts from and the data-loss
window: how old that snapshot is.  The configuration records that snapshot
as each dataset's ``failover_snapshot``.  The old primary leaves the
configuration and keeps its copy as diverged (an automatic failover,
`flocker.control._failover`, keeps it as a standing replica instead).
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import attrs
from twisted.internet.defer import Deferred
from twisted.web.server import Request

from .._cloning import (
    check_snapshot_name,
    refuse_destroying_cloned_snapshot,
    refuse_rollback_past_needed,
)
from .._httpjson import APIError, check_uuid, dataset_json, set_aside_json
from .._logging import FAILOVER
from .._model import Dataset, DatasetDeleted, Deployment, Origin, RollbackRequest
from .._state import Snapshot
from ._agents import on_primary, require_snapshot
from ._context import Routes
from ._operation import Response, operation, routes_app

__all__ = ["DatasetRoutes"]

#: Where `DatasetRoutes` are mounted.
MOUNT = "/v1/datasets"


@attrs.define
class DatasetRoutes(Routes):
    """The routes under ``/v1/datasets``: snapshots, rollback, clone, failover."""

    app = routes_app()

    # -- snapshots -------------------------------------------------------------

    @operation(app, "list_snapshots", MOUNT)
    async def list_snapshots(
        self, request: Request, dataset_id: str
    ) -> Response:
        """
        The dataset's snapshots, as its primary has them now, then the
        snapshots other copies set aside (``flocker-diverged-<epoch>-<ns>``:
        what a former primary held when a failover superseded it, kept when it
        rejoined), as their nodes last reported them, each with ``node_uuid``
        and ``set_aside``.
        """
        dataset_id = check_uuid(dataset_id, "dataset_id")
        result = await on_primary(self.context, dataset_id, "list")
        state = self.context.cluster_state_service.as_deployment_state()
        set_aside = [
            {"node_uuid": node_uuid, "set_aside": True, **snapshot}
            for ds, node_uuid in state.all_datasets()
            if ds.dataset_id == dataset_id
            for snapshot in set_aside_json(ds)
        ]
        return Response(200, [*result["snapshots"], *set_aside])


    @operation(app, "create_snapshot", MOUNT)
    async def create_snapshot(
        self, request: Request, dataset_id: str, body: dict[str, Any]
    ) -> Response:
        """Take a snapshot now."""
        dataset_id = check_uuid(dataset_id, "dataset_id")
        name = check_snapshot_name(body["name"])
        result = await on_primary(self.context, dataset_id, "take", name)
        return Response(201, result["snapshot"])


    @operation(app, "delete_snapshot", MOUNT)
    async def delete_snapshot(
        self, request: Request, dataset_id: str, name: str
    ) -> Response:
        """Destroy a snapshot."""
        dataset_id = check_uuid(dataset_id, "dataset_id")
        check_snapshot_name(name)
        refuse_destroying_cloned_snapshot(
            self.context.configuration_service.deployment, dataset_id, name
        )
        result = await on_primary(self.context, dataset_id, "destroy", name)
        return Response(200, result["snapshot"])

    # -- rollback and clones ---------------------------------------------------

    def _reported_snapshots(self, dataset_id: str) -> list[str]:
        """The dataset's snapshots, oldest first, as its primary last reported them."""
        _, primary = self.context.configuration_service.deployment.get_dataset(dataset_id)
        state = self.context.cluster_state_service.as_deployment_state()
        reported = (state.get_node(primary).datasets or {}).get(dataset_id)
        return [s.name for s in reported.snapshots] if reported is not None else []

    @operation(app, "rollback_dataset", MOUNT)
    async def rollback_dataset(
        self,
        request: Request,
        dataset_id: str,
        body: dict[str, Any],
        expected_tag: str | None,
    ) -> Response:
        """Ask for a rollback (the agents carry it out)."""
        dataset_id = check_uuid(dataset_id, "dataset_id")
        snapshot = check_snapshot_name(body["snapshot"])
        await require_snapshot(self.context, dataset_id, snapshot)
        refuse_rollback_past_needed(
            self.context.configuration_service.deployment,
            dataset_id,
            snapshot,
            self._reported_snapshots(dataset_id),
        )
        rollback = RollbackRequest(snapshot=snapshot, request_id=str(uuid4()))
        stored = await self.context.change(
            expected_tag, lambda deployment: deployment.rollback_dataset(dataset_id, rollback)
        )
        return Response(
            202,
            {"dataset_id": dataset_id, "snapshot": snapshot, "request_id": rollback.request_id},
            stored,
        )


    @operation(app, "clone_dataset", MOUNT)
    async def clone_dataset(
        self,
        request: Request,
        dataset_id: str,
        body: dict[str, Any],
        expected_tag: str | None,
    ) -> Response:
        """Add a clone of one of the dataset's snapshots, on the same node."""
        dataset_id = check_uuid(dataset_id, "dataset_id")
        snapshot = check_snapshot_name(body["snapshot"])
        new_id = check_uuid(body.get("dataset_id", str(uuid4())), "dataset_id")
        source, _ = self.context.configuration_service.deployment.get_dataset(dataset_id)
        await require_snapshot(self.context, dataset_id, snapshot)
        clone = Dataset(
            dataset_id=new_id,
            metadata=body.get("metadata", {}),
            maximum_size=source.maximum_size,
        )
        origin = Origin(dataset_id=dataset_id, snapshot=snapshot)
        stored = await self.context.change(
            expected_tag, lambda deployment: deployment.clone_dataset(clone, origin)
        )
        made, node = stored.deployment.get_dataset(new_id)
        return Response(201, dataset_json(made, node), stored)


    # -- failover --------------------------------------------------------------

    def _why_allowed(self, primary: str, force: bool) -> str:
        """Why the failover may go ahead, or 409 if the primary was heard from recently."""
        heard = self.context.cluster_state_service.last_heard(primary, "dataset")
        if heard is None:
            reason = (
                f"the dataset agent of node {primary} has not been heard from "
                "since the control service started"
            )
        else:
            silent = self.context.clock.seconds() - heard
            reason = f"the dataset agent of node {primary} was last heard from {silent:.1f} s ago"
            if silent < self.context.failover_after and not force:
                raise APIError(
                    409,
                    f"{reason}, within failover_after ({self.context.failover_after:g} s): it "
                    "may still be serving the dataset; wait, or pass force to fail "
                    "over anyway",
                )
        return f"forced: {reason}" if force else reason


    @operation(app, "failover_dataset", MOUNT)
    async def failover_dataset(
        self,
        request: Request,
        dataset_id: str,
        body: dict[str, Any],
        expected_tag: str | None,
    ) -> Response:
        """Promote the standing replica on a node to primary."""
        dataset_id = check_uuid(dataset_id, "dataset_id")
        target = check_uuid(body["node_uuid"], "node_uuid")
        force = bool(body.get("force", False))
        outcome: dict[str, Any] = {}
        action = FAILOVER(dataset_id=dataset_id, to=target, force=force)

        def change(deployment: Deployment) -> Deployment:
            dataset, primary = deployment.get_dataset(dataset_id)
            if dataset.deleted:
                raise DatasetDeleted(dataset_id)
            _, failed = deployment.failover_dataset(dataset_id, target)
            state = self.context.state()
            snapshots = {d: state.promotable_snapshot(target, d) for d in failed}
            reason = self._why_allowed(primary, force)
            after, _ = deployment.failover_dataset(
                dataset_id, target, snapshots={d: s.name for d, s in snapshots.items()}
            )
            outcome.update(
                primary=primary,
                failed=failed,
                snapshot=snapshots[dataset_id],
                reason=reason,
                epoch=after.get_dataset(dataset_id)[0].epoch,
            )
            return after

        with action.context():
            # Started here, so the configuration change logs inside the failover.
            changing = Deferred.fromCoroutine(self.context.change(expected_tag, change))
        try:
            stored = await changing
        except BaseException as e:
            action.finish(e)
            raise
        action.add_success_fields(
            **{"from": outcome["primary"], "epoch": outcome["epoch"]},
            reason=outcome["reason"],
        )
        action.finish()
        snapshot: Snapshot = outcome["snapshot"]
        window = (
            None
            if snapshot.created is None
            else max(0.0, self.context.clock.seconds() - snapshot.created)
        )
        return Response(
            200,
            {
                "dataset_id": dataset_id,
                "primary": target,
                "epoch": outcome["epoch"],
                "datasets": outcome["failed"],
                "snapshot": snapshot.name,
                "snapshot_created": snapshot.created,
                "data_loss_window_seconds": window,
            },
            stored,
        )
