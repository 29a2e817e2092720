"""Unit tests of ``flocker-control``'s command line and service wiring."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.internet import reactor

from flocker.ca import CertificateError
from flocker.ca.testtools import (
    TestClusterCredentials,
    cluster_credentials,  # noqa: F401 (fixture)
)
from flocker.control import AutomaticFailover, ClusterStateService, ConfigurationService
from flocker.control._leader import AlwaysLeader
from flocker.control._protocol import ControlAMPService
from flocker.control.script import (
    AGENT_PORT,
    API_PORT,
    FENCE_MARGIN,
    ControlOptions,
    UsageError,
    build_control_service,
    parse_options,
)


def test_defaults() -> None:
    """With no options the daemon uses the documented defaults."""
    options = parse_options([])
    assert options == ControlOptions()
    assert (options.port, options.agent_port) == (API_PORT, AGENT_PORT) == (4523, 4524)
    assert options.data_path == Path("/var/lib/flocker")
    assert options.certificates_directory == Path("/etc/flocker")
    assert options.log_dir == Path("/var/log/flocker")
    assert options.failover_after == 20.0
    assert options.fence_after == 10.0


def test_all_options() -> None:
    """Every option is read into the settings."""
    options = parse_options(
        [
            "--data-path=/d",
            "--port=0",
            "--agent-port=1234",
            "--certificates-directory=/c",
            "--log-dir=/l",
            "--foreground",
            "--listen-address=127.0.0.1",
            "--ports-file=/p.json",
            "--state-expiration=30",
            "--failover-after=45",
            "--fence-after=30",
        ]
    )
    assert options == ControlOptions(
        data_path=Path("/d"),
        port=0,
        agent_port=1234,
        certificates_directory=Path("/c"),
        log_dir=Path("/l"),
        foreground=True,
        listen_address="127.0.0.1",
        ports_file=Path("/p.json"),
        state_expiration=30.0,
        failover_after=45.0,
        fence_after=30.0,
    )


def test_foreground_without_log_dir_writes_no_file() -> None:
    """In the foreground without --log-dir, logs go only to standard output."""
    assert parse_options(["--foreground"]).log_dir is None


@pytest.mark.parametrize(
    "argv, complaint",
    [
        (["--port", "65536"], "not a port number"),
        (["--port", "http"], "not a port number"),
        (["--agent-port", "-1"], "not a port number"),
        (["--state-expiration", "0"], "must be positive"),
        (["--state-expiration", "soon"], "not a number"),
        (["--failover-after", "-5"], "must be positive"),
        (["--fence-after", "0"], "must be positive"),
        (["--bogus"], "unrecognized arguments"),
        (["extra"], "unrecognized arguments"),
    ],
)
def test_bad_options(argv: list[str], complaint: str) -> None:
    """A bad command line is refused with a message saying what is wrong."""
    with pytest.raises(UsageError, match=complaint):
        parse_options(argv)


def test_build_wires_services(
    cluster_credentials: TestClusterCredentials,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The service tree has the agent and API services sharing one state."""
    options = ControlOptions(
        data_path=tmp_path / "data",
        certificates_directory=cluster_credentials.control_directory,
    )
    service = build_control_service(reactor, options)
    agents = service.getServiceNamed("agents")
    service.getServiceNamed("api")
    assert isinstance(agents, ControlAMPService)
    configuration = service.configuration_service  # type: ignore[attr-defined]
    state = service.cluster_state_service  # type: ignore[attr-defined]
    assert isinstance(configuration, ConfigurationService)
    assert isinstance(state, ClusterStateService)
    assert agents.configuration_service is configuration
    assert agents.cluster_state_service is state
    assert not (tmp_path / "data").exists()  # nothing touched before starting


def test_build_passes_failover_after_to_the_api(
    cluster_credentials: TestClusterCredentials,  # noqa: F811
    tmp_path: Path,
) -> None:
    """--failover-after reaches the REST API that decides failovers."""
    options = ControlOptions(
        data_path=tmp_path / "data",
        certificates_directory=cluster_credentials.control_directory,
        failover_after=7.5,
    )
    service = build_control_service(reactor, options)
    api = service.getServiceNamed("api").getServiceNamed("api")
    resource = api.factory.wrappedFactory.resource
    assert resource.api.failover_after == 7.5


def test_build_without_certificates(tmp_path: Path) -> None:
    """Missing certificates are an error naming the missing file."""
    options = ControlOptions(certificates_directory=tmp_path)
    with pytest.raises(CertificateError, match="cluster.crt"):
        build_control_service(reactor, options)


@pytest.mark.parametrize(
    "argv",
    [
        ["--failover-after", "15"],
        ["--failover-after", "14"],
        ["--fence-after", "15"],
        ["--failover-after", "30", "--fence-after", "25"],
    ],
)
def test_failover_after_must_exceed_fence_after(argv: list[str]) -> None:
    """
    A failover_after not greater than the agents' fence_after plus 5 is
    refused: a cut-off primary could still be exposing its copy when a
    replica is promoted.
    """
    with pytest.raises(UsageError, match="must be greater than --fence-after"):
        parse_options(argv)


def test_failover_after_just_above_fence_after_plus_margin() -> None:
    """A failover_after above fence_after plus 5 is accepted, and so is the default."""
    assert parse_options(["--failover-after", "15.5"]).failover_after == 15.5
    defaults = ControlOptions()
    assert defaults.failover_after > defaults.fence_after + FENCE_MARGIN


def test_main_refuses_failover_after_too_short() -> None:
    """flocker-control exits non-zero with one line naming both settings."""
    from io import StringIO

    from flocker.control.script import EXIT_USAGE, main

    err = StringIO()
    d = main(reactor, ["--failover-after", "12"], stdout=StringIO(), stderr=err)
    failures: list[Any] = []
    d.addErrback(failures.append)
    (failure,) = failures
    assert failure.value.code == EXIT_USAGE
    lines = err.getvalue().splitlines()
    assert len(lines) == 1
    assert "--failover-after (12 s)" in lines[0] and "--fence-after (10 s)" in lines[0]


def test_build_wires_automatic_failover(
    cluster_credentials: TestClusterCredentials,  # noqa: F811
    tmp_path: Path,
) -> None:
    """
    The service tree has the automatic failover, over the shared services,
    among the singleton duties of its (with the file store, permanent)
    leadership.
    """
    options = ControlOptions(
        data_path=tmp_path / "data",
        certificates_directory=cluster_credentials.control_directory,
        failover_after=33.0,
    )
    service = build_control_service(reactor, options)
    leadership = service.getServiceNamed("leadership")
    assert isinstance(leadership, AlwaysLeader)
    failover = leadership.duties.getServiceNamed("failover")
    assert isinstance(failover, AutomaticFailover)
    assert failover.failover_after == 33.0
    assert failover.configuration_service is service.configuration_service  # type: ignore[attr-defined]
    assert failover.cluster_state_service is service.cluster_state_service  # type: ignore[attr-defined]
