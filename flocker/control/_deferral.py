"""Moves and deletions of leased datasets, carried out when the lease ends.

The original Flocker v1 API accepted (200) a move or a deletion of a dataset
that a node held a lease on, and carried it out once the lease was released
or lapsed; its clients (and its own lease acceptance tests) rely on it.  The
project's model refuses such a change (`DatasetLeased`); `DeferredChanges`
bridges the two for the REST API:

* a refused request's change function is kept, one per dataset (a later
  request for the same dataset replaces an earlier one: the last word
  wins, as it would have in the configuration);
* when the lease is released through the API, or when it lapses (a timer
  on the injected clock, moved on when the lease is renewed), the change
  function is run again against the configuration of that moment, with
  lapsed leases dropped, through `ConfigurationService.change` — so every
  check it makes (the node is known, no container mounts the dataset…)
  is made again, atomically with the change.  A change that fails then is
  logged (``flocker:control:rest:deferred_change``) and dropped.

Deferred changes live in the control service's memory: a restart of the
control service before the lease ends drops them (the configuration was
never changed, so nothing is half done; the client must ask again).  A
client that prefers a refusal sends ``X-Refuse-If-Leased: true`` and gets
the 409 instead.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
from eliot import ActionType, Field
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from ._model import Deployment
from ._persistence import ConfigurationAccess

__all__ = ["DEFERRED_CHANGE", "DeferredChanges"]

_DATASET_ID = Field.for_types("dataset_id", [str], "The dataset changed.")
_WHAT = Field.for_types("what", [str], "What the change does (move, delete, ...).")

#: A deferred change being carried out after its dataset's lease ended.
DEFERRED_CHANGE = ActionType(
    "flocker:control:rest:deferred_change",
    [_DATASET_ID, _WHAT],
    [],
    "The control service carried out a move or deletion it had accepted "
    "while the dataset was leased.",
)

Change = Callable[[Deployment], Deployment]


@attrs.define
class _Pending:
    """One accepted change waiting for its dataset's lease to end."""

    what: str
    change: Change
    timer: IDelayedCall | None = None


@attrs.define
class DeferredChanges:
    """
    The changes accepted while their datasets were leased.

    :ivar clock: for lease expiry.
    :ivar configuration_service: where the changes are made, durably.
    """

    clock: IReactorTime
    configuration_service: ConfigurationAccess
    _pending: dict[str, _Pending] = attrs.field(factory=dict, init=False)

    def pending(self) -> dict[str, str]:
        """Dataset id → what is waiting for its lease to end."""
        return {k: v.what for k, v in self._pending.items()}

    def defer(self, dataset_id: str, what: str, change: Change) -> None:
        """
        Keep ``change`` to run when the lease on ``dataset_id`` ends,
        replacing any change kept for it before.
        """
        self._cancel(dataset_id)
        self._pending[dataset_id] = _Pending(what, change)
        self._schedule(dataset_id, self.configuration_service.deployment)

    def lease_ended(self, dataset_id: str) -> Deferred[None]:
        """
        The lease on a dataset was released: carry out its waiting change,
        if any.  Fires once it is durable (or was dropped, failing).
        """
        return Deferred.fromCoroutine(self._carry_out(dataset_id))

    def _cancel(self, dataset_id: str) -> None:
        old = self._pending.pop(dataset_id, None)
        if old is not None and old.timer is not None and old.timer.active():
            old.timer.cancel()

    def _schedule(self, dataset_id: str, deployment: Deployment) -> None:
        """Wake up when the current lease lapses (not at all if it never does)."""
        pending = self._pending[dataset_id]
        lease = deployment.leases.get(dataset_id)
        if lease is None or lease.expiration is None:
            return
        delay = max(0.0, lease.expiration - self.clock.seconds())
        pending.timer = self.clock.callLater(delay, self.lease_ended, dataset_id)

    async def _carry_out(self, dataset_id: str) -> None:
        pending = self._pending.get(dataset_id)
        if pending is None:
            return
        now = self.clock.seconds()
        deployment = self.configuration_service.deployment
        if deployment.leases.expire(now).get(dataset_id) is not None:
            # Renewed (or taken again) meanwhile: wait for the new lease.
            if pending.timer is not None and pending.timer.active():
                pending.timer.cancel()
            self._schedule(dataset_id, deployment)
            return
        self._cancel(dataset_id)

        def change(deployment: Deployment) -> Deployment:
            leases = deployment.leases.expire(now)
            return pending.change(deployment.set(leases=leases))

        try:
            with DEFERRED_CHANGE(dataset_id=dataset_id, what=pending.what):
                await self.configuration_service.change(change)
        except Exception:  # noqa: S110 - the failed action is its log entry
            pass
