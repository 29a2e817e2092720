"""
Unit tests of ``flocker snapshots …``, ``flocker clone``, ``flocker env …``
and the transfer progress of ``--wait`` against the in-memory
`FakeFlockerClient` (the same commands are also tested against the real
REST API in memory in `test_snapshots` and `test_environments`).
"""

from __future__ import annotations

from uuid import UUID

import pytest

from flocker.apiclient import Container, ContainerPort, MountedDataset, Transfer
from flocker.cli._errors import EXIT_ERROR, EXIT_OK

from ._fake_cluster import (
    D1,
    N1,
    N2,
    Cluster,
    add_dataset,
    assert_error,
    configuration,
    fired,
    invoke,
)

MIB = 1024 * 1024


def snapshot_names(cluster: Cluster, dataset_id: UUID = D1) -> list[str]:
    """The names of the dataset's snapshots, as the fake has them."""
    return [s.name for s in fired(cluster.client.list_snapshots(dataset_id))]


# -- snapshots -----------------------------------------------------------------------


def test_create_ls_rm(cluster: Cluster) -> None:
    """A snapshot is taken, listed as a table and as JSON, then deleted."""
    add_dataset(cluster)
    made = invoke(cluster, "snapshots", "create", "db", "monday")
    assert (made.code, made.out) == (
        EXIT_OK,
        f"created snapshot monday of dataset {D1} (db)\n",
    )
    assert snapshot_names(cluster) == ["monday"]
    listed = invoke(cluster, "--json", "snapshots", "ls", "db")
    assert listed.json() == [{"name": "monday", "created": 0.0}]
    table = invoke(cluster, "snapshots", "ls", str(D1)[:8])
    assert table.out.splitlines() == [
        "SNAPSHOT  CREATED (UTC)",
        "monday    1970-01-01 00:00:00",
    ]
    removed = invoke(cluster, "--json", "snapshots", "rm", "db", "monday")
    assert removed.json() == {
        "dataset_id": str(D1),
        "deleted": True,
        "name": "monday",
        "created": 0.0,
    }
    assert snapshot_names(cluster) == []


def test_create_json(cluster: Cluster) -> None:
    """``--json snapshots create`` prints the snapshot with its dataset."""
    add_dataset(cluster)
    result = invoke(cluster, "--json", "snapshots", "create", "db", "monday")
    assert result.json() == {"dataset_id": str(D1), "name": "monday", "created": 0.0}


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (("snapshots", "create", "db", "monday"), "already has a snapshot 'monday'"),
        (("snapshots", "rm", "db", "tuesday"), "has no snapshot 'tuesday'"),
        (("snapshots", "rollback", "db", "tuesday"), "has no snapshot 'tuesday'"),
        (("clone", "db", "tuesday"), "has no snapshot 'tuesday'"),
        (("snapshots", "ls", "pending"), "not exposed on its primary node"),
        (("snapshots", "create", "pending", "x"), "not exposed on its primary node"),
    ],
)
def test_refusals(cluster: Cluster, argv: tuple[str, ...], says: str) -> None:
    """The fake refuses as the control service does: one line, nothing changed."""
    add_dataset(cluster)
    invoke(cluster, "snapshots", "create", "db", "monday")
    add_dataset(cluster, UUID(int=7), name="pending", synchronize=False)
    before = configuration(cluster), snapshot_names(cluster)
    result = invoke(cluster, *argv)
    assert_error(result, EXIT_ERROR, "the control service refused the request: ")
    assert says in result.err
    assert (configuration(cluster), snapshot_names(cluster)) == before


def test_agent_not_connected(cluster: Cluster) -> None:
    """A dataset whose primary's agent is away: the control service's 503, one line."""
    add_dataset(cluster)
    cluster.client.disconnect_agent(N1)
    result = invoke(cluster, "snapshots", "ls", "db")
    assert_error(result, EXIT_ERROR, "is not connected to the control service")


def test_rm_snapshot_of_a_clone_refused(cluster: Cluster) -> None:
    """A snapshot a clone is made from cannot be deleted."""
    add_dataset(cluster)
    invoke(cluster, "snapshots", "create", "db", "monday")
    assert invoke(cluster, "clone", "db", "monday", "--name", "copy").code == EXIT_OK
    assert_error(
        invoke(cluster, "snapshots", "rm", "db", "monday"), EXIT_ERROR, "has clones"
    )
    assert snapshot_names(cluster) == ["monday"]


# -- rollback ------------------------------------------------------------------------


def test_rollback_no_wait(cluster: Cluster) -> None:
    """Without --wait the rollback is asked for and its request id printed."""
    add_dataset(cluster)
    invoke(cluster, "snapshots", "create", "db", "monday")
    result = invoke(cluster, "--json", "snapshots", "rollback", "db", "monday")
    assert result.code == EXIT_OK, result
    body = result.json()
    assert (body["dataset_id"], body["snapshot"], body["done"]) == (
        str(D1),
        "monday",
        False,
    )
    UUID(body["request_id"])
    text = invoke(cluster, "snapshots", "rollback", "db", "monday")
    assert text.out.startswith(
        f"rolling back dataset {D1} (db) to snapshot monday (request "
    )


def test_rollback_wait(cluster: Cluster) -> None:
    """
    ``--wait`` polls until the node reports the rollback done; the later
    snapshots are gone then.
    """
    add_dataset(cluster)
    for name in ("monday", "tuesday"):
        invoke(cluster, "snapshots", "create", "db", name)

    def report(number: int) -> None:
        if number == 3:
            cluster.client.synchronize_state()

    result = invoke(
        cluster, "snapshots", "rollback", "db", "monday", "--wait", on_poll=report
    )
    assert result.code == EXIT_OK, result
    assert result.out == f"rolled back dataset {D1} (db) to snapshot monday\n"
    assert "not rolled back yet" in result.err
    assert "rolled back on 10.0.0.1 after" in result.err.splitlines()[-1]
    assert snapshot_names(cluster) == ["monday"]


def test_rollback_past_a_clone_refused(cluster: Cluster) -> None:
    """A rollback that would discard the snapshot a clone is made from is refused."""
    add_dataset(cluster)
    for name in ("monday", "tuesday"):
        invoke(cluster, "snapshots", "create", "db", name)
    invoke(cluster, "clone", "db", "tuesday")
    result = invoke(cluster, "snapshots", "rollback", "db", "monday")
    assert_error(result, EXIT_ERROR, "would discard the later snapshot 'tuesday'")


# -- clone ---------------------------------------------------------------------------


def test_clone_wait(cluster: Cluster) -> None:
    """``clone --wait`` adds a named dataset on the same node and waits until it is mounted."""
    add_dataset(cluster, size=64 * MIB)
    invoke(cluster, "snapshots", "create", "db", "monday")

    def report(number: int) -> None:
        if number == 3:
            cluster.client.synchronize_state()

    result = invoke(
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
    assert (view["name"], view["primary"], view["state"], view["maximum_size"]) == (
        "db-monday",
        str(N1),
        "mounted",
        64 * MIB,
    )
    assert view["origin"] == {"dataset_id": str(D1), "snapshot": "monday"}
    assert "pending" in result.err
    clone = fired(cluster.client.list_datasets_configuration()).datasets[
        UUID(view["dataset_id"])
    ]
    assert clone.origin is not None
    assert clone.origin.snapshot == "monday"


def test_clone_table(cluster: Cluster) -> None:
    """Without --json ``clone`` says what it made, from what, and where."""
    add_dataset(cluster)
    invoke(cluster, "snapshots", "create", "db", "monday")
    result = invoke(cluster, "clone", str(D1), "monday")
    assert result.code == EXIT_OK, result
    [made] = [
        d
        for d in fired(cluster.client.list_datasets_configuration()).datasets.values()
        if d.origin is not None
    ]
    assert result.out == (
        f"cloned dataset {made.dataset_id} from {D1} (db) snapshot monday "
        "on 10.0.0.1, pending\n"
    )


def test_clone_name_taken(cluster: Cluster) -> None:
    """A clone named as an existing dataset is refused before any request to clone."""
    add_dataset(cluster)
    invoke(cluster, "snapshots", "create", "db", "monday")
    before = configuration(cluster)
    result = invoke(cluster, "clone", "db", "monday", "--name", "db")
    assert_error(result, EXIT_ERROR, "a dataset named 'db' exists already")
    assert configuration(cluster) == before


# -- transfers -----------------------------------------------------------------------


def test_move_wait_shows_the_transfer(cluster: Cluster) -> None:
    """While a move's stream flows, ``--wait`` shows the bytes received and the rate."""
    add_dataset(cluster)

    def poll(number: int) -> None:
        if number in (1, 2):
            cluster.client.report_transfers(
                [
                    Transfer(
                        dataset_id=D1,
                        node_uuid=N2,
                        snapshot="s",
                        bytes=number * 8 * MIB,
                        size=64 * MIB,
                    )
                ]
            )
        if number == 3:
            cluster.client.report_transfers([])
            cluster.client.synchronize_state()

    result = invoke(
        cluster, "datasets", "move", "db", "--to", "10.0.0.2", "--wait", on_poll=poll
    )
    assert result.code == EXIT_OK, result
    lines = result.err.splitlines()
    assert "8M of 64M received" in lines[1], result.err
    assert "16M of 64M received at 16M/s" in lines[2], result.err
    assert "mounted at" in lines[-1]


# -- environments --------------------------------------------------------------------


@pytest.fixture
def env_cluster(cluster: Cluster) -> Cluster:
    """``web`` (port 8080, dataset "db") on node 1, running."""
    add_dataset(cluster)
    cluster.client.create_container(
        Container(
            node_uuid=N1,
            name="web",
            image="nginx:1",
            ports=[ContainerPort(internal=80, external=8080)],
            volumes=[MountedDataset(dataset_id=D1, mountpoint="/data")],
        )
    )
    cluster.client.synchronize_state()
    return cluster


def test_env_clone_wait(env_cluster: Cluster) -> None:
    """``env clone --wait`` makes the copies and waits until they run on their clones."""
    cluster = env_cluster

    def report(number: int) -> None:
        if number == 3:
            cluster.client.synchronize_state()

    result = invoke(
        cluster,
        "env",
        "clone",
        "staging",
        "--apps",
        "web",
        "--copies",
        "2",
        "--port",
        "2:web:8080=18080",
        "--wait",
        on_poll=report,
    )
    assert result.code == EXIT_OK, result
    assert result.out.splitlines() == [
        "ENVIRONMENT  COPY  APPLICATION    NODE      STATE    PORTS",
        "staging      1     web-staging-1  10.0.0.1  running  20000->80",
        "staging      2     web-staging-2  10.0.0.1  running  18080->80",
    ]
    assert "0/2 applications running, 0/2 datasets mounted" in result.err
    names = [c.name for c in fired(cluster.client.list_containers_configuration())]
    assert names == ["web", "web-staging-1", "web-staging-2"]


def test_env_ls_json(env_cluster: Cluster) -> None:
    """``env ls --json`` gives each copy's applications with their node and state."""
    cluster = env_cluster
    invoke(cluster, "env", "clone", "staging", "--apps", "web", "--copy", "alice")
    [environment] = invoke(cluster, "--json", "env", "ls").json()
    assert (environment["name"], environment["applications"]) == ("staging", ["web"])
    [copy] = environment["copies"]
    [application] = copy["applications"]
    assert application == {
        "name": "web-staging-alice",
        "origin": "web",
        "node_uuid": str(N1),
        "node_address": "10.0.0.1",
        "ports": [{"internal": 80, "external": 20000}],
        "state": "pending",
    }
    [dataset] = copy["datasets"]
    assert dataset["origin"] == {"dataset_id": str(D1), "snapshot": environment["snapshot"]}
    assert invoke(cluster, "--json", "env", "ls", "staging").json() == [environment]


def test_env_reset_and_rm(env_cluster: Cluster) -> None:
    """A reset copy gets fresh clones; copies, then the environment, are removed."""
    cluster = env_cluster
    invoke(cluster, "env", "clone", "staging", "--apps", "web", "--copies", "2")
    [listed] = invoke(cluster, "--json", "env", "ls", "staging").json()
    before = listed["copies"][0]
    reset = invoke(cluster, "--json", "env", "reset", "staging", "1")
    assert reset.code == EXIT_OK, reset
    assert reset.json()["datasets"] != before["datasets"]
    removed = invoke(cluster, "env", "rm", "staging", "1")
    assert removed.out == "removed copy 1 of environment staging (web-staging-1)\n"
    assert invoke(cluster, "env", "rm", "staging").out == "removed environment staging\n"
    assert invoke(cluster, "--json", "env", "ls").json() == []
    names = [c.name for c in fired(cluster.client.list_containers_configuration())]
    assert names == ["web"]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (("env", "clone", "s", "--apps", "nope", "--copies", "1"), "unknown application 'nope'"),
        (("env", "ls", "other"), "unknown environment 'other'"),
        (("env", "reset", "staging", "9"), "has no copy '9'"),
        (("env", "rm", "staging", "9"), "has no copy '9'"),
        (("env", "clone", "staging", "--apps", "web", "--copies", "1"), "already exists"),
    ],
)
def test_env_refusals(env_cluster: Cluster, argv: tuple[str, ...], says: str) -> None:
    """Unknown applications, environments and copies, taken names: one line, nothing changed."""
    cluster = env_cluster
    invoke(cluster, "env", "clone", "staging", "--apps", "web", "--copies", "1")
    before = configuration(cluster)
    assert_error(invoke(cluster, *argv), EXIT_ERROR, says)
    assert configuration(cluster) == before
