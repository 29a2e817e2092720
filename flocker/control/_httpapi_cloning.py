"""
REST API v1 extensions: snapshots, rollback, clones, environments, and the
transfers in progress.

Snapshots are taken, listed and destroyed at once by the dataset agent of
the dataset's primary node, through the agent protocol (`SnapshotCommand`):
the answer says what the node has *now*.  Rollbacks, clones and
environments are configuration changes (see `flocker.control._cloning`)
that the agents converge on: a clone is created by the node holding its
origin, a rollback happens once the application using the dataset has
stopped, and is reported done as ``rolled_back`` in ``/v1/state/datasets``.

An environment is created in two steps: the control service first snapshots
every dataset of the group (``flocker-env-<name>-<random>``, on the nodes),
then adds the copies to the configuration in one durable change.  Every
check the change makes is made first on the current configuration, so a
bad request is refused before any snapshot is taken.
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from twisted.internet import defer
from twisted.internet.defer import Deferred, gatherResults
from twisted.web.server import Request

from ._checks import is_snapshot_name
from ._cloning import (
    busy_ports_of,
    clone_environment,
    delete_copy,
    delete_environment,
    environment_datasets,
    reset_copy,
)
from ._environments import Environment, EnvironmentCopy
from ._httpapi import ConfigurationAPIUserV1, _operation, _Response
from ._httpjson import APIError, check_uuid, dataset_json, set_aside_json
from ._model import Dataset, DatasetDeleted, Deployment, Origin, RollbackRequest
from ._protocol import AgentUnavailable
from ._transfers import gather_transfers

__all__: list[str] = []

#: Seconds a node's dataset agent has to answer a snapshot operation.
AGENT_TIMEOUT = 30.0

#: HTTP status for each error code of `SnapshotCommand`.
_AGENT_ERRORS = {
    "not_here": 409,
    "unknown_snapshot": 404,
    "snapshot_exists": 409,
    "has_clones": 409,
    "bad_request": 400,
}


async def _on_primary(
    api: ConfigurationAPIUserV1, dataset_id: str, operation: str, name: str = ""
) -> dict[str, Any]:
    """Run a snapshot operation on the dataset's primary; its answer or an error."""
    dataset, primary = api.configuration_service.deployment.get_dataset(dataset_id)
    if dataset.deleted:
        raise DatasetDeleted(dataset_id)
    if api.agents is None:
        raise APIError(503, "this control service does not reach the nodes' agents")
    try:
        asked = api.agents.snapshot_operation(primary, operation, dataset_id, name)
        result: dict[str, Any] = await asked.addTimeout(AGENT_TIMEOUT, api.clock)
    except AgentUnavailable:
        raise APIError(
            503,
            f"the dataset agent of node {primary}, the primary of dataset "
            f"{dataset_id}, is not connected to the control service",
        ) from None
    except defer.TimeoutError:
        raise APIError(
            503,
            f"the dataset agent of node {primary} did not answer within "
            f"{AGENT_TIMEOUT:.0f} s",
        ) from None
    except Exception as error:  # the agent's or its backend's failure
        raise APIError(
            503, f"the dataset agent of node {primary} could not do it: {error}"
        ) from None
    error = result.get("error")
    if error is not None:
        description = error["description"]
        if error["code"] == "not_here":
            description = (
                f"dataset {dataset_id} is not exposed on its primary node {primary} "
                "yet (being created or moved): try again once it is mounted"
            )
        raise APIError(_AGENT_ERRORS.get(error["code"], 500), description)
    return result


async def _require_snapshot(api: ConfigurationAPIUserV1, dataset_id: str, name: str) -> None:
    """Refuse (404) a snapshot the dataset's primary does not have."""
    listed = await _on_primary(api, dataset_id, "list")
    if name not in {s["name"] for s in listed["snapshots"]}:
        raise APIError(404, f"dataset {dataset_id} has no snapshot {name!r}")


def _check_user_name(name: str) -> str:
    if not is_snapshot_name(name):
        raise APIError(
            400,
            f"{name!r} is not a snapshot name: 1-64 letters, digits and _.:-, "
            "starting with a letter or digit, not starting with 'flocker'",
        )
    return name


# -- snapshots -----------------------------------------------------------------


@_operation("list_snapshots")
async def list_snapshots(
    self: ConfigurationAPIUserV1, request: Request, dataset_id: str
) -> _Response:
    """
    The dataset's snapshots, as its primary has them now, then the
    snapshots other copies set aside (``flocker-diverged-<epoch>-<ns>``:
    what a former primary held when a failover superseded it, kept when it
    rejoined), as their nodes last reported them, each with ``node_uuid``
    and ``set_aside``.
    """
    dataset_id = check_uuid(dataset_id, "dataset_id")
    result = await _on_primary(self, dataset_id, "list")
    state = self.cluster_state_service.as_deployment_state()
    set_aside = [
        {"node_uuid": node_uuid, "set_aside": True, **snapshot}
        for ds, node_uuid in state.all_datasets()
        if ds.dataset_id == dataset_id
        for snapshot in set_aside_json(ds)
    ]
    return _Response(200, [*result["snapshots"], *set_aside])


@_operation("create_snapshot")
async def create_snapshot(
    self: ConfigurationAPIUserV1, request: Request, dataset_id: str, body: dict[str, Any]
) -> _Response:
    """Take a snapshot now."""
    dataset_id = check_uuid(dataset_id, "dataset_id")
    name = _check_user_name(body["name"])
    result = await _on_primary(self, dataset_id, "take", name)
    return _Response(201, result["snapshot"])


@_operation("delete_snapshot")
async def delete_snapshot(
    self: ConfigurationAPIUserV1, request: Request, dataset_id: str, name: str
) -> _Response:
    """Destroy a snapshot."""
    dataset_id = check_uuid(dataset_id, "dataset_id")
    _check_user_name(name)
    for dataset, _ in self.configuration_service.deployment.all_datasets():
        origin = dataset.origin
        if (
            not dataset.deleted
            and origin is not None
            and (origin.dataset_id, origin.snapshot) == (dataset_id, name)
        ):
            raise APIError(
                409,
                f"snapshot {name!r} of {dataset_id} has clones: dataset "
                f"{dataset.dataset_id} is made from it (delete it first)",
            )
    result = await _on_primary(self, dataset_id, "destroy", name)
    return _Response(200, result["snapshot"])


# -- rollback and clones -------------------------------------------------------


def _refuse_rollback_past_needed(
    api: ConfigurationAPIUserV1, dataset_id: str, snapshot: str
) -> None:
    """
    Refuse (409) a rollback that would discard a later snapshot something
    needs: an environment was cloned from it, or a configured clone is made
    from it.  The order of the snapshots is the primary's last report.
    """
    deployment = api.configuration_service.deployment
    _, primary = deployment.get_dataset(dataset_id)
    reported = (
        api.cluster_state_service.as_deployment_state().get_node(primary).datasets or {}
    ).get(dataset_id)
    names = [s.name for s in reported.snapshots] if reported is not None else []
    if snapshot not in names:
        return
    later = set(names[names.index(snapshot) + 1 :])
    needed = {e.snapshot: f"environment {e.name!r}" for e in deployment.environments.values()}
    for dataset, _ in deployment.all_datasets():
        origin = dataset.origin
        if origin is not None and origin.dataset_id == dataset_id and not dataset.deleted:
            needed.setdefault(origin.snapshot, f"clone {dataset.dataset_id}")
    for name in sorted(later & set(needed)):
        raise APIError(
            409,
            f"rolling back to {snapshot!r} would discard the later snapshot "
            f"{name!r}, which {needed[name]} is made from",
        )


@_operation("rollback_dataset")
async def rollback_dataset(
    self: ConfigurationAPIUserV1,
    request: Request,
    dataset_id: str,
    body: dict[str, Any],
    expected_tag: str | None,
) -> _Response:
    """Ask for a rollback (the agents carry it out)."""
    dataset_id = check_uuid(dataset_id, "dataset_id")
    snapshot = _check_user_name(body["snapshot"])
    await _require_snapshot(self, dataset_id, snapshot)
    _refuse_rollback_past_needed(self, dataset_id, snapshot)
    rollback = RollbackRequest(snapshot=snapshot, request_id=str(uuid4()))
    stored = await self._change(
        expected_tag, lambda deployment: deployment.rollback_dataset(dataset_id, rollback)
    )
    return _Response(
        202,
        {"dataset_id": dataset_id, "snapshot": snapshot, "request_id": rollback.request_id},
        stored,
    )


@_operation("clone_dataset")
async def clone_dataset(
    self: ConfigurationAPIUserV1,
    request: Request,
    dataset_id: str,
    body: dict[str, Any],
    expected_tag: str | None,
) -> _Response:
    """Add a clone of one of the dataset's snapshots, on the same node."""
    dataset_id = check_uuid(dataset_id, "dataset_id")
    snapshot = _check_user_name(body["snapshot"])
    new_id = check_uuid(body.get("dataset_id", str(uuid4())), "dataset_id")
    source, _ = self.configuration_service.deployment.get_dataset(dataset_id)
    await _require_snapshot(self, dataset_id, snapshot)
    clone = Dataset(
        dataset_id=new_id,
        metadata=body.get("metadata", {}),
        maximum_size=source.maximum_size,
    )
    origin = Origin(dataset_id=dataset_id, snapshot=snapshot)
    stored = await self._change(
        expected_tag, lambda deployment: deployment.clone_dataset(clone, origin)
    )
    made, node = stored.deployment.get_dataset(new_id)
    return _Response(201, dataset_json(made, node), stored)


# -- transfers -----------------------------------------------------------------


@_operation("list_transfers")
async def list_transfers(self: ConfigurationAPIUserV1, request: Request) -> _Response:
    """
    The streams the nodes are receiving now, as their dataset agents answer
    within `flocker.control._transfers.TRANSFERS_BOUND` seconds; the nodes whose agents did not are
    named, comma-separated, in the ``X-Unanswered-Nodes`` header (absent
    when every agent answered).
    """
    if self.agents is None:
        return _Response(200, [])
    found = await gather_transfers(self.agents, self.clock)
    if found.unanswered:
        request.setHeader(b"x-unanswered-nodes", ",".join(found.unanswered).encode("ascii"))
    return _Response(200, found.transfers)


# -- environments --------------------------------------------------------------


def _copy_json(
    deployment: Deployment, environment: Environment, copy: EnvironmentCopy
) -> dict[str, Any]:
    applications = []
    for original, name in sorted(copy.applications.items()):
        entry: dict[str, Any] = {"name": name, "origin": original}
        try:
            application, node_uuid = deployment.get_application(name)
        except KeyError:
            pass
        else:
            entry["node_uuid"] = node_uuid
            entry["ports"] = [
                {"internal": p.internal_port, "external": p.external_port}
                for p in sorted(application.ports, key=lambda p: p.external_port)
            ]
        applications.append(entry)
    return {
        "name": copy.name,
        "applications": applications,
        "datasets": [
            {
                "dataset_id": clone,
                "origin": {"dataset_id": original, "snapshot": environment.snapshot},
            }
            for original, clone in sorted(copy.datasets.items())
        ],
    }


def _environment_json(deployment: Deployment, environment: Environment) -> dict[str, Any]:
    return {
        "name": environment.name,
        "snapshot": environment.snapshot,
        "applications": list(environment.applications),
        "copies": [
            _copy_json(deployment, environment, copy)
            for _, copy in sorted(environment.copies.items())
        ],
    }


def _get_environment(deployment: Deployment, name: str) -> Environment:
    environment = deployment.environments.get(name)
    if environment is None:
        raise APIError(404, f"unknown environment {name!r}")
    return environment


@_operation("list_environments")
async def list_environments(self: ConfigurationAPIUserV1, request: Request) -> _Response:
    """Every environment."""
    stored = self._current()
    deployment = stored.deployment
    body = [_environment_json(deployment, e) for _, e in sorted(deployment.environments.items())]
    return _Response(200, body, stored)


@_operation("get_environment")
async def get_environment(self: ConfigurationAPIUserV1, request: Request, name: str) -> _Response:
    """One environment."""
    stored = self._current()
    environment = _get_environment(stored.deployment, name)
    return _Response(200, _environment_json(stored.deployment, environment), stored)


@_operation("create_environment")
async def create_environment(
    self: ConfigurationAPIUserV1,
    request: Request,
    body: dict[str, Any],
    expected_tag: str | None,
) -> _Response:
    """Snapshot the group's datasets, then add the copies."""
    name = body["name"]
    originals = list(body["applications"])
    copies = body["copies"]
    names = [str(n) for n in range(1, copies + 1)] if isinstance(copies, int) else list(copies)
    ports = {
        copy: {app: {int(k): v for k, v in chosen.items()} for app, chosen in apps.items()}
        for copy, apps in body.get("ports", {}).items()
    }
    snapshot = f"flocker-env-{name[:40]}-{uuid4().hex[:8]}"
    deployment = self.configuration_service.deployment
    # The ports the nodes last reported busy: copies' ports avoid them.
    busy = busy_ports_of(self.cluster_state_service.as_deployment_state())
    # Every check first, on the current configuration: nothing is
    # snapshotted for a request that would be refused.
    clone_environment(deployment, name, originals, names, snapshot, ports, busy=busy)
    datasets = environment_datasets(deployment, originals)
    await gatherResults(
        [Deferred.fromCoroutine(_on_primary(self, d, "take_internal", snapshot)) for d in datasets],
        consumeErrors=True,
    ).addErrback(lambda failure: failure.value.subFailure.raiseException())
    stored = await self._change(
        expected_tag,
        lambda current: clone_environment(
            current, name, originals, names, snapshot, ports, busy=busy
        ),
    )
    environment = stored.deployment.environments[name]
    return _Response(201, _environment_json(stored.deployment, environment), stored)


@_operation("delete_environment")
async def delete_environment_(
    self: ConfigurationAPIUserV1, request: Request, name: str, expected_tag: str | None
) -> _Response:
    """Remove an environment and all its copies."""
    before = _get_environment(self.configuration_service.deployment, name)
    stored = await self._change(expected_tag, lambda d: delete_environment(d, name))
    return _Response(200, _environment_json(stored.deployment, before.set(copies={})), stored)


@_operation("reset_environment_copy")
async def reset_environment_copy(
    self: ConfigurationAPIUserV1,
    request: Request,
    name: str,
    copy: str,
    expected_tag: str | None,
) -> _Response:
    """Give a copy fresh clones."""
    _get_environment(self.configuration_service.deployment, name)
    stored = await self._change(expected_tag, lambda d: reset_copy(d, name, copy))
    environment = stored.deployment.environments[name]
    return _Response(
        200, _copy_json(stored.deployment, environment, environment.copies[copy]), stored
    )


@_operation("delete_environment_copy")
async def delete_environment_copy(
    self: ConfigurationAPIUserV1,
    request: Request,
    name: str,
    copy: str,
    expected_tag: str | None,
) -> _Response:
    """Remove one copy."""
    environment = _get_environment(self.configuration_service.deployment, name)
    found = environment.copies.get(copy)
    if found is None:
        raise APIError(404, f"environment {name!r} has no copy {copy!r}")
    stored = await self._change(expected_tag, lambda d: delete_copy(d, name, copy))
    return _Response(200, _copy_json(stored.deployment, environment, found), stored)

