"""The state routes of the REST API v1: ``/v1/state/...``.

What the nodes last reported: datasets, containers, the nodes themselves,
and the streams they are receiving now (asked of their dataset agents).
Nothing here writes.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.web.server import Request

from .._httpjson import (
    APIError,
    check_uuid,
    copies_json,
    state_container_json,
    superseded,
)
from .._model import instance_base
from .._serialization import node_convergence_json
from .._transfers import gather_transfers
from ._context import Routes
from ._operation import Response, operation, routes_app

__all__ = ["StateRoutes"]


def _instance_order(name: str) -> tuple[int, str]:
    """
    Instance names of one application in their order on a node: ``web``,
    ``web..2``, ``web..10`` (a longer name is a later instance).
    """
    return (len(name), name)

#: Where `StateRoutes` are mounted.
MOUNT = "/v1/state"


@attrs.define
class StateRoutes(Routes):
    """The routes under ``/v1/state``."""

    app = routes_app()

    @operation(app, "list_datasets_state", MOUNT)
    async def list_datasets_state(self, request: Request) -> Response:
        """
        The datasets nodes report having mounted, with the standing
        replicas and diverged copies other nodes report holding.  A
        primary's copy whose node fenced itself (it lost the control
        service: the copy is not exposed) is listed too, with ``fenced``
        and without ``path`` unless the node still reports one.
        """
        state = self.context.cluster_state_service.as_deployment_state()
        now = self.context.clock.seconds()
        deployment = self.context.current().deployment
        epochs = {d.dataset_id: d.epoch for d, _ in deployment.all_datasets()}
        body = []
        for uuid, node in state.nodes.items():
            for ds in (node.datasets or {}).values():
                epoch = epochs.get(ds.dataset_id, 0)
                fenced = ds.role == "fenced"
                if (ds.path is None and not fenced) or superseded(ds, epoch):
                    continue
                entry: dict[str, Any] = {"dataset_id": ds.dataset_id, "primary": uuid}
                if ds.path is not None:
                    entry["path"] = ds.path
                if fenced:
                    entry["fenced"] = True
                if ds.maximum_size is not None:
                    entry["maximum_size"] = ds.maximum_size
                if ds.rolled_back is not None:
                    entry["rolled_back"] = ds.rolled_back
                entry.update(
                    copies_json(
                        state, ds.dataset_id, now, epoch, deployment.replicas_of(ds.dataset_id)
                    )
                )
                body.append(entry)
        body.sort(key=lambda e: (e["dataset_id"], e["primary"]))
        return Response(200, body)

    # -- nodes ---------------------------------------------------------------

    @operation(app, "list_nodes", MOUNT)
    async def list_nodes(self, request: Request) -> Response:
        """
        The nodes that reported their state; ``fenced`` lists the datasets
        whose copies a node reports fenced (present only when there is one);
        ``last_converged``, ``failing_changes`` and ``pool`` say whether its
        dataset agent converges and how full its pool is (present once it
        reported them).
        """
        state = self.context.cluster_state_service.as_deployment_state()
        body = []
        for uuid in sorted(state.nodes):
            node = state.nodes[uuid]
            entry: dict[str, Any] = {"uuid": uuid}
            if node.hostname is not None:
                entry["host"] = node.hostname
            fenced = sorted(
                k for k, ds in (node.datasets or {}).items() if ds.role == "fenced"
            )
            if fenced:
                entry["fenced"] = fenced
            entry.update(node_convergence_json(node))
            body.append(entry)
        return Response(200, body)

    @operation(app, "node_by_era", MOUNT)
    async def node_by_era(self, request: Request, era: str) -> Response:
        """The node whose current era is ``era``."""
        era = check_uuid(era, "era")
        state = self.context.cluster_state_service.as_deployment_state()
        for uuid, node in state.nodes.items():
            if node.era == era:
                return Response(200, {"uuid": uuid})
        raise APIError(404, f"no node reported era {era}")

    @operation(app, "list_containers_state", MOUNT)
    async def list_containers_state(self, request: Request) -> Response:
        """
        The containers nodes report running, one entry per instance: for
        each application a node reports, one per instance of it in the
        node's health report (``web``, ``web..2``…, in that order, each
        with its instance's health), or one without health when the node
        reports none of them.  Every entry is named after the application.
        """
        state = self.context.cluster_state_service.as_deployment_state()
        body = []
        for uuid, node in state.nodes.items():
            health = node.health or {}
            for app in (node.applications or {}).values():
                instances = sorted(
                    (name for name in health if instance_base(name) == app.name),
                    key=_instance_order,
                )
                if not instances:
                    body.append(state_container_json(app, uuid, None))
                for name in instances:
                    body.append(state_container_json(app, uuid, health[name]))
        body.sort(key=lambda e: (e["name"], e["node_uuid"]))
        return Response(200, body)

    @operation(app, "list_transfers", MOUNT)
    async def list_transfers(self, request: Request) -> Response:
        """
        The streams the nodes are receiving now, as their dataset agents answer
        within `flocker.control._transfers.TRANSFERS_BOUND` seconds; the nodes whose agents did not are
        named, comma-separated, in the ``X-Unanswered-Nodes`` header (absent
        when every agent answered).
        """
        if self.context.agents is None:
            return Response(200, [])
        found = await gather_transfers(self.context.agents, self.context.clock)
        if found.unanswered:
            request.setHeader(b"x-unanswered-nodes", ",".join(found.unanswered).encode("ascii"))
        return Response(200, found.transfers)
