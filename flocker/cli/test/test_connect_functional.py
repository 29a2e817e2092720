"""
Functional test: the ``flocker`` command line reaches a live control service
instance over real HTTPS when the first ``--control-host`` is dead.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor

from flocker.ca import load_tls_files, server_context_factory
from flocker.ca.testtools import make_test_cluster_credentials
from flocker.cli._errors import EXIT_OK, EXIT_UNREACHABLE
from flocker.cli.script import real_client, run
from flocker.control import (
    ClusterStateService,
    ConfigurationService,
    MemoryConfigurationStore,
)
from flocker.control._state import NodeState
from flocker.control.rest_service import create_api_service

pytestmark = pytest.mark.functional


@pytest.fixture
def dead_port() -> Iterator[int]:
    """
    A loopback port that refuses connections: bound, not listening, and held
    for the test, so that no other process on the machine can take it.
    """
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield int(holder.getsockname()[1])


@pytest_twisted.ensureDeferred
async def test_repeated_control_host_reaches_the_live_instance(
    tmp_path: Path, dead_port: int
) -> None:
    """
    ``flocker --control-host DEAD --control-host LIVE nodes --json`` lists the
    nodes the live instance knows.
    """
    cluster = make_test_cluster_credentials(tmp_path, nodes=1, users=("alice",))
    configuration = ConfigurationService(MemoryConfigurationStore())
    await configuration.load()
    state = ClusterStateService(reactor)
    (node,) = cluster.node_uuids
    state.update_node_state(NodeState(uuid=str(node), hostname="127.0.0.11"))
    control = load_tls_files(cluster.control_directory, "control-service")
    service = create_api_service(
        reactor,
        configuration,
        state,
        "tcp:0:interface=127.0.0.1",
        server_context_factory(control.credential, control.authority),
        cluster_uuid=cluster.cluster_uuid,
    )
    service.startService()
    try:
        port = (await service.getServiceNamed("api").listening()).getHost().port
        user = cluster.user_directories["alice"]
        out, err = StringIO(), StringIO()
        code = await run(
            [
                "--control-host",
                f"127.0.0.1:{dead_port}",
                "--control-host",
                f"127.0.0.1:{port}",
                "--cacert",
                str(user / "cluster.crt"),
                "--cert",
                str(user / "alice.crt"),
                "--key",
                str(user / "alice.key"),
                "--json",
                "nodes",
            ],
            reactor,
            out,
            err,
            real_client(reactor, {}),
        )
        assert (code, err.getvalue()) == (EXIT_OK, ""), err.getvalue()
        assert str(node) in {row.get("uuid") for row in json.loads(out.getvalue())}
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_wrong_host_name_is_a_tls_failure_naming_it(tmp_path: Path) -> None:
    """
    A control service reached under a name its certificate does not carry
    is refused during the TLS handshake, and the one-line error says so.
    """
    cluster = make_test_cluster_credentials(tmp_path, nodes=1, users=("alice",))
    configuration = ConfigurationService(MemoryConfigurationStore())
    await configuration.load()
    control = load_tls_files(cluster.control_directory, "control-service")
    service = create_api_service(
        reactor,
        configuration,
        ClusterStateService(reactor),
        "tcp:0:interface=127.0.0.1",
        server_context_factory(control.credential, control.authority),
        cluster_uuid=cluster.cluster_uuid,
    )
    service.startService()
    try:
        port = (await service.getServiceNamed("api").listening()).getHost().port
        user = cluster.user_directories["alice"]
        out, err = StringIO(), StringIO()
        code = await run(
            [
                "--control-host",
                f"localhost:{port}",
                "--cacert",
                str(user / "cluster.crt"),
                "--cert",
                str(user / "alice.crt"),
                "--key",
                str(user / "alice.key"),
                "nodes",
            ],
            reactor,
            out,
            err,
            real_client(reactor, {}),
        )
        assert code == EXIT_UNREACHABLE, err.getvalue()
        assert "TLS handshake failed" in err.getvalue()
        assert "certificate is not for localhost" in err.getvalue()
    finally:
        await service.stopService()
