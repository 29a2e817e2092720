"""
REST API v1 extension: manual failover to a standing replica.

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

from twisted.internet.defer import Deferred
from twisted.web.server import Request

from ._httpapi import ConfigurationAPIUserV1, _operation, _Response
from ._httpjson import APIError, check_uuid
from ._logging import FAILOVER
from ._model import DatasetDeleted, Deployment
from ._state import Snapshot

__all__: list[str] = []


def _newest_snapshot(
    api: ConfigurationAPIUserV1, node_uuid: str, dataset_id: str
) -> Snapshot:
    """The newest snapshot a node reports of a dataset; 409 if it has none."""
    state = api.cluster_state_service.as_deployment_state()
    copy = (state.get_node(node_uuid).datasets or {}).get(dataset_id)
    if copy is None or not copy.snapshots:
        raise APIError(
            409,
            f"node {node_uuid} has reported no snapshot of dataset {dataset_id} "
            "yet: its replica has no consistent data to start from",
        )
    if copy.role is not None and copy.role != "replica":
        raise APIError(
            409,
            f"node {node_uuid} reports its copy of dataset {dataset_id} as "
            f"{copy.role}, not as a replica (a move to or from it is under way, "
            "or it diverged): it cannot be promoted now",
        )
    snapshot: Snapshot = copy.snapshots[-1]
    return snapshot


def _why_allowed(api: ConfigurationAPIUserV1, primary: str, force: bool) -> str:
    """Why the failover may go ahead, or 409 if the primary was heard from recently."""
    heard = api.cluster_state_service.last_heard(primary, "dataset")
    if heard is None:
        reason = (
            f"the dataset agent of node {primary} has not been heard from "
            "since the control service started"
        )
    else:
        silent = api.clock.seconds() - heard
        reason = f"the dataset agent of node {primary} was last heard from {silent:.1f} s ago"
        if silent < api.failover_after and not force:
            raise APIError(
                409,
                f"{reason}, within failover_after ({api.failover_after:g} s): it "
                "may still be serving the dataset; wait, or pass force to fail "
                "over anyway",
            )
    return f"forced: {reason}" if force else reason


@_operation("failover_dataset")
async def failover_dataset(
    self: ConfigurationAPIUserV1,
    request: Request,
    dataset_id: str,
    body: dict[str, Any],
    expected_tag: str | None,
) -> _Response:
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
        snapshots = {d: _newest_snapshot(self, target, d) for d in failed}
        reason = _why_allowed(self, primary, force)
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
        changing = Deferred.fromCoroutine(self._change(expected_tag, change))
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
        else max(0.0, self.clock.seconds() - snapshot.created)
    )
    return _Response(
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
