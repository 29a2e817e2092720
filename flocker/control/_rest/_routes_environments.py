"""The environment routes of the REST API v1: ``/v1/environments/...``.

An environment is a group of applications cloned, with their datasets, as
named copies (see `flocker.control._cloning`).  It is created in two steps:
the control service first snapshots every dataset of the group
(``flocker-env-<name>-<random>``, on the nodes), then adds the copies to
the configuration in one durable change.  Every check the change makes is
made first on the current configuration, so a bad request is refused
before any snapshot is taken.
"""

from __future__ import annotations

from typing import Any, NoReturn
from uuid import uuid4

import attrs
from twisted.internet.defer import Deferred, FirstError, gatherResults
from twisted.python.failure import Failure
from twisted.web.server import Request

from .._checks import UnknownCopy
from .._cloning import (
    busy_ports_of,
    clone_environment,
    delete_copy,
    delete_environment,
    environment_datasets,
    reset_copy,
)
from .._environments import Environment, EnvironmentCopy
from .._model import Deployment, UnknownEnvironment
from ._agents import on_primary
from ._context import Routes
from ._operation import Response, operation, routes_app

__all__ = ["EnvironmentRoutes"]

#: Where `EnvironmentRoutes` are mounted.
MOUNT = "/v1/environments"


def _first_failure(failure: Failure) -> NoReturn:
    """Raise the failure of the first of ``gatherResults``' Deferreds that failed."""
    first = failure.value
    if not isinstance(first, FirstError):
        failure.raiseException()
    first.subFailure.raiseException()


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
        raise UnknownEnvironment(name)
    return environment


@attrs.define
class EnvironmentRoutes(Routes):
    """The routes under ``/v1/environments``."""

    app = routes_app()

    @operation(app, "list_environments", MOUNT)
    async def list_environments(self, request: Request) -> Response:
        """Every environment."""
        stored = self.context.current()
        deployment = stored.deployment
        body = [_environment_json(deployment, e) for _, e in sorted(deployment.environments.items())]
        return Response(200, body, stored)


    @operation(app, "get_environment", MOUNT)
    async def get_environment(self, request: Request, name: str) -> Response:
        """One environment."""
        stored = self.context.current()
        environment = _get_environment(stored.deployment, name)
        return Response(200, _environment_json(stored.deployment, environment), stored)


    @operation(app, "create_environment", MOUNT)
    async def create_environment(
        self,
        request: Request,
        body: dict[str, Any],
        expected_tag: str | None,
    ) -> Response:
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
        deployment = self.context.configuration_service.deployment
        # The ports the nodes last reported busy: copies' ports avoid them.
        busy = busy_ports_of(self.context.cluster_state_service.as_deployment_state())
        # Every check first, on the current configuration: nothing is
        # snapshotted for a request that would be refused.
        clone_environment(deployment, name, originals, names, snapshot, ports, busy=busy)
        datasets = environment_datasets(deployment, originals)
        await gatherResults(
            [Deferred.fromCoroutine(on_primary(self.context, d, "take_internal", snapshot)) for d in datasets],
            consumeErrors=True,
        ).addErrback(_first_failure)
        stored = await self.context.change(
            expected_tag,
            lambda current: clone_environment(
                current, name, originals, names, snapshot, ports, busy=busy
            ),
        )
        environment = stored.deployment.environments[name]
        return Response(201, _environment_json(stored.deployment, environment), stored)


    @operation(app, "delete_environment", MOUNT)
    async def delete_environment_(
        self, request: Request, name: str, expected_tag: str | None
    ) -> Response:
        """Remove an environment and all its copies."""
        before = _get_environment(self.context.configuration_service.deployment, name)
        stored = await self.context.change(expected_tag, lambda d: delete_environment(d, name))
        return Response(200, _environment_json(stored.deployment, before.set(copies={})), stored)


    @operation(app, "reset_environment_copy", MOUNT)
    async def reset_environment_copy(
        self,
        request: Request,
        name: str,
        copy: str,
        expected_tag: str | None,
    ) -> Response:
        """Give a copy fresh clones."""
        _get_environment(self.context.configuration_service.deployment, name)
        stored = await self.context.change(expected_tag, lambda d: reset_copy(d, name, copy))
        environment = stored.deployment.environments[name]
        return Response(
            200, _copy_json(stored.deployment, environment, environment.copies[copy]), stored
        )


    @operation(app, "delete_environment_copy", MOUNT)
    async def delete_environment_copy(
        self,
        request: Request,
        name: str,
        copy: str,
        expected_tag: str | None,
    ) -> Response:
        """Remove one copy."""
        environment = _get_environment(self.context.configuration_service.deployment, name)
        found = environment.copies.get(copy)
        if found is None:
            raise UnknownCopy(name, copy)
        stored = await self.context.change(expected_tag, lambda d: delete_copy(d, name, copy))
        return Response(200, _copy_json(stored.deployment, environment, found), stored)

