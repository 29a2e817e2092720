"""
The Docker volume plugin API as a Klein application bound to `VolumePlugin`.

Docker POSTs JSON to ``/Plugin.Activate`` and ``/VolumeDriver.<Verb>`` on the
plugin's unix socket.  A Docker volume is a Flocker dataset whose metadata
``name`` is the volume's name, so every node's plugin sees the same volumes.
``Create`` makes the dataset on this node; ``Mount`` moves it here if it lives
elsewhere, waits until this node has it mounted and holds a lease so it
cannot move away while a container uses it; the last ``Unmount`` releases the
lease.

``Remove`` never destroys data unless the plugin was started with deletion
enabled (``--delete-on-remove``): by default it only makes Docker forget the
volume, renaming the dataset's metadata ``name`` to `METADATA_REMOVED_NAME`
so the data stays in the cluster (``flocker datasets ls`` shows it; the REST
API or ``flocker datasets rm`` deletes it).  ``docker volume rm`` and
``docker volume prune`` are run by tidying scripts far more lightly than a
deletion deserves; the original Flocker never deleted data because Docker
asked it to.

As the original plugin did, ``Plugin.Activate`` ignores its body, ``Get``
and ``List`` answer ``"Mountpoint": ""`` for a volume not mounted on this
node, and ``Unmount`` and ``Remove`` of a volume that does not exist succeed.

Every answer is HTTP 200 (as Docker expects); a refusal is ``{"Err": "..."}``
with a message a docker CLI user can act on, never a crash or a hang: a
Mount gives up after `VolumePlugin.mount_timeout` seconds, well before
Docker's own two-minute limit.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar
from uuid import UUID

import attrs
from eliot import write_failure
from klein import Klein
from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.error import ConnectError, ConnectionClosed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.web.iweb import IRequest

from ..apiclient import (
    Dataset,
    FlockerAPIError,
    IFlockerAPIV1Client,
    LeaseAlreadyHeld,
    UnknownLease,
)
from ._logging import (
    LEASE_ACQUIRED,
    LEASE_RELEASE_FAILED,
    LEASE_RELEASED,
    MOVING,
    REQUESTS,
)

__all__ = [
    "CONTENT_TYPE",
    "DEFAULT_MOUNT_TIMEOUT",
    "METADATA_NAME",
    "METADATA_REMOVED_NAME",
    "PluginError",
    "VolumePlugin",
    "parse_size",
]

#: The media type of every answer to Docker.
CONTENT_TYPE = b"application/vnd.docker.plugins.v1+json"

#: The dataset metadata key holding the Docker volume name.
METADATA_NAME = "name"

#: The metadata key that keeps a volume's name after ``docker volume rm``
#: made Docker forget it (the dataset and its data are kept).
METADATA_REMOVED_NAME = "docker_removed_name"

#: Seconds a Mount waits for the dataset to be here (Docker waits ~120 s).
DEFAULT_MOUNT_TIMEOUT = 100.0

#: The volume options ``docker volume create -o`` may give.
KNOWN_OPTIONS = ("size",)

#: The smallest size the REST API accepts.
MINIMUM_SIZE = 1024 * 1024

_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


class PluginError(Exception):
    """A request is refused; the message is what Docker shows the user."""


def parse_size(text: str) -> int:
    """
    Bytes from a size such as ``"67108864"``, ``"64M"``, ``"1G"``, ``"1.5GiB"``.

    Units are binary (``K`` = 1024 bytes), as Docker's own sizes are.

    :raise PluginError: for anything else, or a size under 1 MiB.
    """
    match = _SIZE.match(text) if isinstance(text, str) else None
    if match is None:
        raise PluginError(
            f"invalid size {text!r}: give a number of bytes or a number with "
            "K, M, G or T, e.g. size=64M or size=1G"
        )
    size = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if size < MINIMUM_SIZE:
        raise PluginError(f"size {text!r} is too small: the minimum is 1M")
    if size >= 2**63:
        raise PluginError(f"size {text!r} is too large")
    return size


def _describe(error: BaseException) -> str:
    """A one-line reason for a failed call to the control service."""
    if isinstance(error, PluginError):
        return str(error)
    if isinstance(error, FlockerAPIError):
        return f"the Flocker control service refused: {error.description}"
    if isinstance(error, (ConnectError, ConnectionClosed, OSError)):
        return f"cannot reach the Flocker control service: {error}"
    return (
        f"internal error in the Flocker volume plugin: {type(error).__name__}: {error}"
    )


#: Failures that are the world's, not a bug: answered without a traceback.
_EXPECTED = (PluginError, FlockerAPIError, ConnectError, ConnectionClosed)

_Handler = Callable[..., Coroutine[Any, Any, dict[str, Any]]]

_app = Klein()


def _endpoint(
    path: str, verb: str, ignore_body: bool = False
) -> Callable[[_Handler], Callable[..., Any]]:
    """
    Register ``handler`` for POST ``path`` inside a ``flocker:dockerplugin:<verb>``.

    The handler is an ``async`` method taking the decoded JSON body (a
    dict, ``{}`` if empty) and returning the JSON answer; a `PluginError`,
    a REST API error or any other exception becomes ``{"Err": ...}``.
    With ``ignore_body`` the body is not read at all (the handler gets
    ``{}``), so no body can make the request fail.
    """
    action_type = REQUESTS[verb]

    def decorator(handler: _Handler) -> Callable[..., Any]:
        @functools.wraps(handler)
        def route(self: VolumePlugin, request: IRequest) -> Deferred[bytes]:
            request.setHeader(b"content-type", CONTENT_TYPE)
            problem: str | None = None
            body: dict[str, Any] = {}
            if not ignore_body:
                try:
                    body = _read_body(request)
                except PluginError as e:
                    problem = str(e)
            volume = body.get("Name")
            mount_id = body.get("ID")
            action = action_type(
                volume=volume if isinstance(volume, str) else None,
                mount_id=mount_id if isinstance(mount_id, str) else None,
            )

            async def run() -> dict[str, Any]:
                if problem is not None:
                    raise PluginError(problem)
                return await handler(self, body)

            def answered(result: dict[str, Any]) -> bytes:
                action.add_success_fields(error=result.get("Err") or "")
                action.finish()
                return json.dumps(result).encode("utf-8")

            def refused(failure: Any) -> dict[str, Any]:
                if not failure.check(*_EXPECTED):
                    write_failure(failure)
                return {"Err": _describe(failure.value)}

            with action.context():
                answer = Deferred.fromCoroutine(run()).addErrback(refused)
            return answer.addCallback(answered)

        _app.route(path, methods=["POST"])(route)
        return route

    return decorator


def _read_body(request: IRequest) -> dict[str, Any]:
    """The request's JSON object (``{}`` for an empty body)."""
    raw = request.content.read() if request.content is not None else b""
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise PluginError("the request body is not JSON") from None
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise PluginError("the request body is not a JSON object")
    return body


def _name(body: dict[str, Any]) -> str:
    """The request's volume ``Name``."""
    name = body.get("Name")
    if not isinstance(name, str) or not name:
        raise PluginError("the request names no volume (Name is missing)")
    return name


@attrs.define
class VolumePlugin:
    """
    The Docker volume driver of one node, backed by the Flocker REST API.

    :ivar reactor: for polling and time-outs.
    :ivar client: the REST API.
    :ivar node_uuid: this node: volumes are created and mounted here.
    :ivar mount_timeout: seconds a Mount waits for the dataset to be here.
    :ivar poll_interval: seconds between looks at the cluster state.
    :ivar delete_on_remove: whether ``Remove`` deletes the dataset (and so
        its data) instead of only making Docker forget the volume.
    """

    app: ClassVar[Klein] = _app

    reactor: IReactorTime
    client: IFlockerAPIV1Client
    node_uuid: UUID
    mount_timeout: float = DEFAULT_MOUNT_TIMEOUT
    poll_interval: float = 0.5
    delete_on_remove: bool = False
    #: dataset id → the Docker mount IDs using it on this node.
    _mounts: dict[UUID, set[str]] = attrs.field(factory=dict, init=False)

    # -- helpers ---------------------------------------------------------------

    async def _volumes(self) -> dict[str, Dataset]:
        """The Flocker volumes (live datasets with a name) by name."""
        configuration = await self.client.list_datasets_configuration()
        found: dict[str, Dataset] = {}
        for dataset in sorted(
            configuration.datasets.values(), key=lambda d: str(d.dataset_id)
        ):
            name = dataset.metadata.get(METADATA_NAME)
            if name and not dataset.deleted:
                found.setdefault(name, dataset)
        return found

    async def _find(self, name: str) -> Dataset:
        """The dataset of volume ``name``; `PluginError` if there is none."""
        dataset = (await self._volumes()).get(name)
        if dataset is None:
            raise PluginError(f"no Flocker volume named {name!r}")
        return dataset

    async def _mountpoints(self) -> dict[UUID, str]:
        """The datasets mounted on this node and where."""
        states = await self.client.list_datasets_state()
        return {
            s.dataset_id: s.path.path
            for s in states
            if s.primary == self.node_uuid and s.path is not None
        }

    def _describe_volume(self, name: str, mountpoint: str | None) -> dict[str, str]:
        """A volume as Get and List answer it: ``""`` if not mounted here."""
        return {"Name": name, "Mountpoint": mountpoint or ""}

    async def _release(self, dataset_id: UUID) -> None:
        """Release this node's lease on a dataset (none held is fine)."""
        try:
            await self.client.release_lease(dataset_id)
        except UnknownLease:
            pass
        LEASE_RELEASED.log(dataset_id=str(dataset_id), node_uuid=str(self.node_uuid))

    def _release_in_background(self, dataset_id: UUID) -> None:
        """Release a lease without waiting (after a failed Mount)."""

        def failed(failure: Any) -> None:
            LEASE_RELEASE_FAILED.log(
                dataset_id=str(dataset_id), reason=_describe(failure.value)
            )

        Deferred.fromCoroutine(self._release(dataset_id)).addErrback(failed)

    async def _wait_until_mounted(self, dataset_id: UUID) -> str:
        """Poll the cluster state until this node reports the dataset mounted."""
        while True:
            path = (await self._mountpoints()).get(dataset_id)
            if path is not None:
                return path
            await deferLater(self.reactor, self.poll_interval, lambda: None)

    # -- the API ---------------------------------------------------------------

    @_endpoint("/Plugin.Activate", "activate", ignore_body=True)
    async def activate(self, body: dict[str, Any]) -> dict[str, Any]:
        """Say this plugin is a volume driver, whatever the body."""
        return {"Implements": ["VolumeDriver"]}

    @_endpoint("/VolumeDriver.Capabilities", "capabilities")
    async def capabilities(self, body: dict[str, Any]) -> dict[str, Any]:
        """Flocker volumes are cluster-wide."""
        return {"Capabilities": {"Scope": "global"}}

    @_endpoint("/VolumeDriver.Create", "create")
    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """
        Create a dataset on this node named after the volume.

        Options: ``size`` (bytes or with a unit).  Creating a volume that
        already exists succeeds and changes nothing, as Docker expects.
        """
        name = _name(body)
        options = body.get("Opts") or {}
        if not isinstance(options, dict):
            raise PluginError("Opts must be a JSON object")
        unknown = sorted(set(options) - set(KNOWN_OPTIONS))
        if unknown:
            raise PluginError(
                f"unknown option{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(unknown)}: the Flocker volume driver knows "
                f"{', '.join(KNOWN_OPTIONS)}"
            )
        size = None
        if "size" in options:
            size = parse_size(options["size"])
        if name in await self._volumes():
            return {"Err": ""}
        await self.client.create_dataset(
            primary=self.node_uuid,
            maximum_size=size,
            metadata={METADATA_NAME: name},
        )
        return {"Err": ""}

    @_endpoint("/VolumeDriver.Get", "get")
    async def get(self, body: dict[str, Any]) -> dict[str, Any]:
        """Describe one volume (its Mountpoint, ``""`` if not mounted here)."""
        dataset = await self._find(_name(body))
        mountpoint = (await self._mountpoints()).get(dataset.dataset_id)
        return {"Volume": self._describe_volume(_name(body), mountpoint), "Err": ""}

    @_endpoint("/VolumeDriver.List", "list")
    async def list_volumes(self, body: dict[str, Any]) -> dict[str, Any]:
        """Every Flocker volume (datasets with a name), Mountpoint as in Get."""
        volumes = await self._volumes()
        mountpoints = await self._mountpoints()
        return {
            "Volumes": [
                self._describe_volume(name, mountpoints.get(d.dataset_id))
                for name, d in sorted(volumes.items())
            ],
            "Err": "",
        }

    @_endpoint("/VolumeDriver.Path", "path")
    async def volume_path(self, body: dict[str, Any]) -> dict[str, Any]:
        """Where the volume is mounted on this node."""
        name = _name(body)
        dataset = await self._find(name)
        mountpoint = (await self._mountpoints()).get(dataset.dataset_id)
        if mountpoint is None:
            raise PluginError(f"volume {name!r} is not mounted on this node")
        return {"Mountpoint": mountpoint, "Err": ""}

    @_endpoint("/VolumeDriver.Mount", "mount")
    async def mount(self, body: dict[str, Any]) -> dict[str, Any]:
        """
        Make the volume available here, moving it if needed, and hold it here.

        Gives up after ``mount_timeout`` seconds, releasing the lease.
        """
        name = _name(body)
        mount_id = body.get("ID") or ""
        if not isinstance(mount_id, str):
            raise PluginError("ID must be a string")
        attempt = Deferred.fromCoroutine(self._mount(name, mount_id))
        attempt.addTimeout(self.mount_timeout, self.reactor)
        try:
            path = await attempt
        except (TimeoutError, CancelledError):
            raise PluginError(
                f"timed out after {self.mount_timeout:g} s waiting for volume "
                f"{name!r} to be mounted on this node; is the Flocker dataset "
                "agent running on every node?"
            ) from None
        return {"Mountpoint": path, "Err": ""}

    async def _mount(self, name: str, mount_id: str) -> str:
        dataset = await self._find(name)
        dataset_id = dataset.dataset_id
        try:
            await self.client.acquire_lease(dataset_id, self.node_uuid, None)
        except LeaseAlreadyHeld as e:
            raise PluginError(
                f"volume {name!r} is in use on another node: {e.description}"
            ) from None
        LEASE_ACQUIRED.log(dataset_id=str(dataset_id), node_uuid=str(self.node_uuid))
        try:
            if dataset.primary != self.node_uuid:
                MOVING.log(
                    dataset_id=str(dataset_id),
                    source_node=str(dataset.primary),
                    node_uuid=str(self.node_uuid),
                )
                await self.client.move_dataset(self.node_uuid, dataset_id)
            path = await self._wait_until_mounted(dataset_id)
        except BaseException:
            if not self._mounts.get(dataset_id):
                self._release_in_background(dataset_id)
            raise
        self._mounts.setdefault(dataset_id, set()).add(mount_id)
        return path

    @_endpoint("/VolumeDriver.Unmount", "unmount")
    async def unmount(self, body: dict[str, Any]) -> dict[str, Any]:
        """
        Forget a mount; after the last one, let the dataset move again.

        Unmounting a volume that does not exist succeeds (there is nothing
        to release), as in the original plugin.
        """
        name = _name(body)
        dataset = (await self._volumes()).get(name)
        if dataset is None:
            return {"Err": ""}
        users = self._mounts.get(dataset.dataset_id, set())
        users.discard(body.get("ID") or "")
        if not users:
            self._mounts.pop(dataset.dataset_id, None)
            await self._release(dataset.dataset_id)
        return {"Err": ""}

    @_endpoint("/VolumeDriver.Remove", "remove")
    async def remove(self, body: dict[str, Any]) -> dict[str, Any]:
        """
        Make Docker forget the volume, keeping its data unless deletion is on.

        Refused while a container here uses the volume.  By default the
        dataset's metadata ``name`` becomes `METADATA_REMOVED_NAME`, so the
        volume is no longer listed and a new volume may take its name, but
        the dataset and its data stay; with ``delete_on_remove`` the dataset
        is deleted.  Removing a volume that does not exist succeeds.
        """
        name = _name(body)
        dataset = (await self._volumes()).get(name)
        if dataset is None:
            return {"Err": ""}
        users = self._mounts.get(dataset.dataset_id)
        if users:
            raise PluginError(
                f"volume {name!r} is in use by {len(users)} container"
                f"{'s' if len(users) > 1 else ''} on this node"
            )
        if not self.delete_on_remove:
            for lease in await self.client.list_leases():
                if lease.dataset_id == dataset.dataset_id:
                    raise PluginError(
                        f"volume {name!r} is in use: the dataset is leased by "
                        f"node {lease.node_uuid}"
                    )
        if self.delete_on_remove:
            await self.client.delete_dataset(dataset.dataset_id)
            return {"Err": ""}
        metadata = {k: v for k, v in dataset.metadata.items() if k != METADATA_NAME}
        metadata[METADATA_REMOVED_NAME] = name
        await self.client.update_dataset(dataset.dataset_id, metadata=metadata)
        return {"Err": ""}
