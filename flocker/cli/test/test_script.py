"""
Tests for the ``flocker`` commands (`flocker.cli.script.run`) against the
in-memory REST API (`FakeFlockerClient`) and a `Clock`: output, parsing and
every error path, without sockets or sleeping.
"""

import json
from io import StringIO
from typing import Any
from uuid import UUID

import attrs
import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from flocker import __version__
from flocker.apiclient import (
    Container,
    ContainerPort,
    ContainerState,
    FakeFlockerClient,
    Link,
    MountedDataset,
)
from flocker.cli._errors import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    CLIError,
)
from flocker.cli._wait import POLL_INTERVAL
from flocker.cli.script import COMMAND_MODULES, build_parser, run

N1 = UUID("11111111-1111-4111-8111-111111111111")
N2 = UUID("22222222-2222-4222-8222-222222222222")
D1 = UUID("d1d1d1d1-0000-4000-8000-000000000001")
D2 = UUID("d2d2d2d2-0000-4000-8000-000000000002")
D3 = UUID("e3e3e3e3-0000-4000-8000-000000000003")


@attrs.define
class Cluster:
    """A fake cluster with two nodes, 10.0.0.1 (N1) and 10.0.0.2 (N2)."""

    clock: Clock
    client: FakeFlockerClient


@attrs.frozen
class Result:
    """What a command printed and its exit code; ``connected``: a client was made."""

    code: int
    out: str
    err: str
    connected: bool

    def json(self):
        """The JSON it printed."""
        return json.loads(self.out)


@pytest.fixture
def cluster():
    """An empty fake cluster with two nodes."""
    clock = Clock()
    client = FakeFlockerClient(clock)
    client.add_node(N1, "10.0.0.1")
    client.add_node(N2, "10.0.0.2")
    return Cluster(clock, client)


def collect(deferred: Deferred[int]) -> list[Any]:
    """A list that gets the Deferred's result (or Failure) when it fires."""
    results: list[Any] = []

    def record(result: Any) -> Any:
        results.append(result)
        return None

    deferred.addBoth(record)
    return results


def invoke(cluster, *argv, on_poll=None, make_client=None):
    """
    Run ``flocker ARGV``, advancing the clock while it waits.

    :param on_poll: called with the number of the poll before each advance.
    """
    out, err = StringIO(), StringIO()
    made = []

    def make(options):
        made.append(options)
        if make_client is not None:
            return make_client(options)
        return cluster.client

    results = collect(
        Deferred.fromCoroutine(run(list(argv), cluster.clock, out, err, make))
    )
    polls = 0
    while not results:
        polls += 1
        assert polls < 10_000, "the command never finished"
        if on_poll is not None:
            on_poll(polls)
        cluster.clock.advance(POLL_INTERVAL)
    assert isinstance(results[0], int), results[0]
    return Result(results[0], out.getvalue(), err.getvalue(), bool(made))


def configuration(cluster):
    """The fake's dataset and container configuration, to compare before/after."""
    datasets = cluster.client.list_datasets_configuration().result.datasets
    containers = cluster.client.list_containers_configuration().result
    return dict(datasets), list(containers)


def add_dataset(
    cluster, dataset_id=D1, node=N1, name="db", size=None, synchronize=True
):
    """Configure a dataset directly; make the state show it mounted."""
    cluster.client.create_dataset(
        node,
        maximum_size=size,
        dataset_id=dataset_id,
        metadata=None if name is None else {"name": name},
    )
    if synchronize:
        cluster.client.synchronize_state()


def assert_error(result, code, says):
    """One ``flocker: error:`` line saying ``says``, exit ``code``, nothing on stdout."""
    assert result.code == code, result
    assert result.out == ""
    lines = result.err.splitlines()
    assert lines[-1].startswith("flocker: error: "), result.err
    assert says in lines[-1], result.err
    assert "Traceback" not in result.err


# -- flocker nodes -------------------------------------------------------------


def test_nodes_table(cluster):
    """``flocker nodes`` shows each node's UUID, address, datasets and apps."""
    add_dataset(cluster)
    result = invoke(cluster, "nodes")
    assert result.code == EXIT_OK
    assert result.out.splitlines() == [
        "NODE                                  ADDRESS   DATASETS  APPS",
        f"{N1}  10.0.0.1  1         0",
        f"{N2}  10.0.0.2  0         0",
    ]


def test_nodes_json(cluster):
    """``--json`` before or after the command prints the nodes as JSON."""
    add_dataset(cluster)
    expected = [
        {"uuid": str(N1), "address": "10.0.0.1", "datasets": 1, "apps": 0},
        {"uuid": str(N2), "address": "10.0.0.2", "datasets": 0, "apps": 0},
    ]
    assert invoke(cluster, "--json", "nodes").json() == expected
    assert invoke(cluster, "nodes", "--json").json() == expected


# -- flocker datasets ls -------------------------------------------------------


def test_datasets_ls_table(cluster):
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


def test_datasets_ls_json(cluster):
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
    }


def test_datasets_ls_moving_and_deleting(cluster):
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


def test_datasets_ls_empty(cluster):
    """Without datasets the table is its header and the JSON an empty list."""
    assert invoke(cluster, "datasets", "ls").out.startswith("DATASET  NAME")
    assert invoke(cluster, "datasets", "ls", "--json").json() == []


# -- flocker datasets create ---------------------------------------------------


def test_create(cluster):
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


def test_create_by_node_uuid_json(cluster):
    """The node may be named by UUID prefix; ``--json`` prints the new dataset."""
    view = invoke(cluster, "--json", "datasets", "create", "--node", "1111").json()
    assert view["primary"] == str(N1)
    assert view["maximum_size"] is None
    assert view["name"] is None
    assert view["state"] == "pending"


def test_create_wait(cluster):
    """``--wait`` returns once the node reports the dataset mounted, with progress on stderr."""

    def poll(n):
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


def test_create_wait_timeout(cluster):
    """A --wait that runs out of time exits 4; the dataset stays configured."""
    result = invoke(
        cluster, "datasets", "create", "--node", "10.0.0.1", "--wait", "--timeout", "2"
    )
    assert_error(result, EXIT_TIMEOUT, "timed out after 2s waiting for dataset")
    assert "the change is configured" in result.err
    assert len(configuration(cluster)[0]) == 1


@pytest.mark.parametrize("size", ["1X", "ten", "100", "0", "1023K", "1.5.5G"])
def test_create_bad_size(cluster, size):
    """A bad size is refused before the cluster is even contacted."""
    before = configuration(cluster)
    result = invoke(cluster, "datasets", "create", "--node", "10.0.0.1", "--size", size)
    assert_error(result, EXIT_ERROR, f"bad size {size!r}")
    assert not result.connected
    assert configuration(cluster) == before


@pytest.mark.parametrize("timeout", ["0", "-1", "soon", "inf"])
def test_bad_timeout(cluster, timeout):
    """A bad --timeout is refused before the cluster is contacted."""
    result = invoke(cluster, "datasets", "create", "--node", "x", "--timeout", timeout)
    assert_error(result, EXIT_ERROR, "bad timeout")
    assert not result.connected


def test_create_unknown_node(cluster):
    """An unknown node is bad input; nothing is created."""
    result = invoke(cluster, "datasets", "create", "--node", "10.0.0.9")
    assert_error(
        result, EXIT_ERROR, "unknown node '10.0.0.9' (nodes: 10.0.0.1, 10.0.0.2)"
    )
    assert configuration(cluster) == ({}, [])


def test_create_duplicate_name(cluster):
    """A name another dataset has is refused: names must pick one dataset."""
    add_dataset(cluster, D1, N1, "db")
    before = configuration(cluster)
    result = invoke(cluster, "datasets", "create", "--node", "10.0.0.2", "--name", "db")
    assert_error(result, EXIT_ERROR, f"a dataset named 'db' exists already ({D1})")
    assert configuration(cluster) == before


def test_create_empty_name(cluster):
    """An empty name is refused."""
    result = invoke(cluster, "datasets", "create", "--node", "10.0.0.2", "--name", " ")
    assert_error(result, EXIT_ERROR, "must not be empty")
    assert configuration(cluster) == ({}, [])


# -- flocker datasets move / resize / rm ---------------------------------------


@pytest.mark.parametrize("name", ["db", "d1d1", str(D1)])
def test_move(cluster, name):
    """``move`` makes the target node the primary; the dataset is named by name, prefix or UUID."""
    add_dataset(cluster)
    result = invoke(cluster, "datasets", "move", name, "--to", "10.0.0.2")
    assert result.code == EXIT_OK
    assert configuration(cluster)[0][D1].primary == N2
    assert result.out == f"moving dataset {D1} (db) on 10.0.0.2, moving\n"


def test_move_wait(cluster):
    """``move --wait`` shows the state changes and ends when the target mounts it."""
    add_dataset(cluster)

    def poll(n):
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


def test_move_wait_json(cluster):
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


def test_move_wait_timeout(cluster):
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


def test_progress_on_terminal(cluster):
    """On a terminal the progress line is rewritten in place."""
    add_dataset(cluster)

    class Terminal(StringIO):
        def isatty(self):
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
def test_dataset_bad_input(cluster, argv, says):
    """Unknown or ambiguous datasets and nodes are one-line errors; nothing changes."""
    add_dataset(cluster, D1, N1, "db")
    add_dataset(cluster, D2, N1, "logs")
    add_dataset(cluster, D3, N1, "old")
    cluster.client.delete_dataset(D3)
    before = configuration(cluster)
    assert_error(invoke(cluster, *argv), EXIT_ERROR, says)
    assert configuration(cluster) == before


def test_move_refused_by_cluster(cluster):
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


def test_resize(cluster):
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


def test_resize_bad_size(cluster):
    """A bad size is refused before the cluster is contacted."""
    add_dataset(cluster, size=2**30)
    result = invoke(cluster, "datasets", "resize", "db", "big")
    assert_error(result, EXIT_ERROR, "bad size 'big'")
    assert not result.connected
    assert configuration(cluster)[0][D1].maximum_size == 2**30


def test_rm(cluster):
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


def test_rm_in_use(cluster):
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


# -- flocker apps --------------------------------------------------------------


def test_deploy(cluster):
    """``deploy`` configures the application with ports, volume, environment and links."""
    add_dataset(cluster)
    result = invoke(
        cluster,
        "apps",
        "deploy",
        "web",
        "--image",
        "counter:2",
        "--node",
        "10.0.0.1",
        "--port",
        "8080:80",
        "--port",
        "8443:443",
        "--volume",
        "db:/data",
        "--env",
        "A=1",
        "--env",
        "B=x=y",
        "--link",
        "backend:80:9000",
    )
    assert result.code == EXIT_OK, result
    assert result.out == "deployed application web on 10.0.0.1, pending\n"
    [container] = configuration(cluster)[1]
    assert container == Container(
        node_uuid=N1,
        name="web",
        image="counter:2",
        ports=[
            ContainerPort(external=8080, internal=80),
            ContainerPort(external=8443, internal=443),
        ],
        environment={"A": "1", "B": "x=y"},
        volumes=[MountedDataset(dataset_id=D1, mountpoint="/data")],
        links=[Link(alias="backend", local_port=80, remote_port=9000)],
    )


def test_deploy_wait(cluster):
    """``deploy --wait`` returns once the node reports the application running."""
    result = invoke(
        cluster,
        "apps",
        "deploy",
        "web",
        "--image",
        "i",
        "--node",
        "10.0.0.2",
        "--wait",
        on_poll=lambda n: n == 2 and cluster.client.synchronize_state(),
    )
    assert result.code == EXIT_OK
    assert result.out == "deployed application web on 10.0.0.2, running\n"
    assert (
        result.err.splitlines()[-1]
        == "application web running on 10.0.0.2: running after 1.0s"
    )


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--port", "80", "bad --port '80'"),
        ("--port", "x:80", "bad --port 'x:80'"),
        ("--port", "70000:80", "not a port number"),
        ("--env", "NOEQUALS", "bad --env 'NOEQUALS'"),
        ("--env", "=v", "bad --env '=v'"),
        ("--link", "a:1", "bad --link 'a:1'"),
        ("--link", "a:1:0", "bad --link 'a:1:0'"),
        ("--volume", "db", "bad --volume 'db'"),
        ("--volume", "db:relative", "bad --volume 'db:relative'"),
        ("--timeout", "x", "bad timeout"),
    ],
)
def test_deploy_bad_values(cluster, option, value, says):
    """Malformed values are refused before the cluster is contacted."""
    result = invoke(
        cluster,
        "apps",
        "deploy",
        "web",
        "--image",
        "i",
        "--node",
        "10.0.0.1",
        option,
        value,
    )
    assert_error(result, EXIT_ERROR, says)
    assert not result.connected
    assert configuration(cluster) == ({}, [])


def test_deploy_dataset_elsewhere(cluster):
    """A volume's dataset must be on the application's node; the error says how to fix it."""
    add_dataset(cluster, D1, N2, "db")
    before = configuration(cluster)
    result = invoke(
        cluster,
        "apps",
        "deploy",
        "web",
        "--image",
        "i",
        "--node",
        "10.0.0.1",
        "--volume",
        "db:/data",
    )
    assert_error(
        result,
        EXIT_ERROR,
        "dataset 'db' is on 10.0.0.2, not 10.0.0.1: move it first "
        "(flocker datasets move db --to 10.0.0.1)",
    )
    assert configuration(cluster) == before


def test_deploy_unknown_volume(cluster):
    """An unknown volume dataset is refused; nothing is deployed."""
    result = invoke(
        cluster,
        "apps",
        "deploy",
        "web",
        "--image",
        "i",
        "--node",
        "10.0.0.1",
        "--volume",
        "x:/d",
    )
    assert_error(result, EXIT_ERROR, "unknown dataset 'x'")
    assert configuration(cluster) == ({}, [])


def test_deploy_existing(cluster):
    """Deploying a name that exists is refused by the cluster."""
    cluster.client.create_container(Container(node_uuid=N1, name="web", image="i"))
    before = configuration(cluster)
    result = invoke(
        cluster, "apps", "deploy", "web", "--image", "j", "--node", "10.0.0.2"
    )
    assert_error(result, EXIT_ERROR, "already exists")
    assert configuration(cluster) == before


def test_apps_ls(cluster):
    """Applications show name, node, image, state, ports and volumes."""
    add_dataset(cluster)
    cluster.client.create_container(
        Container(
            node_uuid=N1,
            name="web",
            image="counter:2",
            ports=[ContainerPort(external=8080, internal=80)],
            volumes=[MountedDataset(dataset_id=D1, mountpoint="/data")],
        )
    )
    cluster.client.synchronize_state()
    cluster.client.create_container(
        Container(node_uuid=N2, name="worker", image="busybox")
    )
    result = invoke(cluster, "apps", "ls")
    assert result.out.splitlines() == [
        "NAME    NODE      IMAGE      STATE    PORTS     VOLUMES",
        "web     10.0.0.1  counter:2  running  8080->80  db:/data",
        "worker  10.0.0.2  busybox    pending",
    ]
    views = invoke(cluster, "apps", "ls", "--json").json()
    assert [(v["name"], v["running"], v["state"]) for v in views] == [
        ("web", True, "running"),
        ("worker", False, "pending"),
    ]
    assert views[0]["volumes"] == [
        {"dataset_id": str(D1), "name": "db", "mountpoint": "/data"}
    ]
    assert views[0]["ports"] == [{"external": 8080, "internal": 80}]


def test_apps_ls_stopped_and_moving(cluster):
    """A reported stopped application is ``stopped``; one only elsewhere ``moving``."""
    cluster.client.create_container(Container(node_uuid=N1, name="a", image="i"))
    cluster.client.create_container(Container(node_uuid=N1, name="b", image="i"))
    cluster.client.synchronize_state()
    cluster.client._state_containers = [
        ContainerState(
            container=Container(node_uuid=N1, name="a", image="i"), running=False
        ),
        ContainerState(
            container=Container(node_uuid=N2, name="b", image="i"), running=True
        ),
    ]
    views = invoke(cluster, "--json", "apps", "ls").json()
    assert [(v["name"], v["state"]) for v in views] == [
        ("a", "stopped"),
        ("b", "moving"),
    ]


def test_apps_move_wait(cluster):
    """``apps move --wait`` moves the application and its dataset, waiting until it runs there."""
    add_dataset(cluster)
    cluster.client.create_container(
        Container(
            node_uuid=N1,
            name="web",
            image="i",
            volumes=[MountedDataset(dataset_id=D1, mountpoint="/data")],
        )
    )
    cluster.client.synchronize_state()
    result = invoke(
        cluster,
        "apps",
        "move",
        "web",
        "--to",
        "2222",
        "--wait",
        on_poll=lambda n: n == 3 and cluster.client.synchronize_state(),
    )
    assert result.code == EXIT_OK, result
    assert result.out == "moved application web on 10.0.0.2, running\n"
    assert result.err.splitlines() == [
        "waiting for application web running on 10.0.0.2: running on 10.0.0.1 [0.0s]",
        "application web running on 10.0.0.2: running after 1.5s",
    ]
    datasets, [container] = configuration(cluster)
    assert (container.node_uuid, datasets[D1].primary) == (N2, N2)


def test_apps_move_timeout(cluster):
    """An application move that does not converge in --timeout exits 4."""
    cluster.client.create_container(Container(node_uuid=N1, name="web", image="i"))
    result = invoke(
        cluster, "apps", "move", "web", "--to", "10.0.0.2", "--wait", "--timeout", "1"
    )
    assert_error(result, EXIT_TIMEOUT, "timed out after 1s waiting for application web")


def test_apps_move_and_rm(cluster):
    """Without --wait, ``move`` and ``rm`` change the configuration and say so."""
    cluster.client.create_container(Container(node_uuid=N1, name="web", image="i"))
    assert invoke(cluster, "apps", "move", "web", "--to", "10.0.0.2").out == (
        "moving application web on 10.0.0.2, pending\n"
    )
    assert configuration(cluster)[1][0].node_uuid == N2
    assert invoke(cluster, "--json", "apps", "rm", "web").json() == {
        "name": "web",
        "removed": True,
    }
    assert configuration(cluster)[1] == []


@pytest.mark.parametrize(
    "argv",
    [("apps", "move", "nope", "--to", "10.0.0.2"), ("apps", "rm", "nope")],
)
def test_unknown_app(cluster, argv):
    """An unknown application is a one-line error; nothing changes."""
    cluster.client.create_container(Container(node_uuid=N1, name="web", image="i"))
    before = configuration(cluster)
    assert_error(invoke(cluster, *argv), EXIT_ERROR, "unknown application 'nope'")
    assert configuration(cluster) == before


def test_apps_move_unknown_node(cluster):
    """Moving an application to an unknown node is refused."""
    cluster.client.create_container(Container(node_uuid=N1, name="web", image="i"))
    assert_error(
        invoke(cluster, "apps", "move", "web", "--to", "10.9.9.9"),
        EXIT_ERROR,
        "unknown node",
    )
    assert configuration(cluster)[1][0].node_uuid == N1


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
def test_usage_errors(cluster, argv, says):
    """A malformed command line is one line and exit 2, before any connection."""
    result = invoke(cluster, *argv)
    assert_error(result, EXIT_USAGE, says)
    assert not result.connected


def test_help(cluster, capsys):
    """``--help`` exits 0 and documents the exit codes."""
    assert invoke(cluster, "--help").code == EXIT_OK
    text = capsys.readouterr().out
    assert "exit codes:" in text
    assert "4  a --wait timed out" in text


def test_version(cluster, capsys):
    """``--version`` prints the tool's version."""
    assert invoke(cluster, "--version").code == EXIT_OK
    assert capsys.readouterr().out == f"flocker {__version__}\n"


def test_unreachable(cluster):
    """A client that cannot be made (certificates, cluster file) is exit 3, one line."""

    def refuse(options):
        raise CLIError("key file /k does not exist", EXIT_UNREACHABLE)

    result = invoke(cluster, "nodes", make_client=refuse)
    assert_error(result, EXIT_UNREACHABLE, "key file /k does not exist")


def test_unexpected_error(cluster):
    """Even an unexpected exception is one line, not a traceback."""

    class Broken(FakeFlockerClient):
        def list_nodes(self):
            raise RuntimeError("boom")

    result = invoke(cluster, "nodes", make_client=lambda o: Broken(cluster.clock))
    assert_error(result, EXIT_ERROR, "unexpected RuntimeError: boom")


def test_options_after_command():
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


def test_registry():
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


def test_interrupted(cluster):
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
