"""What every REST route object shares: the services and the write path.

`APIContext` holds the configuration and cluster state services, the clock
and the nodes' agents, and carries out configuration changes for the
routes: durably, through `ConfigurationService.change` with a pure
function; only at the tag a request names (``X-If-Configuration-Matches``);
and, for a move or deletion a lease holds up, later (`DeferredChanges`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import attrs
from klein import Klein
from twisted.internet.interfaces import IReactorTime
from twisted.web.server import Request

from .._clusterstate import ClusterStateService
from .._deferral import DeferredChanges
from .._httpjson import check_uuid, dataset_json
from .._model import DatasetLeased, Deployment
from .._persistence import ConfigurationAccess, GenerationMismatch, StoredConfiguration
from .._state import DeploymentState
from ._operation import Response, configuration_tag, parse_tag

__all__ = [
    "DEFAULT_FAILOVER_AFTER",
    "APIContext",
    "Routes",
    "dataset_answer",
    "deferrable_answer",
    "replicas_from",
]

#: Seconds a primary's dataset agent must have been silent before a
#: failover is allowed without ``force``.
DEFAULT_FAILOVER_AFTER = 20.0


@attrs.define
class APIContext:
    """
    The control service's state as the REST routes see it.

    :ivar configuration_service: the `ConfigurationService` (already loaded).
    :ivar cluster_state_service: the `ClusterStateService`.
    :ivar clock: the time (for lease expiry).
    :ivar agents: what reaches the nodes' dataset agents (for snapshots and
        transfers: a `ControlAMPService` or an `AgentRelay`), or ``None``.
    :ivar failover_after: seconds the primary's dataset agent must have been
        silent before a failover is allowed without ``force``.
    """

    configuration_service: ConfigurationAccess
    cluster_state_service: ClusterStateService
    clock: IReactorTime
    agents: Any = None
    failover_after: float = DEFAULT_FAILOVER_AFTER
    _tags: dict[int, tuple[Deployment, str]] = attrs.field(factory=dict, init=False)
    _deferred: DeferredChanges = attrs.field(init=False)

    @_deferred.default
    def _make_deferred(self) -> DeferredChanges:
        return DeferredChanges(self.clock, self.configuration_service)

    def pending_changes(self) -> dict[str, str]:
        """Dataset id → the move or deletion waiting for its lease to end."""
        return self._deferred.pending()

    async def lease_ended(self, dataset_id: str) -> None:
        """Carry out the move or deletion that waited for the dataset's lease."""
        await self._deferred.lease_ended(dataset_id)

    async def change_or_defer(
        self,
        request: Request,
        expected_tag: str | None,
        dataset_id: str,
        what: str,
        change: Callable[[Deployment], Deployment],
    ) -> StoredConfiguration | Deployment:
        """
        Apply ``change``; if a lease on the dataset refuses it, keep it to
        carry out when the lease ends and return the configuration as it
        will be then (unless the request asks ``X-Refuse-If-Leased: true``,
        which gets the 409).
        """
        try:
            return await self.change(expected_tag, change)
        except DatasetLeased:
            refuse = request.getHeader(b"x-refuse-if-leased") or b""
            if refuse.strip().lower() == b"true":
                raise
        deployment = self.configuration_service.deployment
        leases = deployment.leases
        if leases.get(dataset_id) is not None:
            leases = leases.release(dataset_id)
        future = change(deployment.set(leases=leases))
        self._deferred.defer(dataset_id, what, change)
        return future

    def current(self) -> StoredConfiguration:
        """The current configuration and its generation."""
        service = self.configuration_service
        return StoredConfiguration(
            generation=service.generation, deployment=service.deployment
        )

    def tag(self, stored: StoredConfiguration) -> str:
        """The ``X-Configuration-Tag`` of ``stored`` (cached for the latest)."""
        cached = self._tags.get(stored.generation)
        if cached is not None and cached[0] is stored.deployment:
            return cached[1]
        tag = configuration_tag(stored.generation, stored.deployment)
        self._tags = {stored.generation: (stored.deployment, tag)}
        return tag

    def state(self) -> DeploymentState:
        """The cluster state as the nodes last reported it."""
        state: DeploymentState = self.cluster_state_service.as_deployment_state()
        return state

    def require_node(self, deployment: Deployment, node_uuid: str, what: str) -> None:
        """`DeploymentState.require_node` against the current cluster state."""
        self.state().require_node(deployment, node_uuid, what)

    def refuse_diverged_target(self, dataset_ids: list[str], node_uuid: str) -> None:
        """`DeploymentState.refuse_diverged_target` against the current cluster state."""
        self.state().refuse_diverged_target(dataset_ids, node_uuid)

    def refuse_oversized(self, deployment: Deployment, dataset_id: str) -> None:
        """`DeploymentState.refuse_oversized` against the current cluster state."""
        self.state().refuse_oversized(deployment, dataset_id)

    def refuse_unsettled_failover(self, deployment: Deployment, dataset_ids: list[str]) -> None:
        """`DeploymentState.refuse_unsettled_failover` against the current cluster state."""
        self.state().refuse_unsettled_failover(deployment, dataset_ids)

    async def change(
        self, expected_tag: str | None, change: Callable[[Deployment], Deployment]
    ) -> StoredConfiguration:
        """Apply ``change`` durably, only at ``expected_tag`` if one is given."""
        generation = None
        if expected_tag is not None:
            generation = parse_tag(expected_tag)
            unconditional = change

            def change(deployment: Deployment) -> Deployment:
                if configuration_tag(generation, deployment) != expected_tag:
                    raise GenerationMismatch(generation, None)
                return unconditional(deployment)

        stored: StoredConfiguration = await self.configuration_service.change(
            change, expected_generation=generation
        )
        return stored



@attrs.define
class Routes:
    """
    A route object: the routes of one subtree of the API, registered with
    `operation` on the subclass's own Klein application (``app``, made by
    `flocker.control._rest._operation.routes_app`), over the shared context.

    :ivar context: the services, the write path and the nodes' agents.
    :ivar resource: ``app`` bound to this object, as a resource to mount.
    """

    app: ClassVar[Klein]

    context: APIContext
    resource: Any = attrs.field(init=False)

    @resource.default
    def _resource(self) -> Any:
        return self.app.resource()


def deferrable_answer(
    result: StoredConfiguration | Deployment, dataset_id: str
) -> Response:
    """
    The answer to a move or deletion: the dataset as changed, or, for one
    waiting for a lease to end, as it will be once carried out (the
    configuration's tag is then that of the unchanged configuration).
    """
    if isinstance(result, StoredConfiguration):
        return Response(200, dataset_answer(result.deployment, dataset_id), result)
    return Response(200, dataset_answer(result, dataset_id))


def replicas_from(body: dict[str, Any]) -> list[str] | None:
    """The canonical node UUIDs a request lists as ``replicas``, or ``None``."""
    if "replicas" not in body:
        return None
    return [check_uuid(u, "replicas") for u in body["replicas"]]


def dataset_answer(deployment: Deployment, dataset_id: str) -> dict[str, Any]:
    """A dataset of the configuration as the API answers it."""
    dataset, node = deployment.get_dataset(dataset_id)
    return dataset_json(dataset, node, deployment.replicas_of(dataset_id))
