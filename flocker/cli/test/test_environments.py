"""
Tests for ``flocker env clone|ls|reset|rm`` against the real REST API in
memory (see `flocker.cli.test.test_snapshots`): parsing and checking the
options before any request, the tables and JSON, ``--wait`` until the
copies run, and the control service's refusals as one line each.
"""

from __future__ import annotations

from typing import Any

import pytest

from flocker.cli._environments import parse_copy_port
from flocker.cli._errors import EXIT_ERROR, EXIT_OK, EXIT_TIMEOUT, EXIT_USAGE, CLIError
from flocker.control.test.test_httpapi import DATASET, NODE_A

from ._fake_cluster import assert_error
from .test_snapshots import RestCluster, converge, make_rest_cluster, run_cli


def deploy(cluster: Any, name: str, external: int, volume: str | None) -> None:
    """Configure an application on node A publishing port 80 as ``external``."""
    body: dict[str, Any] = {
        "node_uuid": NODE_A,
        "name": name,
        "image": "flocker-test/counter:3",
        "ports": [{"internal": 80, "external": external}],
    }
    if volume is not None:
        body["volumes"] = [{"dataset_id": volume, "mountpoint": "/data"}]
    result = cluster.api.request("POST", "/v1/configuration/containers", body)
    assert result.code == 201, result


@pytest.fixture
def cluster() -> RestCluster:
    """``web`` (port 8080, dataset "db") and ``worker`` (9090) on node A, running."""
    cluster = make_rest_cluster()
    cluster.api.create_dataset(dataset_id=DATASET, metadata={"name": "db"})
    deploy(cluster, "web", 8080, DATASET)
    deploy(cluster, "worker", 9090, None)
    converge(cluster.api)
    return cluster


def configuration(cluster: Any) -> Any:
    """The stored configuration, to compare before and after."""
    return cluster.api.stored().deployment


def environment(cluster: Any, name: str = "staging") -> dict[str, Any]:
    """GET /v1/environments/NAME."""
    result = cluster.api.request("GET", f"/v1/environments/{name}")
    assert result.code == 200, result
    return dict(result.body)


# -- parsing -------------------------------------------------------------------


def test_parse_copy_port() -> None:
    """``COPY:APP:ORIG=NEW`` is split into its four parts."""
    assert parse_copy_port("alice:web:8080=18080") == ("alice", "web", 8080, 18080)


@pytest.mark.parametrize(
    "text", ["web:8080=1", "a:web:8080", "a:web:x=1", "a:web:8080=70000", ":w:1=2"]
)
def test_parse_copy_port_refuses(text: str) -> None:
    """Malformed --port values are a CLIError naming the option."""
    with pytest.raises(CLIError) as raised:
        parse_copy_port(text)
    assert f"bad --port {text!r}" in raised.value.message


@pytest.mark.parametrize(
    ("argv", "code", "says"),
    [
        (("--apps", "web", "--copies", "0"), EXIT_ERROR, "bad --copies '0'"),
        (("--apps", "web", "--copies", "51"), EXIT_ERROR, "bad --copies '51'"),
        (("--apps", "web", "--copies", "two"), EXIT_ERROR, "bad --copies 'two'"),
        (("--apps", "web,", "--copies", "1"), EXIT_ERROR, "bad application name"),
        (("--apps", "web,web", "--copies", "1"), EXIT_ERROR, "named twice"),
        (("--apps", "web", "--copy", "a", "--copy", "a"), EXIT_ERROR, "named twice"),
        (("--apps", "web", "--copy", "a b"), EXIT_ERROR, "bad copy name 'a b'"),
        (("--apps", "web", "--copy", "x" * 117), EXIT_ERROR, "application name"),
        (
            ("--apps", "web", "--copies", "2", "--port", "3:web:8080=18080"),
            EXIT_ERROR,
            "'3' is not one of the copies (1, 2)",
        ),
        (
            ("--apps", "web", "--copies", "2", "--port", "1:db:8080=18080"),
            EXIT_ERROR,
            "'db' is not in --apps",
        ),
        (
            (
                "--apps",
                "web",
                "--copies",
                "2",
                "--port",
                "1:web:8080=18080",
                "--port",
                "2:web:8080=18080",
            ),
            EXIT_ERROR,
            "port 18080 is given twice",
        ),
        (
            ("--apps", "web", "--copies", "1", "--timeout", "x"),
            EXIT_ERROR,
            "bad timeout",
        ),
        (("--apps", "web"), EXIT_USAGE, "one of the arguments --copies --copy"),
        (
            ("--apps", "web", "--copies", "1", "--copy", "a"),
            EXIT_USAGE,
            "not allowed with argument",
        ),
        (("--copies", "1"), EXIT_USAGE, "required: --apps"),
    ],
)
def test_clone_bad_input(
    cluster: RestCluster, argv: tuple[str, ...], code: int, says: str
) -> None:
    """Bad options are one line and an exit code before any request."""
    before = configuration(cluster)
    result = run_cli(cluster, "env", "clone", "staging", *argv)
    assert_error(result, code, says)
    assert not result.connected
    assert configuration(cluster) == before


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (
            ("env", "clone", "bad name", "--apps", "web", "--copies", "1"),
            "bad environment name 'bad name'",
        ),
        (("env", "reset", "staging", "a/b"), "bad copy name 'a/b'"),
        (("env", "rm", "st aging"), "bad environment name"),
        (("env", "ls", "x?"), "bad environment name"),
    ],
)
def test_bad_names(cluster: RestCluster, argv: tuple[str, ...], says: str) -> None:
    """Names the API could not accept are refused before any request."""
    result = run_cli(cluster, *argv)
    assert_error(result, EXIT_ERROR, says)
    assert not result.connected


# -- clone, ls ------------------------------------------------------------------


def test_clone_wait(cluster: RestCluster) -> None:
    """
    ``env clone --wait`` clones the group into the named copies, with the
    ports asked for, and returns once every copy application runs.
    """

    def report(number: int) -> None:
        if number >= 4:
            converge(cluster.api)

    result = run_cli(
        cluster,
        "env",
        "clone",
        "staging",
        "--apps",
        "web,worker",
        "--copy",
        "alice",
        "--copy",
        "bob",
        "--port",
        "bob:web:8080=18080",
        "--wait",
        on_poll=report,
    )
    assert result.code == EXIT_OK, result
    assert "0/4 applications running, 0/2 datasets mounted" in result.err
    assert (
        "environment staging's 2 copies running: 4/4 applications running"
        in (result.err.splitlines()[-1])
    )
    header, *rows = [line.split() for line in result.out.splitlines()]
    assert header == ["ENVIRONMENT", "COPY", "APPLICATION", "NODE", "STATE", "PORTS"]
    assert [row[:5] for row in rows] == [
        ["staging", "alice", "web-staging-alice", "10.0.0.1", "running"],
        ["staging", "alice", "worker-staging-alice", "10.0.0.1", "running"],
        ["staging", "bob", "web-staging-bob", "10.0.0.1", "running"],
        ["staging", "bob", "worker-staging-bob", "10.0.0.1", "running"],
    ]
    assert rows[2][5] == "18080->80"
    made = environment(cluster)
    assert [c["name"] for c in made["copies"]] == ["alice", "bob"]
    assert made["applications"] == ["web", "worker"]


def test_clone_numbered_json(cluster: RestCluster) -> None:
    """``--copies N`` names the copies 1..N; --json prints the environment."""
    result = run_cli(
        cluster, "--json", "env", "clone", "staging", "--apps", "web", "--copies", "2"
    )
    assert result.code == EXIT_OK, result
    [made] = result.json()
    assert made["name"] == "staging"
    assert [c["name"] for c in made["copies"]] == ["1", "2"]
    web1 = made["copies"][0]["applications"][0]
    assert (web1["name"], web1["node_address"], web1["state"]) == (
        "web-staging-1",
        "10.0.0.1",
        "pending",
    )
    assert made["copies"][0]["datasets"][0]["origin"]["dataset_id"] == DATASET


def test_clone_wait_timeout(cluster: RestCluster) -> None:
    """Copies that never start are exit 4; the environment stays configured."""
    result = run_cli(
        cluster,
        "env",
        "clone",
        "staging",
        "--apps",
        "web",
        "--copies",
        "1",
        "--wait",
        "--timeout",
        "2",
    )
    assert_error(result, EXIT_TIMEOUT, "timed out after 2s")
    assert "web-staging-1 on 10.0.0.1: pending" in result.err
    assert environment(cluster)["name"] == "staging"


def test_ls(cluster: RestCluster) -> None:
    """``env ls`` lists every environment's copies; ``env ls NAME`` one."""
    run_cli(cluster, "env", "clone", "one", "--apps", "web", "--copies", "1")
    run_cli(cluster, "env", "clone", "two", "--apps", "worker", "--copies", "1")
    converge(cluster.api)
    rows = [line.split()[:5] for line in run_cli(cluster, "env", "ls").out.splitlines()]
    assert rows[1:] == [
        ["one", "1", "web-one-1", "10.0.0.1", "running"],
        ["two", "1", "worker-two-1", "10.0.0.1", "running"],
    ]
    only = run_cli(cluster, "--json", "env", "ls", "two").json()
    assert [e["name"] for e in only] == ["two"]
    assert run_cli(cluster, "env", "ls", "--json").json()[0]["name"] == "one"


def test_ls_empty(cluster: RestCluster) -> None:
    """With no environments ``env ls`` prints the header (and ``[]`` as JSON)."""
    assert run_cli(cluster, "env", "ls").out.split() == [
        "ENVIRONMENT",
        "COPY",
        "APPLICATION",
        "NODE",
        "STATE",
        "PORTS",
    ]
    assert run_cli(cluster, "--json", "env", "ls").json() == []


# -- reset, rm --------------------------------------------------------------------


def test_reset_wait(cluster: RestCluster) -> None:
    """``env reset --wait`` gives the copy new clones and waits for them in use."""
    run_cli(cluster, "env", "clone", "staging", "--apps", "web", "--copies", "2")
    converge(cluster.api)
    old = environment(cluster)["copies"][0]["datasets"][0]["dataset_id"]

    def report(number: int) -> None:
        if number >= 3:
            converge(cluster.api)

    result = run_cli(cluster, "env", "reset", "staging", "1", "--wait", on_poll=report)
    assert result.code == EXIT_OK, result
    lines = result.out.splitlines()
    assert lines[0] == "reset copy 1 of environment staging (1 datasets cloned afresh)"
    assert lines[2].split()[:5] == [
        "staging",
        "1",
        "web-staging-1",
        "10.0.0.1",
        "running",
    ]
    assert "0/1 datasets mounted" in result.err
    new = environment(cluster)["copies"][0]["datasets"][0]["dataset_id"]
    assert new != old


def test_reset_json(cluster: RestCluster) -> None:
    """``--json env reset`` prints the copy."""
    run_cli(cluster, "env", "clone", "staging", "--apps", "web", "--copies", "1")
    copy = run_cli(cluster, "--json", "env", "reset", "staging", "1").json()
    assert copy["name"] == "1"
    assert copy["applications"][0]["name"] == "web-staging-1"


def test_rm_copy_then_all(cluster: RestCluster) -> None:
    """``env rm NAME COPY`` removes one copy; ``env rm NAME`` the rest."""
    run_cli(cluster, "env", "clone", "staging", "--apps", "web", "--copies", "2")
    result = run_cli(cluster, "env", "rm", "staging", "1")
    assert result.out == "removed copy 1 of environment staging (web-staging-1)\n"
    assert [c["name"] for c in environment(cluster)["copies"]] == ["2"]
    result = run_cli(cluster, "--json", "env", "rm", "staging")
    assert result.json()["name"] == "staging"
    assert run_cli(cluster, "--json", "env", "ls").json() == []
    names = [a.name for a, _ in configuration(cluster).all_applications()]
    assert sorted(names) == ["web", "worker"]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (("env", "ls", "nope"), "unknown environment 'nope'"),
        (("env", "rm", "nope"), "unknown environment 'nope'"),
        (("env", "rm", "staging", "9"), "has no copy '9'"),
        (("env", "reset", "nope", "1"), "nope"),
        (("env", "clone", "staging", "--apps", "web", "--copies", "1"), "staging"),
        (
            ("env", "clone", "other", "--apps", "nope", "--copies", "1"),
            "unknown application 'nope'",
        ),
        (
            (
                "env",
                "clone",
                "other",
                "--apps",
                "web",
                "--copies",
                "1",
                "--port",
                "1:web:8080=9090",
            ),
            "9090",
        ),
    ],
)
def test_refusals(cluster: RestCluster, argv: tuple[str, ...], says: str) -> None:
    """Unknown environments, copies, applications and taken names: one line, exit 1."""
    run_cli(cluster, "env", "clone", "staging", "--apps", "web", "--copies", "1")
    before = configuration(cluster)
    assert_error(run_cli(cluster, *argv), EXIT_ERROR, says)
    assert configuration(cluster) == before
