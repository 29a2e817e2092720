"""
An in-memory :class:`IContainerRuntime` for the unit tests of other packages.

It passes the same contract suite as :class:`flocker.runtime.DockerRuntime`.
Several :class:`MemoryRuntime` instances can share one :class:`MemoryEngine`,
as simulated nodes share one Docker Engine: each sees only its own
containers, but published ports clash across all of them.

Nothing runs inside a fake container.  A test makes a container's process
exit with :meth:`MemoryRuntime.exit`, which applies the restart policy the
way Docker does (restarts happen at once here).  Every Deferred it returns
has already fired, so it works under ``SynchronousTestCase``.

A test opens connections to a container with
:meth:`MemoryRuntime.open_connection` (one it owes an answer on, or an idle
one) and :meth:`MemoryRuntime.open_silent_connection` (one on which nothing
was sent yet: it counts for :data:`FRESH_CONNECTION` seconds of the
runtime's clock, then no longer until a request is sent on it).

Ephemeral ports (external port 0) get fake host ports from a counter of the
shared engine, from :data:`EPHEMERAL_PORTS`'s start upwards, skipping those a
running container holds: each start (a restart by the policy included)
takes the next free ones, so, as with Docker, they change from run to run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar

import attrs
from eliot import ActionType
from pyrsistent import PMap, PSet, pmap, pset
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from ..common import logged
from ._interface import (
    FRESH_CONNECTION,
    ContainerExists,
    ContainerSpec,
    ContainerState,
    IContainerRuntime,
    ImageNotFound,
    ImagePullFailed,
    PortInUse,
    PublishedPort,
    PullProgress,
    RegistryCredentials,
    RestartAlways,
    RestartOnFailure,
    UnknownContainer,
    canonical_uuid,
    check_name,
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

T = TypeVar("T")

#: The exit code of a halted container (its processes were sent SIGKILL).
KILLED_EXIT_CODE = 137

#: The range the fake engine chooses ephemeral host ports from (inclusive).
EPHEMERAL_PORTS = (49152, 65535)


@attrs.define
class _Container:
    """
    One fake container: its spec, owner and mutable state.

    :ivar bound: The ports it publishes now (the spec's, ephemeral ones
        with the port chosen); empty when it does not run.
    :ivar connections: The connections open to it now, each an object
        of its own, mapped to the time until which it counts: never
        (``-inf``) for an idle one, for ever (``inf``) for one owed an
        answer, :data:`FRESH_CONNECTION` seconds after it was opened for
        a silent one (a test opens them with `MemoryRuntime.open_connection`
        and `MemoryRuntime.open_silent_connection`); none when it does not
        run.
    """

    node_uuid: str
    spec: ContainerSpec
    state: ContainerState
    bound: PSet[PublishedPort] = pset()
    connections: dict[object, float] = attrs.field(factory=dict)


def _ports_now(bound: Iterable[PublishedPort]) -> PMap[int, int]:
    """`ContainerState.ports` of the bound ports (TCP only, lowest wins)."""
    ports: dict[int, int] = {}
    for port in bound:
        if port.protocol == "tcp":
            current = ports.get(port.internal_port, port.external_port)
            ports[port.internal_port] = min(current, port.external_port)
    return pmap(ports)


@attrs.define
class MemoryEngine:
    """
    The shared part of fake runtimes: images and every node's containers.

    :ivar images: The image references the engine has.
    :ivar containers: ``(node_uuid, name)`` → container.
    :ivar registry: The images a pull can fetch → the credentials it needs.
    :ivar ephemeral_ports: The host ports (first, last) ephemeral ports
        are chosen from, in turn.
    """

    images: set[str] = attrs.field(factory=set)
    containers: dict[tuple[str, str], _Container] = attrs.field(factory=dict)
    registry: dict[str, RegistryCredentials | None] = attrs.field(factory=dict)
    #: The range ephemeral host ports are chosen from (inclusive).
    ephemeral_ports: tuple[int, int] = EPHEMERAL_PORTS
    #: The next ephemeral port to try (``None``: the range's start).
    _next_port: int | None = attrs.field(default=None, init=False)

    def add_image(self, image: str) -> None:
        """Make ``image`` available, as ``docker import`` would."""
        self.images.add(image)

    def publish(self, image: str, credentials: RegistryCredentials | None = None) -> None:
        """
        Make ``image`` pullable, as pushing it to a registry would; with
        ``credentials``, only by a pull that gives them.
        """
        self.registry[image] = credentials

    def pull(self, image: str, credentials: RegistryCredentials | None) -> str:
        """
        Add a published image to the engine, as a registry would answer a
        pull; the reference added.  Fails as a registry does.
        """
        if not image or any(c.isspace() or c == "\0" for c in image):
            raise ImagePullFailed(image, "invalid reference format")
        reference = image
        if reference not in self.registry and ":" not in image.rsplit("/", 1)[-1]:
            reference = f"{image}:latest"
        if reference not in self.registry:
            raise ImagePullFailed(
                image, f"manifest for {reference} not found: manifest unknown"
            )
        required = self.registry[reference]
        if required is not None and credentials != required:
            raise ImagePullFailed(image, "unauthorized: authentication required")
        self.images.add(reference)
        return reference

    def bind(self, spec: ContainerSpec) -> PSet[PublishedPort]:
        """
        The ports ``spec``'s container publishes if it starts now: its
        fixed ports, and a free port from the counter for each ephemeral
        one.  Holds nothing: the caller keeps them in the container.

        :raise PortInUse: if a fixed port is held by a running container
            (the container itself must not run, or it would clash with
            itself), or no ephemeral port is free.
        """
        held = [
            (name, port)
            for (_, name), container in self.containers.items()
            for port in container.bound
        ]
        for port in spec.ports:
            for name, other in held:
                if port.clashes_with(other):
                    raise PortInUse(
                        spec.name,
                        f"{port.host_ip}:{port.external_port}/{port.protocol}"
                        f" is published by {name!r}",
                    )
        bound = [port for port in spec.ports if port.external_port != 0]
        taken = [port for _, port in held] + bound
        ephemeral = sorted(
            (p for p in spec.ports if p.external_port == 0),
            key=lambda p: (p.internal_port, p.host_ip, p.protocol),
        )
        for port in ephemeral:
            chosen = self._free(port, taken)
            if chosen is None:
                raise PortInUse(
                    spec.name,
                    f"no free port for {port.host_ip}:0/{port.protocol}",
                )
            taken.append(chosen)
            bound.append(chosen)
        return pset(bound)

    def _free(
        self, port: PublishedPort, taken: list[PublishedPort]
    ) -> PublishedPort | None:
        """``port`` on the next free ephemeral port, or ``None``: all taken."""
        low, high = self.ephemeral_ports
        for _ in range(high - low + 1):
            number = self._next_port or low
            if not low <= number <= high:
                number = low
            self._next_port = low if number >= high else number + 1
            candidate = port.set(external_port=number)
            if not any(candidate.clashes_with(other) for other in taken):
                return candidate
        return None


@implementer(IContainerRuntime)
@attrs.define
class MemoryRuntime:
    """
    A fake runtime for one node.

    :ivar node_uuid: The node's UUID (canonical form).
    :ivar engine: The engine shared with other fake nodes.
    :ivar clock: Gives ``started_at`` times; ``time.time`` by default.
    """

    node_uuid: str = attrs.field(converter=canonical_uuid)
    engine: MemoryEngine = attrs.field(factory=MemoryEngine)
    clock: IReactorTime | None = None

    def _now(self) -> float:
        return float(self.clock.seconds() if self.clock is not None else time.time())

    def _logged(
        self,
        action: ActionType,
        body: Callable[[], Coroutine[Any, Any, T]],
        **fields: object,
    ) -> Deferred[T]:
        return logged(
            action,
            body,
            runtime="memory",
            node_uuid=self.node_uuid,
            **fields,
        )

    def _get(self, name: str) -> _Container:
        container = self.engine.containers.get((self.node_uuid, name))
        if container is None:
            raise UnknownContainer(name)
        return container

    def _mine(self) -> Iterable[_Container]:
        return [
            c for c in self.engine.containers.values() if c.node_uuid == self.node_uuid
        ]

    def _start(self, container: _Container, restart_count: int = 0) -> None:
        """Bind its ports and run it (the state a start leaves)."""
        container.bound = self.engine.bind(container.spec)
        container.state = ContainerState(
            running=True,
            started_at=self._now(),
            restart_count=restart_count,
            ports=_ports_now(container.bound),
        )

    def _exited(self, container: _Container, exit_code: int) -> None:
        """Its process exited: it publishes nothing, and is connected to by nothing, any more."""
        container.bound = pset()
        container.connections.clear()
        container.state = container.state.set(
            running=False, exit_code=exit_code, ports=pmap()
        )

    # -- IContainerRuntime

    def list_containers(self) -> Deferred[PSet[ContainerSpec]]:
        """See :meth:`IContainerRuntime.list_containers`."""

        async def body() -> PSet[ContainerSpec]:
            return pset(c.spec for c in self._mine())

        return self._logged(LIST_CONTAINERS, body)

    def list_states(self) -> Deferred[PMap[str, ContainerState]]:
        """See :meth:`IContainerRuntime.list_states`."""

        async def body() -> PMap[str, ContainerState]:
            return pmap({c.spec.name: c.state for c in self._mine()})

        return self._logged(LIST_STATES, body)

    def inspect(self, name: str) -> Deferred[ContainerState]:
        """See :meth:`IContainerRuntime.inspect`."""

        async def body() -> ContainerState:
            return self._get(check_name(name)).state

        return self._logged(INSPECT, body, name=str(name))

    def create(self, spec: ContainerSpec) -> Deferred[None]:
        """See :meth:`IContainerRuntime.create`."""

        async def body() -> None:
            key = (self.node_uuid, spec.name)
            if key in self.engine.containers:
                raise ContainerExists(spec.name)
            if spec.image not in self.engine.images:
                raise ImageNotFound(spec.image)
            container = _Container(self.node_uuid, spec, ContainerState(running=False))
            self._start(container)  # raises before the container is kept
            self.engine.containers[key] = container

        return self._logged(CREATE, body, name=spec.name, image=spec.image)

    def start(self, name: str) -> Deferred[None]:
        """See :meth:`IContainerRuntime.start`."""

        async def body() -> None:
            container = self._get(check_name(name))
            if not container.state.running:
                self._start(container)

        return self._logged(START, body, name=str(name))

    def stop(self, name: str, timeout: float = 10.0) -> Deferred[None]:
        """See :meth:`IContainerRuntime.stop`; the fake exits with code 0."""

        async def body() -> None:
            container = self._get(check_name(name))
            if container.state.running:
                self._exited(container, 0)

        return self._logged(STOP, body, name=str(name), timeout=timeout)

    def halt(self, name: str) -> Deferred[None]:
        """See :meth:`IContainerRuntime.halt`; the fake exits as killed (137)."""

        async def body() -> None:
            container = self.engine.containers.get((self.node_uuid, check_name(name)))
            if container is not None and container.state.running:
                self._exited(container, KILLED_EXIT_CODE)

        return self._logged(HALT, body, name=str(name))

    def remove(self, name: str) -> Deferred[None]:
        """See :meth:`IContainerRuntime.remove`."""

        async def body() -> None:
            self.engine.containers.pop((self.node_uuid, check_name(name)), None)

        return self._logged(REMOVE, body, name=str(name))

    def connections(self, name: str) -> Deferred[int]:
        """See :meth:`IContainerRuntime.connections`."""

        async def body() -> int:
            container = self._get(check_name(name))
            if not container.state.running:
                return 0
            now = self._now()
            return sum(1 for until in container.connections.values() if now < until)

        return self._logged(CONNECTIONS, body, name=str(name))

    def pull_image(
        self,
        image: str,
        credentials: RegistryCredentials | None = None,
        progress: Callable[[PullProgress], object] | None = None,
    ) -> Deferred[None]:
        """See :meth:`IContainerRuntime.pull_image` (one layer, one byte)."""

        async def body() -> None:
            self.engine.pull(image, credentials)
            if progress is not None:
                progress(PullProgress(layers_done=1, layers_total=1, bytes_done=1, bytes_total=1))

        return self._logged(
            PULL_IMAGE, body, image=str(image), authenticated=credentials is not None
        )

    def image_exists(self, image: str) -> Deferred[bool]:
        """See :meth:`IContainerRuntime.image_exists`."""

        async def body() -> bool:
            return image in self.engine.images

        return self._logged(IMAGE_EXISTS, body, image=str(image))

    # -- Test control

    def open_connection(self, name: str, idle: bool = False) -> Callable[[], None]:
        """
        Open a connection to running container ``name``, as a client of
        one of its published ports would: one it owes an answer on, or an
        ``idle`` one (its last request answered); returns what closes it.
        A stop of the container closes it too.

        :raise UnknownContainer: if this node owns no container ``name``.
        :raise ValueError: if the container is not running.
        """
        _, close = self._open(name, -math.inf if idle else math.inf)
        return close

    def open_silent_connection(
        self, name: str
    ) -> tuple[Callable[[], None], Callable[[], None]]:
        """
        Open a connection to running container ``name`` on which nothing
        is sent: it counts for :data:`FRESH_CONNECTION` seconds of this
        runtime's clock, then no longer.  Returns what sends a request on
        it (it then counts until closed, as one owed an answer) and what
        closes it.  A stop of the container closes it too.

        :raise UnknownContainer: if this node owns no container ``name``.
        :raise ValueError: if the container is not running.
        """
        return self._open(name, self._now() + FRESH_CONNECTION)

    def _open(
        self, name: str, until: float
    ) -> tuple[Callable[[], None], Callable[[], None]]:
        """
        Open a connection to running container ``name`` counting until
        ``until``; what sends a request on it, and what closes it.
        """
        container = self._get(check_name(name))
        if not container.state.running:
            raise ValueError(f"container {name!r} is not running")
        connection = object()
        container.connections[connection] = until
        # Closing it (or sending on it) after the container stopped (which
        # closed it) or restarted touches no other connection.

        def request() -> None:
            if connection in container.connections:
                container.connections[connection] = math.inf

        def close() -> None:
            container.connections.pop(connection, None)

        return request, close

    def exit(self, name: str, exit_code: int) -> None:
        """
        Make the process of running container ``name`` exit with ``exit_code``.

        The restart policy then applies as in Docker: :class:`RestartAlways`
        restarts it; :class:`RestartOnFailure` restarts it after a non-zero
        code until ``maximum_retry_count`` restarts have happened; otherwise
        it stays exited.  A restart binds ephemeral ports afresh (other
        host ports, as in Docker).

        :raise UnknownContainer: if this node owns no container ``name``.
        :raise ValueError: if the container is not running.
        """
        container = self._get(check_name(name))
        if not container.state.running:
            raise ValueError(f"container {name!r} is not running")
        policy = container.spec.restart_policy
        count = container.state.restart_count
        restart = isinstance(policy, RestartAlways) or (
            isinstance(policy, RestartOnFailure)
            and exit_code != 0
            and (
                policy.maximum_retry_count is None or count < policy.maximum_retry_count
            )
        )
        self._exited(container, exit_code)
        if restart:  # its own ports were just freed: binding cannot fail
            self._start(container, restart_count=count + 1)


def memory_runtimes(
    node_uuids: Iterable[str], images: Iterable[str] = ()
) -> list[MemoryRuntime]:
    """Fake runtimes for several nodes sharing one engine with ``images``."""
    engine = MemoryEngine(images=set(images))
    return [MemoryRuntime(node_uuid, engine) for node_uuid in node_uuids]
