"""
DockerAdapter counts a container's connections from the listing a discovery
just made when it can, on the real engine: it asks the Engine nothing more,
and never reads the sockets of a process that is not (or no longer) the
container's.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

import attrs
import pytest

from .. import ContainerSpec, DockerAdapter, container_name
from ..testtools import HALF_REQUEST, ephemeral, random_loopback

pytestmark = pytest.mark.functional


@attrs.define
class _CountingContainers:
    """The SDK's container collection, noting each container inspected."""

    containers: Any
    inspected: list[str]

    def get(self, container_id: str) -> Any:
        """Inspect ``container_id``, noting it."""
        self.inspected.append(container_id)
        return self.containers.get(container_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.containers, name)


@attrs.define
class _CountingClient:
    """A Docker client noting the containers inspected through it."""

    client: Any
    inspected: list[str] = attrs.field(factory=list)

    @property
    def containers(self) -> _CountingContainers:
        """The client's containers, inspections noted."""
        return _CountingContainers(self.client.containers, self.inspected)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


@attrs.define
class _Still:
    """A monotonic clock that moves only when told: a listing stays reusable."""

    now: float = 0.0

    def __call__(self) -> float:
        """The time now."""
        return self.now


@attrs.define
class _Web:
    """A node's adapter, counting inspections, with an httpd container ``web``."""

    adapter: DockerAdapter
    client: _CountingClient
    docker: Any
    host: str

    def container(self) -> Any:
        """The engine's container ``web``."""
        return self.docker.containers.get(container_name(self.adapter.node_uuid, "web"))

    def port(self) -> int:
        """The host port ``web``'s internal port 80 is published on now."""
        return self.adapter.inspect("web").ports[80]

    def busy(self) -> Callable[[], None]:
        """
        A connection on which ``web`` owes an answer (half a request),
        once it counts; what closes it.
        """
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                client = socket.create_connection((self.host, self.port()), timeout=5)
            except OSError:
                time.sleep(0.05)
                continue
            client.sendall(HALF_REQUEST)
            if _eventually(lambda: self.adapter.connections("web") == 1):
                return client.close
            client.close()  # dropped by the engine's proxy: httpd not up yet
        raise AssertionError("no connection to web was counted")


def _eventually(check: Callable[[], bool], seconds: float = 10) -> bool:
    """Whether ``check`` holds within ``seconds`` (polled)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def web(docker_client: Any, docker_test_labels: dict[str, str], busybox_image: str) -> _Web:
    """A running httpd container ``web`` of a new node, and its adapter."""
    client = _CountingClient(docker_client)
    adapter = DockerAdapter(
        str(uuid.uuid4()), lambda: client, docker_test_labels, monotonic=_Still()
    )
    host = random_loopback()
    adapter.create(
        ContainerSpec(
            name="web",
            image=busybox_image,
            command=["httpd", "-f", "-p", "80"],
            ports=[ephemeral(host)],
        )
    )
    return _Web(adapter, client, docker_client, host)


def test_a_fresh_listing_saves_the_inspection(web: _Web) -> None:
    """
    Counted just after a listing (as a discovery counts its stopping
    instances), the connections to a running container are counted from
    the listed process and ports, with no further Engine request.
    """
    close = web.busy()
    try:
        web.adapter.list_states()
        web.client.inspected.clear()
        assert web.adapter.connections("web") == 1
        assert web.client.inspected == []
    finally:
        close()


def test_a_process_gone_since_the_listing_is_inspected_afresh(web: _Web) -> None:
    """
    When the listed process is gone (the container was restarted behind
    the adapter's back), the container is inspected once more and its new
    process's connections count.
    """
    web.adapter.list_states()
    web.container().restart(timeout=0)
    close = web.busy()
    try:
        web.client.inspected.clear()
        assert web.adapter.connections("web") == 1
        assert len(web.client.inspected) == 1
    finally:
        close()


def test_a_listed_process_of_another_is_never_read(web: _Web) -> None:
    """
    When the listed process number is another process's by now (reused:
    here this test's own), its sockets are not read: the container is
    inspected once more and its own process's connections count.
    """
    close = web.busy()
    try:
        [listed] = web.adapter._mine()
        listed.attrs["State"]["Pid"] = os.getpid()
        web.client.inspected.clear()
        assert web.adapter.connections("web") == 1
        assert len(web.client.inspected) == 1
    finally:
        close()


def test_a_container_listed_as_stopped_is_inspected_afresh(web: _Web) -> None:
    """
    A container the listing shows stopped but which runs again (started
    behind the adapter's back) is inspected afresh, not taken to have no
    connections.
    """
    web.container().stop(timeout=0)
    web.adapter.list_states()
    web.container().start()
    close = web.busy()
    try:
        web.client.inspected.clear()
        assert web.adapter.connections("web") == 1
        assert len(web.client.inspected) == 1
    finally:
        close()
