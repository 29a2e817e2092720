"""Tests for ``flocker nodes`` and ``flocker datasets …`` against the in-memory REST API."""

from io import StringIO

import pytest
from twisted.internet.defer import Deferred

from flocker.apiclient import (
    Container,
    MountedDataset,
)
from flocker.cli._errors import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_TIMEOUT,
)
from flocker.cli._wait import POLL_INTERVAL
from flocker.cli.script import run

from ._fake_cluster import (
    D1,
    D2,
    D3,
    N1,
    N2,
    Cluster,
    add_dataset,
    assert_error,
    collect,
    configuration,
    invoke,
)

# -- flocker nodes -------------------------------------------------------------


def test_nodes_table(cluster: Cluster) -> None:
    """
    ``flocker nodes`` shows each node's UUID, address, datasets and apps, and
    whether it converges ("-": its dataset agent has not said).
    """
    add_dataset(cluster)
    result = invoke(cluster, "nodes")
    assert result.code == EXIT_OK
    assert result.out.splitlines() == [
        "NODE                                  ADDRESS   DATASETS  APPS  STATE",
        f"{N1}  10.0.0.1  1         0     -",
        f"{N2}  10.0.0.2  0         0     -",
    ]


def test_nodes_json(cluster: Cluster) -> None:
    """``--json`` before or after the command prints the nodes as JSON."""
    add_dataset(cluster)
    unknown = {"last_converged": None, "failing_changes": 0, "pool_full": False, "state": "-"}
    expected = [
        {"uuid": str(N1), "address": "10.0.0.1", "datasets": 1, "apps": 0, **unknown},
        {"uuid": str(N2), "address": "10.0.0.2", "datasets": 0, "apps": 0, **unknown},
    ]
    assert invoke(cluster, "--json", "nodes").json() == expected
    assert invoke(cluster, "nodes", "--json").json() == expected


# -- flocker datasets ls -------------------------------------------------------


def test_datasets_ls_table(cluster: Cluster) -> None:
    """Datasets show id, name, size, node address, state and path."""
    add_dataset(cluster, D1, N1, "db", 2**30)
    add_dataset(cluster, D2, N2, None, None, synchronize=False)
    result = invoke(cluster, "datasets", "ls")
    assert result.code == EXIT_OK
    assert result.out.splitlines() == [
        "DATASET                               NAME  SIZE  NODE      STATE    PATH",
        f"{D1}  db    1G    10.0.0.1  mounted  /flocker/{D1}",
        f"{D2}  -     -     10.0.0.2  pending  -",
    ]


def test_datasets_ls_shows_replicas_and_lag(cluster: Cluster) -> None:
    """A REPLICAS column shows each standing replica's node and lag."""
    add_dataset(cluster, D1, N1, "db", 2**30)
    add_dataset(cluster, D2, N1, "logs", None)
    cluster.client.update_dataset(D1, replicas=[N2])
    cluster.client.synchronize_state()
    cluster.clock.advance(1.25)
    result = invoke(cluster, "datasets", "ls")
    assert result.code == EXIT_OK
    header, first, second = result.out.splitlines()
    assert header.split() == ["DATASET", "NAME", "SIZE", "NODE", "STATE", "PATH", "REPLICAS"]
    assert first.endswith("10.0.0.2 (lag 1.2s)")
    assert second.endswith(f"/flocker/{D2}  -")
    [view, _] = invoke(cluster, "datasets", "ls", "--json").json()
    assert view["replicas"] == [
        {
            "node_uuid": str(N2),
            "address": "10.0.0.2",
            "last_snapshot": "replicated",
            "lag_seconds": 1.25,
        }
    ]


def test_datasets_ls_replica_without_data(cluster: Cluster) -> None:
    """A replica that has reported nothing yet says so."""
    add_dataset(cluster, D1, N1, "db", 2**30)
    cluster.client.update_dataset(D1, replicas=[N2])
    result = invoke(cluster, "datasets", "ls")
    assert result.out.splitlines()[1].endswith("10.0.0.2 (no data yet)")


def test_datasets_ls_json(cluster: Cluster) -> None:
    """``--json`` lists every field, with sizes in bytes."""
    add_dataset(cluster, D1, N1, "db", 2**30)
    [view] = invoke(cluster, "datasets", "ls", "--json").json()
    assert view == {
        "dataset_id": str(D1),
        "name": "db",
        "metadata": {"name": "db"},
        "maximum_size": 2**30,
        "primary": str(N1),
        "primary_address": "10.0.0.1",
        "state": "mounted",
        "path": f"/flocker/{D1}",
        "reported_on": [str(N1)],
        "replicas": [],
        "diverged": [],
        "epoch": 0,
    }


def test_datasets_ls_moving_and_deleting(cluster: Cluster) -> None:
    """A dataset still on its old node is ``moving``; a deleted one ``deleting``."""
    add_dataset(cluster, D1, N1, "a")
    add_dataset(cluster, D2, N1, "b")
    cluster.client.move_dataset(N2, D1)
    cluster.client.delete_dataset(D2)
    states = {
        v["name"]: v["state"]
        for v in invoke(cluster, "--json", "datasets", "ls").json()
    }
    assert states == {"a": "moving", "b": "deleting"}


def test_datasets_ls_empty(cluster: Cluster) -> None:
    """Without datasets the table is its header and the JSON an empty list."""
    assert invoke(cluster, "datasets", "ls").out.startswith("DATASET  NAME")
    assert invoke(cluster, "datasets", "ls", "--json").json() == []


# -- flocker datasets create ---------------------------------------------------


def test_create(cluster: Cluster) -> None:
    """``create`` configures a dataset with its size and name on the node."""
    result = invoke(
        cluster,
        "datasets",
        "create",
        "--node",
        "10.0.0.2",
        "--size",
        "512M",
        "--name",
        "db",
    )
    assert result.code == EXIT_OK
    [dataset] = configuration(cluster)[0].values()
    assert (dataset.primary, dataset.maximum_size, dict(dataset.metadata)) == (
        N2,
        512 * 2**20,
        {"name": "db"},
    )
    assert (
        result.out
        == f"created dataset {dataset.dataset_id} (db) on 10.0.0.2, pending\n"
    )


def test_create_by_node_uuid_json(cluster: Cluster) -> None:
    """The node may be named by UUID prefix; ``--json`` prints the new dataset."""
    view = invoke(cluster, "--json", "datasets", "create", "--node", "1111").json()
    assert view["primary"] == str(N1)
    assert view["maximum_size"] is None
    assert view["name"] is None
    assert view["state"] == "pending"


def test_create_wait(cluster: Cluster) -> None:
    """``--wait`` returns once the node reports the dataset mounted, with progress on stderr."""

    def poll(n: int) -> None:
        if n == 3:
            cluster.client.synchronize_state()

    result = invoke(
        cluster,
        "datasets",
        "create",
        "--node",
        "10.0.0.1",
        "--name",
        "db",
        "--wait",
        on_poll=poll,
    )
    assert result.code == EXIT_OK
    assert "mounted at /flocker/" in result.out
    lines = result.err.splitlines()
    assert lines[0].startswith("waiting for dataset ")
    assert "pending (reported on no node) [0.0s]" in lines[0]
    assert lines[-1].endswith(" after 1.5s")
    assert "mounted on 10.0.0.1: mounted at /flocker/" in lines[-1]


def test_create_wait_timeout(cluster: Cluster) -> None:
    """A --wait that runs out of time exits 4; the dataset stays configured."""
    result = invoke(
        cluster, "datasets", "create", "--node", "10.0.0.1", "--wait", "--timeout", "2"
    )
    assert_error(result, EXIT_TIMEOUT, "timed out after 2s waiting for dataset")
    assert "the change is configured" in result.err
    assert len(configuration(cluster)[0]) == 1


@pytest.mark.parametrize("size", ["1X", "ten", "100", "0", "1023K", "1.5.5G"])
def test_create_bad_size(cluster: Cluster, size: str) -> None:
    """A bad size is refused before the cluster is even contacted."""
    before = configuration(cluster)
    result = invoke(cluster, "datasets", "create", "--node", "10.0.0.1", "--size", size)
    assert_error(result, EXIT_ERROR, f"bad size {size!r}")
    assert not result.connected
    assert configuration(cluster) == before


@pytest.mark.parametrize("timeout", ["0", "-1", "soon", "inf"])
def test_bad_timeout(cluster: Cluster, timeout: str) -> None:
    """A bad --timeout is refused before the cluster is contacted."""
    result = invoke(cluster, "datasets", "create", "--node", "x", "--timeout", timeout)
    assert_error(result, EXIT_ERROR, "bad timeout")
    assert not result.connected


def test_create_unknown_node(cluster: Cluster) -> None:
    """An unknown node is bad input; nothing is created."""
    result = invoke(cluster, "datasets", "create", "--node", "10.0.0.9")
    assert_error(
        result, EXIT_ERROR, "unknown node '10.0.0.9' (nodes: 10.0.0.1, 10.0.0.2)"
    )
    assert configuration(cluster) == ({}, [])


def test_create_duplicate_name(cluster: Cluster) -> None:
    """A name another dataset has is refused: names must pick one dataset."""
    add_dataset(cluster, D1, N1, "db")
    before = configuration(cluster)
    result = invoke(cluster, "datasets", "create", "--node", "10.0.0.2", "--name", "db")
    assert_error(result, EXIT_ERROR, f"a dataset named 'db' exists already ({D1})")
    assert configuration(cluster) == before


def test_create_empty_name(cluster: Cluster) -> None:
    """An empty name is refused."""
    result = invoke(cluster, "datasets", "create", "--node", "10.0.0.2", "--name", " ")
    assert_error(result, EXIT_ERROR, "must not be empty")
    assert configuration(cluster) == ({}, [])


# -- flocker datasets move / resize / rm ---------------------------------------


@pytest.mark.parametrize("name", ["db", "d1d1", str(D1)])
def test_move(cluster: Cluster, name: str) -> None:
    """``move`` makes the target node the primary; the dataset is named by name, prefix or UUID."""
    add_dataset(cluster)
    result = invoke(cluster, "datasets", "move", name, "--to", "10.0.0.2")
    assert result.code == EXIT_OK
    assert configuration(cluster)[0][D1].primary == N2
    assert result.out == f"moving dataset {D1} (db) on 10.0.0.2, moving\n"


def test_move_wait(cluster: Cluster) -> None:
    """``move --wait`` shows the state changes and ends when the target mounts it."""
    add_dataset(cluster)

    def poll(n: int) -> None:
        if n == 4:
            cluster.client.synchronize_state()

    result = invoke(
        cluster, "datasets", "move", "db", "--to", "10.0.0.2", "--wait", on_poll=poll
    )
    assert result.code == EXIT_OK, result
    assert (
        result.out == f"moved dataset {D1} (db) on 10.0.0.2, mounted at /flocker/{D1}\n"
    )
    lines = result.err.splitlines()
    assert lines == [
        "waiting for dataset d1d1d1d1 mounted on 10.0.0.2: moving (reported on 10.0.0.1) [0.0s]",
        f"dataset d1d1d1d1 mounted on 10.0.0.2: mounted at /flocker/{D1} after 2.0s",
    ]


def test_move_wait_json(cluster: Cluster) -> None:
    """With --json the result is the dataset's JSON, progress staying on stderr."""
    add_dataset(cluster)
    result = invoke(
        cluster,
        "--json",
        "datasets",
        "move",
        "db",
        "--to",
        "10.0.0.2",
        "--wait",
        on_poll=lambda n: cluster.client.synchronize_state(),
    )
    assert result.json()["state"] == "mounted"
    assert "waiting for" in result.err or "mounted on" in result.err


def test_move_wait_timeout(cluster: Cluster) -> None:
    """A move that does not converge in --timeout exits 4, saying the last state."""
    add_dataset(cluster)
    result = invoke(
        cluster,
        "datasets",
        "move",
        "db",
        "--to",
        "10.0.0.2",
        "--wait",
        "--timeout",
        "1.5",
    )
    assert_error(result, EXIT_TIMEOUT, "(state: moving (reported on 10.0.0.1))")
    assert configuration(cluster)[0][D1].primary == N2


def test_progress_on_terminal(cluster: Cluster) -> None:
    """On a terminal the progress line is rewritten in place."""
    add_dataset(cluster)

    class Terminal(StringIO):
        def isatty(self) -> bool:
            return True

    err = Terminal()
    results = collect(
        Deferred.fromCoroutine(
            run(
                ["datasets", "move", "db", "--to", "10.0.0.2", "--wait"],
                cluster.clock,
                StringIO(),
                err,
                lambda o: cluster.client,
            )
        )
    )
    cluster.clock.advance(POLL_INTERVAL)
    cluster.client.synchronize_state()
    cluster.clock.advance(POLL_INTERVAL)
    assert results == [EXIT_OK]
    text = err.getvalue()
    assert text.count("\r\x1b[K") == 3
    assert "[0.5s]" in text
    assert text.endswith("after 1.0s\n")


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (("datasets", "move", "nope", "--to", "10.0.0.2"), "unknown dataset 'nope'"),
        (("datasets", "move", "db", "--to", "nowhere"), "unknown node 'nowhere'"),
        (("datasets", "move", "d", "--to", "10.0.0.2"), "dataset 'd' is ambiguous"),
        (("datasets", "resize", "nope", "2G"), "unknown dataset 'nope'"),
        (("datasets", "rm", "nope"), "unknown dataset 'nope'"),
        (("datasets", "rm", "old"), "unknown dataset 'old'"),
    ],
)
def test_dataset_bad_input(cluster: Cluster, argv: tuple[str, ...], says: str) -> None:
    """Unknown or ambiguous datasets and nodes are one-line errors; nothing changes."""
    add_dataset(cluster, D1, N1, "db")
    add_dataset(cluster, D2, N1, "logs")
    add_dataset(cluster, D3, N1, "old")
    cluster.client.delete_dataset(D3)
    before = configuration(cluster)
    assert_error(invoke(cluster, *argv), EXIT_ERROR, says)
    assert configuration(cluster) == before


def test_move_refused_by_cluster(cluster: Cluster) -> None:
    """A dataset an application uses cannot move alone: the cluster's reason is shown."""
    add_dataset(cluster)
    cluster.client.create_container(
        Container(
            node_uuid=N1,
            name="app",
            image="i",
            volumes=[MountedDataset(dataset_id=D1, mountpoint="/data")],
        )
    )
    before = configuration(cluster)
    result = invoke(cluster, "datasets", "move", "db", "--to", "10.0.0.2")
    assert_error(result, EXIT_ERROR, "the control service refused the request: dataset")
    assert "used by 'app'" in result.err
    assert configuration(cluster) == before


def test_resize(cluster: Cluster) -> None:
    """``resize`` sets the maximum size; ``unlimited`` removes it."""
    add_dataset(cluster, size=2**30)
    result = invoke(cluster, "datasets", "resize", "db", "1.5G")
    assert result.out == f"resized dataset {D1} to 1.5G\n"
    assert configuration(cluster)[0][D1].maximum_size == 3 * 2**29
    assert (
        invoke(cluster, "--json", "datasets", "resize", "db", "unlimited").json()[
            "maximum_size"
        ]
        is None
    )


def test_resize_bad_size(cluster: Cluster) -> None:
    """A bad size is refused before the cluster is contacted."""
    add_dataset(cluster, size=2**30)
    result = invoke(cluster, "datasets", "resize", "db", "big")
    assert_error(result, EXIT_ERROR, "bad size 'big'")
    assert not result.connected
    assert configuration(cluster)[0][D1].maximum_size == 2**30


def test_rm(cluster: Cluster) -> None:
    """``rm`` deletes the dataset."""
    add_dataset(cluster)
    result = invoke(cluster, "datasets", "rm", "db")
    assert result.out == f"deleted dataset {D1}\n"
    assert configuration(cluster)[0][D1].deleted
    add_dataset(cluster, D2, N2, "x")
    assert invoke(cluster, "--json", "datasets", "rm", "x").json() == {
        "dataset_id": str(D2),
        "deleted": True,
    }


def test_rm_in_use(cluster: Cluster) -> None:
    """A dataset an application mounts is not deleted."""
    add_dataset(cluster)
    cluster.client.create_container(
        Container(
            node_uuid=N1,
            name="app",
            image="i",
            volumes=[MountedDataset(dataset_id=D1, mountpoint="/data")],
        )
    )
    before = configuration(cluster)
    assert_error(invoke(cluster, "datasets", "rm", "db"), EXIT_ERROR, "used by 'app'")
    assert configuration(cluster) == before
