"""
Tests of how ``flocker datasets ls`` and ``flocker snapshots ls`` show what
failovers leave: a fenced primary, the epoch, failover_snapshot, and
set-aside snapshots (the fake REST API for ``datasets ls``, the real one in
memory for ``snapshots ls``).
"""

import pytest

from flocker.cli._errors import EXIT_OK
from flocker.control._state import DatasetState, NodeState, Snapshot
from flocker.control.test.test_httpapi import DATASET, NODE_B

from ._fake_cluster import D1, N1, N2, Cluster, add_dataset, invoke
from .test_snapshots import converge as converge_rest
from .test_snapshots import make_rest_cluster, run_cli

DIVERGED = "flocker-diverged-0-1700000000000000000"


@pytest.fixture
def replicated(cluster: Cluster) -> Cluster:
    """Dataset "db" on N1 (10.0.0.1), replicated to N2, reported converged."""
    add_dataset(cluster, D1, N1, "db")
    cluster.client.update_dataset(D1, replicas=[N2])
    cluster.client.synchronize_state()
    return cluster


def test_ls_shows_fenced_primary(replicated: Cluster) -> None:
    """A primary whose node fenced itself shows as fenced, in the table and JSON."""
    replicated.client.fence(N1)
    result = invoke(replicated, "datasets", "ls")
    assert result.code == EXIT_OK, result
    header, row = result.out.splitlines()
    assert "EPOCH" not in header  # nothing failed over yet
    assert row.split()[4] == "fenced"
    [view] = invoke(replicated, "--json", "datasets", "ls").json()
    assert (view["state"], view["path"]) == ("fenced", None)


def test_ls_shows_epoch_and_failover_snapshot_after_failover(
    replicated: Cluster
) -> None:
    """
    Once a dataset failed over, an EPOCH column appears (before REPLICAS) and
    the JSON names the snapshot the new primary started from.
    """
    replicated.clock.advance(60)
    replicated.client.failover_dataset(D1, N2)
    replicated.client.synchronize_state()
    result = invoke(replicated, "datasets", "ls")
    header, row = result.out.splitlines()
    assert header.split()[-2:] == ["EPOCH", "REPLICAS"]
    assert row.split()[-5:] == ["1", "10.0.0.1", "(diverged,", "epoch", "0)"]
    [view] = invoke(replicated, "--json", "datasets", "ls").json()
    assert (view["epoch"], view["failover_snapshot"]) == (1, "replicated")


def test_ls_shows_a_replica_that_has_not_rejoined_once_as_diverged(
    replicated: Cluster
) -> None:
    """
    An old primary named a replica again whose copy is still diverged (it
    has not rejoined yet) is one ``diverged`` cell, not also a replica
    with no data; the JSON keeps both lists.
    """
    replicated.clock.advance(60)
    replicated.client.failover_dataset(D1, N2)
    replicated.client.update_dataset(D1, replicas=[N1])
    replicated.client.synchronize_state()
    result = invoke(replicated, "datasets", "ls")
    assert result.code == EXIT_OK, result
    header, row = result.out.splitlines()
    assert row.count("10.0.0.1") == 1
    assert row.endswith("10.0.0.1 (diverged, epoch 0)")
    [view] = invoke(replicated, "--json", "datasets", "ls").json()
    assert [r["node_uuid"] for r in view["replicas"]] == [str(N1)]
    assert [d["node_uuid"] for d in view["diverged"]] == [str(N1)]


def test_ls_counts_set_aside_snapshots() -> None:
    """A replica that set snapshots aside says how many; the JSON lists them."""
    cluster = make_rest_cluster()
    api = cluster.api
    api.create_dataset(dataset_id=DATASET, metadata={"name": "db"}, replicas=[NODE_B])
    converge_rest(api)
    api.state.update_node_state(
        NodeState(
            uuid=NODE_B,
            datasets={
                DATASET: DatasetState(
                    dataset_id=DATASET,
                    role="replica",
                    epoch=0,
                    snapshots=[Snapshot(name="s", created=api.clock.seconds())],
                    set_aside=[Snapshot(name=DIVERGED, created=1700000000.0)],
                )
            },
        )
    )
    result = run_cli(cluster, "datasets", "ls")
    assert result.code == EXIT_OK, result
    assert result.out.splitlines()[1].endswith("10.0.0.2 (lag 0.0s, 1 set aside)")
    [view] = run_cli(cluster, "--json", "datasets", "ls").json()
    assert view["replicas"][0]["set_aside"] == [DIVERGED]

    listed = run_cli(cluster, "snapshots", "ls", "db")
    assert listed.code == EXIT_OK, listed
    header, *rows = listed.out.splitlines()
    assert header.split()[-3:] == ["SET", "ASIDE", "ON"]
    assert rows[-1].startswith(DIVERGED) and rows[-1].endswith("10.0.0.2")
    [snapshot] = run_cli(cluster, "--json", "snapshots", "ls", "db").json()
    assert (snapshot["name"], snapshot["node_uuid"], snapshot["set_aside"]) == (
        DIVERGED,
        NODE_B,
        True,
    )


def test_snapshots_ls_without_set_aside_as_before() -> None:
    """Without set-aside snapshots the table has its two columns only."""
    cluster = make_rest_cluster()
    cluster.api.create_dataset(dataset_id=DATASET, metadata={"name": "db"})
    converge_rest(cluster.api)
    assert run_cli(cluster, "snapshots", "create", "db", "monday").code == EXIT_OK
    listed = run_cli(cluster, "snapshots", "ls", "db")
    assert listed.out.splitlines()[0].split() == ["SNAPSHOT", "CREATED", "(UTC)"]
