"""
Unit tests of DockerRuntime without an engine: the translation between specs
and the engine's records, and the mapping of SDK errors to typed errors
(through an immediate thread pool and a stub SDK client).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from typing import Any

import attrs
import docker.errors
import requests
from hypothesis import given
from pyrsistent import pmap
from twisted.trial.unittest import SynchronousTestCase

from .. import (
    NODE_LABEL,
    ContainerExists,
    ContainerSpec,
    DockerRuntime,
    EngineError,
    ImageNotFound,
    InvalidName,
    PortInUse,
    PublishedPort,
    RestartNever,
    UnknownContainer,
    container_name,
)
from ..docker import (
    _owed_by,
    _timestamp,
    count_connections,
    count_owed,
    create_arguments,
    spec_from_inspect,
    state_from_inspect,
)
from ..strategies import container_specs
from ..testtools import ImmediateReactor, ImmediateThreadPool

NODE = "6f3b1c1e-0e4b-4c5c-9c1a-6b4b3d2e1f00"


def engine_record(
    arguments: dict[str, Any], state: dict[str, Any] | None = None
) -> dict[str, Any]:
    """
    The inspect record Docker 20.10 keeps for ``containers.create(**arguments)``
    (as observed on the engine: bindings by port key, binds as given, and
    while it runs the bound ports, ephemeral ones from 32768 on).
    """
    bindings: dict[str, list[dict[str, str]]] = {}
    bound: dict[str, list[dict[str, str]]] = {}
    chosen = 32768
    for key, pairs in arguments["ports"].items():
        bindings[key] = [{"HostIp": ip, "HostPort": str(port)} for ip, port in pairs]
        bound[key] = []
        for ip, port in pairs:
            if port == 0:
                port, chosen = chosen, chosen + 1
            bound[key].append({"HostIp": ip, "HostPort": str(port)})
    running = state is None or state.get("Running") or state.get("Restarting")
    return {
        "Name": "/" + arguments["name"],
        "Config": {
            "Image": arguments["image"],
            "Labels": arguments["labels"],
            "Env": [
                "PATH=/bin",
                *(f"{k}={v}" for k, v in arguments["environment"].items()),
            ],
            "Cmd": arguments["command"] or ["/bin/sh"],
        },
        "HostConfig": {
            "PortBindings": bindings,
            "Binds": arguments["volumes"],
            "RestartPolicy": arguments["restart_policy"],
            "CpuShares": arguments["cpu_shares"] or 0,
            "Memory": arguments["mem_limit"] or 0,
            "MemorySwappiness": arguments["mem_swappiness"],
        },
        "State": state
        or {
            "Running": True,
            "Restarting": False,
            "ExitCode": 0,
            "StartedAt": "2026-11-24T01:02:35.390037168Z",
        },
        "RestartCount": 0,
        "NetworkSettings": {"Ports": bound if running else {}},
    }


@given(container_specs)
def test_round_trip(spec: ContainerSpec) -> None:
    """The spec read back from the record of a created container is the spec."""
    assert spec_from_inspect(engine_record(create_arguments(NODE, spec))) == spec


@given(container_specs)
def test_ports_now(spec: ContainerSpec) -> None:
    """
    A running container's state reports each internal TCP port (and no
    other) on a host port: for one published only at fixed ports, the
    lowest of them.
    """
    ports = state_from_inspect(engine_record(create_arguments(NODE, spec))).ports
    tcp = [p for p in spec.ports if p.protocol == "tcp"]
    assert set(ports) == {p.internal_port for p in tcp}
    for internal, host in ports.items():
        externals = [p.external_port for p in tcp if p.internal_port == internal]
        assert host > 0
        if 0 not in externals:
            assert host == min(externals)


def _record(
    requested: dict[str, list[dict[str, str]]],
    bound: Mapping[str, list[dict[str, str]] | None] | None,
    running: bool = True,
    restarting: bool = False,
) -> dict[str, Any]:
    """An inspect record with just the state and the ports."""
    return {
        "State": {
            "Running": running,
            "Restarting": restarting,
            "ExitCode": 0,
            "StartedAt": "1970-01-01T00:00:01Z",
        },
        "HostConfig": {"PortBindings": requested},
        "NetworkSettings": {"Ports": bound},
    }


def test_ports_at_the_address_asked_for() -> None:
    """
    Only bindings at an address the container asked for count: the IPv6
    binding the engine adds for an empty (every) address is left out, and
    the empty address is 0.0.0.0.
    """
    record = _record(
        {"80/tcp": [{"HostIp": "", "HostPort": "0"}]},
        {
            "80/tcp": [
                {"HostIp": "::", "HostPort": "32770"},
                {"HostIp": "0.0.0.0", "HostPort": "32771"},
            ]
        },
    )
    assert state_from_inspect(record).ports == pmap({80: 32771})


def test_ports_udp_and_unbound_left_out() -> None:
    """UDP ports, and ports asked for but not bound (yet), are not reported."""
    record = _record(
        {
            "53/udp": [{"HostIp": "127.0.0.5", "HostPort": "0"}],
            "80/tcp": [{"HostIp": "127.0.0.5", "HostPort": "0"}],
            "81/tcp": [{"HostIp": "127.0.0.5", "HostPort": "0"}],
        },
        {
            "53/udp": [{"HostIp": "127.0.0.5", "HostPort": "32768"}],
            "80/tcp": [{"HostIp": "127.0.0.5", "HostPort": "32769"}],
            "81/tcp": None,
            # bound though not asked for (the engine's -P of an EXPOSE)
            "82/tcp": [{"HostIp": "127.0.0.5", "HostPort": "32770"}],
        },
    )
    assert state_from_inspect(record).ports == pmap({80: 32769})


def test_no_ports_unless_running() -> None:
    """
    A container that does not run reports no ports; one the engine is
    restarting reports those already bound (none here).
    """
    requested = {"80/tcp": [{"HostIp": "127.0.0.5", "HostPort": "8080"}]}
    bound = {"80/tcp": [{"HostIp": "127.0.0.5", "HostPort": "8080"}]}
    assert state_from_inspect(_record(requested, bound, running=False)).ports == pmap()
    restarting = state_from_inspect(
        _record(requested, None, running=False, restarting=True)
    )
    assert (restarting.running, restarting.ports) == (True, pmap())


def test_empty_host_port_is_ephemeral() -> None:
    """An engine record's empty host port (the API's other 'choose one') reads as 0."""
    spec = ContainerSpec(
        name="app",
        image="i",
        ports=[PublishedPort(internal_port=80, external_port=0, host_ip="127.0.0.5")],
    )
    record = engine_record(create_arguments(NODE, spec))
    record["HostConfig"]["PortBindings"]["80/tcp"][0]["HostPort"] = ""
    assert spec_from_inspect(record) == spec


def test_arguments() -> None:
    """The runtime's labels and engine name win over extra labels."""
    spec = ContainerSpec(name="app", image="i")
    arguments = create_arguments(NODE, spec, {NODE_LABEL: "forged", "extra": "1"})
    assert arguments["labels"][NODE_LABEL] == NODE
    assert arguments["labels"]["extra"] == "1"
    assert arguments["name"] == container_name(NODE, "app")
    assert arguments["restart_policy"] == {"Name": "no", "MaximumRetryCount": 0}


def test_timestamps() -> None:
    """Engine timestamps become POSIX seconds; Go's zero time is None."""
    assert _timestamp("0001-01-01T00:00:00Z") is None
    assert _timestamp("") is None
    assert _timestamp("1970-01-01T00:00:10.5Z") == 10.5
    assert _timestamp("1970-01-01T00:00:10Z") == 10.0
    stamp = _timestamp("2026-11-24T01:02:35.390037168Z")
    assert stamp is not None and abs(stamp - 1795482155.390037) < 1e-3


def test_state_exited() -> None:
    """An exited container reports its exit code; a never-started one none."""
    exited = state_from_inspect(
        {
            "State": {
                "Running": False,
                "ExitCode": 3,
                "StartedAt": "1970-01-01T00:00:01Z",
            },
            "RestartCount": 2,
        }
    )
    assert (exited.running, exited.exit_code, exited.restart_count) == (False, 3, 2)
    created = state_from_inspect(
        {
            "State": {
                "Running": False,
                "ExitCode": 0,
                "StartedAt": "0001-01-01T00:00:00Z",
            }
        }
    )
    assert (created.exit_code, created.started_at) == (None, None)
    restarting = state_from_inspect(
        {
            "State": {
                "Running": False,
                "Restarting": True,
                "ExitCode": 1,
                "StartedAt": "",
            }
        }
    )
    assert restarting.running


# --------------------------------------------------------------------------
# A stub SDK client, just enough for the adapter's error paths


def _api_error(status: int, explanation: str) -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = status
    return docker.errors.APIError("stub", response=response, explanation=explanation)


@attrs.define
class _StubContainer:
    attrs: dict[str, Any]
    start_error: Exception | None = None
    removed: bool = False

    def start(self) -> None:
        if self.start_error is not None:
            raise self.start_error

    def remove(self, force: bool = False, v: bool = False) -> None:
        self.removed = True


@attrs.define
class _StubContainers:
    by_name: dict[str, _StubContainer] = attrs.field(factory=dict)
    create_error: Exception | None = None
    start_error: Exception | None = None
    #: Whether the engine drops ``MemorySwappiness``, as one on cgroup v2 does.
    discards_swappiness: bool = False
    created: list[_StubContainer] = attrs.field(factory=list)

    def get(self, name: str) -> _StubContainer:
        if name not in self.by_name:
            raise docker.errors.NotFound("no such container")
        return self.by_name[name]

    def create(self, **arguments: Any) -> _StubContainer:
        if self.create_error is not None:
            raise self.create_error
        container = _StubContainer(engine_record(arguments), self.start_error)
        if self.discards_swappiness:
            container.attrs["HostConfig"]["MemorySwappiness"] = None
        self.created.append(container)
        return container


@attrs.define
class _StubImages:
    error: Exception | None = None

    def get(self, image: str) -> None:
        if self.error is not None:
            raise self.error


@attrs.define
class _StubClient:
    containers: _StubContainers = attrs.field(factory=_StubContainers)
    images: _StubImages = attrs.field(factory=_StubImages)


class DockerErrorTests(SynchronousTestCase):
    """SDK errors come out of DockerRuntime as the interface's typed errors."""

    def setUp(self) -> None:
        """A runtime on a stub client, its pool running work at once."""
        self.client = _StubClient()
        self.runtime = DockerRuntime(
            NODE,
            lambda: self.client,
            ImmediateThreadPool(),  # type: ignore[arg-type]
            ImmediateReactor(),  # type: ignore[arg-type]
        )
        self.spec = ContainerSpec(name="app", image="i", restart_policy=RestartNever())

    def test_bad_node_uuid(self) -> None:
        """A node UUID in the wrong form is refused at construction."""
        self.assertRaises(
            InvalidName,
            DockerRuntime,
            str(uuid.UUID(NODE)).upper(),
            lambda: self.client,
            ImmediateThreadPool(),
            ImmediateReactor(),
        )

    def test_missing_image(self) -> None:
        """The SDK's ImageNotFound on create is ImageNotFound."""
        self.client.containers.create_error = docker.errors.ImageNotFound("gone")
        failure = self.failureResultOf(self.runtime.create(self.spec), ImageNotFound)
        self.assertEqual(failure.value.image, "i")

    def test_conflict(self) -> None:
        """A 409 on create is ContainerExists."""
        self.client.containers.create_error = _api_error(409, "name in use")
        self.failureResultOf(self.runtime.create(self.spec), ContainerExists)

    def test_other_create_error(self) -> None:
        """Another refusal on create is EngineError carrying the engine's words."""
        self.client.containers.create_error = _api_error(400, "Minimum memory")
        failure = self.failureResultOf(self.runtime.create(self.spec), EngineError)
        self.assertIn("Minimum memory", str(failure.value))

    def test_discarded_swappiness(self) -> None:
        """
        A container whose swappiness the engine discarded (cgroup v2) is
        removed, and create fails with EngineError naming swappiness.
        """
        self.client.containers.discards_swappiness = True
        failure = self.failureResultOf(
            self.runtime.create(self.spec.set(swappiness=10)), EngineError
        )
        self.assertIn("swappiness", str(failure.value))
        self.assertTrue(self.client.containers.created[0].removed)

    def test_no_swappiness_on_cgroup_v2(self) -> None:
        """Without swappiness, an engine that would discard it creates the container."""
        self.client.containers.discards_swappiness = True
        self.successResultOf(self.runtime.create(self.spec))
        self.assertFalse(self.client.containers.created[0].removed)

    def test_port_clash_removes(self) -> None:
        """A port clash on start is PortInUse and the new container is removed."""
        self.client.containers.start_error = _api_error(
            500, "Bind for 127.0.0.77:18777 failed: port is already allocated"
        )
        self.failureResultOf(self.runtime.create(self.spec), PortInUse)
        self.assertTrue(self.client.containers.created[0].removed)

    def test_address_in_use(self) -> None:
        """A port another process listens on is PortInUse too."""
        self.client.containers.start_error = _api_error(
            500, "listen tcp4 127.0.0.9:80: bind: address already in use"
        )
        self.failureResultOf(self.runtime.create(self.spec), PortInUse)

    def test_foreign_container(self) -> None:
        """A container with this node's engine name but another node's label is unknown."""
        record = engine_record(create_arguments(str(uuid.uuid4()), self.spec))
        self.client.containers.by_name[container_name(NODE, "app")] = _StubContainer(
            record
        )
        self.failureResultOf(self.runtime.inspect("app"), UnknownContainer)
        self.successResultOf(self.runtime.remove("app"))
        self.assertFalse(
            self.client.containers.by_name[container_name(NODE, "app")].removed
        )

    def test_image_exists(self) -> None:
        """image_exists answers False for a missing or malformed image."""
        self.assertTrue(self.successResultOf(self.runtime.image_exists("i")))
        self.client.images.error = docker.errors.ImageNotFound("gone")
        self.assertFalse(self.successResultOf(self.runtime.image_exists("i")))
        self.client.images.error = _api_error(400, "invalid reference format")
        self.assertFalse(self.successResultOf(self.runtime.image_exists("BAD")))
        self.client.images.error = _api_error(500, "engine broke")
        self.failureResultOf(self.runtime.image_exists("i"), EngineError)

    def test_engine_unreachable(self) -> None:
        """An engine that cannot be reached makes every call fail with EngineError."""

        def unreachable() -> Any:
            raise docker.errors.DockerException("Error while fetching server API")

        runtime = DockerRuntime(
            NODE,
            unreachable,
            ImmediateThreadPool(),  # type: ignore[arg-type]
            ImmediateReactor(),  # type: ignore[arg-type]
        )
        self.failureResultOf(runtime.list_containers(), EngineError)
        self.failureResultOf(runtime.create(self.spec), EngineError)
        self.failureResultOf(runtime.remove("app"), EngineError)

    def test_invalid_name_no_call(self) -> None:
        """An invalid name fails before the client is made."""
        made = []
        runtime = DockerRuntime(
            NODE,
            lambda: made.append(1),
            ImmediateThreadPool(),  # type: ignore[arg-type]
            ImmediateReactor(),  # type: ignore[arg-type]
        )
        self.failureResultOf(runtime.stop("bad name"), InvalidName)
        self.assertEqual(made, [])


def test_logged(eliot_logger: Any) -> None:
    """Each DockerRuntime operation is an eliot action flocker:runtime:<verb>."""
    client = _StubClient()
    runtime = DockerRuntime(
        NODE,
        lambda: client,
        ImmediateThreadPool(),  # type: ignore[arg-type]
        ImmediateReactor(),  # type: ignore[arg-type]
    )
    runtime.create(ContainerSpec(name="app", image="i"))
    runtime.image_exists("i")
    types = {m.get("action_type") for m in eliot_logger.messages}
    assert {"flocker:runtime:create", "flocker:runtime:image_exists"} <= types


_TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 19031728 1
   1: 0000000000000000FFFF0000020011AC:0050 0000000000000000FFFF0000010011AC:895E 01 00000000:00000000 02:000AFC75 00000000     0        0 19031729 2
   2: 0000000000000000FFFF0000020011AC:0050 0000000000000000FFFF0000010011AC:895F 06 00000000:00000000 03:00000000 00000000     0        0 0 3
   3: 0000000000000000FFFF0000020011AC:C350 0000000000000000FFFF0000010011AC:0050 01 00000000:00000000 02:000AFC75 00000000     0        0 19031730 2
   4: 0000000000000000FFFF0000020011AC:0050 0000000000000000FFFF0000010011AC:8960 08 00000000:00000000 00:00000000 00000000     0        0 19031731 1
   5: 0000000000000000FFFF0000020011AC:0050 0000000000000000FFFF0000010011AC:8961 05 00000000:00000000 00:00000000 00000000     0        0 0 1
   6: 0000000000000000FFFF0000020011AC:0050 0000000000000000FFFF0000010011AC:8962 04 00000000:00001000 00:00000000 00000000     0        0 19031732 1
"""
_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 020011AC:1F90 010011AC:D431 01 00000000:00000000 00:00000000 00000000     0        0 1 1
"""


def test_open_connections_to_the_given_ports_are_counted() -> None:
    """
    The open connections whose local port is one of the published internal
    ports count, from the IPv4 and IPv6 tables alike: established, half
    closed by the client while the answer is owed (CLOSE_WAIT), closed by
    the server with its answer still in flight (FIN_WAIT1).  The listening
    socket, a connection in TIME_WAIT or FIN_WAIT2 (all sent and
    acknowledged) and one the container opened elsewhere (remote port 80)
    do not.
    """
    assert count_connections([_TCP6, _TCP], {80}) == 3
    assert count_connections([_TCP6, _TCP], {80, 8080}) == 4
    assert count_connections([_TCP6, _TCP], set()) == 0
    assert count_connections(["", "garbage"], {80}) == 0


_SS = """\
LISTEN     0      9                        *:80                   *:*
\t bbr cwnd:10
ESTAB      0      0      [::ffff:172.17.0.2]:80 [::ffff:172.17.0.1]:53518
\t bbr rto:204 bytes_received:18 segs_out:1 segs_in:3 lastsnd:1012 lastrcv:1012 lastack:1012
ESTAB      0      0      [::ffff:172.17.0.2]:81 [::ffff:172.17.0.1]:56300
\t bbr rto:204 bytes_sent:5 bytes_acked:5 bytes_received:5 lastsnd:308 lastrcv:308 lastack:308
ESTAB      0      0      [::ffff:172.17.0.2]:81 [::ffff:172.17.0.1]:56301
\t bbr rto:204 bytes_sent:50 bytes_acked:50 bytes_received:90 lastsnd:900 lastrcv:20 lastack:20
ESTAB      0      0      [::ffff:172.17.0.2]:81 [::ffff:172.17.0.1]:56302
\t bbr rto:204 lastsnd:30 lastrcv:30 lastack:30
ESTAB      0      0      [::ffff:172.17.0.2]:81 [::ffff:172.17.0.1]:56303
\t bbr rto:204 lastsnd:60000 lastrcv:60000 lastack:60000
CLOSE-WAIT 1      0      [::ffff:172.17.0.2]:80 [::ffff:172.17.0.1]:53519
\t bbr rto:204 bytes_received:18 lastsnd:50 lastrcv:50
FIN-WAIT-1 0      3900000 [::ffff:172.17.0.2]:80 [::ffff:172.17.0.1]:53520
\t bbr rto:204 bytes_sent:100000 bytes_received:18 lastsnd:1 lastrcv:500
FIN-WAIT-2 0      0      [::ffff:172.17.0.2]:80 [::ffff:172.17.0.1]:39100
\t
TIME-WAIT  0      0      [::ffff:172.17.0.2]:80 [::ffff:172.17.0.1]:39101
ESTAB      0      0      172.17.0.2:50000 10.0.0.9:80
\t bbr rto:204 bytes_received:18 lastsnd:1012 lastrcv:10
"""


def test_connections_owed_something_are_told_from_idle_ones() -> None:
    """
    Of the connections to the given ports, those the container may owe
    something on count: a request received and not answered (port 80,
    nothing sent yet), a request received after the last answer (56301),
    a connection just made whose request may be on its way (56302), a
    half-closed one with a request queued, one closed with its answer in
    flight.  An idle kept-alive one (its last request answered in the same
    millisecond: 56300), one silent for a minute since it was made
    (56303), FIN-WAIT-2, TIME-WAIT and listening sockets do not, nor do
    connections the container made elsewhere (local port 50000).
    """
    assert count_owed(_SS, {80}) == 3
    assert count_owed(_SS, {81}) == 2
    assert count_owed(_SS, {80, 81}) == 5
    assert count_owed(_SS, {50000}) == 1
    assert count_owed(_SS, set()) == 0
    assert count_owed("", {80}) == 0


def _one_socket(line: str, details: str) -> str:
    """``ss -tinHa`` output of one socket at local port 80, then ``_SS``."""
    return f"{line}\n\t{details}\n{_SS}"


_ESTAB_80 = "ESTAB      0      0      172.17.0.2:80 172.17.0.1:53600"


def test_unreadable_ss_details_are_not_understood() -> None:
    """
    A socket on a counted port whose byte counts or times are not numbers
    (as another ``ss`` might print them) makes the whole answer unreadable
    (``None``, as if ``ss`` could not be asked) instead of raising.
    """
    for details in (
        "bbr bytes_received:1e3 lastsnd:10 lastrcv:10",
        "bbr bytes_received:18 bytes_sent:12kB lastsnd:10 lastrcv:10",
        "bbr bytes_received:18 bytes_sent:12 lastsnd:10 lastrcv:-5",
        "bbr bytes_received:18 bytes_sent:12 lastsnd:²",
        "bbr bytes_received: lastrcv:10",
    ):
        assert count_owed(_one_socket(_ESTAB_80, details), {80}) is None, details


def test_unreadable_ss_socket_lines_are_not_understood() -> None:
    """
    A socket line of another shape (queues that are not numbers, a state
    ``ss`` has no name for, an extra column, a port by name) makes the
    answer unreadable (``None``), whichever port it is on: its port
    cannot be trusted either.
    """
    details = "bbr bytes_received:18 lastsnd:10 lastrcv:10"
    for line in (
        "ESTAB      x      0      172.17.0.2:80 172.17.0.1:53600",
        "ESTAB      0      -      172.17.0.2:80 172.17.0.1:53600",
        "UNKNOWN    0      0      172.17.0.2:80 172.17.0.1:53600",
        "tcp ESTAB  0      0      172.17.0.2:80 172.17.0.1:53600",
        "ESTAB      0      0      172.17.0.2:http 172.17.0.1:53600",
        "ESTAB 0 0",
    ):
        assert count_owed(_one_socket(line, details), {80}) is None, line


def test_unreadable_ss_details_on_other_ports_are_ignored() -> None:
    """
    Details that are not counts on a socket of no counted port, and
    columns after the peer address (such as ``ss -p`` adds), change
    nothing: the connections on the counted ports are told apart as usual.
    """
    output = _one_socket(
        'ESTAB      0      0      172.17.0.2:9999 172.17.0.1:53600 users:(("x",pid=1,fd=3))',
        "bbr bytes_received:lots lastrcv:soon",
    )
    assert count_owed(output, {80}) == 3
    assert count_owed(output, {81}) == 2


def test_an_unreadable_ss_answer_is_as_if_ss_were_missing(
    tmp_path: Any, monkeypatch: Any
) -> None:
    """
    When ``ss`` (run through ``nsenter``) answers something unreadable,
    the count of owed connections is ``None``, which the adapter takes as
    "cannot ask ss": it counts every open connection instead.
    """
    fake = tmp_path / "nsenter"
    fake.write_text(
        "#!/bin/sh\n"
        "echo 'ESTAB 0 0 172.17.0.2:80 172.17.0.1:53600'\n"
        "printf '\\t bbr bytes_received:much lastrcv:10\\n'\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert _owed_by(os.getpid(), {80}) is None
    assert _owed_by(os.getpid(), {81}) == 0
