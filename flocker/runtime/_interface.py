"""
The interface of a container runtime, its values and its errors.

A runtime runs the containers of *one* Flocker node.  It is bound to that
node's UUID when it is made, and it sees only the containers it owns: every
container it creates carries the labels

* ``org.flocker.node`` — the node's UUID (this is what ownership means:
  listing filters on it, so several simulated nodes can share one Docker
  Engine without seeing each other's containers);
* ``org.flocker.application`` — the application name given in the
  :class:`ContainerSpec`.

Names
=====

Callers name containers by their *application name* (``"pg"``).  In the
engine the container is called :func:`container_name` of the node and the
name — ``flocker--<first 12 hex digits of the node UUID>--<name>`` — so two
simulated nodes on one engine never clash over a name.  Callers never need
the engine name except to find the container with the docker CLI.

Desired versus actual
=====================

:meth:`IContainerRuntime.list_containers` returns the very values that were
given to :meth:`IContainerRuntime.create`: a deployer compares the set of
specs it wants with the set it gets, using ``==``, and recreates the
containers whose spec differs.  Run-time facts (running or not, exit code,
restarts) are *not* part of the spec; they come from
:meth:`IContainerRuntime.inspect` and :meth:`IContainerRuntime.list_states`.

Published ports
===============

A :class:`PublishedPort` with ``external_port`` 0 asks the engine to choose
a free host port when the container starts (Docker's ephemeral ports); the
spec keeps the 0, so it lists back as it was created.  Which host port each
internal port is reachable on *now* is run-time state:
:attr:`ContainerState.ports`, for a fixed port the external port itself,
for an ephemeral one the engine's choice, which may change every time the
container starts (a restart by its policy included).

Images
======

Creating a container never pulls: from an image the engine lacks it fails at
once with :class:`ImageNotFound` (:meth:`IContainerRuntime.image_exists`
tells in advance).  :meth:`IContainerRuntime.pull_image` pulls an image from
its registry on its own, with :class:`RegistryCredentials` for a private one
(never logged), reporting :class:`PullProgress` and failing with
:class:`ImagePullFailed` in the registry's words.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any
from uuid import UUID

from pyrsistent import (
    PClass,
    PMap,
    PSet,
    PVector,
    field,
    pmap_field,
    pset_field,
    pvector,
)
from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

#: The label naming the node that owns a container.
NODE_LABEL = "org.flocker.node"
#: The label holding a container's application name.
APPLICATION_LABEL = "org.flocker.application"

#: Docker's smallest memory limit (6 MiB); a smaller one is refused.
MINIMUM_MEMORY_LIMIT = 6 * 1024 * 1024
#: The range of Linux CPU shares (cgroup ``cpu.shares``).
CPU_SHARES_RANGE = (2, 262144)
#: The range of the kernel's memory swappiness (cgroup v1 ``memory.swappiness``).
SWAPPINESS_RANGE = (0, 100)
#: Seconds a connection on which nothing was received yet counts as busy
#: (see :meth:`IContainerRuntime.connections`): its client's first request
#: may be on its way.
FRESH_CONNECTION = 1.0

_NAME = re.compile(r"\A[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}\Z")
_ENV_NAME = re.compile(r"\A[^=\0]+\Z")


def is_valid_name(value: object) -> bool:
    """
    Tell whether ``value`` can name an application's container.

    Valid names match ``[a-zA-Z0-9][a-zA-Z0-9_.-]*`` and have at most 128
    characters (Docker's rule, and the control model's).
    """
    return isinstance(value, str) and _NAME.match(value) is not None


def canonical_uuid(value: object) -> str:
    """
    ``value`` if it is a UUID in canonical form (lower case, dashed).

    :raise InvalidName: for anything else.
    """
    try:
        if isinstance(value, str) and str(UUID(value)) == value:
            return value
    except ValueError:
        pass
    raise InvalidName(f"not a canonical node UUID: {value!r}")


def check_name(name: object) -> str:
    """
    ``name`` if it is a valid application name.

    :raise InvalidName: otherwise.
    """
    if not is_valid_name(name):
        raise InvalidName(
            f"not a valid container name ([a-zA-Z0-9][a-zA-Z0-9_.-]*, "
            f"at most 128 characters): {name!r}"
        )
    assert isinstance(name, str)
    return name


def container_name(node_uuid: str, name: str) -> str:
    """
    The engine's name for the container of application ``name`` on a node.

    ``flocker--<first 12 hex digits of node_uuid>--<name>``.  Ownership is
    decided by the :data:`NODE_LABEL` label, never by this name; the prefix
    only keeps the names of simulated nodes sharing an engine apart.
    """
    return f"flocker--{UUID(node_uuid).hex[:12]}--{check_name(name)}"


# --------------------------------------------------------------------------
# Values


def _port_number(value: object) -> tuple[bool, str]:
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536
    return ok, f"not a port number (1-65535): {value!r}"


def _external_port(value: object) -> tuple[bool, str]:
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 65536
    return ok, f"not a port number (1-65535) nor 0 (chosen by the engine): {value!r}"


def _port_map(ports: PMap[int, int]) -> tuple[bool, str]:
    for internal, host in ports.items():
        for number in (internal, host):
            ok, message = _port_number(number)
            if not ok:
                return ok, message
    return True, ""


def _ipv4(value: object) -> tuple[bool, str]:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False, f"not an IPv4 address: {value!r}"
    return True, ""


def _absolute_path(value: object) -> tuple[bool, str]:
    ok = (
        isinstance(value, str)
        and value.startswith("/")
        and ":" not in value
        and "\0" not in value
    )
    return ok, f"not an absolute path without ':' : {value!r}"


class PublishedPort(PClass):
    """
    A container port reachable on the node.

    Connections to ``host_ip:external_port`` reach ``internal_port`` inside
    the container.  Simulated nodes publish on their own address
    (``127.0.0.11``…); ``"0.0.0.0"`` means every address of the machine.

    An ``external_port`` of 0 is an *ephemeral* port: the engine publishes
    ``internal_port`` on a free host port of its choice each time the
    container starts, and :attr:`ContainerState.ports` says which.  The
    spec keeps the 0 (it lists back as created).

    :ivar internal_port: The port the container listens on.
    :ivar external_port: The port published on the node (1–65535), or 0:
        one the engine chooses when the container starts.
    :ivar host_ip: The IPv4 address the external port is bound to.
    :ivar protocol: ``"tcp"`` or ``"udp"``.
    """

    internal_port = field(type=int, mandatory=True, invariant=_port_number)
    external_port = field(type=int, mandatory=True, invariant=_external_port)
    host_ip = field(type=str, initial="0.0.0.0", invariant=_ipv4)
    protocol = field(
        type=str,
        initial="tcp",
        invariant=lambda p: (p in ("tcp", "udp"), f"not tcp or udp: {p!r}"),
    )

    def clashes_with(self, other: PublishedPort) -> bool:
        """
        Tell whether this port and ``other`` cannot be published at once.

        They clash when protocol and external port are the same and the
        addresses are the same or either is the wildcard ``0.0.0.0``.
        Ephemeral ports (external port 0) clash with nothing: the engine
        chooses a free port for each.
        """
        return (
            self.external_port != 0
            and self.protocol == other.protocol
            and self.external_port == other.external_port
            and (
                self.host_ip == other.host_ip
                or "0.0.0.0" in (self.host_ip, other.host_ip)
            )
        )


class VolumeBind(PClass):
    """
    A directory of the node mounted into the container.

    :ivar host_path: The node's directory (a dataset's mount path).
    :ivar container_path: Where it appears inside the container.
    :ivar read_only: Mount it read-only.
    """

    host_path = field(type=str, mandatory=True, invariant=_absolute_path)
    container_path = field(type=str, mandatory=True, invariant=_absolute_path)
    read_only = field(type=bool, initial=False)


class RestartNever(PClass):
    """The container is never restarted when its process exits."""


class RestartAlways(PClass):
    """
    The container is restarted whenever its process exits.

    A container stopped through :meth:`IContainerRuntime.stop` stays
    stopped.
    """


class RestartOnFailure(PClass):
    """
    The container is restarted when its process exits with a non-zero code.

    :ivar maximum_retry_count: After this many restarts it stays exited;
        ``None``: no limit.
    """

    maximum_retry_count = field(
        type=(int, type(None)),
        initial=None,
        invariant=lambda n: (
            n is None or n > 0,
            f"maximum_retry_count must be positive or None: {n!r}",
        ),
    )


RestartPolicy = RestartNever | RestartAlways | RestartOnFailure
_RESTART_POLICIES = (RestartNever, RestartAlways, RestartOnFailure)


def _environment_invariant(environment: PMap[str, str]) -> tuple[bool, str]:
    for key, value in environment.items():
        if not _ENV_NAME.match(key):
            return False, f"not an environment variable name: {key!r}"
        if "\0" in value:
            return False, f"environment value of {key} contains NUL"
    return True, ""


def _command_invariant(command: PVector[str] | None) -> tuple[bool, str]:
    ok = command is None or (
        len(command) > 0 and all(isinstance(a, str) and "\0" not in a for a in command)
    )
    return ok, f"command must be a non-empty list of strings or None: {command!r}"


def _range_or_none(low: int, high: int | None, what: str) -> Any:
    def check(value: int | None) -> tuple[bool, str]:
        ok = value is None or (low <= value and (high is None or value <= high))
        limit = f"{low}..{high}" if high is not None else f">= {low}"
        return ok, f"{what} must be None or {limit}: {value!r}"

    return check


class ContainerSpec(PClass):
    """
    Everything that decides how one application's container is made.

    Two specs are ``==`` exactly when the containers they describe are the
    same; :meth:`IContainerRuntime.list_containers` returns the specs that
    :meth:`IContainerRuntime.create` was given.  A spec that breaks a rule
    below cannot be built (pyrsistent's ``InvariantException``).

    :ivar name: The application name (see :func:`is_valid_name`).
    :ivar image: The image reference, e.g. ``"flocker-test/busybox:1"``.
    :ivar command: The command line (argv, no shell), or ``None`` for the
        image's own command.
    :ivar environment: Environment variables added to the image's.
    :ivar ports: Published ports; no two may clash
        (:meth:`PublishedPort.clashes_with`).
    :ivar volumes: Bind mounts; container paths are distinct.
    :ivar restart_policy: :class:`RestartNever`, :class:`RestartAlways` or
        :class:`RestartOnFailure`.
    :ivar cpu_shares: Relative CPU weight (2–262144) or ``None``: the
        engine's default.
    :ivar memory_limit: Bytes (at least :data:`MINIMUM_MEMORY_LIMIT`) or
        ``None``: no limit.
    :ivar swappiness: How readily the kernel swaps the container's memory
        out (0–100) or ``None``: the engine's default.  Only cgroup v1 has
        it; an engine that discards it makes ``create`` fail with
        :class:`EngineError` rather than run the container without it.
    """

    name = field(
        type=str,
        mandatory=True,
        invariant=lambda n: (is_valid_name(n), f"not a valid container name: {n!r}"),
    )
    image = field(
        type=str,
        mandatory=True,
        invariant=lambda i: (
            bool(i) and not any(c.isspace() for c in i) and "\0" not in i,
            f"not an image reference: {i!r}",
        ),
    )
    command = field(
        type=(PVector, type(None)),
        initial=None,
        factory=lambda v: None if v is None else pvector(v),
        invariant=_command_invariant,
    )
    environment = pmap_field(str, str, invariant=_environment_invariant)
    ports = pset_field(PublishedPort)
    volumes = pset_field(VolumeBind)
    restart_policy = field(type=_RESTART_POLICIES, initial=RestartNever())
    cpu_shares = field(
        type=(int, type(None)),
        initial=None,
        invariant=_range_or_none(*CPU_SHARES_RANGE, "cpu_shares"),
    )
    memory_limit = field(
        type=(int, type(None)),
        initial=None,
        invariant=_range_or_none(MINIMUM_MEMORY_LIMIT, None, "memory_limit"),
    )
    swappiness = field(
        type=(int, type(None)),
        initial=None,
        invariant=_range_or_none(*SWAPPINESS_RANGE, "swappiness"),
    )

    def __invariant__(self) -> tuple[bool, str]:
        """Ports do not clash with each other; container paths are distinct."""
        ports = list(self.ports)
        for index, port in enumerate(ports):
            for other in ports[index + 1 :]:
                if port.clashes_with(other):
                    return False, f"published ports clash: {port} and {other}"
        paths = [volume.container_path for volume in self.volumes]
        if len(set(paths)) != len(paths):
            return False, "two volumes are mounted at one container path"
        return True, ""


class ContainerState(PClass):
    """
    What a container is doing now.

    :ivar running: Its process is running (or being restarted by its
        restart policy).
    :ivar exit_code: The exit code of its last run, or ``None`` if it is
        running or never ran.
    :ivar started_at: When it last started, POSIX seconds, or ``None`` if
        it never started.
    :ivar restart_count: How often the restart policy has restarted it.
    :ivar ports: Internal port → the host port it is published on now, at
        the spec's ``host_ip``, for each published TCP port of a running
        container: a fixed port is its ``external_port``, an ephemeral one
        (``external_port`` 0) the port the engine chose when the container
        last started (a restart may choose another).  UDP ports are not
        reported.  An internal port published more than once (at several
        addresses) maps to the lowest of its host ports.  Empty when the
        container does not run or publishes no TCP port; while the engine
        restarts a container it may lack ports not bound yet.
    """

    running = field(type=bool, mandatory=True)
    exit_code = field(type=(int, type(None)), initial=None)
    started_at = field(type=(float, type(None)), initial=None)
    restart_count = field(type=int, initial=0)
    ports = pmap_field(int, int, invariant=_port_map)

    def __invariant__(self) -> tuple[bool, str]:
        """Only a running container has published ports."""
        return (
            self.running or not self.ports,
            f"a container that does not run publishes no ports: {self.ports}",
        )


# --------------------------------------------------------------------------
# Errors


class ContainerRuntimeError(Exception):
    """The base of every error a runtime reports on purpose."""


class InvalidName(ContainerRuntimeError, ValueError):
    """A container name or node UUID is malformed."""


class UnknownContainer(ContainerRuntimeError):
    """The node owns no container with that name."""

    def __init__(self, name: str) -> None:
        """Name the missing container."""
        self.name = name
        super().__init__(f"no container {name!r} on this node")


class ContainerExists(ContainerRuntimeError):
    """The node already has a container with that name."""

    def __init__(self, name: str) -> None:
        """Name the existing container."""
        self.name = name
        super().__init__(f"container {name!r} already exists")


class ImageNotFound(ContainerRuntimeError):
    """The engine has no image of that name (creating never pulls one)."""

    def __init__(self, image: str) -> None:
        """Name the missing image."""
        self.image = image
        super().__init__(f"no image {image!r} in the engine (it must be pulled first)")


class RegistryCredentials(PClass):
    """
    A user name and password for a registry.

    The password is left out of the ``repr`` (and so of tracebacks and
    logs that show the value).
    """

    username = field(type=str, mandatory=True)
    password = field(type=str, mandatory=True)

    def __repr__(self) -> str:
        """The user name only."""
        return f"RegistryCredentials(username={self.username!r}, password=<hidden>)"

    __str__ = __repr__


class PullProgress(PClass):
    """
    How far a pull has got: layers and bytes done out of those known.

    Totals grow while the engine learns of more layers; a finished pull
    has ``layers_done == layers_total``.
    """

    layers_done = field(type=int, initial=0)
    layers_total = field(type=int, initial=0)
    bytes_done = field(type=int, initial=0)
    bytes_total = field(type=int, initial=0)


class ImagePullFailed(ContainerRuntimeError):
    """
    An image could not be pulled.

    :ivar image: The reference asked for.
    :ivar reason: What the engine or the registry said, on one line.
    """

    def __init__(self, image: str, reason: str) -> None:
        """Name the image and say why, in the registry's words."""
        self.image = image
        self.reason = " ".join(reason.split())
        super().__init__(f"pulling image {image!r} failed: {self.reason}")


class PortInUse(ContainerRuntimeError):
    """A published port is taken (by another container or another process)."""

    def __init__(self, name: str, detail: str) -> None:
        """Name the container that could not start and say what clashed."""
        self.name = name
        self.detail = detail
        super().__init__(f"container {name!r} cannot publish its ports: {detail}")


class EngineError(ContainerRuntimeError):
    """The engine refused an operation for a reason not covered above."""


# --------------------------------------------------------------------------
# The interface


class IContainerRuntime(Interface):
    """
    The containers of one node: create, start, stop, remove, list, inspect.

    Every method returns a Deferred.  A name that is not valid (see
    :func:`is_valid_name`) fails with :class:`InvalidName` before anything
    is done.  A name this node does not own fails with
    :class:`UnknownContainer` (except in :meth:`remove`), even if a
    container of another node has it.  Any method fails with
    :class:`EngineError` when the engine cannot be reached or refuses in a
    way not listed for the method.

    Methods may be called concurrently for different names; calls for one
    name should be serialized by the caller (as a convergence loop does).
    """

    node_uuid: str = Attribute("The UUID of the node whose containers these are.")

    def list_containers() -> Deferred[PSet[ContainerSpec]]:
        """
        The specs of every container this node owns, running or not.

        :return: The values :meth:`create` was given, so that
            ``await list_containers() == desired_specs`` tells whether the
            node runs exactly what is wanted.
        """

    def list_states() -> Deferred[PMap[str, ContainerState]]:
        """
        The state of every container this node owns.

        :return: A map from application name to :class:`ContainerState`,
            with the same names as :meth:`list_containers`.
        """

    def inspect(name: str) -> Deferred[ContainerState]:
        """
        The state of one container.

        :raise UnknownContainer: if this node owns no container ``name``.
        """

    def create(spec: ContainerSpec) -> Deferred[None]:
        """
        Create the container ``spec`` describes and start it.

        Succeeds once the container's process has started.  On failure no
        container is left behind.

        :raise ContainerExists: if this node has a container of that name
            (running or not); the existing one is untouched.
        :raise ImageNotFound: if the engine lacks ``spec.image``.
        :raise PortInUse: if a published port cannot be bound.
        :raise EngineError: if the engine refuses for another reason.
        """

    def start(name: str) -> Deferred[None]:
        """
        Start a stopped container with its recorded spec.

        Starting a running container succeeds and changes nothing.

        :raise UnknownContainer: if this node owns no container ``name``.
        :raise PortInUse: if a published port is now taken; the container
            stays stopped.
        """

    def stop(name: str, timeout: float = 10.0) -> Deferred[None]:
        """
        Stop a container: SIGTERM, then SIGKILL after ``timeout`` seconds.

        The container is kept (with its exit code) until :meth:`remove`; its
        restart policy does not restart it.  Stopping a stopped container
        succeeds and changes nothing.

        :raise UnknownContainer: if this node owns no container ``name``.
        """

    def remove(name: str) -> Deferred[None]:
        """
        Remove a container, killing it first if it runs.

        Idempotent: removing a container this node does not own succeeds
        and does nothing.  Bound host directories are left alone.
        """

    def halt(name: str) -> Deferred[None]:
        """
        Kill a container's processes (SIGKILL) and succeed as soon as none
        of them runs any more: nothing of the container holds its bound
        host directories from then on (a mount under them can be unmounted
        at once), though the engine may still be tidying up after it.

        The container is kept, listed as not running from then on, until
        :meth:`remove`; its restart policy does not restart it.  Halting a
        stopped container, or one this node does not own, succeeds and
        changes nothing.  This is the quick first half of a removal: a
        caller that only needs the container's processes gone (to move its
        data away) halts it, then removes it without waiting.

        :raise EngineError: if the runtime cannot see the container's
            processes end (an engine on another machine); :meth:`remove`
            is then the way to know they are gone.
        """

    def connections(name: str) -> Deferred[int]:
        """
        Count the TCP connections to the published internal ports of
        container ``name`` that are busy now, as its own network sees them:
        whichever way they came (through any node's router, straight to a
        published host port, from another container), each counts while
        the container may still owe something on it: a request received
        and not answered yet (the client sent after the container last
        sent, also once the client half closed), data still in flight
        either way, a connection being set up.  A connection on which
        nothing was received yet counts for :data:`FRESH_CONNECTION`
        seconds after it was opened (its first request may be on its way),
        and no longer once it has stayed silent that long.  An idle
        connection (a kept-alive client's or a pool's, whose last request
        was answered) does not count, nor does one the container itself
        opened elsewhere.  A container that does not run has none.

        :raise UnknownContainer: if this node owns no container ``name``.
        """

    def pull_image(
        image: str,
        credentials: RegistryCredentials | None = None,
        progress: Callable[[PullProgress], object] | None = None,
    ) -> Deferred[None]:
        """
        Pull ``image`` (``[registry/]repository[:tag|@digest]``, ``latest``
        if no tag) from its registry into the engine.

        :param credentials: For a registry that asks for them; they appear
            in no log, error or ``repr``.
        :param progress: Called (in the reactor thread) with the pull's
            `PullProgress` while it runs, at most a few times a second,
            and once at the end.
        :raise ImagePullFailed: with the registry's (or engine's) message
            when the image cannot be pulled: no such repository or tag,
            credentials missing or refused, registry unreachable, or a
            malformed reference.  Nothing else changes.
        """

    def image_exists(image: str) -> Deferred[bool]:
        """
        Tell whether the engine has ``image`` (no pull is tried).

        A malformed reference (empty, with spaces, upper case repository…)
        is an image the engine does not have: ``False``.
        """
