"""
Tests for ``flocker.node._answering``: how long a moved application was
unavailable, measured on its new node with real sockets.
"""

import socket
from typing import Any

import pytest
import pytest_twisted
from eliot import MemoryLogger
from twisted.internet import reactor
from twisted.internet.task import deferLater

from flocker.control import Application, DeploymentState, NodeState
from flocker.node._answering import AnsweringWatch
from flocker.runtime import ContainerSpec, PublishedPort

HERE = "11111111-1111-1111-1111-111111111111"
OLD = "22222222-2222-2222-2222-222222222222"
APP = Application(name="web", image="flocker-test/busybox:1")


def reporting(*nodes: str) -> DeploymentState:
    """A cluster state in which ``nodes`` report ``web`` running."""
    state = DeploymentState()
    for uuid in (HERE, OLD):
        apps = {"web": APP} if uuid in nodes else {}
        state = state.update_node(NodeState(uuid=uuid, applications=apps))
    return state


def free_port() -> int:
    """A TCP port nothing listens on (for now) on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


#: The container of ``web``, its port 80 published where the engine chooses.
SPEC = ContainerSpec(
    name="web",
    image="flocker-test/busybox:1",
    ports=[PublishedPort(internal_port=80, external_port=0, host_ip="127.0.0.1")],
)


def answering(logger: MemoryLogger) -> list[dict[str, Any]]:
    """The end messages of the finished answering actions."""
    return [
        m for m in logger.messages
        if m.get("action_type") == "flocker:node:container:answering"
        and m["action_status"] in ("succeeded", "failed")
    ]


@pytest_twisted.ensureDeferred
async def test_moved_application_unavailable_time(eliot_logger: MemoryLogger) -> None:
    """
    An application seen running on the old node, then on none, then started
    here is timed from running nowhere until its port accepts a connection.
    """
    watch = AnsweringWatch(reactor, HERE, "127.0.0.1")
    watch.observe({"web"}, reporting(OLD))
    watch.observe({"web"}, reporting())
    port = free_port()
    await deferLater(reactor, 0.2, lambda: None)
    watch.started(SPEC, {80: port})
    await deferLater(reactor, 0.2, lambda: None)
    assert not answering(eliot_logger)  # nothing listens yet: still probing
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        for _ in range(100):
            await deferLater(reactor, 0.02, lambda: None)
            if answering(eliot_logger):
                break
    [fields] = answering(eliot_logger)
    assert fields["action_status"] == "succeeded"
    assert fields["unavailable_seconds"] >= 0.4
    assert 0.2 <= fields["start_seconds"] < fields["unavailable_seconds"]


@pytest_twisted.ensureDeferred
async def test_new_application_has_no_unavailable_time(eliot_logger: MemoryLogger) -> None:
    """An application that never ran elsewhere logs only its start time."""
    watch = AnsweringWatch(reactor, HERE, "127.0.0.1")
    watch.observe({"web"}, reporting())
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        watch.started(SPEC, {80: listener.getsockname()[1]})
        for _ in range(100):
            await deferLater(reactor, 0.02, lambda: None)
            if answering(eliot_logger):
                break
    [fields] = answering(eliot_logger)
    assert fields["unavailable_seconds"] is None


def test_no_ports_no_probe(eliot_logger: MemoryLogger) -> None:
    """An application publishing no port is not probed or logged."""
    watch = AnsweringWatch(reactor, HERE, "127.0.0.1")
    watch.started(ContainerSpec(name="quiet", image="flocker-test/busybox:1"), {})
    assert not answering(eliot_logger)


def test_running_elsewhere_again_resets(eliot_logger: MemoryLogger) -> None:
    """Seen elsewhere again after running nowhere: the old gap is forgotten."""
    watch = AnsweringWatch(reactor, HERE, "127.0.0.1")
    watch.observe({"web"}, reporting(OLD))
    watch.observe({"web"}, reporting())
    watch.observe({"web"}, reporting(OLD))
    assert watch._gone_at == {}
    watch.observe(set(), reporting())
    assert watch._elsewhere == set()


pytestmark = pytest.mark.functional
