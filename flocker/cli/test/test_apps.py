"""Tests for ``flocker apps …`` against the in-memory REST API."""

import pytest

from flocker.apiclient import (
    Container,
    ContainerPort,
    ContainerState,
    ImagePullState,
    Link,
    MountedDataset,
)
from flocker.cli._errors import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_TIMEOUT,
)

from ._fake_cluster import (
    D1,
    N1,
    N2,
    Cluster,
    add_dataset,
    assert_error,
    configuration,
    invoke,
)

# -- flocker apps --------------------------------------------------------------


def test_deploy(cluster: Cluster) -> None:
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


def test_deploy_wait(cluster: Cluster) -> None:
    """``deploy --wait`` returns once the node reports the application running."""

    def poll(number: int) -> None:
        if number == 2:
            cluster.client.synchronize_state()

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
        on_poll=poll,
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
def test_deploy_bad_values(
    cluster: Cluster, option: str, value: str, says: str
) -> None:
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


def test_deploy_dataset_elsewhere(cluster: Cluster) -> None:
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


def test_deploy_unknown_volume(cluster: Cluster) -> None:
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


def test_deploy_existing(cluster: Cluster) -> None:
    """Deploying a name that exists is refused by the cluster."""
    cluster.client.create_container(Container(node_uuid=N1, name="web", image="i"))
    before = configuration(cluster)
    result = invoke(
        cluster, "apps", "deploy", "web", "--image", "j", "--node", "10.0.0.2"
    )
    assert_error(result, EXIT_ERROR, "already exists")
    assert configuration(cluster) == before


def test_apps_ls(cluster: Cluster) -> None:
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


def test_apps_ls_stopped_and_moving(cluster: Cluster) -> None:
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


def test_apps_ls_shows_image_pulls(cluster: Cluster) -> None:
    """
    An application not running whose image its node is pulling shows
    ``pulling image``; one whose pull failed shows the registry's message.
    """
    cluster.client.create_container(Container(node_uuid=N1, name="a", image="r:1/a:1"))
    cluster.client.create_container(Container(node_uuid=N2, name="b", image="r:1/b:9"))
    cluster.client._nodes[N1] = cluster.client._nodes[N1].set(
        image_pulls={"a": ImagePullState(application="a", image="r:1/a:1", pulling=True)}
    )
    cluster.client._nodes[N2] = cluster.client._nodes[N2].set(
        image_pulls={
            "b": ImagePullState(
                application="b", image="r:1/b:9", pulling=False,
                reason="manifest unknown", attempts=2,
            )
        }
    )  # fmt: skip
    views = invoke(cluster, "--json", "apps", "ls").json()
    assert [(v["name"], v["state"], v["image_pull"]) for v in views] == [
        ("a", "pulling image", {"pulling": True, "reason": None, "attempts": 0}),
        (
            "b",
            "image pull failed: manifest unknown",
            {"pulling": False, "reason": "manifest unknown", "attempts": 2},
        ),
    ]


def test_apps_move_wait(cluster: Cluster) -> None:
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

    def poll(number: int) -> None:
        if number == 3:
            cluster.client.synchronize_state()

    result = invoke(
        cluster,
        "apps",
        "move",
        "web",
        "--to",
        "2222",
        "--wait",
        on_poll=poll,
    )
    assert result.code == EXIT_OK, result
    assert result.out == "moved application web on 10.0.0.2, running\n"
    assert result.err.splitlines() == [
        "waiting for application web running on 10.0.0.2: running on 10.0.0.1 [0.0s]",
        "application web running on 10.0.0.2: running after 1.5s",
    ]
    datasets, [container] = configuration(cluster)
    assert (container.node_uuid, datasets[D1].primary) == (N2, N2)


def test_apps_move_timeout(cluster: Cluster) -> None:
    """An application move that does not converge in --timeout exits 4."""
    cluster.client.create_container(Container(node_uuid=N1, name="web", image="i"))
    result = invoke(
        cluster, "apps", "move", "web", "--to", "10.0.0.2", "--wait", "--timeout", "1"
    )
    assert_error(result, EXIT_TIMEOUT, "timed out after 1s waiting for application web")


def test_apps_move_and_rm(cluster: Cluster) -> None:
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
def test_unknown_app(cluster: Cluster, argv: tuple[str, ...]) -> None:
    """An unknown application is a one-line error; nothing changes."""
    cluster.client.create_container(Container(node_uuid=N1, name="web", image="i"))
    before = configuration(cluster)
    assert_error(invoke(cluster, *argv), EXIT_ERROR, "unknown application 'nope'")
    assert configuration(cluster) == before


def test_apps_move_unknown_node(cluster: Cluster) -> None:
    """Moving an application to an unknown node is refused."""
    cluster.client.create_container(Container(node_uuid=N1, name="web", image="i"))
    assert_error(
        invoke(cluster, "apps", "move", "web", "--to", "10.9.9.9"),
        EXIT_ERROR,
        "unknown node",
    )
    assert configuration(cluster)[1][0].node_uuid == N1
