"""
Tests for checking a deployment against itself and the cluster, and for
calculating and applying the REST API changes (`flocker.deploy._plan`,
`flocker.deploy.script.deploy`), against the in-memory REST API.
"""

from collections.abc import Callable, Coroutine
from itertools import count
from typing import Any, TypeVar
from uuid import UUID, uuid4

import pytest
from pyrsistent import PMap, PVector, pvector
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Request

from flocker.apiclient import (
    Container,
    ContainerConflict,
    ContainerPort,
    Dataset,
    FakeFlockerClient,
    FlockerClient,
    HealthCheck,
    IFlockerAPIV1Client,
    Link,
    Node,
)
from flocker.deploy import (
    AddContainer,
    Application,
    ConfigurationError,
    CreateDataset,
    MoveContainer,
    MoveDataset,
    Placement,
    RemoveContainer,
    ResizeDataset,
    UpdateContainer,
    Volume,
    calculate_changes,
    check_deployment,
    read_cluster,
    resolve_nodes,
)
from flocker.deploy.script import DeployFailed, Files, deploy

MIB = 1024 * 1024
ONE = UUID("11111111-1111-1111-1111-111111111111")
TWO = UUID("22222222-2222-2222-2222-222222222222")

DB = Application(
    name="db",
    image="postgres",
    ports=[ContainerPort(internal=5432, external=5432)],
    volume=Volume(mountpoint="/data", maximum_size=64 * MIB),
)
WEB = Application(
    name="web",
    image="nginx",
    ports=[ContainerPort(internal=80, external=8080)],
    links=[Link(alias="db", local_port=5432, remote_port=5432)],
)
APPS = {"db": DB, "web": WEB}
T = TypeVar("T")


def placement(**nodes: str) -> Placement:
    """A `Placement` of application → node name."""
    return Placement(nodes=nodes, paths={n: f"nodes.{v}[0]" for n, v in nodes.items()})


def result_of(coroutine: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that only waits on fired Deferreds."""
    results: list[Any] = []

    def keep(value: Any) -> None:
        results.append(value)

    Deferred.fromCoroutine(coroutine).addBoth(keep)
    assert results, "the coroutine is still waiting"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    result: T = results[0]
    return result


def ids() -> Callable[[], UUID]:
    """A dataset id factory giving 000…001, 000…002, …"""
    numbers = count(1)
    return lambda: UUID(int=next(numbers))


def fake_cluster() -> FakeFlockerClient:
    """An in-memory REST API with nodes ONE (10.0.0.1) and TWO (10.0.0.2)."""
    client = FakeFlockerClient(Clock())
    client.add_node(ONE, host="10.0.0.1")
    client.add_node(TWO, host="10.0.0.2")
    return client


def files(apps: dict[str, Application] = APPS, **nodes: str) -> Files:
    """The checked files deploying ``apps`` as ``nodes`` says."""
    place = placement(**nodes)
    check_deployment("app.yml", apps, "dep.yml", place)
    return Files("app.yml", apps, "dep.yml", place)


def apply(client: IFlockerAPIV1Client, deployment: Files) -> list[str]:
    """Deploy on ``client``; the change lines reported."""
    lines: list[str] = []
    result_of(deploy(client, deployment, lines.append, uuid4))
    return lines


def configuration(
    client: IFlockerAPIV1Client,
) -> tuple[PVector[Container], PMap[UUID, Dataset]]:
    """The containers and datasets configured on ``client``."""
    cluster = result_of(read_cluster(client))
    return cluster.containers, cluster.datasets


# --------------------------------------------------------------------------
# check_deployment, resolve_nodes


def test_unknown_application_refused() -> None:
    """A deployment naming an application the application file lacks is refused, naming both files."""
    with pytest.raises(ConfigurationError) as info:
        check_deployment("app.yml", APPS, "dep.yml", placement(cache="10.0.0.1"))
    assert str(info.value) == (
        "dep.yml: nodes.10.0.0.1[0]: 'cache' is not an application in app.yml"
    )


def test_port_published_twice_refused() -> None:
    """Two deployed applications publishing one node port are refused."""
    other = WEB.set(name="other", links=[])
    with pytest.raises(ConfigurationError) as info:
        check_deployment(
            "app.yml", {**APPS, "other": other}, "dep.yml",
            placement(db="a", web="a", other="b"),
        )
    assert str(info.value) == "app.yml: web: publishes port 8080, as 'other' does"


def test_port_shared_with_undeployed_application_allowed() -> None:
    """An application that is not deployed may publish a deployed one's port."""
    other = WEB.set(name="other", links=[])
    check_deployment("app.yml", {**APPS, "other": other}, "dep.yml", placement(db="a", web="a"))


def test_link_to_undeployed_application_refused() -> None:
    """A link to a port no deployed application publishes is refused."""
    with pytest.raises(ConfigurationError) as info:
        check_deployment("app.yml", APPS, "dep.yml", placement(web="a"))
    assert str(info.value) == (
        "app.yml: web: link 'db' goes to port 5432, which no deployed application "
        "publishes"
    )


def test_instances_of_an_application_with_a_volume_refused() -> None:
    """
    An application with a volume given several instances (in code, as the
    file parsers refuse it already) is refused, naming it.
    """
    with pytest.raises(ConfigurationError) as info:
        check_deployment(
            "app.yml", {**APPS, "db": DB.set(replicas=2)}, "dep.yml",
            placement(db="a", web="a"),
        )  # fmt: skip
    assert str(info.value) == (
        "app.yml: db: 2 instances of 'db', which has a volume: an application with "
        "volumes runs once: its data is on one node (replicas are for applications "
        "without volumes)"
    )


def test_nodes_named_by_address_or_uuid() -> None:
    """Nodes are found by their address or UUID (in either case)."""
    nodes = [Node(uuid=ONE, host="10.0.0.1"), Node(uuid=TWO, host=None)]
    assert resolve_nodes(
        "dep.yml", placement(db="10.0.0.1", web=str(TWO).upper()), nodes
    ) == {"db": ONE, "web": TWO}


def test_unknown_node_refused() -> None:
    """A node name that is no node's address or UUID is refused."""
    with pytest.raises(ConfigurationError) as info:
        resolve_nodes("dep.yml", placement(db="10.9.9.9"), [Node(uuid=ONE, host="10.0.0.1")])
    assert str(info.value) == (
        "dep.yml: nodes.10.9.9.9: no node of the cluster has this address or UUID"
    )


# --------------------------------------------------------------------------
# calculate_changes


def changes(
    client: IFlockerAPIV1Client, apps: dict[str, Application] = APPS, **nodes: UUID
) -> list[Any]:
    """The changes deploying ``apps`` on ``nodes`` (name → UUID) would make."""
    cluster = result_of(read_cluster(client))
    return calculate_changes(apps, nodes, cluster, ids())


def test_first_deployment() -> None:
    """On an empty cluster, datasets are created named after their application, then containers added."""
    client = fake_cluster()
    planned = changes(client, db=ONE, web=TWO)
    first = UUID(int=1)
    assert [type(c) for c in planned] == [CreateDataset, AddContainer, AddContainer]
    assert planned[0] == CreateDataset(
        application="db", dataset_id=first, node_uuid=ONE, maximum_size=64 * MIB
    )
    db = planned[1].container
    assert (db.name, db.node_uuid, db.image) == ("db", ONE, "postgres")
    assert [(v.dataset_id, v.mountpoint) for v in db.volumes] == [(first, "/data")]
    assert planned[2].container.links == WEB.links


def test_same_files_change_nothing() -> None:
    """Once deployed, the same applications and nodes need no change."""
    client = fake_cluster()
    apply(client, files(db="10.0.0.1", web="10.0.0.2"))
    assert changes(client, db=ONE, web=TWO) == []
    assert apply(client, files(db="10.0.0.1", web=str(TWO))) == []


def test_move_is_one_container_move() -> None:
    """An application whose node changes is moved (its dataset goes with it)."""
    client = fake_cluster()
    apply(client, files(db="10.0.0.1", web="10.0.0.1"))
    assert changes(client, db=TWO, web=ONE) == [MoveContainer(name="db", node_uuid=TWO)]
    apply(client, files(db="10.0.0.2", web="10.0.0.1"))
    containers, datasets = configuration(client)
    (dataset,) = datasets.values()
    assert dataset.primary == TWO
    assert {c.name: c.node_uuid for c in containers} == {"db": TWO, "web": ONE}


def test_undeployed_containers_removed_datasets_kept() -> None:
    """Containers the deployment does not name are removed; their datasets stay."""
    client = fake_cluster()
    apply(client, files(db="10.0.0.1", web="10.0.0.1"))
    assert changes(client, {"db": DB}, db=ONE) == [RemoveContainer(name="web")]
    apply(client, files({"db": DB}, db="10.0.0.1"))
    assert apply(client, files({"web": WEB.set(links=[])}, web="10.0.0.1")) == [
        "removed application db",
        "deployed application web on node 11111111-1111-1111-1111-111111111111",
    ]
    containers, datasets = configuration(client)
    assert [c.name for c in containers] == ["web"]
    assert len(datasets) == 1


def test_changed_application_updated_in_place() -> None:
    """
    An application whose image changes is updated (a new revision on the
    same dataset), not removed and added again; the same files then change
    nothing, though the container's revision and history moved on.
    """
    client = fake_cluster()
    apply(client, files(db="10.0.0.1", web="10.0.0.1"))
    (dataset_id,) = configuration(client)[1]
    newer = {**APPS, "db": DB.set(image="postgres:16")}
    planned = changes(client, newer, db=ONE, web=ONE)
    assert [(type(c), c.fields, c.node_uuid) for c in planned] == [
        (UpdateContainer, pvector(["image"]), None)
    ]
    assert apply(client, files(newer, db="10.0.0.1", web="10.0.0.1")) == [
        "updated application db (image)"
    ]
    [db] = [c for c in configuration(client)[0] if c.name == "db"]
    assert (db.image, db.revision, db.previous_image) == ("postgres:16", 1, "postgres")
    assert [v.dataset_id for v in db.volumes] == [dataset_id]
    assert changes(client, newer, db=ONE, web=ONE) == []


def test_changed_and_moved_application_is_one_update() -> None:
    """A changed application on a new node is one update that also moves it, with its dataset."""
    client = fake_cluster()
    apply(client, files(db="10.0.0.1", web="10.0.0.1"))
    (dataset_id,) = configuration(client)[1]
    newer = {**APPS, "db": DB.set(environment={"A": "1"})}
    planned = changes(client, newer, db=TWO, web=ONE)
    assert [(type(c), c.fields, c.node_uuid) for c in planned] == [
        (UpdateContainer, pvector(["environment"]), TWO)
    ]
    assert apply(client, files(newer, db="10.0.0.2", web="10.0.0.1")) == [
        f"updated application db (environment) and moved it to node {TWO}"
    ]
    containers, datasets = configuration(client)
    assert datasets[dataset_id].primary == TWO
    assert [
        (c.node_uuid, dict(c.environment), c.revision) for c in containers if c.name == "db"
    ] == [(TWO, {"A": "1"}, 1)]


def test_changed_volume_replaces_the_container() -> None:
    """A new mountpoint (volumes cannot be updated) removes and adds the container again."""
    client = fake_cluster()
    apply(client, files(db="10.0.0.1", web="10.0.0.1"))
    (dataset_id,) = configuration(client)[1]
    newer = {**APPS, "db": DB.set(volume=Volume(mountpoint="/var/lib/data"))}
    planned = changes(client, newer, db=ONE, web=ONE)
    assert [type(c) for c in planned] == [RemoveContainer, AddContainer]
    assert planned[1].container.volumes[0].dataset_id == dataset_id


def test_changed_volume_and_node_moves_the_dataset_first() -> None:
    """A volume change on a new node: removed, its dataset moved, then added there."""
    client = fake_cluster()
    apply(client, files(db="10.0.0.1", web="10.0.0.1"))
    (dataset_id,) = configuration(client)[1]
    newer = {**APPS, "db": DB.set(volume=Volume(mountpoint="/other"))}
    planned = changes(client, newer, db=TWO, web=ONE)
    assert planned[:2] == [
        RemoveContainer(name="db"),
        MoveDataset(application="db", dataset_id=dataset_id, node_uuid=TWO),
    ]
    apply(client, files(newer, db="10.0.0.2", web="10.0.0.1"))
    containers, datasets = configuration(client)
    assert datasets[dataset_id].primary == TWO
    assert [c.volumes[0].mountpoint for c in containers if c.name == "db"] == ["/other"]


def test_health_check_deployed_and_updated() -> None:
    """An application's health check is deployed with it; a new one is an update of the check alone."""
    client = fake_cluster()
    checked = {**APPS, "web": WEB.set(health=HealthCheck(kind="http", port=80, path="/"))}
    apply(client, files(checked, db="10.0.0.1", web="10.0.0.1"))
    [web] = [c for c in configuration(client)[0] if c.name == "web"]
    assert web.health == HealthCheck(kind="http", port=80, path="/")
    slower = {**APPS, "web": WEB.set(health=HealthCheck(kind="http", port=80, path="/", interval=30))}
    assert [(type(c), c.fields) for c in changes(client, slower, db=ONE, web=ONE)] == [
        (UpdateContainer, pvector(["health"]))
    ]
    assert [(type(c), c.fields) for c in changes(client, APPS, db=ONE, web=ONE)] == [
        (UpdateContainer, pvector(["health"]))
    ]


def test_instances_deployed_with_the_application() -> None:
    """An application's number of instances is deployed with it, and reported."""
    client = fake_cluster()
    scaled = {"web": WEB.set(links=[], replicas=3)}
    [add] = changes(client, scaled, web=ONE)
    assert add.container.replicas == 3
    assert apply(client, files(scaled, web="10.0.0.1")) == [
        f"deployed application web on node {ONE} (3 instances)"
    ]
    [web] = configuration(client)[0]
    assert (web.replicas, web.revision) == (3, 0)
    assert changes(client, scaled, web=ONE) == []


def test_changed_instances_are_an_update() -> None:
    """
    A new number of instances alone is an update of the replicas (a new
    revision), back to one too; the same files then change nothing.
    """
    client = fake_cluster()
    single = {"web": WEB.set(links=[])}
    apply(client, files(single, web="10.0.0.1"))
    scaled = {"web": single["web"].set(replicas=4)}
    assert [(type(c), c.fields, c.node_uuid) for c in changes(client, scaled, web=ONE)] == [
        (UpdateContainer, pvector(["replicas"]), None)
    ]
    assert apply(client, files(scaled, web="10.0.0.1")) == [
        "updated application web (replicas: 4)"
    ]
    [web] = configuration(client)[0]
    assert (web.replicas, web.revision, web.previous_image) == (4, 1, "nginx")
    assert changes(client, scaled, web=ONE) == []
    assert apply(client, files(single, web="10.0.0.1")) == [
        "updated application web (replicas: 1)"
    ]
    assert configuration(client)[0][0].replicas == 1


def test_changed_instances_image_and_node_are_one_update() -> None:
    """New instances, a new image and a new node are one update that also moves it."""
    client = fake_cluster()
    apply(client, files({"web": WEB.set(links=[])}, web="10.0.0.1"))
    newer = {"web": WEB.set(links=[], image="nginx:2", replicas=2)}
    assert apply(client, files(newer, web="10.0.0.2")) == [
        f"updated application web (image, replicas: 2) and moved it to node {TWO}"
    ]
    [web] = configuration(client)[0]
    assert (web.node_uuid, web.image, web.replicas, web.revision) == (TWO, "nginx:2", 2, 1)


def test_an_update_freeing_a_port_comes_before_an_addition_taking_it() -> None:
    """Updates run before additions, so a new application can take a port an update frees."""
    client = fake_cluster()
    apply(client, files({"web": WEB.set(links=[])}, web="10.0.0.1"))
    moved_port = WEB.set(links=[], ports=[ContainerPort(internal=80, external=8081)])
    taker = WEB.set(name="other", links=[])
    newer = {"web": moved_port, "other": taker}
    planned = changes(client, newer, web=ONE, other=ONE)
    assert [type(c) for c in planned] == [UpdateContainer, AddContainer]
    apply(client, files(newer, web="10.0.0.1", other="10.0.0.1"))
    assert sorted(
        (c.name, c.ports[0].external) for c in configuration(client)[0]
    ) == [("other", 8080), ("web", 8081)]


def test_refused_update_changes_nothing() -> None:
    """
    An update the control service refuses (a port taken on the new node
    since the plan was made) fails with its reason and changes nothing.
    """
    client = fake_cluster()
    apply(client, files(db="10.0.0.1", web="10.0.0.1"))
    newer = {**APPS, "web": WEB.set(image="nginx:2")}
    [update] = changes(client, newer, db=ONE, web=TWO)
    client.create_container(
        Container(
            node_uuid=TWO,
            name="squatter",
            image="x",
            ports=[ContainerPort(internal=1, external=8080)],
        )
    )
    before = configuration(client)
    with pytest.raises(ContainerConflict, match=r"external ports \[8080\] are taken"):
        result_of(_run(update, client))
    assert configuration(client) == before


async def _run(change: Any, client: IFlockerAPIV1Client) -> Any:
    return await change.run(client)


def test_dataset_found_again_by_name() -> None:
    """An application added again finds its dataset by name, moving it to its node if need be."""
    client = fake_cluster()
    apply(client, files({"db": DB}, db="10.0.0.1"))
    apply(client, files({"web": WEB.set(links=[])}, web="10.0.0.1"))
    (dataset_id,) = configuration(client)[1]
    planned = changes(client, {"db": DB}, db=TWO)
    assert [type(c) for c in planned] == [RemoveContainer, MoveDataset, AddContainer]
    assert planned[2].container.volumes[0].dataset_id == dataset_id


def test_two_datasets_with_the_name_refused() -> None:
    """Two live datasets named after one application are refused before any change."""
    client = fake_cluster()
    for _ in range(2):
        result_of(_created(client, {"name": "db"}))
    with pytest.raises(ConfigurationError) as info:
        changes(client, db=ONE, web=ONE)
    assert "2 datasets are named 'db'" in str(info.value)


async def _created(client: IFlockerAPIV1Client, metadata: dict[str, str]) -> Dataset:
    return await client.create_dataset(ONE, metadata=metadata)


def test_deleted_dataset_not_reused() -> None:
    """A deleted dataset with the application's name is not reused."""
    client = fake_cluster()
    old = result_of(_created(client, {"name": "db"}))
    client.delete_dataset(old.dataset_id)
    planned = changes(client, db=ONE, web=ONE)
    assert isinstance(planned[0], CreateDataset)


def test_leased_dataset_cannot_move() -> None:
    """A dataset a lease holds on its node is refused a move before any change."""
    client = fake_cluster()
    apply(client, files(db="10.0.0.1", web="10.0.0.1"))
    (dataset_id,) = configuration(client)[1]
    client.acquire_lease(dataset_id, ONE, None)
    with pytest.raises(ConfigurationError) as info:
        changes(client, db=TWO, web=ONE)
    assert "leased on node 11111111" in str(info.value)
    assert changes(client, db=ONE, web=ONE) == []


def test_resized_when_the_file_says() -> None:
    """A new maximum size resizes the dataset; leaving it out leaves the size alone."""
    client = fake_cluster()
    apply(client, files(db="10.0.0.1", web="10.0.0.1"))
    (dataset_id,) = configuration(client)[1]
    bigger = {**APPS, "db": DB.set(volume=Volume(mountpoint="/data", maximum_size=128 * MIB))}
    assert changes(client, bigger, db=ONE, web=ONE) == [
        ResizeDataset(application="db", dataset_id=dataset_id, maximum_size=128 * MIB)
    ]
    unsized = {**APPS, "db": DB.set(volume=Volume(mountpoint="/data"))}
    assert changes(client, unsized, db=ONE, web=ONE) == []


def test_removed_before_added() -> None:
    """Removals come first, so an added application can take a removed one's port."""
    client = fake_cluster()
    apply(client, files({"db": DB}, db="10.0.0.1"))
    taker = DB.set(name="pg", volume=None)
    apply(client, files({"pg": taker}, pg="10.0.0.1"))
    containers, _ = configuration(client)
    assert [c.name for c in containers] == ["pg"]


def test_reports_each_change() -> None:
    """Each change made is reported on one line."""
    client = fake_cluster()
    lines = apply(client, files(db="10.0.0.1", web="10.0.0.2"))
    assert len(lines) == 3
    assert lines[0].startswith("created dataset ") and lines[0].endswith(" for db")
    assert lines[1:] == [
        f"deployed application db on node {ONE}",
        f"deployed application web on node {TWO}",
    ]


class _Broken(Resource):
    """A REST API that answers every request with a 503."""

    isLeaf = True

    def render(self, request: Request) -> bytes:
        """Refuse."""
        request.setResponseCode(503)
        return b'{"description": "down for maintenance"}'


def test_unreachable_api_fails_deploy() -> None:
    """A REST API that cannot be read fails the deployment with its reason on one line."""
    client = FlockerClient(StubTreq(_Broken()), "https://control")
    with pytest.raises(DeployFailed) as info:
        result_of(deploy(client, files(db="10.0.0.1", web="10.0.0.1"), print))
    assert str(info.value) == (
        "cannot read the cluster's configuration: the control service answered "
        "503: down for maintenance"
    )


def test_unknown_node_without_applications_refused() -> None:
    """A node listed with no applications must exist too."""
    place = placement(db="10.0.0.1").set(node_names={"10.0.0.1", "10.0.0.7"})
    with pytest.raises(ConfigurationError) as info:
        resolve_nodes("dep.yml", place, [Node(uuid=ONE, host="10.0.0.1")])
    assert str(info.value).startswith("dep.yml: nodes.10.0.0.7: no node")
