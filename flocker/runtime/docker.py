"""
:class:`IContainerRuntime` on a Docker Engine, through the ``docker`` SDK.

The SDK blocks, so it lives in :class:`DockerAdapter`, a plain synchronous
class; :class:`DockerRuntime` calls it with ``deferToThreadPool`` on a pool
it is given, and never touches the SDK on the reactor thread.

How a spec is kept in the engine
================================

Most of a :class:`ContainerSpec` is read back from what the engine records
for the container (``HostConfig``: port bindings, binds, restart policy, CPU
shares, memory, swappiness; ``Config.Image``).  Two parts cannot be: the engine merges
the environment and the command with the image's own, so the ones given are
also stored as JSON in the labels :data:`ENVIRONMENT_LABEL` and
:data:`COMMAND_LABEL`.  Hence what :meth:`DockerRuntime.create` is given is
exactly what :meth:`DockerRuntime.list_containers` returns.  An ephemeral
port (external port 0) is bound as host port 0, which the engine records
as such (and reads back as 0); the port it chose is in the container's
``NetworkSettings.Ports`` while it runs, whence :attr:`ContainerState.ports`.

An engine without cgroup v1 memory swappiness (cgroup v2) accepts
``MemorySwappiness``, warns and discards it; the container it makes would
list with another spec than it was given, and the node would replace it
forever.  So a created container whose swappiness was discarded is removed
and ``create`` fails with :class:`EngineError` saying why.
"""

from __future__ import annotations

import functools
import json
import math
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime
from typing import Any, TypeVar

import attrs
import docker
import docker.errors
import requests.exceptions
from docker.utils import parse_repository_tag
from eliot import ActionType
from pyrsistent import PMap, PSet, pmap, pset
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from ..common import logged
from ._interface import (
    APPLICATION_LABEL,
    FRESH_CONNECTION,
    NODE_LABEL,
    ContainerExists,
    ContainerSpec,
    ContainerState,
    EngineError,
    IContainerRuntime,
    ImageNotFound,
    ImagePullFailed,
    PortInUse,
    PublishedPort,
    PullProgress,
    RegistryCredentials,
    RestartAlways,
    RestartNever,
    RestartOnFailure,
    UnknownContainer,
    VolumeBind,
    canonical_uuid,
    check_name,
    container_name,
)
from ._logging import (
    CONNECTIONS,
    CREATE,
    HALT,
    IMAGE_EXISTS,
    INSPECT,
    LIST_CONTAINERS,
    LIST_STATES,
    PULL_IMAGE,
    REMOVE,
    START,
    STOP,
)
from ._processes import ProcessMark, container_process, has_ended
from ._processes import in_container as _in_container
from ._pull import PullTally

#: The label holding the spec's environment as a JSON object.
ENVIRONMENT_LABEL = "org.flocker.environment"
#: The label holding the spec's command as a JSON list, or ``null``.
COMMAND_LABEL = "org.flocker.command"

_PORT_CLASH = ("port is already allocated", "address already in use")

T = TypeVar("T")


def _labels(labels: Mapping[str, str]) -> PMap[str, str]:
    """Labels as an immutable map (an attrs converter)."""
    return pmap(labels)


# --------------------------------------------------------------------------
# Translation between specs and the engine's records (pure)


def create_arguments(
    node_uuid: str, spec: ContainerSpec, labels: Mapping[str, str] = pmap()
) -> dict[str, Any]:
    """
    The keyword arguments of ``client.containers.create`` for ``spec``.

    :param labels: Extra labels for the container (e.g. a test's clean-up
        label); the runtime's own labels win over them.
    """
    ports: dict[str, list[tuple[str, int]]] = {}
    for port in sorted(spec.ports, key=lambda p: (p.external_port, p.host_ip)):
        key = f"{port.internal_port}/{port.protocol}"
        ports.setdefault(key, []).append((port.host_ip, port.external_port))
    policy = spec.restart_policy
    if isinstance(policy, RestartAlways):
        restart = {"Name": "always", "MaximumRetryCount": 0}
    elif isinstance(policy, RestartOnFailure):
        restart = {
            "Name": "on-failure",
            "MaximumRetryCount": policy.maximum_retry_count or 0,
        }
    else:
        restart = {"Name": "no", "MaximumRetryCount": 0}
    return {
        "image": spec.image,
        "command": None if spec.command is None else list(spec.command),
        "name": container_name(node_uuid, spec.name),
        "labels": {
            **labels,
            NODE_LABEL: node_uuid,
            APPLICATION_LABEL: spec.name,
            ENVIRONMENT_LABEL: json.dumps(dict(spec.environment), sort_keys=True),
            COMMAND_LABEL: json.dumps(
                None if spec.command is None else list(spec.command)
            ),
        },
        "environment": dict(spec.environment),
        "ports": ports,
        "volumes": [
            f"{v.host_path}:{v.container_path}:{'ro' if v.read_only else 'rw'}"
            for v in sorted(spec.volumes, key=lambda v: v.container_path)
        ],
        "restart_policy": restart,
        "cpu_shares": spec.cpu_shares,
        "mem_limit": spec.memory_limit,
        "mem_swappiness": spec.swappiness,
        "detach": True,
    }


def _restart_policy(record: Mapping[str, Any]) -> Any:
    name = record.get("Name") or "no"
    if name in ("always", "unless-stopped"):
        return RestartAlways()
    if name == "on-failure":
        return RestartOnFailure(
            maximum_retry_count=record.get("MaximumRetryCount") or None
        )
    return RestartNever()


def _bind(text: str) -> VolumeBind:
    host, container, *rest = text.split(":")
    options = rest[0].split(",") if rest else []
    return VolumeBind(
        host_path=host, container_path=container, read_only="ro" in options
    )


def spec_from_inspect(attrs_: Mapping[str, Any]) -> ContainerSpec:
    """The spec of a container created by :class:`DockerRuntime`, from its inspect record."""
    config = attrs_["Config"]
    host = attrs_["HostConfig"]
    labels = config.get("Labels") or {}
    ports = []
    for key, bindings in (host.get("PortBindings") or {}).items():
        internal, _, protocol = key.partition("/")
        for binding in bindings or []:
            ports.append(
                PublishedPort(
                    internal_port=int(internal),
                    external_port=int(binding.get("HostPort") or 0),
                    host_ip=binding.get("HostIp") or "0.0.0.0",
                    protocol=protocol or "tcp",
                )
            )
    return ContainerSpec(
        name=labels[APPLICATION_LABEL],
        image=config["Image"],
        command=json.loads(labels.get(COMMAND_LABEL, "null")),
        environment=json.loads(labels.get(ENVIRONMENT_LABEL, "{}")),
        ports=ports,
        volumes=[_bind(b) for b in host.get("Binds") or []],
        restart_policy=_restart_policy(host.get("RestartPolicy") or {}),
        cpu_shares=host.get("CpuShares") or None,
        memory_limit=host.get("Memory") or None,
        swappiness=_swappiness(host.get("MemorySwappiness")),
    )


def _swappiness(value: int | None) -> int | None:
    """The engine's ``MemorySwappiness``; unset is ``null`` or (older engines) -1."""
    return None if value is None or value < 0 else value


def _timestamp(text: str | None) -> float | None:
    """POSIX seconds of an engine timestamp; ``None`` for Go's zero time."""
    if not text or text.startswith("0001-"):
        return None
    main, _, fraction = text.rstrip("Z").partition(".")
    stamp = datetime.fromisoformat(main + "+00:00").timestamp()
    return stamp + (float("0." + fraction) if fraction else 0.0)


def _host_ip(binding: Mapping[str, Any]) -> str:
    """The address of a port binding; the engine's empty one is every address."""
    return str(binding.get("HostIp") or "0.0.0.0")


def published_now(attrs_: Mapping[str, Any]) -> PMap[int, int]:
    """
    Internal TCP port → the host port it is bound to now (the lowest, if
    several), from an inspect record's ``NetworkSettings.Ports``.

    Only bindings at an address the container asked for
    (``HostConfig.PortBindings``) count: for an empty address the engine
    also binds IPv6 ``::``, possibly on another port, which is not the
    spec's.  A port asked for but not bound (yet) is left out.
    """
    asked = (attrs_.get("HostConfig") or {}).get("PortBindings") or {}
    requested = {
        key: {_host_ip(b) for b in bindings or []} for key, bindings in asked.items()
    }
    network = attrs_.get("NetworkSettings") or {}
    ports: dict[int, int] = {}
    for key, bindings in (network.get("Ports") or {}).items():
        internal, _, protocol = key.partition("/")
        if (protocol or "tcp") != "tcp":
            continue
        for binding in bindings or []:
            host_port = int(binding.get("HostPort") or 0)
            if host_port == 0 or _host_ip(binding) not in requested.get(key, set()):
                continue
            number = int(internal)
            ports[number] = min(host_port, ports.get(number, host_port))
    return pmap(ports)


def state_from_inspect(attrs_: Mapping[str, Any]) -> ContainerState:
    """The :class:`ContainerState` in a container's inspect record."""
    state = attrs_["State"]
    running = bool(state.get("Running") or state.get("Restarting"))
    started_at = _timestamp(state.get("StartedAt"))
    return ContainerState(
        running=running,
        exit_code=None if running or started_at is None else state.get("ExitCode"),
        started_at=started_at,
        restart_count=attrs_.get("RestartCount") or 0,
        ports=published_now(attrs_) if running else pmap(),
    )


#: The states (in ``/proc/<pid>/net/tcp``) of sockets that are no open
#: connection: listening, closed, waiting out TIME_WAIT, or closed by this
#: end with everything it sent acknowledged (FIN_WAIT2).  Every other
#: state is one: established, being set up (SYN_RECV), closed by the
#: client while the server still owes its answer (CLOSE_WAIT), or closed
#: by the server with its answer still in flight (FIN_WAIT1, CLOSING,
#: LAST_ACK).
_NOT_OPEN = {"0A", "07", "06", "05"}


def count_connections(tables: list[str], ports: set[int]) -> int:
    """
    The open connections (see `_NOT_OPEN`) whose local port is one of
    ``ports`` in the text of socket tables as ``/proc/<pid>/net/tcp`` and
    ``tcp6`` show them (a heading line, then ``sl local_address
    rem_address st …`` with addresses as ``HEX:PORT``).
    """
    found = 0
    for table in tables:
        for line in table.splitlines()[1:]:
            fields = line.split()
            if len(fields) < 4 or fields[3] in _NOT_OPEN:
                continue
            _, _, port = fields[1].rpartition(":")
            try:
                local = int(port, 16)
            except ValueError:
                continue
            if local in ports:
                found += 1
    return found


#: The states (as ``ss`` names them) of connections with something still
#: in flight: being set up, or closed by the container before all it sent
#: was acknowledged.
_IN_FLIGHT = {"SYN-RECV", "FIN-WAIT-1", "CLOSING", "LAST-ACK"}

#: The states of connections on which an answer may be owed, if the
#: client sent something after the container last sent.
_MAY_OWE = {"ESTAB", "CLOSE-WAIT"}

#: The states of sockets on which nothing is owed: listening, closed,
#: all sent and acknowledged, or opened by the container itself.
_OWES_NOTHING = {"LISTEN", "UNCONN", "CLOSED", "FIN-WAIT-2", "TIME-WAIT", "SYN-SENT"}


class _NotUnderstood(Exception):
    """``ss`` printed something `count_owed` cannot read."""


def _owes(state: str, queued: bool, info: Mapping[str, str]) -> bool:
    """
    Whether a connection in ``state`` (``queued``: data waits in either
    queue; ``info``: the ``key:value`` details ``ss -i`` gives) may still
    be owed something by the container: data in flight, or data received
    after the container last sent any (a request not answered yet).  A
    kept-alive connection whose last request was answered is idle.

    :raise _NotUnderstood: if a detail used here is not a count.
    """
    if state in _IN_FLIGHT or (state in _MAY_OWE and queued):
        return True
    if state not in _MAY_OWE:
        return False
    received = _count(info, "bytes_received")
    sent = _count(info, "bytes_sent")
    if received == 0:
        # A new connection's first request may be on its way (ss says
        # how long ago it was set up, in milliseconds).
        return _count(info, "lastrcv") < FRESH_CONNECTION * 1000
    if sent == 0:
        return True
    return _count(info, "lastrcv") < _count(info, "lastsnd")


def _count(info: Mapping[str, str], key: str) -> int:
    """
    A detail of ``ss -i`` that counts bytes or milliseconds (``last…``:
    how long ago); 0 when missing (``ss`` leaves out a byte count of 0,
    and 0 milliseconds is the most recent).

    :raise _NotUnderstood: if it is there but no count.
    """
    value = info.get(key, "0")
    if not _is_count(value):
        raise _NotUnderstood(f"{key}:{value}")
    return int(value)


def count_owed(ss_output: str, ports: set[int]) -> int | None:
    """
    The connections whose local port is one of ``ports`` on which the
    container may still owe something (see `_owes`), in the output of
    ``ss -tinHa``: a line per socket (state, receive and send queues,
    local and peer addresses) followed by an indented line of details.

    ``None`` if the output cannot be read (a socket line of another shape,
    an unknown state, or details of a counted socket that are not counts,
    as another ``ss`` might print them): the caller then knows no more
    than if ``ss`` were missing.
    """
    sockets: list[tuple[list[str], dict[str, str]]] = []
    for line in ss_output.splitlines():
        if not line.strip():
            continue
        if line[0].isspace():
            if sockets:
                details = sockets[-1][1]
                for word in line.split():
                    key, colon, value = word.partition(":")
                    if colon:
                        details[key] = value
            continue
        sockets.append((line.split(), {}))
    found = 0
    try:
        for fields, details in sockets:
            state, queued, port = _socket_line(fields)
            if port in ports and _owes(state, queued, details):
                found += 1
    except _NotUnderstood:
        return None
    return found


def _socket_line(fields: list[str]) -> tuple[str, bool, int]:
    """
    The state, whether data waits in either queue, and the local port of
    a socket line of ``ss -tn`` split into fields.

    :raise _NotUnderstood: if it is not of that shape.
    """
    if len(fields) < 5:
        raise _NotUnderstood(" ".join(fields))
    state, receive_queue, send_queue, local = fields[:4]
    _, _, port = local.rpartition(":")
    if state not in _IN_FLIGHT | _MAY_OWE | _OWES_NOTHING or not all(
        _is_count(number) for number in (receive_queue, send_queue, port)
    ):
        raise _NotUnderstood(" ".join(fields))
    return state, int(receive_queue) != 0 or int(send_queue) != 0, int(port)


def _is_count(text: str) -> bool:
    """Whether ``text`` is a count in decimal digits (``int`` takes more)."""
    return text.isascii() and text.isdigit()


def _owed_by(pid: int, ports: set[int]) -> int | None:
    """
    `count_owed` of the network namespace process ``pid`` is in, asking
    ``ss`` there; ``None`` when it cannot be asked (no ``nsenter`` or
    ``ss``, or the process is gone) or its answer cannot be read.
    """
    try:
        listed = subprocess.run(
            ["nsenter", f"--target={pid}", "--net", "ss", "-tinHa"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return count_owed(listed.stdout, ports)


def _published_internal(attrs_: Mapping[str, Any]) -> set[int]:
    """The internal TCP ports a container's record says it publishes."""
    bindings = (attrs_.get("HostConfig") or {}).get("PortBindings") or {}
    ports = set()
    for key in bindings:
        number, _, protocol = key.partition("/")
        if protocol in ("", "tcp") and number.isdigit():
            ports.add(int(number))
    return ports


def _socket_tables(pid: int) -> list[str]:
    """
    The TCP socket tables of the network namespace process ``pid`` is in
    (none if it is gone).  Check first that it is the container's
    (`_in_container`): they would be another process's otherwise.
    """
    tables = []
    for name in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{name}") as table:
                tables.append(table.read())
        except (FileNotFoundError, ProcessLookupError):
            pass
    return tables


def _running_pid(attrs_: Mapping[str, Any]) -> int:
    """The main process of a container's inspect record; 0 if it does not run."""
    state = attrs_.get("State") or {}
    pid = state.get("Pid") or 0
    return pid if state.get("Running") and pid > 0 else 0


def _count_busy(pid: int, ports: set[int]) -> int:
    """
    The connections to ``ports`` busy in the network namespace of process
    ``pid`` (already checked to be the container's).  The socket tables
    are quick to read; ``ss`` is asked only when they show a connection,
    and without it (or without an answer it can read) every open one
    counts.
    """
    opened = count_connections(_socket_tables(pid), ports)
    if not opened:
        return 0
    owed = _owed_by(pid, ports)
    return opened if owed is None else owed


def _named(containers: list[Any], name: str) -> Any:
    """The container of application ``name`` among ``containers``, or ``None``."""
    for container in containers:
        labels = container.attrs["Config"].get("Labels") or {}
        if labels.get(APPLICATION_LABEL) == name:
            return container
    return None


@attrs.define
class _Call:
    """An Engine request made in a thread of its own (see `_in_thread`)."""

    done: threading.Event = attrs.field(factory=threading.Event)
    #: The Engine's refusal, if it refused.
    failed: Exception | None = None


#: What the Engine's SDK raises when a request is refused or cannot be made.
_ENGINE_ERRORS = (docker.errors.APIError, requests.exceptions.RequestException)


def _in_thread(request: Callable[[], object], name: str) -> _Call:
    """
    Make an Engine request in a daemon thread of its own, so that the
    caller can go on without its answer; a container gone meanwhile
    counts as done.
    """
    call = _Call()

    def run() -> None:
        try:
            request()
        except docker.errors.NotFound:
            pass
        except _ENGINE_ERRORS as error:
            call.failed = error
        finally:
            call.done.set()

    threading.Thread(target=run, name=name, daemon=True).start()
    return call


# --------------------------------------------------------------------------
# The blocking side


#: Seconds a listing of the node's containers is reused (see ``_mine``).
LISTING_REUSE = 0.25

#: Seconds ``halt`` waits for a killed container's processes to end.
HALT_TIMEOUT = 10.0

#: Seconds between two looks at a killed container's main process.
HALT_POLL = 0.002


def _changes(method: Callable[..., None]) -> Callable[..., None]:
    """Mark an adapter method that changes containers (see ``_mine``)."""

    @functools.wraps(method)
    def changing(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            method(self, *args, **kwargs)
        finally:
            self._changed()

    return changing


@attrs.define
class DockerAdapter:
    """
    The synchronous Docker SDK calls of one node's runtime.

    Every method blocks; call them from a thread.  Errors come out as the
    runtime's typed errors.

    :ivar node_uuid: The node whose containers these are.
    :ivar client_factory: Makes the SDK client, on first use (in a thread).
    :ivar labels: Extra labels put on every container created.
    :ivar monotonic: Tells the age of a listing (``time.monotonic``).
    """

    node_uuid: str
    client_factory: Callable[[], docker.DockerClient]
    labels: PMap[str, str] = attrs.field(factory=pmap, converter=_labels)
    #: Seconds that only go forward: the age of a listing.
    monotonic: Callable[[], float] = attrs.field(default=time.monotonic, kw_only=True)
    _client: docker.DockerClient | None = attrs.field(default=None, init=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)
    #: Bumped by every change this adapter makes (see `_mine`).
    _generation: int = attrs.field(default=0, init=False)
    #: (monotonic time, generation, containers) of the last listing.
    _listing: tuple[float, int, list[Any]] | None = attrs.field(default=None, init=False)
    #: Engine names of the containers this adapter is creating right now.
    _creating: set[str] = attrs.field(factory=set, init=False)
    #: The containers halted here and not removed or started since, by
    #: Engine id, as inspected when they were halted: they are listed so
    #: (not running) without inspecting them again, which the Engine
    #: holds until it has tidied up after them.
    _halted: dict[str, Any] = attrs.field(factory=dict, init=False)

    @property
    def client(self) -> docker.DockerClient:
        """The SDK client, made once."""
        with self._lock:
            if self._client is None:
                self._client = self.client_factory()
            return self._client

    def _find(self, name: str) -> Any:
        """The node's container ``name``, or :class:`UnknownContainer`."""
        try:
            container = self.client.containers.get(container_name(self.node_uuid, name))
        except docker.errors.NotFound:
            raise UnknownContainer(name) from None
        labels = container.attrs["Config"].get("Labels") or {}
        if labels.get(NODE_LABEL) != self.node_uuid:
            raise UnknownContainer(name)
        return container

    def _changed(self) -> None:
        """Something was created, started, stopped or removed: list afresh."""
        with self._lock:
            self._generation += 1

    def _mine(self) -> list[Any]:
        """
        The node's containers, inspected.

        Listing costs one Engine request per container, so a listing is
        reused for :data:`LISTING_REUSE` seconds (``list_containers`` and
        ``list_states`` of one discovery share it) unless this adapter
        changed a container meanwhile.
        """
        with self._lock:
            generation = self._generation
        reusable = self._reusable()
        if reusable is not None:
            return reusable
        # Both labels: a container with only the node label was not made
        # by a runtime and has no spec.  The summaries come without
        # inspecting; each container is then inspected — except those this
        # adapter is creating: the Engine holds an inspection of a starting
        # container until the start is over, which would hold up the whole
        # discovery (the deployer leaves starting applications alone).  A
        # halted container is listed as it was inspected when halted.
        summaries = self.client.containers.list(
            all=True,
            sparse=True,
            filters={"label": [f"{NODE_LABEL}={self.node_uuid}", APPLICATION_LABEL]},
        )
        with self._lock:
            creating = set(self._creating)
            halted = dict(self._halted)
        listed = []
        for summary in summaries:
            names = {n.lstrip("/") for n in summary.attrs.get("Names") or []}
            if names & creating:
                continue
            if summary.id in halted:
                listed.append(halted[summary.id])
                continue
            try:
                listed.append(self.client.containers.get(summary.id))
            except docker.errors.NotFound:
                continue  # removed meanwhile: simply not listed
        with self._lock:
            self._listing = (self.monotonic(), generation, listed)
            present = {summary.id for summary in summaries}
            for gone in set(self._halted) - present:
                del self._halted[gone]  # removed behind this adapter's back
        return listed

    def _reusable(self) -> list[Any] | None:
        """The last listing, if `_mine` may still reuse it."""
        with self._lock:
            cached, generation = self._listing, self._generation
        if (
            cached is not None
            and cached[1] == generation
            and self.monotonic() - cached[0] < LISTING_REUSE
        ):
            return cached[2]
        return None

    def list_containers(self) -> PSet[ContainerSpec]:
        """See :meth:`IContainerRuntime.list_containers`."""
        return pset(spec_from_inspect(c.attrs) for c in self._mine())

    def list_states(self) -> PMap[str, ContainerState]:
        """See :meth:`IContainerRuntime.list_states`."""
        return pmap(
            {
                c.attrs["Config"]["Labels"][APPLICATION_LABEL]: self._state(c)
                for c in self._mine()
            }
        )

    def inspect(self, name: str) -> ContainerState:
        """See :meth:`IContainerRuntime.inspect`."""
        halted = self._halted_as(name)
        return self._state(halted if halted is not None else self._find(name))

    def _state(self, container: Any) -> ContainerState:
        """A container's state; one halted here does not run, whatever the Engine says yet."""
        state = state_from_inspect(container.attrs)
        with self._lock:
            halted = container.id in self._halted
        if halted and state.running:
            return state.set(running=False, ports=pmap())
        return state

    def connections(self, name: str) -> int:
        """
        See :meth:`IContainerRuntime.connections`: the container's own
        sockets (those of its main process's network namespace) are looked
        at, so connections through Docker's proxy, its NAT rules or any
        router count alike.  ``ss`` in that namespace tells idle ones
        apart; without it (or when its answer cannot be read), every open
        connection counts, idle or not.

        A listing `_mine` may still reuse (a discovery's, just made) gives
        the main process and the published ports without asking the
        Engine again.  Its process may be gone or, its number reused,
        another's by now: unless ``/proc`` shows that process in the
        container, the container is inspected afresh, as it is when the
        listing says it does not run.
        """
        if self._halted_as(name) is not None:
            return 0  # its processes are gone
        listed = self._listed(name)
        if listed is not None:
            pid = _running_pid(listed.attrs)
            if pid and _in_container(pid, listed.id):
                return _count_busy(pid, _published_internal(listed.attrs))
        container = self._find(name)  # freshly inspected
        pid = _running_pid(container.attrs)
        # EngineError if the process here by that number is not the
        # container's (a remote or rootless engine, or this agent in a
        # container of its own); None if it has just exited.
        if not pid or container_process(pid, container.id) is None:
            return 0
        return _count_busy(pid, _published_internal(container.attrs))

    def _without_policy(self, name: str) -> tuple[Any, ProcessMark | None] | None:
        """
        Container ``name`` and its main process, from a listing `_mine` may
        still reuse, when it runs that process and has no restart policy
        (nothing would start it again, so a halt need not ask the Engine
        about it first); ``None`` otherwise.
        """
        listed = self._listed(name)
        if listed is None:
            return None
        policy = (listed.attrs.get("HostConfig") or {}).get("RestartPolicy") or {}
        pid = _running_pid(listed.attrs)
        if policy.get("Name") not in (None, "", "no") or not pid or not _in_container(pid, listed.id):
            return None
        return listed, container_process(pid, listed.id)

    def _policy_set_aside(self, name: str) -> tuple[Any, ProcessMark | None] | None:
        """
        Container ``name``, freshly inspected, and its main process, once
        its restart policy is set aside; ``None`` if it is not there or
        does not run.  EngineError if its policy is restarting it, or the
        policy cannot be set aside.
        """
        try:
            container = self._find(name)
        except UnknownContainer:
            return None
        if container.attrs["State"].get("Restarting"):
            # Waiting to be started again by its restart policy: only a
            # removal is sure to stop it for good.
            raise EngineError(f"container {name!r} is being restarted by its restart policy")
        pid = _running_pid(container.attrs)
        if not pid:
            return None
        process = container_process(pid, container.id)  # or EngineError
        # First, so that the policy no longer applies whatever happens next
        # (its process crashing just before the kill, which the Engine then
        # refuses; the Engine restarting before the removal): the Engine
        # refuses to update a stopped container.
        try:
            container.update(restart_policy={"Name": "no"})
        except docker.errors.NotFound:
            return None  # removed meanwhile
        except _ENGINE_ERRORS as error:
            raise EngineError(
                f"the restart policy of container {name!r} could not be set aside: {error}"
            ) from None
        return container, process

    def _halted_as(self, name: str) -> Any:
        """Container ``name`` as it was when halted here; ``None`` if it was not."""
        with self._lock:
            halted = list(self._halted.values())
        return _named(halted, name)

    def _listed(self, name: str) -> Any:
        """Container ``name`` in a listing still reusable; ``None`` if not there."""
        return _named(self._reusable() or [], name)

    @_changes
    def create(self, spec: ContainerSpec) -> None:
        """See :meth:`IContainerRuntime.create`."""
        engine_name = container_name(self.node_uuid, spec.name)
        with self._lock:
            self._creating.add(engine_name)
        try:
            self._create(spec)
        finally:
            with self._lock:
                self._creating.discard(engine_name)

    def _create(self, spec: ContainerSpec) -> None:
        arguments = create_arguments(self.node_uuid, spec, self.labels)
        try:
            container = self.client.containers.create(**arguments)
        except docker.errors.ImageNotFound:
            raise ImageNotFound(spec.image) from None
        except docker.errors.APIError as error:
            if error.status_code == 409:
                raise ContainerExists(spec.name) from None
            raise EngineError(str(error.explanation or error)) from None
        applied = _swappiness(container.attrs["HostConfig"].get("MemorySwappiness"))
        if applied != spec.swappiness:
            container.remove(force=True, v=True)
            raise EngineError(
                f"the engine discarded swappiness {spec.swappiness} of container"
                f" {spec.name!r} (its kernel has no cgroup v1 memory.swappiness)"
            )
        try:
            self._start(spec.name, container)
        except BaseException:
            container.remove(force=True, v=True)
            raise

    def _start(self, name: str, container: Any) -> None:
        try:
            container.start()
        except docker.errors.APIError as error:
            text = str(error.explanation or error)
            if any(clash in text for clash in _PORT_CLASH):
                raise PortInUse(name, text) from None
            raise EngineError(text) from None

    @_changes
    def start(self, name: str) -> None:
        """
        See :meth:`IContainerRuntime.start`; a container halted here is
        started once the Engine has seen it stop.
        """
        container = self._find(name)
        with self._lock:
            halted = self._halted.get(container.id)
        if halted is not None:
            # Once the Engine has seen it stop, with the restart policy it
            # had before the halt set it aside.
            policy = halted.attrs["HostConfig"].get("RestartPolicy") or {"Name": "no"}
            try:
                container.wait(condition="not-running", timeout=HALT_TIMEOUT)
                container.update(restart_policy=policy)
            except _ENGINE_ERRORS as error:
                raise EngineError(f"container {name!r} is still being halted: {error}") from None
        self._start(name, container)
        with self._lock:
            self._halted.pop(container.id, None)

    @_changes
    def stop(self, name: str, timeout: float) -> None:
        """See :meth:`IContainerRuntime.stop`."""
        container = self._find(name)
        try:
            container.stop(timeout=max(0, math.ceil(timeout)))
        except docker.errors.NotFound:
            raise UnknownContainer(name) from None

    @_changes
    def remove(self, name: str) -> None:
        """See :meth:`IContainerRuntime.remove`."""
        try:
            container = self._find(name)
            container.remove(force=True, v=True)
        except (UnknownContainer, docker.errors.NotFound):
            pass
        else:
            with self._lock:
                self._halted.pop(container.id, None)

    @_changes
    def halt(self, name: str) -> None:
        """
        See :meth:`IContainerRuntime.halt`: the container's restart policy
        is set aside (unless it has none and a fresh listing shows its
        process running: nothing would start it again), the Engine is
        asked to kill it, and its main process is watched in ``/proc``
        until it has ended, without waiting for the Engine's answer to the
        kill, which comes only once it has tidied up after the container.
        """
        if self._halted_as(name) is not None:
            return
        found = self._without_policy(name) or self._policy_set_aside(name)
        if found is None:
            return  # not there, or not running
        container, process = found
        killed = _in_thread(container.kill, f"flocker-halt-{name}")
        deadline = self.monotonic() + HALT_TIMEOUT
        while process is not None and not has_ended(process):
            if killed.done.is_set() and killed.failed is not None:
                # Refused while its process still runs ("not running" comes
                # only once it has ended, which the loop sees first).
                raise EngineError(f"container {name!r} could not be killed: {killed.failed}")
            if self.monotonic() > deadline:
                raise EngineError(
                    f"container {name!r} still runs {HALT_TIMEOUT:g} s after it was killed"
                )
            time.sleep(HALT_POLL)
        with self._lock:
            self._halted[container.id] = container

    def pull_image(
        self,
        image: str,
        credentials: RegistryCredentials | None,
        report: Callable[[PullProgress], object],
    ) -> None:
        """
        See :meth:`IContainerRuntime.pull_image`: pulls, calling ``report``
        here every `PROGRESS_INTERVAL` seconds and at the end (blocks).
        """
        repository, tag = parse_repository_tag(image)
        if not repository or any(c.isspace() or c == "\0" for c in image):
            raise ImagePullFailed(image, "invalid reference format")
        auth = (
            None
            if credentials is None
            else {"username": credentials.username, "password": credentials.password}
        )
        tally = PullTally(image)
        try:
            events = self.client.api.pull(
                repository, tag=tag or "latest", stream=True, decode=True, auth_config=auth
            )
            reported = time.monotonic()
            for event in events:
                tally.add(event)
                if time.monotonic() - reported >= PROGRESS_INTERVAL:
                    report(tally.progress)
                    reported = time.monotonic()
        except docker.errors.APIError as error:
            raise ImagePullFailed(image, str(error.explanation or error)) from None
        report(tally.progress)

    def image_exists(self, image: str) -> bool:
        """See :meth:`IContainerRuntime.image_exists`."""
        if not image or any(c.isspace() or c == "\0" for c in image):
            return False
        try:
            self.client.images.get(image)
        except docker.errors.ImageNotFound:
            return False
        except docker.errors.APIError as error:
            if error.status_code in (400, 404):  # a malformed reference
                return False
            raise EngineError(str(error.explanation or error)) from None
        return True


#: Seconds between two progress reports of one pull.
PROGRESS_INTERVAL = 0.5


def _engine_errors(f: Callable[..., T], *args: Any) -> T:
    """
    ``f(*args)``, with the SDK's and the transport's unexpected errors
    (engine unreachable, a refusal not mapped by the adapter) as
    :class:`EngineError`.
    """
    try:
        return f(*args)
    except docker.errors.APIError as error:
        raise EngineError(str(error.explanation or error)) from error
    except (
        docker.errors.DockerException,
        requests.exceptions.RequestException,
    ) as error:
        raise EngineError(f"the Docker Engine failed: {error}") from error


# --------------------------------------------------------------------------
# The runtime


@implementer(IContainerRuntime)
@attrs.define
class DockerRuntime:
    """
    The containers of one node on a Docker Engine.

    :ivar node_uuid: The node's UUID (canonical form; others are refused
        with :class:`InvalidName`).
    :ivar client_factory: Makes a ``docker.DockerClient``, e.g.
        ``docker.from_env``; called once, in the thread pool.
    :ivar threadpool: Where every SDK call runs.
    :ivar reactor: Receives the results from the pool.
    :ivar labels: Extra labels for every container created (the runtime's
        own labels win).
    """

    node_uuid: str = attrs.field(converter=canonical_uuid)
    client_factory: Callable[[], docker.DockerClient]
    threadpool: ThreadPool
    reactor: IReactorFromThreads
    labels: PMap[str, str] = attrs.field(factory=pmap, converter=_labels, kw_only=True)
    _adapter: DockerAdapter = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        """Make the adapter that does the blocking work."""
        self._adapter = DockerAdapter(self.node_uuid, self.client_factory, self.labels)

    def _call(self, f: Callable[..., T], *args: Any) -> Deferred[T]:
        return deferToThreadPool(
            self.reactor, self.threadpool, _engine_errors, f, *args
        )

    def _logged(
        self,
        action: ActionType,
        body: Callable[[], Coroutine[Any, Any, T]],
        **fields: Any,
    ) -> Deferred[T]:
        return logged(
            action, body, runtime="docker", node_uuid=self.node_uuid, **fields
        )

    def list_containers(self) -> Deferred[PSet[ContainerSpec]]:
        """See :meth:`IContainerRuntime.list_containers`."""

        async def body() -> PSet[ContainerSpec]:
            return await self._call(self._adapter.list_containers)

        return self._logged(LIST_CONTAINERS, body)

    def list_states(self) -> Deferred[PMap[str, ContainerState]]:
        """See :meth:`IContainerRuntime.list_states`."""

        async def body() -> PMap[str, ContainerState]:
            return await self._call(self._adapter.list_states)

        return self._logged(LIST_STATES, body)

    def inspect(self, name: str) -> Deferred[ContainerState]:
        """See :meth:`IContainerRuntime.inspect`."""

        async def body() -> ContainerState:
            return await self._call(self._adapter.inspect, check_name(name))

        return self._logged(INSPECT, body, name=str(name))

    def connections(self, name: str) -> Deferred[int]:
        """See :meth:`IContainerRuntime.connections`."""

        async def body() -> int:
            return await self._call(self._adapter.connections, check_name(name))

        return self._logged(CONNECTIONS, body, name=str(name))

    def create(self, spec: ContainerSpec) -> Deferred[None]:
        """See :meth:`IContainerRuntime.create`."""

        async def body() -> None:
            await self._call(self._adapter.create, spec)

        return self._logged(CREATE, body, name=spec.name, image=spec.image)

    def start(self, name: str) -> Deferred[None]:
        """See :meth:`IContainerRuntime.start`."""

        async def body() -> None:
            await self._call(self._adapter.start, check_name(name))

        return self._logged(START, body, name=str(name))

    def stop(self, name: str, timeout: float = 10.0) -> Deferred[None]:
        """See :meth:`IContainerRuntime.stop`."""

        async def body() -> None:
            await self._call(self._adapter.stop, check_name(name), timeout)

        return self._logged(STOP, body, name=str(name), timeout=timeout)

    def remove(self, name: str) -> Deferred[None]:
        """See :meth:`IContainerRuntime.remove`."""

        async def body() -> None:
            await self._call(self._adapter.remove, check_name(name))

        return self._logged(REMOVE, body, name=str(name))

    def halt(self, name: str) -> Deferred[None]:
        """See :meth:`IContainerRuntime.halt`."""

        async def body() -> None:
            await self._call(self._adapter.halt, check_name(name))

        return self._logged(HALT, body, name=str(name))

    def pull_image(
        self,
        image: str,
        credentials: RegistryCredentials | None = None,
        progress: Callable[[PullProgress], object] | None = None,
    ) -> Deferred[None]:
        """See :meth:`IContainerRuntime.pull_image`."""

        def report(state: PullProgress) -> None:
            if progress is not None:
                self.reactor.callFromThread(progress, state)

        async def body() -> None:
            await self._call(self._adapter.pull_image, image, credentials, report)

        return self._logged(
            PULL_IMAGE, body, image=str(image), authenticated=credentials is not None
        )

    def image_exists(self, image: str) -> Deferred[bool]:
        """See :meth:`IContainerRuntime.image_exists`."""

        async def body() -> bool:
            return await self._call(self._adapter.image_exists, image)

        return self._logged(IMAGE_EXISTS, body, image=str(image))
