"""
`FlockerClient`: `IFlockerAPIV1Client` over HTTPS with treq and a user certificate.

The HTTP client is injected: a treq ``HTTPClient`` whose agent presents the
user's certificate (`FlockerClient.from_certificates`,
`FlockerClient.from_cluster_config`), or ``treq.testing.StubTreq`` wrapping
the control service's resource in unit tests.

Several control service instances: the client may be given several base
URLs, all serving the same cluster.  Each request goes first to the
instance that answered last (at first, the first URL); when no connection
can be made to it, the same request goes to the next URL, and so on once
round the list.  A connection is made once TCP connects and the TLS
handshake is done, each within the connect timeout (`CONNECT_TIMEOUT` with
others to try; see `flocker.apiclient._https`): so a refused connection, no
route, no answer, a stopped instance (whose kernel still accepts
connections) and a failed handshake all pass the request on.  A request
that may have reached an instance is never sent again to another, since it
may have been carried out — except a ``GET``, which changes nothing and is
tried on the next instance whenever its answer did not arrive.  A request
cancelled (a timeout, Ctrl-C) is not tried again anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

import attrs
from eliot import ActionType, Field, MessageType, start_action
from treq.client import HTTPClient
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import (
    ConnectError,
    ConnectingCancelledError,
    DNSLookupError,
)
from twisted.python.failure import Failure
from twisted.web.client import (
    RequestTransmissionFailed,
    ResponseFailed,
    ResponseNeverReceived,
)
from zope.interface import implementer

from ..ca import ClusterPolicyForHTTPS, load_tls_files
from ..common import TCPTimeReactor
from ._client_cloning import CloningRequests
from ._https import https_agent
from ._interface import (
    UNCHANGED,
    BadRequest,
    ConfigurationChanged,
    Container,
    ContainerAlreadyExists,
    ContainerConflict,
    ContainerPort,
    ContainerState,
    Dataset,
    DatasetAlreadyExists,
    DatasetConflict,
    DatasetsConfiguration,
    DatasetState,
    FailoverRefused,
    FailoverResult,
    FlockerAPIError,
    HealthCheck,
    IFlockerAPIV1Client,
    Lease,
    LeaseAlreadyHeld,
    Link,
    Node,
    NothingToRollBack,
    Replication,
    ResponseError,
    RestartPolicy,
    UnknownContainer,
    UnknownDataset,
    UnknownEra,
    UnknownLease,
)
from ._json import (
    container_from_json,
    container_state_from_json,
    container_to_json,
    container_update_to_json,
    dataset_from_json,
    dataset_state_from_json,
    float_or_none,
    lease_from_json,
    node_from_json,
    replication_to_json,
)

__all__ = [
    "CONNECT_TIMEOUT",
    "DEFAULT_API_PORT",
    "FlockerClient",
    "api_url",
    "connect_timeout",
    "container_to_json",
    "replication_to_json",
]

#: The control service's REST API port unless configured otherwise.
DEFAULT_API_PORT = 4523

#: Seconds to wait for a TCP connection to one control service instance
#: when there are others to try: a dead instance costs at most this before
#: the next one is tried.
CONNECT_TIMEOUT = 2.0

#: Seconds to wait for a TCP connection to the only instance there is:
#: with nothing else to try, a slow network is given longer.
SINGLE_CONNECT_TIMEOUT = 10.0


def connect_timeout(instances: int) -> float:
    """The connect timeout for a client of ``instances`` control service instances."""
    return SINGLE_CONNECT_TIMEOUT if instances <= 1 else CONNECT_TIMEOUT


def api_url(host: str, port: int) -> str:
    """``https://HOST:PORT`` (an IPv6 address in brackets)."""
    return f"https://{_netloc(host)}:{port}"

_METHOD = Field.for_types("method", [str], "The HTTP method.")
_URL = Field.for_types("url", [str], "The request's URL.")
_STATUS = Field.for_types("status", [int], "The HTTP status code.")

#: One request the client made to the REST API.
API_REQUEST = ActionType(
    "flocker:apiclient:request",
    [_METHOD, _URL],
    [_STATUS],
    "The API client made a REST API request.",
)

#: The client gave up on one instance and tries the next one.
API_FAILOVER = MessageType(
    "flocker:apiclient:failover",
    [
        _METHOD,
        _URL,
        Field.for_types("reason", [str], "Why that instance was given up."),
        Field.for_types("next_url", [str], "The instance tried next."),
    ],
    "The request could not be made to one control service instance (or, a GET, "
    "got no answer); it goes to the next one.",
)

#: Status → exception, for every request (more specific maps take precedence).
_COMMON: dict[int, type[FlockerAPIError]] = {
    400: BadRequest,
    412: ConfigurationChanged,
}
_DATASET = {404: UnknownDataset, 405: DatasetConflict, 409: DatasetConflict}
_CONTAINER = {404: UnknownContainer, 409: ContainerConflict}


# --------------------------------------------------------------------------


def _base_urls(urls: str | Sequence[str]) -> tuple[str, ...]:
    """One base URL or several, as a non-empty tuple without trailing ``/``."""
    listed = (urls,) if isinstance(urls, str) else tuple(urls)
    if not listed:
        raise ValueError("no control service URL given")
    return tuple(url.rstrip("/") for url in listed)


def _reasons(error: BaseException) -> list[BaseException]:
    """The errors inside one of ``twisted.web``'s wrapping errors (or itself)."""
    if isinstance(
        error, ResponseNeverReceived | ResponseFailed | RequestTransmissionFailed
    ):
        return [
            r.value for r in error.reasons if isinstance(r, Failure) and r.value is not None
        ]
    return [error]


def _try_next(method: str, error: BaseException) -> bool:
    """
    Whether a request that failed with ``error`` goes to the next instance:
    no connection was made, or it is a ``GET`` whose answer did not arrive;
    never when it was cancelled.
    """
    if any(
        isinstance(e, CancelledError | ConnectingCancelledError) for e in _reasons(error)
    ):
        return False
    if isinstance(error, ConnectError | DNSLookupError):
        return True
    return method in ("GET", "HEAD") and isinstance(
        error, ResponseNeverReceived | ResponseFailed | RequestTransmissionFailed
    )


@implementer(IFlockerAPIV1Client)
@attrs.define
class FlockerClient(CloningRequests):
    """
    The REST API v1 client, of one control service instance or several.

    :ivar http: a treq ``HTTPClient`` (or ``StubTreq``) that can reach the API.
    :ivar base_urls: each instance's URL, e.g. ``https://10.0.0.1:4523`` (no
        trailing ``/v1``); one URL may be given as a string.
    """

    http: Any
    base_urls: tuple[str, ...] = attrs.field(converter=_base_urls)
    _current: int = attrs.field(default=0, init=False)

    @property
    def base_url(self) -> str:
        """The URL of the instance requests go to first: the one that answered last."""
        return self.base_urls[self._current]

    @classmethod
    def from_certificates(
        cls,
        reactor: TCPTimeReactor,
        host: str | Sequence[tuple[str, int]],
        port: int,
        certificates_directory: Path | str,
        username: str,
    ) -> FlockerClient:
        """
        A client presenting ``username``'s certificate.

        :param certificates_directory: holds ``cluster.crt`` and
            ``<username>.crt``/``.key`` (as ``flocker-ca create-api-certificate``
            writes them).
        :param host: the control service's address, as named in its
            certificate; or several instances' ``(host, port)`` pairs, in
            which case ``port`` is not used.
        """
        files = load_tls_files(certificates_directory, username)
        policy = ClusterPolicyForHTTPS(files.credential, files.authority)
        instances = [(host, port)] if isinstance(host, str) else list(host)
        agent = https_agent(reactor, policy, connect_timeout(len(instances)))
        return cls(HTTPClient(agent), [api_url(h, p) for h, p in instances])

    @classmethod
    def from_cluster_config(
        cls, reactor: TCPTimeReactor, config: Mapping[str, Any]
    ) -> FlockerClient:
        """
        A client from a ``cluster.json``-like mapping.

        Keys: ``control_service`` (a host, or a list of hosts: the
        instances), ``control_port`` (optional, 4523; the port of every
        host), ``certificates_directory`` and ``user`` (the API user's name).
        """
        port = int(config.get("control_port", DEFAULT_API_PORT))
        hosts = config["control_service"]
        return cls.from_certificates(
            reactor,
            hosts if isinstance(hosts, str) else [(h, port) for h in hosts],
            port,
            config["certificates_directory"],
            config["user"],
        )

    async def _send(
        self,
        method: str,
        path: str,
        data: bytes | None = None,
        headers: Mapping[str, list[str]] | None = None,
    ) -> Any:
        """
        Make one request below ``/v1`` to the first instance that can be
        reached (see the module docstring); its treq response, whatever
        the status.

        :raise: the last instance's error when none could be reached.
        """
        count = len(self.base_urls)
        for attempt in range(count):
            index = (self._current + attempt) % count
            url = f"{self.base_urls[index]}/v1{path}"
            try:
                with start_action(
                    action_type=API_REQUEST.action_type, method=method, url=url
                ) as action:
                    response = await self.http.request(
                        method, url, data=data, headers=dict(headers or {})
                    )
                    action.add_success_fields(status=response.code)
            except Exception as error:
                if attempt + 1 == count or not _try_next(method, error):
                    raise
                API_FAILOVER.log(
                    method=method,
                    url=url,
                    reason=f"{type(error).__name__}: {error}",
                    next_url=self.base_urls[(index + 1) % count],
                )
                continue
            self._current = index
            return response
        raise AssertionError("unreachable: at least one URL")  # pragma: no cover

    async def _request(
        self,
        method: str,
        path: str,
        expected: tuple[int, ...],
        body: Any = None,
        errors: Mapping[int, type[FlockerAPIError]] = {},  # noqa: B006 - read only
        configuration_tag: str | None = None,
    ) -> tuple[Any, dict[str, str]]:
        # Flocker's own clients keep the refusal (409) of a move or deletion
        # of a leased dataset rather than the original API's deferral.
        headers = {"accept": ["application/json"], "x-refuse-if-leased": ["true"]}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["content-type"] = ["application/json"]
        if configuration_tag is not None:
            headers["x-if-configuration-matches"] = [configuration_tag]
        response = await self._send(method, path, data, headers)
        content = await response.content()
        try:
            decoded = json.loads(content) if content else None
        except ValueError:
            decoded = None
        if response.code not in expected:
            description = (
                decoded.get("description", "")
                if isinstance(decoded, dict)
                else content.decode("utf-8", "replace")
            )
            error = {**_COMMON, **errors}.get(response.code, ResponseError)
            raise error(response.code, description)
        tags = response.headers.getRawHeaders("x-configuration-tag") or []
        unanswered = response.headers.getRawHeaders("x-unanswered-nodes") or []
        return decoded, {"tag": tags[0] if tags else "", "unanswered": ",".join(unanswered)}

    def _run(self, coroutine: Any) -> Deferred[Any]:
        return Deferred.fromCoroutine(coroutine)

    # -- IFlockerAPIV1Client --------------------------------------------------

    def version(self) -> Deferred[str]:
        """See `IFlockerAPIV1Client.version`."""

        async def run() -> str:
            body, _ = await self._request("GET", "/version", (200,))
            return str(body["flocker"])

        return self._run(run())

    def list_datasets_configuration(self) -> Deferred[DatasetsConfiguration]:
        """See `IFlockerAPIV1Client.list_datasets_configuration`."""

        async def run() -> DatasetsConfiguration:
            body, headers = await self._request(
                "GET", "/configuration/datasets", (200,)
            )
            datasets = {d.dataset_id: d for d in map(dataset_from_json, body)}
            return DatasetsConfiguration(tag=headers["tag"], datasets=datasets)

        return self._run(run())

    def create_dataset(
        self,
        primary: UUID,
        maximum_size: int | None = None,
        dataset_id: UUID | None = None,
        metadata: Mapping[str, str] | None = None,
        configuration_tag: str | None = None,
        replicas: Sequence[UUID] | None = None,
        replication: Replication | Mapping[str, Any] | None = None,
    ) -> Deferred[Dataset]:
        """See `IFlockerAPIV1Client.create_dataset`."""
        request: dict[str, Any] = {"primary": str(primary)}
        if maximum_size is not None:
            request["maximum_size"] = maximum_size
        if dataset_id is not None:
            request["dataset_id"] = str(dataset_id)
        if metadata is not None:
            request["metadata"] = dict(metadata)
        if replicas is not None:
            request["replicas"] = [str(u) for u in replicas]
        if replication is not None:
            request["replication"] = replication_to_json(replication)

        async def run() -> Dataset:
            body, _ = await self._request(
                "POST",
                "/configuration/datasets",
                (201,),
                request,
                {404: UnknownDataset, 409: DatasetAlreadyExists},
                configuration_tag,
            )
            return dataset_from_json(body)

        return self._run(run())

    def _update(
        self, dataset_id: UUID, request: dict[str, Any], tag: str | None
    ) -> Deferred[Dataset]:
        async def run() -> Dataset:
            body, _ = await self._request(
                "POST",
                f"/configuration/datasets/{dataset_id}",
                (200,),
                request,
                _DATASET,
                tag,
            )
            return dataset_from_json(body)

        return self._run(run())

    def move_dataset(
        self, primary: UUID, dataset_id: UUID, configuration_tag: str | None = None
    ) -> Deferred[Dataset]:
        """See `IFlockerAPIV1Client.move_dataset`."""
        return self._update(dataset_id, {"primary": str(primary)}, configuration_tag)

    def update_dataset(
        self,
        dataset_id: UUID,
        maximum_size: Any = UNCHANGED,
        metadata: Any = UNCHANGED,
        configuration_tag: str | None = None,
        replicas: Any = UNCHANGED,
        replication: Any = UNCHANGED,
    ) -> Deferred[Dataset]:
        """See `IFlockerAPIV1Client.update_dataset`."""
        request: dict[str, Any] = {}
        if maximum_size is not UNCHANGED:
            request["maximum_size"] = maximum_size
        if metadata is not UNCHANGED:
            request["metadata"] = dict(metadata)
        if replicas is not UNCHANGED:
            request["replicas"] = [str(u) for u in replicas]
        if replication is not UNCHANGED:
            request["replication"] = replication_to_json(replication)
        return self._update(dataset_id, request, configuration_tag)

    def failover_dataset(
        self, dataset_id: UUID, node_uuid: UUID, force: bool = False
    ) -> Deferred[FailoverResult]:
        """See `IFlockerAPIV1Client.failover_dataset`."""
        request: dict[str, Any] = {"node_uuid": str(node_uuid)}
        if force:
            request["force"] = True

        async def run() -> FailoverResult:
            body, _ = await self._request(
                "POST",
                f"/datasets/{dataset_id}/failover",
                (200,),
                request,
                {404: UnknownDataset, 409: FailoverRefused},
            )
            return FailoverResult(
                dataset_id=UUID(body["dataset_id"]),
                primary=UUID(body["primary"]),
                epoch=body["epoch"],
                datasets=[UUID(d) for d in body["datasets"]],
                snapshot=body["snapshot"],
                snapshot_created=float_or_none(body["snapshot_created"]),
                data_loss_window_seconds=float_or_none(body["data_loss_window_seconds"]),
            )

        return self._run(run())

    def delete_dataset(
        self, dataset_id: UUID, configuration_tag: str | None = None
    ) -> Deferred[Dataset]:
        """See `IFlockerAPIV1Client.delete_dataset`."""

        async def run() -> Dataset:
            body, _ = await self._request(
                "DELETE",
                f"/configuration/datasets/{dataset_id}",
                (200,),
                None,
                _DATASET,
                configuration_tag,
            )
            return dataset_from_json(body)

        return self._run(run())

    def list_datasets_state(self) -> Deferred[list[DatasetState]]:
        """See `IFlockerAPIV1Client.list_datasets_state`."""

        async def run() -> list[DatasetState]:
            body, _ = await self._request("GET", "/state/datasets", (200,))
            return [dataset_state_from_json(d) for d in body]

        return self._run(run())

    def list_nodes(self) -> Deferred[list[Node]]:
        """See `IFlockerAPIV1Client.list_nodes`."""

        async def run() -> list[Node]:
            body, _ = await self._request("GET", "/state/nodes", (200,))
            return [node_from_json(n) for n in body]

        return self._run(run())

    def node_by_era(self, era: UUID) -> Deferred[UUID]:
        """See `IFlockerAPIV1Client.node_by_era`."""

        async def run() -> UUID:
            body, _ = await self._request(
                "GET", f"/state/nodes/by_era/{era}", (200,), None, {404: UnknownEra}
            )
            return UUID(body["uuid"])

        return self._run(run())

    def list_leases(self) -> Deferred[list[Lease]]:
        """See `IFlockerAPIV1Client.list_leases`."""

        async def run() -> list[Lease]:
            body, _ = await self._request("GET", "/configuration/leases", (200,))
            return [lease_from_json(x) for x in body]

        return self._run(run())

    def acquire_lease(
        self, dataset_id: UUID, node_uuid: UUID, expires: float | None
    ) -> Deferred[Lease]:
        """See `IFlockerAPIV1Client.acquire_lease`."""
        request = {
            "dataset_id": str(dataset_id),
            "node_uuid": str(node_uuid),
            "expires": expires,
        }

        async def run() -> Lease:
            body, _ = await self._request(
                "POST",
                "/configuration/leases",
                (200, 201),
                request,
                {404: UnknownDataset, 409: LeaseAlreadyHeld},
            )
            return lease_from_json(body)

        return self._run(run())

    def release_lease(self, dataset_id: UUID) -> Deferred[Lease]:
        """See `IFlockerAPIV1Client.release_lease`."""

        async def run() -> Lease:
            body, _ = await self._request(
                "DELETE",
                f"/configuration/leases/{dataset_id}",
                (200,),
                None,
                {404: UnknownLease},
            )
            return lease_from_json(body)

        return self._run(run())

    def list_containers_configuration(self) -> Deferred[list[Container]]:
        """See `IFlockerAPIV1Client.list_containers_configuration`."""

        async def run() -> list[Container]:
            body, _ = await self._request("GET", "/configuration/containers", (200,))
            return [container_from_json(c) for c in body]

        return self._run(run())

    def create_container(self, container: Container) -> Deferred[Container]:
        """See `IFlockerAPIV1Client.create_container`."""

        async def run() -> Container:
            body, _ = await self._request(
                "POST",
                "/configuration/containers",
                (201,),
                container_to_json(container),
                {404: UnknownDataset, 409: ContainerConflict},
            )
            return container_from_json(body)

        async def create() -> Container:
            try:
                return await run()
            except ContainerConflict as e:
                if "already exists" in e.description:
                    raise ContainerAlreadyExists(e.code, e.description) from None
                raise

        return self._run(create())

    def move_container(self, name: str, node_uuid: UUID) -> Deferred[Container]:
        """See `IFlockerAPIV1Client.move_container`."""

        async def run() -> Container:
            body, _ = await self._request(
                "POST",
                f"/configuration/containers/{name}",
                (200,),
                {"node_uuid": str(node_uuid)},
                _CONTAINER,
            )
            return container_from_json(body)

        return self._run(run())

    def update_container(
        self,
        name: str,
        node_uuid: UUID = UNCHANGED,
        image: str = UNCHANGED,
        environment: Mapping[str, str] = UNCHANGED,
        command_line: Sequence[str] | None = UNCHANGED,
        ports: Sequence[ContainerPort] = UNCHANGED,
        links: Sequence[Link] = UNCHANGED,
        cpu_shares: int | None = UNCHANGED,
        memory_limit: int | None = UNCHANGED,
        swappiness: int | None = UNCHANGED,
        restart_policy: RestartPolicy = UNCHANGED,
        health: HealthCheck | None = UNCHANGED,
        replicas: int = UNCHANGED,
        configuration_tag: str | None = None,
    ) -> Deferred[Container]:
        """See `IFlockerAPIV1Client.update_container`."""
        request = container_update_to_json(
            {
                "node_uuid": node_uuid,
                "image": image,
                "environment": environment,
                "command_line": command_line,
                "ports": ports,
                "links": links,
                "cpu_shares": cpu_shares,
                "memory_limit": memory_limit,
                "swappiness": swappiness,
                "restart_policy": restart_policy,
                "health": health,
                "replicas": replicas,
            }
        )

        async def run() -> Container:
            body, _ = await self._request(
                "POST",
                f"/configuration/containers/{name}",
                (200,),
                request,
                _CONTAINER,
                configuration_tag,
            )
            return container_from_json(body)

        return self._run(run())

    def rollback_container(
        self, name: str, configuration_tag: str | None = None
    ) -> Deferred[Container]:
        """See `IFlockerAPIV1Client.rollback_container`."""

        async def run() -> Container:
            try:
                body, _ = await self._request(
                    "POST",
                    f"/configuration/containers/{name}/rollback",
                    (200,),
                    {},
                    _CONTAINER,
                    configuration_tag,
                )
            except ContainerConflict as e:
                if "no previous specification" in e.description:
                    raise NothingToRollBack(e.code, e.description) from None
                raise
            return container_from_json(body)

        return self._run(run())

    def delete_container(self, name: str) -> Deferred[Container]:
        """See `IFlockerAPIV1Client.delete_container`."""

        async def run() -> Container:
            body, _ = await self._request(
                "DELETE", f"/configuration/containers/{name}", (200,), None, _CONTAINER
            )
            return container_from_json(body)

        return self._run(run())

    def list_containers_state(self) -> Deferred[list[ContainerState]]:
        """See `IFlockerAPIV1Client.list_containers_state`."""

        async def run() -> list[ContainerState]:
            body, _ = await self._request("GET", "/state/containers", (200,))
            return [container_state_from_json(c) for c in body]

        return self._run(run())


def _netloc(host: str) -> str:
    return f"[{host}]" if ":" in host else host
