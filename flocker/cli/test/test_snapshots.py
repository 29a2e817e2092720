"""
Tests for ``flocker snapshots …`` and ``flocker clone`` against the real
REST API: the control service's resource (`make_api_resource`) over an
in-memory configuration store, reached by the real `FlockerClient` through
``StubTreq``, with node A's dataset agent the real `SnapshotOperations`
over an in-memory backend.  `converge` stands in for the nodes' reports.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import pytest
from treq.testing import StubTreq
from twisted.internet.task import Clock

from flocker.apiclient import FakeFlockerClient, FlockerClient
from flocker.cli._errors import EXIT_ERROR, EXIT_OK, EXIT_TIMEOUT, EXIT_USAGE
from flocker.cli._snapshots import check_snapshot_name, format_time
from flocker.control._state import DatasetState, NodeState
from flocker.control.rest_service import make_api_resource
from flocker.control.test.test_httpapi import (
    DATASET,
    NODE_A,
    NODE_B,
    OTHER_DATASET,
    APIHarness,
)
from flocker.control.test.test_httpapi_cloning import Agents

from ._fake_cluster import Result, add_dataset, assert_error, invoke

#: Flushes of the in-memory HTTP connections per clock step.
_FLUSHES = 50


@attrs.define
class RestCluster:
    """
    The real REST API in memory, and a client of it for the command.

    :ivar api: the control service (its own clock) and node A's agent.
    :ivar clock: the command's clock.
    :ivar client: a `FlockerClient` over ``StubTreq``.
    """

    api: APIHarness
    clock: Clock
    client: FlockerClient


def make_rest_cluster() -> RestCluster:
    """
    The REST API with nodes A (10.0.0.1, its dataset agent connected) and
    B (10.0.0.2, not connected); no datasets.
    """
    harness = APIHarness()
    harness.agents = Agents()  # type: ignore[attr-defined]
    harness.treq = StubTreq(
        make_api_resource(
            harness.configuration,
            harness.state,
            harness.clock,
            harness.agents,  # type: ignore[attr-defined]
        )
    )
    return RestCluster(
        harness, Clock(), FlockerClient(harness.treq, "https://control.example")
    )


def converge(api: APIHarness, rolled_back: bool = True) -> None:
    """
    Node A reports what its agents would once converged: every dataset
    configured on it mounted (rollbacks done, if ``rolled_back``) and every
    application configured on it running.
    """
    deployment = api.configuration.deployment
    backend = api.agents.backend  # type: ignore[attr-defined]
    exposed = {d.dataset_id for d in backend.list_datasets().result}
    datasets = {}
    for dataset, primary in deployment.all_datasets():
        if primary != NODE_A or dataset.deleted:
            continue
        done = dataset.rollback.request_id if rolled_back and dataset.rollback else None
        datasets[dataset.dataset_id] = DatasetState(
            dataset_id=dataset.dataset_id,
            path=f"/flocker/{dataset.dataset_id}",
            rolled_back=done,
        )
        if dataset.dataset_id not in exposed:
            api.agents.expose(dataset.dataset_id)  # type: ignore[attr-defined]
    applications = {
        app.name: app for app, node in deployment.all_applications() if node == NODE_A
    }
    api.state.update_node_state(
        NodeState(uuid=NODE_A, datasets=datasets, applications=applications)
    )


def run_cli(
    cluster: RestCluster, *argv: str, on_poll: Callable[[int], object] | None = None
) -> Result:
    """Run ``flocker ARGV`` against the in-memory API; see `invoke`."""

    def poll(number: int) -> None:
        for _ in range(_FLUSHES):
            cluster.api.treq.flush()
        if on_poll is not None:
            on_poll(number)

    return invoke(cluster, *argv, on_poll=poll)


def state(cluster: RestCluster) -> tuple[Any, list[str]]:
    """The stored configuration and node A's snapshots of DATASET, to compare."""
    snapshots = cluster.api.agents.backend.list_snapshots(DATASET).result  # type: ignore[attr-defined]
    return cluster.api.stored().deployment, [s.name for s in snapshots]


@pytest.fixture
def cluster() -> RestCluster:
    """DATASET ("db") on node A, exposed and reported mounted there."""
    cluster = make_rest_cluster()
    cluster.api.create_dataset(dataset_id=DATASET, metadata={"name": "db"})
    cluster.api.create_dataset(
        dataset_id=OTHER_DATASET, primary=NODE_B, metadata={"name": "away"}
    )
    converge(cluster.api)
    return cluster


# -- snapshot names ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["monday", "a", "v1.2_rc:3-x", "9" * 64])
def test_good_snapshot_names(name: str) -> None:
    """Names the REST API accepts pass."""
    assert check_snapshot_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "-x", "no spaces", "a/b", "9" * 65, "flocker-env", "Flocker1", "x\n"]
)
def test_bad_snapshot_names(cluster: RestCluster, name: str) -> None:
    """Bad or reserved names are refused before any request: exit 1, one line."""
    before = state(cluster)
    for argv in (
        ("snapshots", "create", "db", "--", name),
        ("snapshots", "rm", "db", "--", name),
        ("snapshots", "rollback", "db", "--", name),
        ("clone", "db", "--", name),
    ):
        result = run_cli(cluster, *argv)
        assert_error(result, EXIT_ERROR, "bad snapshot name")
        assert not result.connected
    assert state(cluster) == before


# -- ls, create, rm ----------------------------------------------------------------


def test_create_ls_rm(cluster: RestCluster) -> None:
    """A snapshot is taken on the node, listed in a table and JSON, then deleted."""
    result = run_cli(cluster, "snapshots", "create", "db", "monday")
    assert result.code == EXIT_OK, result
    assert result.out == f"created snapshot monday of dataset {DATASET} (db)\n"
    assert state(cluster)[1] == ["monday"]

    listed = run_cli(cluster, "--json", "snapshots", "ls", DATASET[:8])
    [snapshot] = listed.json()
    assert snapshot["name"] == "monday"
    table = run_cli(cluster, "snapshots", "ls", "db").out.splitlines()
    assert table == [
        "SNAPSHOT  CREATED (UTC)",
        f"monday    {format_time(snapshot['created'])}",
    ]

    removed = run_cli(cluster, "--json", "snapshots", "rm", "db", "monday")
    assert removed.json() == {
        "dataset_id": DATASET,
        "deleted": True,
        "name": "monday",
        "created": snapshot["created"],
    }
    assert state(cluster)[1] == []
    assert run_cli(cluster, "snapshots", "ls", "db").out == "SNAPSHOT  CREATED (UTC)\n"


def test_create_json(cluster: RestCluster) -> None:
    """``--json snapshots create`` prints the snapshot with its dataset."""
    result = run_cli(cluster, "snapshots", "create", "db", "monday", "--json")
    assert set(result.json()) == {"dataset_id", "name", "created"}
    assert result.json()["dataset_id"] == DATASET


def test_format_time() -> None:
    """Snapshot times are shown in UTC."""
    assert format_time(0) == "1970-01-01 00:00:00"


@pytest.mark.parametrize(
    ("argv", "code", "says"),
    [
        (("snapshots", "create", "db", "monday"), EXIT_ERROR, "already has a snapshot"),
        (("snapshots", "create", "nope", "x"), EXIT_ERROR, "unknown dataset 'nope'"),
        (("snapshots", "rm", "db", "tuesday"), EXIT_ERROR, "tuesday"),
        (("snapshots", "ls", "nope"), EXIT_ERROR, "unknown dataset 'nope'"),
        (("snapshots", "ls", "away"), EXIT_ERROR, "not connected"),
        (
            ("snapshots", "rollback", "db", "tuesday"),
            EXIT_ERROR,
            "no snapshot 'tuesday'",
        ),
        (("clone", "db", "tuesday"), EXIT_ERROR, "no snapshot 'tuesday'"),
        (("clone", "db", "monday", "--name", "db"), EXIT_ERROR, "exists already"),
        (("clone", "db", "monday", "--name", " "), EXIT_ERROR, "must not be empty"),
        (
            ("snapshots", "rollback", "db", "monday", "--timeout", "0"),
            EXIT_ERROR,
            "bad timeout",
        ),
        (("snapshots", "create", "db"), EXIT_USAGE, "required: NAME"),
        (("clone", "db"), EXIT_USAGE, "required: SNAPSHOT"),
    ],
)
def test_refusals(
    cluster: RestCluster, argv: tuple[str, ...], code: int, says: str
) -> None:
    """Unknown datasets and snapshots, clashes and bad options: one line, nothing changed."""
    run_cli(cluster, "snapshots", "create", "db", "monday")
    before = state(cluster)
    assert_error(run_cli(cluster, *argv), code, says)
    assert state(cluster) == before


def test_in_memory_client() -> None:
    """
    The in-memory fake serves the snapshot commands as any other: they go
    only through `IFlockerAPIV1Client` (more in `test_cloning_fake`).
    """
    from ._fake_cluster import make_cluster

    fake = make_cluster()
    assert isinstance(fake.client, FakeFlockerClient)
    add_dataset(fake)
    result = invoke(fake, "snapshots", "ls", "db")
    assert (result.code, result.out) == (EXIT_OK, "SNAPSHOT  CREATED (UTC)\n")


# -- rollback ----------------------------------------------------------------------


def test_rollback_no_wait(cluster: RestCluster) -> None:
    """Without --wait the rollback is requested and its request id printed."""
    run_cli(cluster, "snapshots", "create", "db", "monday")
    result = run_cli(cluster, "--json", "snapshots", "rollback", "db", "monday")
    assert result.code == EXIT_OK, result
    body = result.json()
    assert (body["dataset_id"], body["snapshot"], body["done"]) == (
        DATASET,
        "monday",
        False,
    )
    request = cluster.api.stored().deployment.get_dataset(DATASET)[0].rollback
    assert request is not None
    assert request.request_id == body["request_id"]


def test_rollback_wait(cluster: RestCluster) -> None:
    """--wait returns once the node reports the request done as rolled_back."""
    run_cli(cluster, "snapshots", "create", "db", "monday")

    def report(number: int) -> None:
        converge(cluster.api, rolled_back=number >= 3)

    result = run_cli(
        cluster, "snapshots", "rollback", "db", "monday", "--wait", on_poll=report
    )
    assert result.code == EXIT_OK, result
    assert result.out == f"rolled back dataset {DATASET} (db) to snapshot monday\n"
    assert "not rolled back yet" in result.err
    assert "rolled back on 10.0.0.1 after" in result.err.splitlines()[-1]


def test_rollback_wait_timeout(cluster: RestCluster) -> None:
    """A rollback the node never reports is exit 4; the request stays."""
    run_cli(cluster, "snapshots", "create", "db", "monday")
    result = run_cli(
        cluster, "snapshots", "rollback", "db", "monday", "--wait", "--timeout", "2"
    )
    assert_error(result, EXIT_TIMEOUT, "timed out after 2s")
    assert cluster.api.stored().deployment.get_dataset(DATASET)[0].rollback is not None


# -- clone -------------------------------------------------------------------------


def test_clone_wait(cluster: RestCluster) -> None:
    """``clone --wait`` adds a named dataset on the same node, mounted there."""
    run_cli(cluster, "snapshots", "create", "db", "monday")

    def report(number: int) -> None:
        if number >= 3:
            converge(cluster.api)

    result = run_cli(
        cluster,
        "--json",
        "clone",
        "db",
        "monday",
        "--name",
        "db-monday",
        "--wait",
        on_poll=report,
    )
    assert result.code == EXIT_OK, result
    view = result.json()
    assert (view["name"], view["primary"], view["state"]) == (
        "db-monday",
        NODE_A,
        "mounted",
    )
    assert view["origin"] == {"dataset_id": DATASET, "snapshot": "monday"}
    clone, node = cluster.api.stored().deployment.get_dataset(view["dataset_id"])
    assert clone.origin is not None
    assert (node, clone.origin.snapshot) == (NODE_A, "monday")
    assert "pending" in result.err


def test_clone_table(cluster: RestCluster) -> None:
    """Without --json ``clone`` says what it made, from what, and where."""
    run_cli(cluster, "snapshots", "create", "db", "monday")
    result = run_cli(cluster, "clone", DATASET, "monday")
    assert result.code == EXIT_OK, result
    [made] = [
        d
        for d, _ in cluster.api.stored().deployment.all_datasets()
        if d.origin is not None
    ]
    assert result.out == (
        f"cloned dataset {made.dataset_id} from {DATASET} (db) snapshot monday "
        "on 10.0.0.1, pending\n"
    )
