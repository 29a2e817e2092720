"""
Tests for the ``flocker`` command line as a whole (`flocker.cli.script`):
usage errors, help, connection and unexpected failures, interruption,
options after the command, and the command group registry.
"""

import argparse
from io import StringIO
from typing import Any

import pytest
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock

from flocker import __version__
from flocker.apiclient import (
    FakeFlockerClient,
    FlockerClient,
    IFlockerAPIV1Client,
    Node,
)
from flocker.cli._errors import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    CLIError,
)
from flocker.cli._wait import POLL_INTERVAL
from flocker.cli.script import COMMAND_MODULES, build_parser, run

from ._fake_cluster import (
    Cluster,
    add_dataset,
    assert_error,
    collect,
    invoke,
)

# -- usage, connection and unexpected errors ------------------------------------


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        ((), "the following arguments are required: COMMAND"),
        (("frobnicate",), "invalid choice: 'frobnicate'"),
        (("datasets",), "(see 'flocker datasets --help')"),
        (("datasets", "create"), "required: --node"),
        (("datasets", "move", "db"), "required: --to"),
        (("datasets", "ls", "--bogus"), "unrecognized arguments: --bogus"),
        (("apps", "deploy", "web", "--node", "n"), "required: --image"),
    ],
)
def test_usage_errors(cluster: Cluster, argv: tuple[str, ...], says: str) -> None:
    """A malformed command line is one line and exit 2, before any connection."""
    result = invoke(cluster, *argv)
    assert_error(result, EXIT_USAGE, says)
    assert not result.connected


def test_help(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    """``--help`` exits 0 and documents the exit codes."""
    assert invoke(cluster, "--help").code == EXIT_OK
    text = capsys.readouterr().out
    assert "exit codes:" in text
    assert "4  a --wait timed out" in text


def test_version(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    """``--version`` prints the tool's version."""
    assert invoke(cluster, "--version").code == EXIT_OK
    assert capsys.readouterr().out == f"flocker {__version__}\n"


def test_unreachable(cluster: Cluster) -> None:
    """A client that cannot be made (certificates, cluster file) is exit 3, one line."""

    def refuse(options: argparse.Namespace) -> IFlockerAPIV1Client:
        raise CLIError("key file /k does not exist", EXIT_UNREACHABLE)

    result = invoke(cluster, "nodes", make_client=refuse)
    assert_error(result, EXIT_UNREACHABLE, "key file /k does not exist")


def test_no_instance_reachable_names_every_url(cluster: Cluster) -> None:
    """When no control service instance can be reached, the error names every URL."""

    class Refusing:
        """HTTP whose every connection is refused."""

        def request(self, method: str, url: str, **kwargs: object) -> Deferred[Any]:
            return fail(ConnectionRefusedError("connection refused"))

    result = invoke(
        cluster,
        "nodes",
        make_client=lambda o: FlockerClient(Refusing(), ["https://a:1", "https://b:2"]),
    )
    assert_error(
        result,
        EXIT_UNREACHABLE,
        "cannot reach the control service at https://a:1, https://b:2",
    )


def test_unexpected_error(cluster: Cluster) -> None:
    """Even an unexpected exception is one line, not a traceback."""

    class Broken(FakeFlockerClient):
        def list_nodes(self) -> Deferred[list[Node]]:
            raise RuntimeError("boom")

    result = invoke(cluster, "nodes", make_client=lambda o: Broken(cluster.clock))
    assert_error(result, EXIT_ERROR, "unexpected RuntimeError: boom")


def test_options_after_command() -> None:
    """Cluster options may follow the command; --port there is the application's."""
    options = build_parser().parse_args(
        [
            "--cluster",
            "a.json",
            "apps",
            "deploy",
            "w",
            "--image",
            "i",
            "--node",
            "n",
            "--port",
            "1:2",
            "--control-port",
            "7",
            "--json",
        ]
    )
    assert (options.cluster, options.control_port, options.ports, options.json) == (
        "a.json",
        "7",
        ["1:2"],
        True,
    )
    options = build_parser().parse_args(
        ["--json", "--port", "9", "nodes", "--cluster", "b"]
    )
    assert (options.cluster, options.control_port, options.json) == ("b", "9", True)


def test_registry() -> None:
    """Every listed command group module adds its command."""
    parser = build_parser(COMMAND_MODULES + ("flocker.cli.test._example_group",))
    options = parser.parse_args(["example"])
    out = StringIO()
    clock = Clock()
    results = collect(
        Deferred.fromCoroutine(
            run(
                ["example"],
                clock,
                out,
                StringIO(),
                lambda o: FakeFlockerClient(clock),
                modules=COMMAND_MODULES + ("flocker.cli.test._example_group",),
            )
        )
    )
    assert options.run.__name__ == "example"
    assert results == [EXIT_OK]
    assert out.getvalue() == f"{__version__}\n"


def test_interrupted(cluster: Cluster) -> None:
    """An interrupted wait reports "interrupted" with exit code 130, not the cancellation."""
    add_dataset(cluster)
    err = StringIO()
    interrupted: list[bool] = []
    running = Deferred.fromCoroutine(
        run(
            ["datasets", "move", "db", "--to", "10.0.0.2", "--wait"],
            cluster.clock,
            StringIO(),
            err,
            lambda o: cluster.client,
            interrupted=lambda: bool(interrupted),
        )
    )
    results = collect(running)
    cluster.clock.advance(POLL_INTERVAL)
    interrupted.append(True)
    running.cancel()
    assert results == [130]
    assert err.getvalue().splitlines()[-1] == "flocker: error: interrupted"
