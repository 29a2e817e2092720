"""
The contract every :class:`IContainerRuntime` passes, and test helpers.

:func:`make_icontainerruntime_tests` builds a pytest test class from a
harness factory; each runtime (real and fake) subclasses it in one line.  A
harness makes runtimes for simulated nodes that share one engine, names an
image the engine has and one it lacks, and removes every container it made
afterwards.

Helpers for other packages' tests: :data:`LONG_RUNNING`, a busybox command
that runs until stopped (and stops at once on SIGTERM); :func:`free_port`;
:class:`ImmediateThreadPool`, a thread pool that runs work at once in the
calling thread, for unit tests of thread-pool users.
"""

from __future__ import annotations

import os
import random
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

import pytest
import pytest_twisted
from pyrsistent import pmap, pset
from twisted.internet import reactor
from twisted.internet.task import deferLater
from zope.interface import implementer
from zope.interface.verify import verifyObject

from ._interface import (
    FRESH_CONNECTION,
    NODE_LABEL,
    ContainerExists,
    ContainerSpec,
    IContainerRuntime,
    ImageNotFound,
    ImagePullFailed,
    InvalidName,
    PortInUse,
    PublishedPort,
    PullProgress,
    RegistryCredentials,
    RestartAlways,
    RestartNever,
    RestartOnFailure,
    UnknownContainer,
    VolumeBind,
)
from .memory import MemoryEngine, MemoryRuntime

#: A command that runs until the container is stopped and exits 0 at once
#: on SIGTERM (a shell as PID 1 would otherwise ignore it).
LONG_RUNNING = ("sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait")

#: An image reference no test engine has.
MISSING_IMAGE = "flocker-test/no-such-image:never"

#: Half an HTTP request: a request line without its end, on which busybox
#: ``httpd`` waits.  Given the whole line it answers at once, without
#: waiting for the end of the headers, and closes the connection.
HALF_REQUEST = b"GET / HTTP/1.0"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on at ``host`` now (bound to port 0 and read)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def random_loopback() -> str:
    """A random address in 127.0.0.0/8 (127.0.0.100–127.0.0.250)."""
    return f"127.0.0.{random.randint(100, 250)}"


class ImmediateThreadPool:
    """
    A stand-in for ``twisted.python.threadpool.ThreadPool`` running work at
    once in the calling thread (``deferToThreadPool`` works with it), so a
    unit test's Deferreds have fired when the call returns.
    """

    def callInThreadWithCallback(  # noqa: N802
        self,
        on_result: Callable[[bool, Any], None],
        f: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> None:
        """Call ``f`` and report its result or failure to ``on_result``."""
        from twisted.python.failure import Failure

        try:
            result = f(*args, **kwargs)
        except BaseException:
            on_result(False, Failure())
        else:
            on_result(True, result)


class ImmediateReactor:
    """The ``callFromThread`` part of a reactor, calling at once."""

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:  # noqa: N802
        """Call ``f`` now."""
        f(*args, **kwargs)


@implementer(IContainerRuntime)
class WrappedRuntime:
    """
    A runtime passing everything on to another: a test overrides the
    methods whose behaviour it changes (a create that waits, a count that
    fails…) in a subclass.
    """

    def __init__(self, runtime: IContainerRuntime) -> None:
        """Wrap ``runtime``."""
        self.runtime = runtime

    def __getattr__(self, name: str) -> Any:
        return getattr(self.runtime, name)


# --------------------------------------------------------------------------
# Harnesses


class RuntimeHarness(Protocol):
    """What the contract suite needs beyond the interface."""

    #: An image the engine has.
    image: str
    #: A directory the test may bind-mount.
    directory: str

    def make_runtime(self, node_uuid: str | None = None) -> IContainerRuntime:
        """A runtime for a node (a new random one by default) on the shared engine."""
        ...

    #: The credentials the harness's private registry asks for.
    credentials: RegistryCredentials

    def publish(self, private: bool = False) -> str:
        """
        A new image reference pullable from the harness's registry (the
        private one, asking for `credentials`, if ``private``) and absent
        from the engine.
        """
        ...

    def missing_tag(self) -> str:
        """A reference to a tag never pushed to the public registry."""
        ...

    def connect(
        self, runtime: IContainerRuntime, name: str, host: str, port: int, idle: bool = False
    ) -> Callable[[], None]:
        """
        Open a TCP connection to container ``name``, published at
        ``host:port``; returns what closes it.  A busy one sends half an
        HTTP request (to an ``httpd`` on that port); an ``idle`` one sends
        a line and reads it back (from an echo server on that port).

        :raise OSError: if the connection failed, or the echo did not come.
        """
        ...

    def connect_silently(
        self, runtime: IContainerRuntime, name: str, host: str, port: int
    ) -> tuple[Callable[[], None], Callable[[], None]]:
        """
        Open a TCP connection to container ``name``, published at
        ``host:port``, and send nothing on it; returns what sends half an
        HTTP request on it (to an ``httpd`` on that port), and what closes it.

        :raise OSError: if the connection failed.
        """
        ...


class MemoryHarness:
    """Fake runtimes sharing one :class:`MemoryEngine` with a busybox image."""

    image = "flocker-test/busybox:1"

    def __init__(self, directory: str) -> None:
        """Make the shared engine."""
        self.directory = directory
        self.engine = MemoryEngine(images={self.image})

    def make_runtime(self, node_uuid: str | None = None) -> IContainerRuntime:
        """A :class:`MemoryRuntime` on the shared engine."""
        return MemoryRuntime(
            str(uuid.uuid4()) if node_uuid is None else node_uuid, self.engine
        )

    credentials = RegistryCredentials(username="flocker-test", password="memory-secret")

    def publish(self, private: bool = False) -> str:
        """A new reference in the fake registry."""
        reference = f"registry.test/flocker-test/pull-{uuid.uuid4().hex[:12]}:1"
        self.engine.publish(reference, self.credentials if private else None)
        return reference

    def missing_tag(self) -> str:
        """A tag the fake registry never had."""
        return "registry.test/flocker-test/pull-never:missing"

    def connect(
        self, runtime: IContainerRuntime, name: str, host: str, port: int, idle: bool = False
    ) -> Callable[[], None]:
        """A fake connection (the fake engine has no sockets)."""
        assert isinstance(runtime, MemoryRuntime)
        return runtime.open_connection(name, idle=idle)

    def connect_silently(
        self, runtime: IContainerRuntime, name: str, host: str, port: int
    ) -> tuple[Callable[[], None], Callable[[], None]]:
        """A fake connection on which nothing is sent yet."""
        assert isinstance(runtime, MemoryRuntime)
        return runtime.open_silent_connection(name)


def memory_harness(request: pytest.FixtureRequest) -> MemoryHarness:
    """The contract harness of :class:`MemoryRuntime`."""
    return MemoryHarness(str(request.getfixturevalue("tmp_path")))


def docker_harness(request: pytest.FixtureRequest) -> Any:
    """
    The contract harness of :class:`flocker.runtime.DockerRuntime`.

    Uses the real engine (fixtures ``docker_client`` and ``busybox_image``);
    every container of every node it made is removed after the test.
    """
    import docker.errors
    from twisted.internet import reactor

    from .docker import DockerRuntime

    client = request.getfixturevalue("docker_client")
    labels = request.getfixturevalue("docker_test_labels")
    public_registry, private_registry = request.getfixturevalue("local_registries")

    class DockerHarness:
        image = request.getfixturevalue("busybox_image")
        directory = str(request.getfixturevalue("tmp_path"))
        nodes: list[str] = []
        published: list[str] = []
        credentials = RegistryCredentials(
            username=private_registry.credentials[0],
            password=private_registry.credentials[1],
        )

        def publish(self, private: bool = False) -> str:
            registry = private_registry if private else public_registry
            name = f"flocker-test/pull-{uuid.uuid4().hex[:12]}:1"
            reference: str = registry.push(client, self.image, name)
            self.published.append(reference)
            return reference

        def missing_tag(self) -> str:
            return f"{public_registry.address}/flocker-test/pull-never:missing"

        def connect(
            self,
            runtime: IContainerRuntime,
            name: str,
            host: str,
            port: int,
            idle: bool = False,
        ) -> Callable[[], None]:
            client_socket = socket.create_connection((host, port), timeout=5)
            try:
                if idle:
                    client_socket.sendall(b"ping\n")
                    echoed = b""
                    while not echoed.endswith(b"\n"):
                        chunk = client_socket.recv(100)
                        if not chunk:
                            raise ConnectionResetError("the echo server is not there yet")
                        echoed += chunk
                else:
                    client_socket.sendall(HALF_REQUEST)
            except BaseException:
                client_socket.close()
                raise
            return client_socket.close

        def connect_silently(
            self, runtime: IContainerRuntime, name: str, host: str, port: int
        ) -> tuple[Callable[[], None], Callable[[], None]]:
            client_socket = socket.create_connection((host, port), timeout=5)

            def request() -> None:
                client_socket.sendall(HALF_REQUEST)

            return request, client_socket.close

        def make_runtime(self, node_uuid: str | None = None) -> IContainerRuntime:
            node_uuid = str(uuid.uuid4()) if node_uuid is None else node_uuid
            self.nodes.append(node_uuid)
            return DockerRuntime(
                node_uuid,
                lambda: client,
                reactor.getThreadPool(),  # type: ignore[attr-defined]
                reactor,  # type: ignore[arg-type]
                labels=labels,
            )

    harness = DockerHarness()

    def clean_up() -> None:
        for reference in harness.published:
            try:
                client.images.remove(reference)
            except docker.errors.ImageNotFound:
                pass
        for node in harness.nodes:
            for container in client.containers.list(
                all=True, filters={"label": f"{NODE_LABEL}={node}"}
            ):
                container.remove(force=True, v=True)

    request.addfinalizer(clean_up)
    return harness


# --------------------------------------------------------------------------
# The contract


def full_spec(harness: RuntimeHarness, name: str = "full") -> ContainerSpec:
    """A spec using every field, with a free port on a random loopback address."""
    host = random_loopback()
    data = os.path.join(harness.directory, name + "-data")
    logs = os.path.join(harness.directory, name + "-logs")
    os.makedirs(data, exist_ok=True)
    os.makedirs(logs, exist_ok=True)
    first = free_port(host)
    second = first
    while second == first:
        second = free_port(host)
    return ContainerSpec(
        name=name,
        image=harness.image,
        command=LONG_RUNNING,
        environment={"GREETING": "hello world", "EMPTY": ""},
        ports=[
            PublishedPort(internal_port=80, external_port=first, host_ip=host),
            PublishedPort(internal_port=80, external_port=second, host_ip=host),
        ],
        volumes=[
            VolumeBind(host_path=data, container_path="/data"),
            VolumeBind(host_path=logs, container_path="/logs", read_only=True),
        ],
        restart_policy=RestartOnFailure(maximum_retry_count=3),
        cpu_shares=512,
        memory_limit=32 * 1024 * 1024,
        swappiness=60,
    )


def simple_spec(harness: RuntimeHarness, name: str, **fields: Any) -> ContainerSpec:
    """A running busybox container called ``name`` with ``fields`` added."""
    return ContainerSpec(name=name, image=harness.image, command=LONG_RUNNING, **fields)


def ephemeral(
    host: str, internal_port: int = 80, protocol: str = "tcp"
) -> PublishedPort:
    """``internal_port`` published at ``host`` on a port the engine chooses."""
    return PublishedPort(
        internal_port=internal_port, external_port=0, host_ip=host, protocol=protocol
    )


def fixed_ports(host: str, count: int) -> list[int]:
    """``count`` distinct TCP ports free at ``host`` now."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port(host)
        if port not in ports:
            ports.append(port)
    return ports


async def _eventually(
    runtime: IContainerRuntime, name: str, count: int, seconds: float = 5
) -> bool:
    """
    Whether container ``name`` has ``count`` connections, asked every 0.05
    seconds for ``seconds`` (longer if the counts are slow).
    """
    for _ in range(round(seconds / 0.05)):
        if await runtime.connections(name) == count:
            return True
        await deferLater(reactor, 0.05)
    return False


async def _connected(
    harness: RuntimeHarness, runtime: IContainerRuntime, name: str, host: str, port: int
) -> Callable[[], None]:
    """
    A connection to container ``name`` that it counts (tried again while
    its server starts: an engine's proxy may accept, then drop, a
    connection before the server listens).
    """
    for _ in range(20):
        try:
            close = harness.connect(runtime, name, host, port)
        except OSError:
            await deferLater(reactor, 0.1)
            continue
        if await _eventually(runtime, name, 1):
            return close
        close()
    raise AssertionError(f"no connection to {name} was counted")


async def _idle(
    harness: RuntimeHarness, runtime: IContainerRuntime, name: str, host: str, port: int
) -> Callable[[], None]:
    """An idle connection to container ``name`` (tried again while its echo server starts)."""
    for _ in range(50):
        try:
            return harness.connect(runtime, name, host, port, idle=True)
        except OSError:
            await deferLater(reactor, 0.1)
    raise AssertionError(f"no idle connection to {name} could be made")


async def _seen_fresh(
    harness: RuntimeHarness, runtime: IContainerRuntime, name: str, host: str, port: int
) -> tuple[Callable[[], None], Callable[[], None]]:
    """
    A silent connection to container ``name`` (see
    `RuntimeHarness.connect_silently`) that a count finished less than
    :data:`FRESH_CONNECTION` after it was opened found.  A connection the
    counts did not find in time is closed and another tried, but only
    when the counts were too late to tell (a loaded machine) or it could
    not be made: a count in time that does not find it fails the test.
    """
    for _ in range(10):
        opened = time.monotonic()
        try:
            request, close = harness.connect_silently(runtime, name, host, port)
        except OSError:
            await deferLater(reactor, 0.1)
            continue
        while True:
            count = await runtime.connections(name)
            in_time = time.monotonic() - opened < FRESH_CONNECTION
            if count == 1 and in_time:
                return request, close
            if not in_time:
                break  # too late to tell: try another
            # An engine's proxy may pass the connection on to the container
            # a moment after accepting it.
            await deferLater(reactor, 0.01)
        close()
    raise AssertionError(f"no fresh connection to {name} was counted in time")


def make_icontainerruntime_tests(
    factory: Callable[[pytest.FixtureRequest], RuntimeHarness],
) -> type:
    """
    A test class checking the :class:`IContainerRuntime` contract.

    :param factory: Given the pytest request, returns a harness
        (:class:`RuntimeHarness`); it cleans up through the request.
    """

    class IContainerRuntimeTests:
        """The behaviour every container runtime shares."""

        @pytest.fixture
        def harness(self, request: pytest.FixtureRequest) -> RuntimeHarness:
            """The implementation's harness."""
            return factory(request)

        def test_interface(self, harness: RuntimeHarness) -> None:
            """The runtime provides IContainerRuntime and knows its node."""
            node = str(uuid.uuid4())
            runtime = harness.make_runtime(node)
            assert verifyObject(IContainerRuntime, runtime)
            assert runtime.node_uuid == node

        @pytest.mark.parametrize(
            "node", ["not-a-uuid", "", "6F3B1C1E-0E4B-4C5C-9C1A-6B4B3D2E1F00"]
        )
        def test_bad_node_uuid(self, harness: RuntimeHarness, node: str) -> None:
            """A runtime refuses a node UUID that is not canonical."""
            with pytest.raises(InvalidName):
                harness.make_runtime(node)

        @pytest_twisted.ensureDeferred
        async def test_empty(self, harness: RuntimeHarness) -> None:
            """A new node has no containers."""
            runtime = harness.make_runtime()
            assert await runtime.list_containers() == pset()
            assert dict(await runtime.list_states()) == {}

        @pytest_twisted.ensureDeferred
        async def test_round_trip(self, harness: RuntimeHarness) -> None:
            """list_containers returns exactly the specs that were created."""
            runtime = harness.make_runtime()
            full = full_spec(harness)
            bare = ContainerSpec(name="bare", image=harness.image)
            await runtime.create(full)
            await runtime.create(simple_spec(harness, "simple"))
            await runtime.create(bare)
            assert await runtime.list_containers() == pset(
                [full, simple_spec(harness, "simple"), bare]
            )

        @pytest.mark.parametrize("swappiness", [None, 0, 100])
        @pytest_twisted.ensureDeferred
        async def test_swappiness_recorded(
            self, harness: RuntimeHarness, swappiness: int | None
        ) -> None:
            """Swappiness comes back as it was given: unset, 0 and 100 alike."""
            runtime = harness.make_runtime()
            spec = simple_spec(harness, "app", swappiness=swappiness)
            await runtime.create(spec)
            assert await runtime.list_containers() == pset([spec])

        @pytest.mark.parametrize(
            "policy",
            [
                RestartNever(),
                RestartAlways(),
                RestartOnFailure(),
                RestartOnFailure(maximum_retry_count=5),
            ],
        )
        @pytest_twisted.ensureDeferred
        async def test_restart_policy_recorded(
            self, harness: RuntimeHarness, policy: Any
        ) -> None:
            """Each restart policy comes back as it was given."""
            runtime = harness.make_runtime()
            spec = simple_spec(harness, "app", restart_policy=policy)
            await runtime.create(spec)
            assert await runtime.list_containers() == pset([spec])

        @pytest_twisted.ensureDeferred
        async def test_created_running(self, harness: RuntimeHarness) -> None:
            """A created container runs, has a start time and no exit code."""
            runtime = harness.make_runtime()
            await runtime.create(simple_spec(harness, "app"))
            state = await runtime.inspect("app")
            assert state.running
            assert state.exit_code is None
            assert isinstance(state.started_at, float)
            assert state.restart_count == 0
            assert state.ports == pmap()  # it publishes none
            assert dict(await runtime.list_states()) == {"app": state}

        @pytest_twisted.ensureDeferred
        async def test_stop_and_start(self, harness: RuntimeHarness) -> None:
            """A stopped container is kept with an exit code and starts again."""
            runtime = harness.make_runtime()
            spec = simple_spec(harness, "app", restart_policy=RestartAlways())
            await runtime.create(spec)
            await runtime.stop("app", timeout=5)
            stopped = await runtime.inspect("app")
            assert not stopped.running
            assert isinstance(stopped.exit_code, int)
            assert await runtime.list_containers() == pset([spec])
            await runtime.stop("app")  # again: nothing to do
            assert not (await runtime.inspect("app")).running
            await runtime.start("app")
            assert (await runtime.inspect("app")).running
            await runtime.start("app")  # again: nothing to do
            assert (await runtime.inspect("app")).running

        @pytest_twisted.ensureDeferred
        async def test_remove(self, harness: RuntimeHarness) -> None:
            """Removal of running or stopped containers is final and idempotent."""
            runtime = harness.make_runtime()
            await runtime.create(simple_spec(harness, "one"))
            await runtime.create(simple_spec(harness, "two"))
            await runtime.stop("two")
            await runtime.remove("one")
            await runtime.remove("two")
            await runtime.remove("two")
            await runtime.remove("never-existed")
            assert await runtime.list_containers() == pset()
            with pytest.raises(UnknownContainer):
                await runtime.inspect("one")

        @pytest_twisted.ensureDeferred
        async def test_name_reused_after_remove(self, harness: RuntimeHarness) -> None:
            """After removal a name can be used for a different container."""
            runtime = harness.make_runtime()
            await runtime.create(simple_spec(harness, "app"))
            await runtime.remove("app")
            again = simple_spec(harness, "app", environment={"V": "2"})
            await runtime.create(again)
            assert await runtime.list_containers() == pset([again])

        @pytest_twisted.ensureDeferred
        async def test_halted_container_stays_stopped_until_removed(
            self, harness: RuntimeHarness
        ) -> None:
            """
            A halted container is kept, listed as not running from the
            moment the halt succeeds, and its restart policy does not
            start it again; it is then removed like a stopped one.
            Halting it again, or a container that never existed, does
            nothing.
            """
            runtime = harness.make_runtime()
            spec = simple_spec(harness, "app", restart_policy=RestartAlways())
            await runtime.create(spec)
            await runtime.halt("app")
            assert not (await runtime.inspect("app")).running
            assert not (await runtime.list_states())["app"].running
            assert (await runtime.list_states())["app"].ports == pmap()
            assert await runtime.list_containers() == pset([spec])
            await deferLater(reactor, 1.0)  # long enough for an engine to restart it
            assert not (await runtime.inspect("app")).running
            await runtime.halt("app")
            await runtime.halt("never-existed")
            await runtime.remove("app")
            assert await runtime.list_containers() == pset()

        @pytest_twisted.ensureDeferred
        async def test_halted_container_starts_again(
            self, harness: RuntimeHarness
        ) -> None:
            """A halted container can be started again, as a stopped one can."""
            runtime = harness.make_runtime()
            await runtime.create(simple_spec(harness, "app"))
            await runtime.halt("app")
            await runtime.start("app")
            assert (await runtime.inspect("app")).running

        @pytest_twisted.ensureDeferred
        async def test_exists(self, harness: RuntimeHarness) -> None:
            """Creating a second container of one name fails; the first stays."""
            runtime = harness.make_runtime()
            first = simple_spec(harness, "app")
            await runtime.create(first)
            await runtime.stop("app")
            with pytest.raises(ContainerExists) as caught:
                await runtime.create(
                    simple_spec(harness, "app", environment={"X": "1"})
                )
            assert caught.value.name == "app"
            assert await runtime.list_containers() == pset([first])
            assert not (await runtime.inspect("app")).running

        @pytest_twisted.ensureDeferred
        async def test_unknown(self, harness: RuntimeHarness) -> None:
            """inspect, start and stop of an unknown name fail with UnknownContainer."""
            runtime = harness.make_runtime()
            for call in (runtime.inspect, runtime.start, runtime.stop):
                with pytest.raises(UnknownContainer) as caught:
                    await call("nothing")
                assert caught.value.name == "nothing"

        @pytest.mark.parametrize(
            "name", ["", "-lead", "has space", "slash/name", "x" * 129, "ü", "a:b"]
        )
        @pytest_twisted.ensureDeferred
        async def test_invalid_name(self, harness: RuntimeHarness, name: str) -> None:
            """Every method taking a name refuses an invalid one."""
            runtime = harness.make_runtime()
            for call in (runtime.inspect, runtime.start, runtime.stop, runtime.remove):
                with pytest.raises(InvalidName):
                    await call(name)

        @pytest_twisted.ensureDeferred
        async def test_missing_image(self, harness: RuntimeHarness) -> None:
            """A missing image fails creation at once, leaving nothing behind."""
            runtime = harness.make_runtime()
            assert await runtime.image_exists(harness.image)
            assert not await runtime.image_exists(MISSING_IMAGE)
            spec = ContainerSpec(name="app", image=MISSING_IMAGE)
            with pytest.raises(ImageNotFound) as caught:
                await runtime.create(spec)
            assert caught.value.image == MISSING_IMAGE
            assert await runtime.list_containers() == pset()

        @pytest.mark.parametrize("image", ["", "has space", "UPPER/case:1", "a:b:c"])
        @pytest_twisted.ensureDeferred
        async def test_malformed_image(
            self, harness: RuntimeHarness, image: str
        ) -> None:
            """A malformed image reference is an image the engine lacks."""
            runtime = harness.make_runtime()
            assert await runtime.image_exists(image) is False

        @pytest_twisted.ensureDeferred
        async def test_pull_makes_the_image_available(
            self, harness: RuntimeHarness
        ) -> None:
            """
            A pulled image is in the engine afterwards, a container can be
            made from it, and the last progress reported is a finished pull.
            """
            runtime = harness.make_runtime()
            reference = harness.publish()
            assert not await runtime.image_exists(reference)
            reported: list[PullProgress] = []
            await runtime.pull_image(reference, progress=reported.append)
            assert await runtime.image_exists(reference)
            last = reported[-1]
            assert last.layers_done == last.layers_total
            await runtime.create(ContainerSpec(name="pulled", image=reference, command=LONG_RUNNING))
            assert (await runtime.inspect("pulled")).running

        @pytest_twisted.ensureDeferred
        async def test_pull_from_a_private_registry_needs_its_credentials(
            self, harness: RuntimeHarness
        ) -> None:
            """
            A private registry's image is pulled with its credentials; with
            none or wrong ones the pull fails saying so, and the password
            appears in no error.
            """
            runtime = harness.make_runtime()
            reference = harness.publish(private=True)
            right = harness.credentials
            wrong = right.set(password="not-" + right.password)
            for credentials in (None, wrong):
                with pytest.raises(ImagePullFailed) as caught:
                    await runtime.pull_image(reference, credentials)
                reason = caught.value.reason.lower()
                assert any(w in reason for w in ("auth", "credentials")), reason
                assert right.password not in str(caught.value)
                assert not await runtime.image_exists(reference)
            await runtime.pull_image(reference, right)
            assert await runtime.image_exists(reference)
            assert right.password not in repr(right)

        @pytest_twisted.ensureDeferred
        async def test_pull_of_a_missing_tag_says_so(self, harness: RuntimeHarness) -> None:
            """A tag the registry lacks fails the pull in the registry's words."""
            runtime = harness.make_runtime()
            reference = harness.missing_tag()
            with pytest.raises(ImagePullFailed) as caught:
                await runtime.pull_image(reference)
            assert caught.value.image == reference
            assert "manifest unknown" in caught.value.reason
            assert not await runtime.image_exists(reference)

        @pytest.mark.parametrize(
            "reference", ["", "has space", "127.0.0.1:1/flocker-test/nobody-listens:1"]
        )
        @pytest_twisted.ensureDeferred
        async def test_pull_that_cannot_work_fails_cleanly(
            self, harness: RuntimeHarness, reference: str
        ) -> None:
            """A malformed reference or an unreachable registry fails the pull."""
            runtime = harness.make_runtime()
            with pytest.raises(ImagePullFailed) as caught:
                await runtime.pull_image(reference)
            assert caught.value.reason

        @pytest_twisted.ensureDeferred
        async def test_longest_name(self, harness: RuntimeHarness) -> None:
            """A name of the maximum length works throughout."""
            runtime = harness.make_runtime()
            spec = simple_spec(harness, "n" + "x" * 127)
            await runtime.create(spec)
            assert await runtime.list_containers() == pset([spec])
            await runtime.stop(spec.name)
            await runtime.remove(spec.name)
            assert await runtime.list_containers() == pset()

        @pytest_twisted.ensureDeferred
        async def test_other_nodes_invisible(self, harness: RuntimeHarness) -> None:
            """A node sees, stops and removes only its own containers."""
            one = harness.make_runtime()
            two = harness.make_runtime()
            mine = simple_spec(harness, "app", environment={"NODE": "one"})
            theirs = simple_spec(harness, "app", environment={"NODE": "two"})
            await one.create(mine)
            await two.create(theirs)
            await two.create(simple_spec(harness, "other"))
            assert await one.list_containers() == pset([mine])
            assert set(await one.list_states()) == {"app"}
            with pytest.raises(UnknownContainer):
                await one.stop("other")
            await one.remove("other")
            await one.remove("app")
            assert await one.list_containers() == pset()
            assert (await two.inspect("other")).running
            assert (await two.inspect("app")).running

        @pytest_twisted.ensureDeferred
        async def test_port_clash(self, harness: RuntimeHarness) -> None:
            """A port another node's running container publishes is refused."""
            host = random_loopback()
            port = PublishedPort(
                internal_port=80, external_port=free_port(host), host_ip=host
            )
            one = harness.make_runtime()
            two = harness.make_runtime()
            await one.create(simple_spec(harness, "web", ports=[port]))
            with pytest.raises(PortInUse) as caught:
                await two.create(simple_spec(harness, "web2", ports=[port]))
            assert caught.value.name == "web2"
            assert await two.list_containers() == pset()

        @pytest_twisted.ensureDeferred
        async def test_same_port_other_address(self, harness: RuntimeHarness) -> None:
            """Nodes on different addresses publish the same port number."""
            port = free_port("127.0.0.1")
            one = harness.make_runtime()
            two = harness.make_runtime()
            for runtime, host in ((one, "127.0.0.1"), (two, random_loopback())):
                await runtime.create(
                    simple_spec(
                        harness,
                        "web",
                        ports=[
                            PublishedPort(
                                internal_port=80, external_port=port, host_ip=host
                            )
                        ],
                    )
                )
            assert (await one.inspect("web")).running
            assert (await two.inspect("web")).running

        @pytest_twisted.ensureDeferred
        async def test_start_port_taken(self, harness: RuntimeHarness) -> None:
            """A stopped container whose port was taken meanwhile stays stopped."""
            host = random_loopback()
            port = PublishedPort(
                internal_port=80, external_port=free_port(host), host_ip=host
            )
            runtime = harness.make_runtime()
            await runtime.create(simple_spec(harness, "first", ports=[port]))
            await runtime.stop("first")
            await runtime.create(simple_spec(harness, "second", ports=[port]))
            with pytest.raises(PortInUse):
                await runtime.start("first")
            assert not (await runtime.inspect("first")).running
            assert (await runtime.inspect("second")).running

        @pytest_twisted.ensureDeferred
        async def test_ephemeral_port_round_trip(self, harness: RuntimeHarness) -> None:
            """
            A spec with an ephemeral port (external port 0) lists back as
            created, 0 and all, whichever port the engine chose, also after
            a stop and a start.
            """
            runtime = harness.make_runtime()
            host = random_loopback()
            spec = simple_spec(
                harness,
                "web",
                ports=[
                    ephemeral(host),
                    ephemeral(host, 81),
                    ephemeral(host, 53, "udp"),
                ],
            )
            await runtime.create(spec)
            assert await runtime.list_containers() == pset([spec])
            await runtime.stop("web")
            await runtime.start("web")
            assert await runtime.list_containers() == pset([spec])

        @pytest_twisted.ensureDeferred
        async def test_ephemeral_ports_chosen(self, harness: RuntimeHarness) -> None:
            """
            A running container's ephemeral port is published on a host port
            the engine chose, which its state reports; two containers (of one
            node or two, at one address) get different ones.
            """
            host = random_loopback()
            one = harness.make_runtime()
            two = harness.make_runtime()
            await one.create(simple_spec(harness, "web", ports=[ephemeral(host)]))
            await one.create(simple_spec(harness, "api", ports=[ephemeral(host, 81)]))
            await two.create(simple_spec(harness, "web", ports=[ephemeral(host)]))
            states = await one.list_states()
            theirs = await two.list_states()
            assert set(states["web"].ports) == {80}
            assert set(states["api"].ports) == {81}
            assert set(theirs["web"].ports) == {80}
            chosen = [
                states["web"].ports[80],
                states["api"].ports[81],
                theirs["web"].ports[80],
            ]
            assert all(0 < port < 65536 for port in chosen), chosen
            assert len(set(chosen)) == 3, chosen
            assert await one.inspect("web") == states["web"]

        @pytest_twisted.ensureDeferred
        async def test_fixed_ports_reported_as_themselves(
            self, harness: RuntimeHarness
        ) -> None:
            """
            A fixed port is reported as its external port; an internal port
            published twice is reported on the lower of its host ports.
            """
            host = random_loopback()
            first, second, third = fixed_ports(host, 3)
            runtime = harness.make_runtime()
            await runtime.create(
                simple_spec(
                    harness,
                    "web",
                    ports=[
                        PublishedPort(internal_port=i, external_port=p, host_ip=host)
                        for i, p in ((80, first), (80, second), (81, third))
                    ],
                )
            )
            state = await runtime.inspect("web")
            assert state.ports == pmap({80: min(first, second), 81: third})

        @pytest_twisted.ensureDeferred
        async def test_udp_ports_not_reported(self, harness: RuntimeHarness) -> None:
            """Only TCP ports are reported, though UDP ones are published too."""
            host = random_loopback()
            runtime = harness.make_runtime()
            await runtime.create(
                simple_spec(
                    harness,
                    "dns",
                    ports=[
                        ephemeral(host, 53, "udp"),
                        ephemeral(host, 54, "udp"),
                        ephemeral(host, 54),
                    ],
                )
            )
            state = await runtime.inspect("dns")
            assert set(state.ports) == {54}

        @pytest_twisted.ensureDeferred
        async def test_stopped_publishes_no_ports(
            self, harness: RuntimeHarness
        ) -> None:
            """
            A stopped container reports no ports; started again it reports
            the ports it publishes now (its fixed port unchanged).
            """
            host = random_loopback()
            (port,) = fixed_ports(host, 1)
            runtime = harness.make_runtime()
            fixed = PublishedPort(internal_port=81, external_port=port, host_ip=host)
            await runtime.create(
                simple_spec(harness, "web", ports=[ephemeral(host), fixed])
            )
            await runtime.stop("web")
            stopped = await runtime.inspect("web")
            assert stopped.ports == pmap()
            assert (await runtime.list_states())["web"].ports == pmap()
            await runtime.start("web")
            started = await runtime.inspect("web")
            assert set(started.ports) == {80, 81}
            assert started.ports[81] == port
            assert started.ports[80] not in (0, port)

        @pytest_twisted.ensureDeferred
        async def test_connections_to_published_ports_are_counted(
            self, harness: RuntimeHarness
        ) -> None:
            """
            A connection to a container's published port on which it owes an
            answer (half a request) counts while it is open and no longer
            once closed; an idle one (its last request answered) does not;
            a container connected to by nothing, or stopped, has none; an
            unknown one is refused.
            """
            runtime = harness.make_runtime()
            host = random_loopback()
            await runtime.create(
                ContainerSpec(
                    name="web",
                    image=harness.image,
                    command=["sh", "-c", "nc -ll -p 81 -e cat & exec httpd -f -p 80"],
                    ports=[ephemeral(host), ephemeral(host, 81)],
                )
            )
            assert await runtime.connections("web") == 0
            ports = (await runtime.inspect("web")).ports
            close = await _connected(harness, runtime, "web", host, ports[80])
            close_idle = await _idle(harness, runtime, "web", host, ports[81])
            try:
                assert await runtime.connections("web") == 1
            finally:
                close()
            assert await _eventually(runtime, "web", 0)
            close_idle()
            close = await _connected(harness, runtime, "web", host, ports[80])
            await runtime.stop("web", timeout=0)
            close()
            assert await runtime.connections("web") == 0
            with pytest.raises(UnknownContainer):
                await runtime.connections("nothing")

        @pytest_twisted.ensureDeferred
        async def test_a_silent_connection_counts_only_while_fresh(
            self, harness: RuntimeHarness
        ) -> None:
            """
            A connection just opened on which nothing was received yet counts
            (its first request may be on its way); once it has stayed silent
            for FRESH_CONNECTION seconds it no longer does, until a request
            comes on it.
            """
            runtime = harness.make_runtime()
            host = random_loopback()
            await runtime.create(
                ContainerSpec(
                    name="web",
                    image=harness.image,
                    command=["httpd", "-f", "-p", "80"],
                    ports=[ephemeral(host)],
                )
            )
            port = (await runtime.inspect("web")).ports[80]
            # The server listens once a connection on which it owes counts.
            (await _connected(harness, runtime, "web", host, port))()
            assert await _eventually(runtime, "web", 0)
            request, close = await _seen_fresh(harness, runtime, "web", host, port)
            try:
                assert await _eventually(
                    runtime, "web", 0, seconds=FRESH_CONNECTION + 10
                )
                request()
                assert await _eventually(runtime, "web", 1)
            finally:
                close()
            assert await _eventually(runtime, "web", 0)

        @pytest_twisted.ensureDeferred
        async def test_ephemeral_port_is_held(self, harness: RuntimeHarness) -> None:
            """
            The host port chosen for a running container is taken: another
            container asking for it as a fixed port at that address is
            refused with PortInUse.
            """
            host = random_loopback()
            one = harness.make_runtime()
            two = harness.make_runtime()
            await one.create(simple_spec(harness, "web", ports=[ephemeral(host)]))
            chosen = (await one.inspect("web")).ports[80]
            taking = PublishedPort(internal_port=80, external_port=chosen, host_ip=host)
            with pytest.raises(PortInUse):
                await two.create(simple_spec(harness, "web", ports=[taking]))
            assert await two.list_containers() == pset()
            assert (await one.inspect("web")).ports[80] == chosen

    return IContainerRuntimeTests
