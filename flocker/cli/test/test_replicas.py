"""Tests for ``flocker datasets replicate|unreplicate|failover`` against the fake REST API."""

from uuid import UUID

import pytest

from flocker.apiclient import (
    Container,
    Dataset,
    MountedDataset,
    Replication,
)
from flocker.cli._errors import EXIT_ERROR, EXIT_OK

from ._fake_cluster import (
    D1,
    D2,
    N1,
    N2,
    Cluster,
    add_dataset,
    assert_error,
    configuration,
    invoke,
)

N3 = UUID("33333333-3333-4333-8333-333333333333")


@pytest.fixture
def replicated(cluster: Cluster) -> Cluster:
    """The fake cluster with a third node and dataset "db" on N1, replicated to N2."""
    cluster.client.add_node(N3, "10.0.0.3")
    add_dataset(cluster, D1, N1, "db")
    cluster.client.update_dataset(D1, replicas=[N2])
    return cluster


def dataset(cluster: Cluster, dataset_id: UUID = D1) -> Dataset:
    """The dataset as the fake cluster has it configured."""
    return configuration(cluster)[0][dataset_id]


# -- replicate -----------------------------------------------------------------


def test_replicate_adds_replica(replicated: Cluster) -> None:
    """``replicate`` adds a standing replica on the node named by address."""
    result = invoke(replicated, "datasets", "replicate", "db", "--to", "10.0.0.3")
    assert result.code == EXIT_OK, result
    assert list(dataset(replicated).replicas) == [N2, N3]
    assert result.out == (
        f"dataset {D1} (db) is replicated continuously to 10.0.0.2, 10.0.0.3; "
        "fails over by hand\n"
    )


def test_replicate_with_automatic_failover(replicated: Cluster) -> None:
    """
    ``--failover automatic`` on a node already replicating changes only the
    failover setting, and the answer says the dataset fails over by itself.
    """
    result = invoke(
        replicated, "datasets", "replicate", "db", "--to", "10.0.0.2", "--failover", "automatic"
    )
    assert result.code == EXIT_OK, result
    assert result.out.endswith("to 10.0.0.2; fails over by itself\n")
    assert dataset(replicated).replication == Replication(failover="automatic")
    assert list(dataset(replicated).replicas) == [N2]


def test_replicate_unknown_failover_mode_is_a_usage_error(replicated: Cluster) -> None:
    """A ``--failover`` other than manual or automatic is refused (exit 2); nothing changes."""
    before = configuration(replicated)
    result = invoke(replicated, "datasets", "replicate", "db", "--to", "10.0.0.3", "--failover", "sometimes")
    assert_error(result, 2, "invalid choice: 'sometimes'")
    assert configuration(replicated) == before


def test_replicate_by_uuid_prefix_with_interval(replicated: Cluster) -> None:
    """A node UUID prefix works; ``--interval`` sets the replication interval."""
    result = invoke(
        replicated,
        "--json",
        "datasets",
        "replicate",
        "db",
        "--to",
        "3333",
        "--interval",
        "30",
    )
    assert result.json() == {
        "dataset_id": str(D1),
        "primary": str(N1),
        "replicas": [str(N2), str(N3)],
        "interval_seconds": 30,
        "failover": "manual",
    }
    assert dataset(replicated).replication == Replication(interval_seconds=30)


def test_replicate_changes_interval_of_existing_replica(replicated: Cluster) -> None:
    """``--interval`` on a node already replicating changes only the interval."""
    result = invoke(
        replicated, "datasets", "replicate", "db", "--to", "10.0.0.2", "--interval", "5"
    )
    assert result.code == EXIT_OK, result
    assert "every 5s to 10.0.0.2" in result.out
    assert list(dataset(replicated).replicas) == [N2]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (("--to", "10.0.0.1"), "is the dataset's primary"),
        (("--to", "10.0.0.2"), "already holds a standing replica"),
        (("--to", "nowhere"), "unknown node 'nowhere'"),
        (("--to", "10.0.0.3", "--interval", "-1"), "bad interval '-1'"),
        (("--to", "10.0.0.3", "--interval", "soon"), "bad interval 'soon'"),
    ],
)
def test_replicate_bad_input(
    replicated: Cluster, argv: tuple[str, ...], says: str
) -> None:
    """Bad nodes and intervals are one-line errors; nothing changes."""
    before = configuration(replicated)
    result = invoke(replicated, "datasets", "replicate", "db", *argv)
    assert_error(result, EXIT_ERROR, says)
    assert configuration(replicated) == before


def test_replicate_refused_by_cluster(replicated: Cluster) -> None:
    """A fifth replica is refused by the cluster: its reason is shown."""
    for n in range(4, 7):
        replicated.client.add_node(
            UUID(f"{n}{n}{n}{n}{n}{n}{n}{n}-0000-4000-8000-000000000000")
        )
    replicated.client.update_dataset(
        D1,
        replicas=[N2, N3]
        + [
            UUID(f"{n}{n}{n}{n}{n}{n}{n}{n}-0000-4000-8000-000000000000")
            for n in (4, 5)
        ],
    )
    before = configuration(replicated)
    result = invoke(replicated, "datasets", "replicate", "db", "--to", "6666")
    assert_error(result, EXIT_ERROR, "at most 4")
    assert configuration(replicated) == before


# -- unreplicate ---------------------------------------------------------------


def test_unreplicate_removes_replica(replicated: Cluster) -> None:
    """``unreplicate`` removes the node's standing replica."""
    result = invoke(replicated, "datasets", "unreplicate", "db", "--from", "10.0.0.2")
    assert result.code == EXIT_OK, result
    assert list(dataset(replicated).replicas) == []
    assert result.out == f"dataset {D1} (db) has no standing replicas\n"


def test_unreplicate_node_without_replica(replicated: Cluster) -> None:
    """A node holding no replica is a one-line error; nothing changes."""
    before = configuration(replicated)
    result = invoke(replicated, "datasets", "unreplicate", "db", "--from", "10.0.0.3")
    assert_error(result, EXIT_ERROR, "holds no standing replica")
    assert configuration(replicated) == before


# -- failover ------------------------------------------------------------------


def test_failover_prints_epoch_snapshot_and_window(replicated: Cluster) -> None:
    """``failover`` prints the new primary, the epoch, the snapshot and the window."""
    replicated.client.synchronize_state()
    replicated.clock.advance(90)
    result = invoke(replicated, "datasets", "failover", "db", "--to", "10.0.0.2")
    assert result.code == EXIT_OK, result
    assert result.out.splitlines() == [
        f"failed over dataset {D1} to 10.0.0.2: epoch 1",
        "starting from snapshot replicated taken 1970-01-01 00:00:00 UTC; "
        "data-loss window 1m30s",
    ]
    assert dataset(replicated).primary == N2
    assert dataset(replicated).epoch == 1


def test_failover_json_names_every_dataset(replicated: Cluster) -> None:
    """With ``--json`` the answer lists every dataset of the application failed over."""
    add_dataset(replicated, D2, N1, "logs")
    replicated.client.update_dataset(D2, replicas=[N2])
    replicated.client.create_container(
        Container(
            node_uuid=N1,
            name="app",
            image="i",
            volumes=[
                MountedDataset(dataset_id=D1, mountpoint="/data"),
                MountedDataset(dataset_id=D2, mountpoint="/logs"),
            ],
        )
    )
    replicated.client.synchronize_state()
    result = invoke(
        replicated, "--json", "datasets", "failover", "db", "--to", "10.0.0.2"
    )
    assert result.json() == {
        "dataset_id": str(D1),
        "primary": str(N2),
        "epoch": 1,
        "datasets": sorted([str(D1), str(D2)]),
        "snapshot": "replicated",
        "snapshot_created": 0.0,
        "data_loss_window_seconds": 0.0,
    }


def test_failover_refused_while_primary_alive(replicated: Cluster) -> None:
    """A primary heard from recently is not failed over without ``--force``."""
    replicated.client.synchronize_state()
    replicated.client.heard_from(N1)
    before = configuration(replicated)
    result = invoke(replicated, "datasets", "failover", "db", "--to", "10.0.0.2")
    assert_error(result, EXIT_ERROR, "the control service refused the request")
    assert configuration(replicated) == before
    forced = invoke(
        replicated, "datasets", "failover", "db", "--to", "10.0.0.2", "--force"
    )
    assert forced.code == EXIT_OK, forced
    assert dataset(replicated).primary == N2


def test_failover_to_node_without_replica(replicated: Cluster) -> None:
    """A node holding no replica is refused by the cluster, in one line."""
    replicated.client.synchronize_state()
    before = configuration(replicated)
    result = invoke(replicated, "datasets", "failover", "db", "--to", "10.0.0.3")
    assert_error(result, EXIT_ERROR, "no standing replica")
    assert configuration(replicated) == before


def test_failover_refusal_names_the_cli_option(replicated: Cluster) -> None:
    """
    The control service's refusal of a failover while the primary was
    heard from recently reaches the CLI user telling them to pass
    ``--force`` (the REST wording says ``force``, the request's field).
    """
    replicated.client.synchronize_state()
    replicated.client.heard_from(N1)
    result = invoke(replicated, "datasets", "failover", "db", "--to", "10.0.0.2")
    assert_error(
        result,
        EXIT_ERROR,
        "it may still be serving the dataset; wait, or pass --force to fail over anyway",
    )
    assert "pass force" not in result.err


# -- ls: diverged copies -------------------------------------------------------


def failed_over(cluster: Cluster) -> None:
    """
    Fail "db" over to N2; once the state is synchronized N1 reports its old
    copy as diverged at epoch 0 (as a former primary's agent does when it
    hears of the failover).
    """
    cluster.client.synchronize_state()
    cluster.client.failover_dataset(D1, N2)
    cluster.client.synchronize_state()


def test_ls_shows_diverged_copy_in_replicas_column(replicated: Cluster) -> None:
    """
    A diverged copy appears in the REPLICAS column with its node and epoch,
    even when the dataset has no standing replica left.
    """
    failed_over(replicated)
    result = invoke(replicated, "datasets", "ls")
    assert result.code == EXIT_OK, result
    header, row = result.out.splitlines()
    assert header.split()[-1] == "REPLICAS"
    assert row.split()[3] == "10.0.0.2"
    assert row.endswith("10.0.0.1 (diverged, epoch 0)")


def test_ls_lists_diverged_after_standing_replicas(replicated: Cluster) -> None:
    """A dataset's standing replicas come first, then its diverged copies."""
    replicated.client.update_dataset(D1, replicas=[N2, N3])
    failed_over(replicated)
    replicated.clock.advance(2)
    result = invoke(replicated, "datasets", "ls")
    assert result.out.splitlines()[1].endswith(
        "10.0.0.3 (lag 2.0s), 10.0.0.1 (diverged, epoch 0)"
    )


def test_ls_json_includes_diverged_copies(replicated: Cluster) -> None:
    """``--json`` lists each diverged copy's node, address, epoch and snapshot."""
    failed_over(replicated)
    [view] = invoke(
        replicated, "--json", "datasets", "ls"
    ).json()
    assert view["epoch"] == 1
    assert view["diverged"] == [
        {
            "node_uuid": str(N1),
            "address": "10.0.0.1",
            "epoch": 0,
            "last_snapshot": "replicated",
        }
    ]


def test_ls_without_replicas_or_diverged_copies_has_no_replicas_column(
    cluster: Cluster
) -> None:
    """A cluster that does not replicate sees the table without a REPLICAS column."""
    add_dataset(cluster, D1, N1, "db")
    result = invoke(cluster, "datasets", "ls")
    assert result.out.splitlines()[0].split() == [
        "DATASET",
        "NAME",
        "SIZE",
        "NODE",
        "STATE",
        "PATH",
    ]
