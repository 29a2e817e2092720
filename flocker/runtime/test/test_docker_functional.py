"""
DockerRuntime on the real engine beyond the contract: processes really run,
bind mounts carry data, published ports (fixed or chosen by the engine)
answer, restart policies act, the counter test image serves and keeps its
count, pulls report what they download.
"""

from __future__ import annotations

import os
import time
from typing import Any

import docker
import pytest
import pytest_twisted
import treq
from pyrsistent import pset
from twisted.internet import reactor
from twisted.internet.task import deferLater

from flocker.common import loop_until

from .. import (
    ContainerSpec,
    ContainerState,
    EngineError,
    IContainerRuntime,
    PublishedPort,
    RegistryCredentials,
    RestartAlways,
    RestartNever,
    RestartOnFailure,
    VolumeBind,
    container_name,
)
from ..testimages import COUNTER_PORT, counter_spec, ensure_counter_image
from ..testtools import docker_harness, free_port, random_loopback

pytestmark = pytest.mark.functional

#: Up to 60 s of polling in 0.1 s steps.
STEPS = [0.1] * 600


@pytest.fixture
def harness(request: pytest.FixtureRequest) -> Any:
    """The Docker harness: runtimes whose containers go after the test."""
    return docker_harness(request)


async def _exited(runtime: IContainerRuntime, name: str) -> ContainerState:
    """Wait until container ``name`` has stopped for good; its state."""

    async def check() -> Any:
        state = await runtime.inspect(name)
        return None if state.running else state

    return await loop_until(reactor, check, STEPS)


async def _get(url: str) -> bytes:
    """The body of the first successful GET of ``url`` (retrying until served)."""

    async def attempt() -> Any:
        try:
            response = await treq.get(url, timeout=5)
            if response.code != 200:
                return None
            return await response.content()
        except Exception:
            return None

    return await loop_until(reactor, attempt, STEPS)


@pytest_twisted.ensureDeferred
async def test_bind_mount_written(harness: Any, tmp_path: Any) -> None:
    """A container writes into a bind-mounted directory, with its environment."""
    runtime = harness.make_runtime()
    await runtime.create(
        ContainerSpec(
            name="writer",
            image=harness.image,
            command=["sh", "-c", 'echo "$GREETING" > /data/out.txt'],
            environment={"GREETING": "hello from flocker"},
            volumes=[VolumeBind(host_path=str(tmp_path), container_path="/data")],
        )
    )
    state = await _exited(runtime, "writer")
    assert state.exit_code == 0
    assert (tmp_path / "out.txt").read_text() == "hello from flocker\n"


@pytest_twisted.ensureDeferred
async def test_read_only_bind(harness: Any, tmp_path: Any) -> None:
    """A read-only bind mount refuses writes from inside the container."""
    runtime = harness.make_runtime()
    await runtime.create(
        ContainerSpec(
            name="writer",
            image=harness.image,
            command=["sh", "-c", "echo no > /data/out.txt"],
            volumes=[
                VolumeBind(
                    host_path=str(tmp_path), container_path="/data", read_only=True
                )
            ],
        )
    )
    state = await _exited(runtime, "writer")
    assert state.exit_code != 0
    assert not (tmp_path / "out.txt").exists()


@pytest_twisted.ensureDeferred
async def test_published_port(harness: Any, tmp_path: Any) -> None:
    """A port published on a loopback address reaches the container's server."""
    (tmp_path / "index.html").write_text("served by busybox\n")
    host = random_loopback()
    port = free_port(host)
    runtime = harness.make_runtime()
    await runtime.create(
        ContainerSpec(
            name="web",
            image=harness.image,
            command=["httpd", "-f", "-p", "8080", "-h", "/www"],
            ports=[PublishedPort(internal_port=8080, external_port=port, host_ip=host)],
            volumes=[VolumeBind(host_path=str(tmp_path), container_path="/www")],
        )
    )
    body = await _get(f"http://{host}:{port}/index.html")
    assert body == b"served by busybox\n"


@pytest_twisted.ensureDeferred
async def test_restart_on_failure(harness: Any) -> None:
    """A failing container is restarted up to the limit, then stays exited."""
    runtime = harness.make_runtime()
    await runtime.create(
        ContainerSpec(
            name="failing",
            image=harness.image,
            command=["sh", "-c", "exit 3"],
            restart_policy=RestartOnFailure(maximum_retry_count=2),
        )
    )

    async def done() -> Any:
        state = await runtime.inspect("failing")
        return state if state.restart_count == 2 and not state.running else None

    state: ContainerState = await loop_until(reactor, done, STEPS)
    assert state.exit_code == 3


@pytest_twisted.ensureDeferred
async def test_restart_never(harness: Any) -> None:
    """With RestartNever an exited container stays exited."""
    runtime = harness.make_runtime()
    await runtime.create(
        ContainerSpec(
            name="once",
            image=harness.image,
            command=["sh", "-c", "exit 4"],
            restart_policy=RestartNever(),
        )
    )
    state = await _exited(runtime, "once")
    assert (state.exit_code, state.restart_count) == (4, 0)


@pytest_twisted.ensureDeferred
async def test_restart_always(harness: Any) -> None:
    """RestartAlways restarts even a clean exit; a stop is not undone."""
    runtime = harness.make_runtime()
    await runtime.create(
        ContainerSpec(
            name="looping",
            image=harness.image,
            command=["sh", "-c", "sleep 0.2; exit 0"],
            restart_policy=RestartAlways(),
        )
    )

    async def restarted() -> Any:
        return (await runtime.inspect("looping")).restart_count >= 2

    await loop_until(reactor, restarted, STEPS)
    await runtime.stop("looping", timeout=5)
    assert not (await runtime.inspect("looping")).running


def _processes_of(container_id: str) -> list[int]:
    """The processes on this machine in the container's control group."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cgroup") as cgroup:
                if container_id in cgroup.read():
                    found.append(int(entry))
        except OSError:
            continue  # ended meanwhile
    return found


@pytest_twisted.ensureDeferred
async def test_halt_succeeds_once_every_process_of_the_container_ended(
    harness: Any, docker_client: Any
) -> None:
    """
    When ``halt`` succeeds, no process of the container is left on this
    machine, a child of its main process included, and the container is
    reported stopped even if the Engine has not caught up yet.
    """
    runtime = harness.make_runtime()
    await runtime.create(
        ContainerSpec(
            name="pair",
            image=harness.image,
            command=["sh", "-c", "sleep 1000 & sleep 1000"],
            restart_policy=RestartAlways(),
        )
    )
    container_id = docker_client.containers.get(
        container_name(runtime.node_uuid, "pair")
    ).id

    async def both_running() -> Any:
        return len(_processes_of(container_id)) >= 2  # the two sleeps (sh may exec one)

    await loop_until(reactor, both_running, STEPS)
    await runtime.halt("pair")
    assert _processes_of(container_id) == []
    assert not (await runtime.inspect("pair")).running
    await deferLater(reactor, 1.5, lambda: None)  # long enough for a restart
    engine = docker_client.containers.get(container_id).attrs
    assert engine["State"]["Status"] == "exited" and engine["RestartCount"] == 0
    assert engine["HostConfig"]["RestartPolicy"]["Name"] == "no"


@pytest_twisted.ensureDeferred
async def test_a_listed_container_without_a_restart_policy_is_halted_at_once(
    harness: Any, docker_client: Any
) -> None:
    """
    A container without a restart policy, in a listing still fresh, is
    killed without first asking the Engine to set a policy aside (nothing
    would start it again): no ``update`` reaches the Engine, and every
    process of the container is gone when the halt succeeds.
    """
    runtime = harness.make_runtime()
    await runtime.create(
        ContainerSpec(name="plain", image=harness.image, command=["sleep", "1000"])
    )
    container_id = docker_client.containers.get(container_name(runtime.node_uuid, "plain")).id
    since = int(time.time()) - 1
    await runtime.list_containers()
    await runtime.halt("plain")
    assert _processes_of(container_id) == []
    assert not (await runtime.inspect("plain")).running
    updates = docker_client.events(
        since=since,
        until=int(time.time()) + 1,
        filters={"container": container_id, "event": "update"},
        decode=True,
    )
    assert list(updates) == []


@pytest_twisted.ensureDeferred
async def test_a_halted_container_started_again_gets_its_restart_policy_back(
    harness: Any, docker_client: Any
) -> None:
    """
    The halt sets the container's restart policy aside (so that nothing
    starts it again); started again, it has its own policy back.
    """
    runtime = harness.make_runtime()
    await runtime.create(
        ContainerSpec(
            name="back",
            image=harness.image,
            command=["sleep", "1000"],
            restart_policy=RestartAlways(),
        )
    )
    await runtime.halt("back")
    await runtime.start("back")
    assert (await runtime.inspect("back")).running
    engine = docker_client.containers.get(container_name(runtime.node_uuid, "back")).attrs
    assert engine["HostConfig"]["RestartPolicy"]["Name"] == "always"


@pytest_twisted.ensureDeferred
async def test_a_container_its_policy_is_restarting_is_not_halted(
    harness: Any, docker_client: Any
) -> None:
    """
    A container waiting to be started again by its restart policy cannot
    be halted (EngineError: only a removal stops it for good).
    """
    runtime = harness.make_runtime()
    await runtime.create(
        ContainerSpec(
            name="flapping",
            image=harness.image,
            command=["sh", "-c", "sleep 0.2; exit 1"],
            restart_policy=RestartAlways(),
        )
    )
    engine_name = container_name(runtime.node_uuid, "flapping")

    async def restarting() -> Any:
        return docker_client.containers.get(engine_name).attrs["State"]["Restarting"]

    await loop_until(reactor, restarting, [0.01] * 6000)
    with pytest.raises(EngineError):
        await runtime.halt("flapping")


@pytest_twisted.ensureDeferred
async def test_counter_image(harness: Any, docker_client: Any, tmp_path: Any) -> None:
    """
    The counter image answers each request with the running count, keeps
    every request in its data directory, and continues the count in a new
    container on the same data.
    """
    image = ensure_counter_image(docker_client)
    host = random_loopback()
    port = free_port(host)
    runtime = harness.make_runtime()
    spec = counter_spec("counter", str(tmp_path), port, host_ip=host, image=image)
    await runtime.create(spec)
    url = f"http://{host}:{port}/"
    assert await _get(url + "?first") == b"1\n"
    for n in range(2, 6):
        response = await treq.get(f"{url}?write-{n}", timeout=5)
        assert (response.code, await response.content()) == (200, f"{n}\n".encode())
    response = await treq.post(url, data=b"posted body", timeout=5)
    assert await response.content() == b"6\n"
    await runtime.stop("counter")
    assert (await runtime.inspect("counter")).exit_code == 0
    await runtime.remove("counter")
    await runtime.create(spec)
    assert await _get(url + "?after-restart") == b"7\n"
    lines = (tmp_path / "requests.log").read_text().splitlines()
    expected = ["first", "write-2", "write-3", "write-4", "write-5", "posted body"]
    assert lines == [*expected, "after-restart"]


@pytest_twisted.ensureDeferred
async def test_ephemeral_port_answers(
    harness: Any, docker_client: Any, tmp_path: Any
) -> None:
    """
    A container publishing its port on one the engine chooses answers at
    its address on the port its state reports, and after a stop and a start
    on the port reported then (the engine may have chosen another).
    """
    image = ensure_counter_image(docker_client)
    host = random_loopback()
    runtime = harness.make_runtime()
    spec = counter_spec("counter", str(tmp_path), 0, host_ip=host, image=image)
    await runtime.create(spec)
    port = (await runtime.inspect("counter")).ports[COUNTER_PORT]
    assert await _get(f"http://{host}:{port}/?first") == b"1\n"
    await runtime.stop("counter")
    await runtime.start("counter")
    again = (await runtime.list_states())["counter"].ports[COUNTER_PORT]
    assert await _get(f"http://{host}:{again}/?second") == b"2\n"
    assert await runtime.list_containers() == pset([spec])


@pytest_twisted.ensureDeferred
async def test_counter_without_data(
    harness: Any, docker_client: Any, tmp_path: Any
) -> None:
    """The counter answers 500 when its data directory does not exist."""
    image = ensure_counter_image(docker_client)
    host = random_loopback()
    port = free_port(host)
    runtime = harness.make_runtime()
    spec = counter_spec("counter", str(tmp_path), port, host_ip=host, image=image)
    await runtime.create(
        spec.set(environment={"COUNTER_FILE": "/nowhere/requests.log"})
    )

    async def answered() -> Any:
        try:
            return (await treq.get(f"http://{host}:{port}/", timeout=5)).code
        except Exception:
            return None

    assert await loop_until(reactor, answered, STEPS) == 500
    assert os.listdir(tmp_path) == []


@pytest_twisted.ensureDeferred
async def test_limits_applied(harness: Any, tmp_path: Any) -> None:
    """The memory limit and CPU shares reach the container's cgroups (v1)."""
    runtime = harness.make_runtime()
    await runtime.create(
        ContainerSpec(
            name="limited",
            image=harness.image,
            command=[
                "sh",
                "-c",
                "cat /sys/fs/cgroup/memory/memory.limit_in_bytes"
                " /sys/fs/cgroup/cpu/cpu.shares > /data/limits",
            ],
            volumes=[VolumeBind(host_path=str(tmp_path), container_path="/data")],
            cpu_shares=512,
            memory_limit=32 * 1024 * 1024,
        )
    )
    state = await _exited(runtime, "limited")
    assert state.exit_code == 0
    assert (tmp_path / "limits").read_text().split() == [str(32 * 1024 * 1024), "512"]


@pytest_twisted.ensureDeferred
async def test_swappiness_applied(harness: Any, tmp_path: Any) -> None:
    """
    Swappiness is the engine's ``HostConfig.MemorySwappiness`` and reaches
    the container's memory cgroup (v1).
    """
    runtime = harness.make_runtime()
    await runtime.create(
        ContainerSpec(
            name="swapping",
            image=harness.image,
            command=[
                "sh",
                "-c",
                "cat /sys/fs/cgroup/memory/memory.swappiness > /data/swappiness",
            ],
            volumes=[VolumeBind(host_path=str(tmp_path), container_path="/data")],
            swappiness=7,
        )
    )
    state = await _exited(runtime, "swapping")
    assert state.exit_code == 0
    assert (tmp_path / "swappiness").read_text().split() == ["7"]
    engine = docker.from_env()
    try:
        record = engine.api.inspect_container(
            container_name(runtime.node_uuid, "swapping")
        )
    finally:
        engine.close()
    assert record["HostConfig"]["MemorySwappiness"] == 7


def _fresh_image(client: Any) -> str:
    """An image with a layer the engine has nowhere else (random content)."""
    import io
    import tarfile

    data = os.urandom(256 * 1024)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("random.bin")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    repository = f"flocker-test/fresh-{os.urandom(4).hex()}"
    client.api.import_image_from_data(buffer.getvalue(), repository=repository, tag="1")
    return f"{repository}:1"


@pytest_twisted.ensureDeferred
async def test_pull_reports_the_layers_and_bytes_it_downloads(
    harness: Any, docker_client: Any, local_registries: Any, eliot_logger: Any
) -> None:
    """
    A pull that downloads a layer reports it, bytes included, and its log
    says whether credentials were given but never which.
    """
    _, private = local_registries
    image = _fresh_image(docker_client)
    reference = private.push(docker_client, image, image)
    docker_client.images.remove(image)  # the engine keeps the layer no more
    username, password = private.credentials
    runtime = harness.make_runtime()
    reported: list[Any] = []
    try:
        await runtime.pull_image(
            reference, RegistryCredentials(username=username, password=password),
            reported.append,
        )  # fmt: skip
    finally:
        docker_client.images.remove(reference)
    last = reported[-1]
    assert last.layers_total >= 1 and last.layers_done == last.layers_total
    assert last.bytes_total > 0 and last.bytes_done == last.bytes_total
    logged = repr(eliot_logger.messages)
    assert password not in logged and reference in logged
