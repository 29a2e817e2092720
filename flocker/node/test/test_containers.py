"""Tests for the container deployer: the pure calculation and convergence."""

from collections.abc import Iterable
from typing import Any, TypeVar
from uuid import uuid4

import attr
from pyrsistent import PMap, PSet, pmap, pset
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface import implementer

from flocker.control import (
    Application,
    ApplicationHealth,
    AttachedVolume,
    Dataset,
    DatasetState,
    Deployment,
    DeploymentState,
    HealthCheck,
    Link,
    NodeState,
    Port,
    Snapshot,
)
from flocker.node import NoOp, changes_of, in_parallel, run_state_change, sequentially
from flocker.node._container_calculate import FRESH_COPY, STALE_COPY
from flocker.node._container_changes import REMOVE_AFTER
from flocker.node._health import DRAIN_GRACE, DRAIN_SETTLE, NOT_RUNNING, HealthProbes
from flocker.node.containers import (
    ContainerChange,
    ContainerDeployer,
    DrainApplication,
    RemoveApplication,
    RestartApplication,
    ResumeApplication,
    SetRoutes,
    StartApplication,
    container_spec,
    health_instance,
    link_environment,
)
from flocker.route import IRouter, MemoryRouter, Route, Target
from flocker.runtime import (
    ContainerSpec,
    EngineError,
    IContainerRuntime,
    MemoryRuntime,
    PublishedPort,
    VolumeBind,
    memory_runtimes,
)
from flocker.runtime.testtools import WrappedRuntime

T = TypeVar("T")

A, B = sorted(str(uuid4()) for _ in range(2))
ADDRESS = {A: "127.0.0.11", B: "127.0.0.12"}
DS = str(uuid4())
IMAGE = "flocker-test/busybox:1"
APP = Application(
    name="counter",
    image=IMAGE,
    ports=[Port(internal_port=80, external_port=8080)],
    links=[Link(alias="db", local_port=5432, remote_port=15432)],
    environment={"MODE": "test"},
    volumes=[AttachedVolume(dataset_id=DS, mountpoint="/data")],
)


def replacement(name: str, spec: ContainerSpec | None) -> ContainerChange:
    """The plan that replaces application ``name``'s container by ``spec``."""
    assert spec is not None
    plan: list[ContainerChange] = [RemoveApplication(name=name), StartApplication(spec=spec)]
    return sequentially(plan)


def result(d: Deferred[T]) -> T:
    """The result of a fired Deferred."""
    out: list[T | Failure] = []
    d.addBoth(out.append)
    assert out
    first = out[0]
    if isinstance(first, Failure):
        first.raiseException()
    return first


def configured(node: str = A, app: Application = APP) -> Deployment:
    """A configuration with the dataset and the application on ``node``."""
    return Deployment().add_dataset(Dataset(dataset_id=DS), node).add_application(app, node)


def state_with(
    node: str,
    path: str | None = "/mnt/ds",
    others: Iterable[tuple[str, str | None]] = (),
) -> DeploymentState:
    """Cluster state: ``node`` reports the dataset mounted at ``path``."""
    state = DeploymentState().update_node(
        NodeState(uuid=node, hostname=ADDRESS[node],
                  datasets={DS: DatasetState(dataset_id=DS, path=path)})
    )
    for other, other_path in others:
        state = state.update_node(
            NodeState(uuid=other, hostname=ADDRESS[other],
                      datasets={DS: DatasetState(dataset_id=DS, path=other_path)})
        )
    return state


class Nodes:
    """Two nodes with fake runtimes sharing one engine."""

    def __init__(self) -> None:
        runtimes = memory_runtimes([A, B], images=[IMAGE])
        self.deployers: dict[str, ContainerDeployer] = {
            n: ContainerDeployer(n, ADDRESS[n], r) for n, r in zip((A, B), runtimes, strict=True)
        }

    def plan(
        self,
        node: str,
        configuration: Deployment,
        state: DeploymentState,
        routes: bool = False,
    ) -> ContainerChange:
        """
        What ``node`` would do to its containers (and, with ``routes``, to
        its router too: the tests of routing ask for it).
        """
        deployer = self.deployers[node]
        local = result(deployer.discover_state(state))
        change = deployer.calculate_changes(configuration, state, local)
        if routes:
            return change
        return containers_only(change)

    def converge(
        self, node: str, configuration: Deployment, state: DeploymentState
    ) -> ContainerChange:
        """Run ``node``'s whole plan, routes included; return its container changes."""
        change = self.plan(node, configuration, state, routes=True)
        result(run_state_change(change, self.deployers[node]))
        return containers_only(change)


def containers_only(change: ContainerChange) -> ContainerChange:
    """A plan without the change of the node's routes, if it has one."""
    if isinstance(change, SetRoutes):
        return NoOp()
    leaves = changes_of(change)
    if any(isinstance(c, SetRoutes) for c in leaves) and change == in_parallel(leaves):
        return in_parallel([c for c in leaves if not isinstance(c, SetRoutes)])
    return change


def test_spec_from_application() -> None:
    """
    Ports go on the node's address at ports the engine chooses (the router
    owns the external ones), datasets are bound, links become env.
    """
    spec = container_spec(APP, "127.0.0.11", {DS: "/mnt/ds"})
    assert spec is not None
    assert spec.ports == pset(
        {PublishedPort(internal_port=80, external_port=0, host_ip="127.0.0.11")}
    )
    assert spec.volumes == pset({VolumeBind(host_path="/mnt/ds", container_path="/data")})
    assert spec.environment["MODE"] == "test"
    assert spec.environment["DB_PORT_5432_TCP"] == "tcp://127.0.0.11:15432"
    assert container_spec(APP, "127.0.0.11", {}) is None


def test_link_environment() -> None:
    """Each link gives the Docker-link variables, pointing at this node."""
    assert link_environment(APP, "127.0.0.12") == {
        "DB_PORT_5432_TCP": "tcp://127.0.0.12:15432",
        "DB_PORT_5432_TCP_ADDR": "127.0.0.12",
        "DB_PORT_5432_TCP_PORT": "15432",
        "DB_PORT_5432_TCP_PROTO": "tcp",
    }


def test_start_when_dataset_mounted() -> None:
    """An application whose dataset is mounted here is started."""
    nodes = Nodes()
    plan = nodes.plan(A, configured(), state_with(A))
    assert plan == StartApplication(spec=container_spec(APP, ADDRESS[A], {DS: "/mnt/ds"}))


def test_wait_for_dataset() -> None:
    """Until the dataset is mounted here, nothing starts."""
    nodes = Nodes()
    assert nodes.plan(A, configured(), state_with(A, path=None)) == NoOp()
    assert nodes.plan(A, configured(), DeploymentState()) == NoOp()


def test_converged_then_nothing() -> None:
    """Once running as configured, there is nothing to do."""
    nodes = Nodes()
    nodes.converge(A, configured(), state_with(A))
    assert nodes.plan(A, configured(), state_with(A)) == NoOp()
    local = result(nodes.deployers[A].discover_state(state_with(A)))
    assert local.shared_state_changes().applications == {"counter": APP}


def test_changed_application_replaced() -> None:
    """A changed configuration replaces the container."""
    nodes = Nodes()
    nodes.converge(A, configured(), state_with(A))
    changed = APP.set(environment={"MODE": "production"})
    plan = nodes.plan(A, configured(app=changed), state_with(A))
    spec = container_spec(changed, ADDRESS[A], {DS: "/mnt/ds"})
    assert plan == replacement("counter", spec)


def test_swappiness_applied_and_reported() -> None:
    """
    An application's swappiness reaches its container, the node reports the
    application with it, and a changed swappiness replaces the container.
    """
    nodes = Nodes()
    swapping = APP.set(swappiness=0)
    swapping_spec = container_spec(swapping, ADDRESS[A], {DS: "/mnt/ds"})
    assert swapping_spec is not None and swapping_spec.swappiness == 0
    nodes.converge(A, configured(app=swapping), state_with(A))
    (spec,) = result(nodes.deployers[A].runtime.list_containers())
    assert spec.swappiness == 0
    local = result(nodes.deployers[A].discover_state(state_with(A)))
    assert local.shared_state_changes().applications["counter"].swappiness == 0
    assert nodes.plan(A, configured(app=swapping), state_with(A)) == NoOp()
    changed = swapping.set(swappiness=100)
    plan = nodes.plan(A, configured(app=changed), state_with(A))
    new = container_spec(changed, ADDRESS[A], {DS: "/mnt/ds"})
    assert plan == replacement("counter", new)


def test_exited_container_restarted() -> None:
    """A container that exited is started again."""
    nodes = Nodes()
    nodes.converge(A, configured(), state_with(A))
    result(nodes.deployers[A].runtime.stop("counter"))
    assert nodes.plan(A, configured(), state_with(A)) == RestartApplication(name="counter")
    nodes.converge(A, configured(), state_with(A))
    assert result(nodes.deployers[A].runtime.inspect("counter")).running


def test_unconfigured_removed() -> None:
    """A container of an application configured nowhere is removed."""
    nodes = Nodes()
    nodes.converge(A, configured(), state_with(A))
    assert nodes.plan(
        A, Deployment().add_dataset(Dataset(dataset_id=DS), A), state_with(A)
    ) == (RemoveApplication(name="counter", background=True))


def test_moving_application_runs_until_bulk_copy_arrives() -> None:
    """
    An application moved to B keeps running on A until B has a first copy
    of its dataset; then it is removed, and B starts it once B mounts it.
    """
    nodes = Nodes()
    nodes.converge(A, configured(), state_with(A))
    moved = configured().move_application("counter", B)
    assert nodes.plan(A, moved, state_with(A)) == NoOp()
    copying = state_with(A, others=[(B, None)])
    plan = nodes.plan(A, moved, copying)
    assert plan == RemoveApplication(name="counter", background=True)
    assert nodes.plan(B, moved, copying) == NoOp()
    arrived = state_with(B, path="/mnt/b")
    nodes.converge(A, moved, arrived)
    nodes.converge(B, moved, arrived)
    assert result(nodes.deployers[A].runtime.list_containers()) == pset()
    [spec] = result(nodes.deployers[B].runtime.list_containers())
    assert spec.volumes == pset({VolumeBind(host_path="/mnt/b", container_path="/data")})
    # Healthy nowhere yet: every node holds the port's connections.
    for node in (A, B):
        assert nodes.deployers[node].router.routes() == {
            8080: Route(external_port=8080, targets=[])
        }
    # Once B reports it healthy, A forwards the port to where B publishes it.
    healthy_on_b = arrived.update_node(
        NodeState(
            uuid=B,
            hostname=ADDRESS[B],
            applications={"counter": APP},
            health={"counter": healthy_at(49999)},
        )
    )
    assert nodes.plan(A, moved, healthy_on_b, routes=True) == SetRoutes(
        routes={8080: Route(external_port=8080, target_host=ADDRESS[B], target_port=49999)}
    )


def test_moving_application_reported_while_running() -> None:
    """While it still runs on A, the moving application is reported by A."""
    nodes = Nodes()
    nodes.converge(A, configured(), state_with(A))
    moved = configured().move_application("counter", B)
    nodes.converge(A, moved, state_with(A))
    local = result(nodes.deployers[A].discover_state(state_with(A)))
    assert set(local.shared_state_changes().applications) == {"counter"}


def healthy_at(port: int, revision: int | None = 0) -> ApplicationHealth:
    """A healthy ``counter`` instance whose port 80 is published on ``port``."""
    return ApplicationHealth(
        application="counter", status="healthy", revision=revision, ports={80: port}
    )


def test_routes_to_healthy_instances_wherever_they_run() -> None:
    """
    Node B and node A alike route the application's external port to where
    its healthy instance on node A is published; routes given once are not
    given again.
    """
    nodes = Nodes()
    state = (
        state_with(A)
        .update_node(
            NodeState(
                uuid=A,
                hostname=ADDRESS[A],
                applications={"counter": APP},
                health={"counter": healthy_at(49152)},
            )
        )
        .update_node(NodeState(uuid=B, hostname=ADDRESS[B], datasets={}))
    )
    expected = SetRoutes(
        routes={8080: Route(external_port=8080, target_host=ADDRESS[A], target_port=49152)}
    )
    assert nodes.plan(B, configured(), state, routes=True) == expected
    nodes.converge(B, configured(), state)
    assert nodes.plan(B, configured(), state, routes=True) == NoOp()
    assert expected in changes_of(nodes.plan(A, configured(), state, routes=True))


def _wall_clock(deployer: ContainerDeployer) -> float:
    """Give ``deployer`` a clock (its wall clock too); the time it says."""
    clock = Clock()
    clock.advance(1_000_000.0)
    deployer.clock = clock
    return clock.seconds()


def _copied_at(taken: float) -> DeploymentState:
    """
    A runs the application on DS; B has a copy whose newest move round was
    taken at ``taken``.
    """
    ns = int(taken * 1e9)
    copy = DatasetState(
        dataset_id=DS,
        path=None,
        snapshots=[
            Snapshot(name=f"flocker-move-{ns - 10**10}-aaaaaa", created=taken - 10),
            Snapshot(name=f"flocker-move-{ns}-bbbbbb", created=taken),
        ],
    )
    return state_with(A).update_node(
        NodeState(uuid=B, hostname=ADDRESS[B], datasets={DS: copy})
    )


def test_a_moving_application_stops_only_once_a_fresh_copy_arrived() -> None:
    """
    An application moved to B keeps running on A while B's copy is from a
    round taken more than `FRESH_COPY` seconds ago (by A's clock): the
    source is sending another round, and the final increment would queue
    behind it.  Once a round taken within `FRESH_COPY` seconds arrived, it
    drains (no probes here: it is removed at once).
    """
    nodes = Nodes()
    now = _wall_clock(nodes.deployers[A])
    nodes.converge(A, configured(), state_with(A))
    moved = configured().move_application("counter", B)
    stale = _copied_at(now - FRESH_COPY - 1)
    assert nodes.plan(A, moved, stale) == NoOp()
    fresh = _copied_at(now - FRESH_COPY + 0.5)
    assert nodes.plan(A, moved, fresh) == RemoveApplication(name="counter", background=True)


def test_a_moving_application_stops_once_its_copy_is_old_enough() -> None:
    """
    A copy whose newest round was taken `STALE_COPY` seconds ago or more
    lets the application stop all the same: rounds that always arrive
    stale (slow ones) never keep a move from completing.
    """
    nodes = Nodes()
    now = _wall_clock(nodes.deployers[A])
    nodes.converge(A, configured(), state_with(A))
    moved = configured().move_application("counter", B)
    assert nodes.plan(A, moved, _copied_at(now - STALE_COPY + 0.5)) == NoOp()
    assert nodes.plan(A, moved, _copied_at(now - STALE_COPY)) == RemoveApplication(
        name="counter", background=True
    )


def test_a_moving_application_waits_for_the_round_after_a_long_first_one() -> None:
    """
    A copy holding only the move's first, full round, however old (a large
    dataset's first round took long, and the source sends another at
    once), keeps the application running until a fresh round arrives.
    """
    nodes = Nodes()
    now = _wall_clock(nodes.deployers[A])
    nodes.converge(A, configured(), state_with(A))
    moved = configured().move_application("counter", B)
    ns = int((now - STALE_COPY - 1) * 1e9)
    first = DatasetState(
        dataset_id=DS,
        path=None,
        snapshots=[Snapshot(name=f"flocker-move-{ns}-aaaaaa", created=ns / 1e9)],
    )
    state = state_with(A).update_node(
        NodeState(uuid=B, hostname=ADDRESS[B], datasets={DS: first})
    )
    assert nodes.plan(A, moved, state) == NoOp()


class _HeldCreates(WrappedRuntime):
    """A runtime whose ``create`` completes only when the test says so."""

    def __init__(self, runtime: IContainerRuntime) -> None:
        super().__init__(runtime)
        self.held: list[tuple[ContainerSpec, Deferred[None]]] = []

    def create(self, spec: ContainerSpec) -> Deferred[None]:
        """Hold the creation until ``release``."""
        waiting: Deferred[None] = Deferred()
        self.held.append((spec, waiting))
        return waiting

    def release(self) -> None:
        """Let every held creation happen."""
        for spec, waiting in self.held:
            self.runtime.create(spec).chainDeferred(waiting)
        self.held = []


def test_background_start_does_not_hold_the_pass() -> None:
    """
    With a poke, a container starts in the background: the pass ends at
    once, the application counts as starting (no change touches it) until
    the runtime answers, and then the loop is poked.
    """
    nodes = Nodes()
    deployer = nodes.deployers[A]
    held = _HeldCreates(deployer.runtime)
    deployer.runtime = held
    pokes: list[bool] = []
    deployer.poke = lambda: pokes.append(True)
    state = state_with(A)
    change = nodes.converge(A, configured(), state)
    assert isinstance(change, StartApplication)
    assert deployer.starting == {"counter"} and len(held.held) == 1
    assert nodes.plan(A, configured(), state) == NoOp()
    held.release()
    assert deployer.starting == set() and pokes == [True]
    assert [s.name for s in result(held.runtime.list_containers())] == ["counter"]


class _HeldRemovals(WrappedRuntime):
    """A runtime whose ``remove`` completes only when the test says so."""

    def __init__(self, runtime: IContainerRuntime) -> None:
        super().__init__(runtime)
        self.held: list[tuple[str, Deferred[None]]] = []

    def remove(self, name: str) -> Deferred[None]:
        """Hold the removal until ``release``."""
        waiting: Deferred[None] = Deferred()
        self.held.append((name, waiting))
        return waiting

    def release(self) -> None:
        """Let every held removal happen."""
        for name, waiting in self.held:
            self.runtime.remove(name).chainDeferred(waiting)
        self.held = []


class _Unhaltable(_HeldRemovals):
    """A runtime that cannot see a container's processes end (a remote engine)."""

    def halt(self, name: str) -> Deferred[None]:
        """Refuse, as Docker does when the engine is elsewhere."""
        return fail(
            EngineError("the container's processes are not visible to this agent")
        )


def test_an_application_leaving_is_halted_and_removed_in_the_background() -> None:
    """
    With a poke, an application leaving the node is halted: the pass ends
    once its processes are gone, the deployer's ``halted`` is told (the
    agent reports it at once), and the node no longer reports it (its
    dataset can be handed on) while its container is removed in the
    background; no change touches it meanwhile, and the loop is poked
    when the removal is over.
    """
    nodes = Nodes()
    deployer = nodes.deployers[A]
    nodes.converge(A, configured(), state_with(A))
    held = _HeldRemovals(deployer.runtime)
    deployer.runtime = held
    pokes: list[bool] = []
    deployer.poke = lambda: pokes.append(True)
    halted: list[str] = []
    deployer.halted = halted.append
    gone = Deployment().add_dataset(Dataset(dataset_id=DS), A)
    assert nodes.converge(A, gone, state_with(A)) == RemoveApplication(
        name="counter", background=True
    )
    assert deployer.removing == {"counter"} and [n for n, _ in held.held] == ["counter"]
    assert pokes == [True] and halted == ["counter"]  # the node reports it at once
    local = result(deployer.discover_state(state_with(A)))
    assert not local.states["counter"].running
    assert "counter" not in local.shared_state_changes().applications
    assert nodes.plan(A, gone, state_with(A)) == NoOp()
    held.release()
    assert deployer.removing == set() and pokes == [True, True]
    assert result(held.runtime.list_containers()) == pset()


class _RemovedWhileListed(WrappedRuntime):
    """A runtime whose next listing ends a background removal as it lists."""

    def __init__(self, runtime: IContainerRuntime, deployer: ContainerDeployer) -> None:
        super().__init__(runtime)
        self.deployer = deployer

    def list_containers(self) -> Deferred[PSet[ContainerSpec]]:
        """List, then let the removals in progress end (as if meanwhile)."""
        listed = self.runtime.list_containers()
        self.deployer.removing.clear()
        return listed


def test_a_removal_ending_while_listed_is_not_started_again() -> None:
    """
    A container whose background removal ends while discovery lists it
    (so the listing still shows it) is left alone by that pass: it is
    not removed a second time.
    """
    nodes = Nodes()
    deployer = nodes.deployers[A]
    nodes.converge(A, configured(), state_with(A))
    deployer.runtime = _RemovedWhileListed(deployer.runtime, deployer)
    deployer.removing.add("counter")
    gone = Deployment().add_dataset(Dataset(dataset_id=DS), A)
    assert nodes.plan(A, gone, state_with(A)) == NoOp()


def test_a_halted_container_is_removed_a_moment_later() -> None:
    """
    With a clock, a halted container is removed `REMOVE_AFTER` seconds
    after its halt (the engine's tidying up does not compete with the hand
    off of its data), and counts as removing until then.
    """
    nodes = Nodes()
    deployer = nodes.deployers[A]
    nodes.converge(A, configured(), state_with(A))
    clock = Clock()
    deployer.clock = clock
    deployer.poke = lambda: None
    gone = Deployment().add_dataset(Dataset(dataset_id=DS), A)
    nodes.converge(A, gone, state_with(A))
    assert deployer.removing == {"counter"}
    clock.advance(REMOVE_AFTER - 0.1)
    assert [s.name for s in result(deployer.runtime.list_containers())] == ["counter"]
    clock.advance(0.1)
    assert deployer.removing == set()
    assert result(deployer.runtime.list_containers()) == pset()


def test_an_application_leaving_is_removed_in_full_where_it_cannot_be_halted() -> None:
    """
    Where the runtime cannot see a container's processes end, the pass
    waits for the whole removal: the node reports the application gone
    only once its container is.
    """
    nodes = Nodes()
    deployer = nodes.deployers[A]
    nodes.converge(A, configured(), state_with(A))
    held = _Unhaltable(deployer.runtime)
    deployer.runtime = held
    deployer.poke = lambda: None
    gone = Deployment().add_dataset(Dataset(dataset_id=DS), A)
    plan = nodes.plan(A, gone, state_with(A))
    finished: list[object] = []
    run_state_change(plan, deployer).addBoth(finished.append)
    assert finished == [] and deployer.removing == set()
    assert result(held.runtime.inspect("counter")).running
    held.release()
    assert finished == [None]
    assert result(held.runtime.list_containers()) == pset()


def test_reports_the_datasets_a_container_really_mounts() -> None:
    """
    A container still running on another dataset than its application is
    now configured with (a reset environment copy) is reported with the
    dataset it mounts, found by its path, until it is replaced.
    """
    nodes = Nodes()
    nodes.converge(A, configured(), state_with(A))
    fresh = str(uuid4())
    reset = (
        Deployment()
        .add_dataset(Dataset(dataset_id=DS), A)
        .add_dataset(Dataset(dataset_id=fresh), A)
        .add_application(APP.set(volumes=[AttachedVolume(dataset_id=fresh, mountpoint="/data")]), A)
    )
    deployer = nodes.deployers[A]
    deployer.configuration = reset
    local = result(deployer.discover_state(state_with(A)))
    [volume] = local.shared_state_changes().applications["counter"].volumes
    assert volume.dataset_id == DS


def test_reports_busy_ports_less_the_published_ones() -> None:
    """
    The container half of the node's state carries the ports other
    programs listen on at the node's address, less those the configuration
    publishes (this cluster's containers and routers hold them).
    """
    runtime = memory_runtimes([A], images=[IMAGE])[0]
    deployer = ContainerDeployer(
        A, ADDRESS[A], runtime, listening=lambda: succeed(frozenset({22, 8080, 20000}))
    )
    deployer.configuration = configured()
    local = result(deployer.discover_state(state_with(A)))
    assert local.shared_state_changes().busy_ports == {22, 20000}


def test_busy_ports_unknown_without_a_reader_or_when_unreadable() -> None:
    """
    Without a way to read them, or when the socket tables cannot be read,
    the busy ports are reported unknown (``None``), never as "none busy".
    """
    runtime = memory_runtimes([A], images=[IMAGE])[0]
    local = result(ContainerDeployer(A, ADDRESS[A], runtime).discover_state(state_with(A)))
    assert local.shared_state_changes().busy_ports is None
    failing = ContainerDeployer(
        A, ADDRESS[A], runtime, listening=lambda: fail(PermissionError("/proc/net/tcp"))
    )
    local = result(failing.discover_state(state_with(A)))
    assert local.shared_state_changes().busy_ports is None


def test_port_the_router_cannot_listen_on_reported_until_the_ports_change() -> None:
    """
    An application configured here one of whose external ports the node's
    router cannot listen on (something else holds it) is reported in
    ``port_conflicts`` with that port; once its configured ports change, or
    the port is free again, it is not.
    """
    router = MemoryRouter()
    runtime = memory_runtimes([A], images=[IMAGE])[0]
    deployer = ContainerDeployer(A, ADDRESS[A], runtime, router=router)
    router.busy.add(8080)
    state = state_with(A)
    local = result(deployer.discover_state(state))
    result(run_state_change(deployer.calculate_changes(configured(), state, local), deployer))
    local = result(deployer.discover_state(state))
    assert local.shared_state_changes().port_conflicts == {"counter": {8080}}
    moved = configured(app=APP.set(ports=[Port(internal_port=80, external_port=20000)]))
    result(run_state_change(deployer.calculate_changes(moved, state, local), deployer))
    local = result(deployer.discover_state(state))
    assert local.shared_state_changes().port_conflicts == {}
    result(run_state_change(deployer.calculate_changes(configured(), state, local), deployer))
    router.busy.clear()
    result(router.set_routes(router.routes()))
    local = result(deployer.discover_state(state))
    assert local.shared_state_changes().port_conflicts == {}


def test_ports_the_engine_chose_are_not_busy() -> None:
    """
    The ports the engine published this node's containers on are not
    reported busy: they are the cluster's own.
    """
    runtime = memory_runtimes([A], images=[IMAGE])[0]
    listened: set[int] = {7000}
    deployer = ContainerDeployer(
        A, ADDRESS[A], runtime, listening=lambda: succeed(frozenset(listened))
    )
    state = state_with(A)
    local = result(deployer.discover_state(state))
    result(run_state_change(deployer.calculate_changes(configured(), state, local), deployer))
    states = result(runtime.list_states())
    listened.update(states["counter"].ports.values())
    listened.add(8080)
    local = result(deployer.discover_state(state))
    assert local.shared_state_changes().busy_ports == {7000}


# -- health ---------------------------------------------------------------


class RecordingProbe:
    """A probe that notes its calls and answers at once with ``answer``."""

    def __init__(self, answer: str | None = None) -> None:
        self.answer = answer
        self.calls: list[tuple[HealthCheck, str, int]] = []

    def __call__(self, check: HealthCheck, host: str, port: int) -> Deferred[str | None]:
        """Note the call; answer."""
        self.calls.append((check, host, port))
        return succeed(self.answer)


def probed(answer: str | None = None) -> tuple[Nodes, Clock, RecordingProbe]:
    """Two nodes, A's deployer with health probes on a `Clock`."""
    nodes = Nodes()
    clock, probe = Clock(), RecordingProbe(answer)
    clock.advance(500)
    nodes.deployers[A] = attr.evolve(nodes.deployers[A], health=HealthProbes(clock, probe))
    return nodes, clock, probe


def reported_health(nodes: Nodes, state: DeploymentState) -> Any:
    """The health A's deployer reports after discovering ``state``."""
    local = result(nodes.deployers[A].discover_state(state))
    return local.shared_state_changes().health


def published_port(nodes: Nodes) -> int:
    """The port A's engine published ``counter``'s port 80 on."""
    port: int = result(nodes.deployers[A].runtime.inspect("counter")).ports[80]
    return port


def running_healthy(nodes: Nodes, clock: Clock) -> None:
    """Converge A to `configured`, and have its probes find ``counter`` healthy."""
    nodes.converge(A, configured(), state_with(A))
    reported_health(nodes, state_with(A))
    clock.advance(0)
    assert reported_health(nodes, state_with(A))["counter"].status == "healthy"


def test_health_reported_for_configured_containers() -> None:
    """
    The node reports the health of each application configured here that
    has a container here: a new one starting at its revision, then, once
    probed at the node's address on the port published for its checked
    port (by default a TCP connect on its lowest port), healthy.
    """
    nodes, clock, probe = probed()
    nodes.converge(A, configured(), state_with(A))
    published = published_port(nodes)
    assert reported_health(nodes, state_with(A)) == {
        "counter": ApplicationHealth(
            application="counter",
            status="starting",
            revision=0,
            since=500.0,
            ports={80: published},
        )
    }
    clock.advance(0)
    assert probe.calls == [(HealthCheck(kind="tcp", port=80), ADDRESS[A], published)]
    [health] = reported_health(nodes, state_with(A)).values()
    assert health.status == "healthy"


def test_health_unknown_without_probes_or_configuration() -> None:
    """
    A deployer without health probes reports the node's health unknown
    (``None``), and so does one with probes that does not know the
    configuration yet; without containers configured here it is empty.
    """
    nodes = Nodes()
    nodes.converge(A, configured(), state_with(A))
    assert reported_health(nodes, state_with(A)) is None
    nodes, _, _ = probed()
    assert reported_health(nodes, state_with(A)) is None
    nodes.deployers[A].configuration = Deployment()
    assert reported_health(nodes, state_with(A)) == {}


def test_health_of_an_older_instance_has_no_revision() -> None:
    """
    While the container is not the one the configuration now wants (an
    update not converged yet), its health is of no revision; the new
    container's is of the new revision and starts over.
    """
    nodes, clock, _ = probed()
    running_healthy(nodes, clock)
    update = configured().update_application(APP.set(environment={"MODE": "production"}))
    nodes.plan(A, update, state_with(A))  # the deployer learns the configuration
    [old] = reported_health(nodes, state_with(A)).values()
    assert (old.status, old.revision) == ("healthy", None)
    drain_and_replace(nodes, clock, update)
    [new] = reported_health(nodes, state_with(A)).values()
    assert (new.status, new.revision) == ("starting", 1)


def echoed(nodes: Nodes, state: DeploymentState) -> DeploymentState:
    """``state`` with node A's own latest report in it (as the control service echoes it)."""
    local = result(nodes.deployers[A].discover_state(state))
    report = local.shared_state_changes()
    return state.update_node(report.set(datasets=state.get_node(A).datasets))


def drain_and_replace(nodes: Nodes, clock: Clock, configuration: Deployment) -> None:
    """
    Converge A to ``configuration`` when that replaces its healthy
    ``counter``: drain it, hear the drain echoed, let it settle, replace.
    """
    assert nodes.converge(A, configuration, state_with(A)) == DrainApplication(name="counter")
    echo = echoed(nodes, state_with(A))
    assert nodes.plan(A, configuration, echo) == NoOp()  # not settled yet
    clock.advance(DRAIN_SETTLE + 0.01)
    change = nodes.converge(A, configuration, echo)
    assert RemoveApplication(name="counter") in changes_of(change)


def _draining_counter(nodes: Nodes) -> tuple[Deployment, MemoryRuntime]:
    """
    Start draining node A's healthy counter for an update; the update and
    A's runtime.
    """
    update = configured().update_application(APP.set(environment={"MODE": "production"}))
    assert nodes.converge(A, update, state_with(A)) == DrainApplication(name="counter")
    runtime = nodes.deployers[A].runtime
    assert isinstance(runtime, MemoryRuntime)
    return update, runtime


def test_healthy_instance_drains_before_it_is_replaced() -> None:
    """
    A healthy instance to be replaced is first reported *stopping* (so no
    router sends it new connections), and replaced only once the cluster
    state echoes that and it has settled; with a request still open to it
    (through whichever node's router: the container counts it) it waits,
    until its grace is over.
    """
    nodes, clock, _ = probed()
    running_healthy(nodes, clock)
    update, runtime = _draining_counter(nodes)
    [draining] = reported_health(nodes, state_with(A)).values()
    assert draining.status == "stopping"
    runtime.open_connection("counter")
    clock.advance(DRAIN_SETTLE + 0.01)
    assert nodes.plan(A, update, state_with(A)) == NoOp()  # not echoed: others may not know
    echo = echoed(nodes, state_with(A))
    assert nodes.plan(A, update, echo) == NoOp()  # a request is still open
    clock.advance(DRAIN_GRACE)
    assert RemoveApplication(name="counter") in changes_of(nodes.plan(A, update, echo))


def test_instance_drains_once_its_requests_are_answered_idle_connections_aside() -> None:
    """
    A stopping instance is replaced once the connections it owes an answer
    on have closed, whichever router they came through; an idle connection
    (a kept-alive client's or a pool's, its last request answered) does
    not hold it up, and is cut when it stops.
    """
    nodes, clock, _ = probed()
    running_healthy(nodes, clock)
    update, runtime = _draining_counter(nodes)
    close = runtime.open_connection("counter")
    runtime.open_connection("counter", idle=True)
    echo = echoed(nodes, state_with(A))
    clock.advance(DRAIN_SETTLE + 0.01)
    assert nodes.plan(A, update, echo) == NoOp()  # the request is still open
    close()
    assert RemoveApplication(name="counter") in changes_of(nodes.plan(A, update, echo))


class _CountedConnections(WrappedRuntime):
    """A runtime noting which containers' connections it was asked to count."""

    def __init__(self, runtime: IContainerRuntime) -> None:
        super().__init__(runtime)
        self.counted: list[str] = []

    def connections(self, name: str) -> Deferred[int]:
        """Note the name; count."""
        self.counted.append(name)
        return self.runtime.connections(name)


def test_connections_are_counted_only_while_a_stopping_container_runs() -> None:
    """
    Discovery counts the connections of a stopping instance whose
    container runs, and no longer once it is halted (its removal to
    come): nothing is left to count.
    """
    nodes, clock, _ = probed()
    running_healthy(nodes, clock)
    _, runtime = _draining_counter(nodes)
    counting = _CountedConnections(runtime)
    nodes.deployers[A] = attr.evolve(nodes.deployers[A], runtime=counting)
    reported_health(nodes, state_with(A))
    assert counting.counted == ["counter"]
    result(runtime.halt("counter"))
    health = reported_health(nodes, state_with(A))
    assert health["counter"].status == "stopping"
    assert counting.counted == ["counter"]


class _Uncounted(WrappedRuntime):
    """A runtime that cannot count its containers' connections."""

    def connections(self, name: str) -> Deferred[int]:
        """Fail as the Docker runtime does when the engine's processes are elsewhere."""
        return fail(EngineError("the connections to a container cannot be counted"))


def test_without_a_count_the_connections_through_this_nodes_router_are_waited_for() -> None:
    """
    Where the runtime cannot count a stopping instance's connections, those
    open to it through this node's router are waited for (until its grace
    is over).
    """
    nodes, clock, _ = probed()
    running_healthy(nodes, clock)
    update, runtime = _draining_counter(nodes)
    [draining] = reported_health(nodes, state_with(A)).values()
    nodes.deployers[A] = attr.evolve(
        nodes.deployers[A],
        runtime=_Uncounted(runtime),
        router=BusyRouter(ADDRESS[A], draining.ports[80]),
    )
    echo = echoed(nodes, state_with(A))
    clock.advance(DRAIN_SETTLE + 0.01)
    assert nodes.plan(A, update, echo) == NoOp()  # a connection is still open
    clock.advance(DRAIN_GRACE)
    assert RemoveApplication(name="counter") in changes_of(nodes.plan(A, update, echo))


def test_instance_the_cluster_still_routes_to_drains_after_an_agent_restart() -> None:
    """
    After the container agent restarts, its probes start over at
    *starting*; an instance to be replaced that the cluster state still
    shows healthy (the routers still send it connections) is drained
    first, not stopped at once.
    """
    nodes, clock, probe = probed()
    running_healthy(nodes, clock)
    seen_healthy = echoed(nodes, state_with(A))
    nodes.deployers[A] = attr.evolve(nodes.deployers[A], health=HealthProbes(clock, probe))
    update = configured().update_application(APP.set(environment={"MODE": "production"}))
    assert nodes.converge(A, update, seen_healthy) == DrainApplication(name="counter")
    [draining] = reported_health(nodes, seen_healthy).values()
    assert draining.status == "stopping"


def test_draining_instance_wanted_again_resumes() -> None:
    """
    A draining instance whose application is configured back as it runs
    (a move called off) is probed again from *starting*, not stopped.
    """
    nodes, clock, _ = probed()
    running_healthy(nodes, clock)
    moved = configured().move_application("counter", B)
    copying = state_with(A, others=[(B, None)])
    assert nodes.converge(A, moved, copying) == DrainApplication(name="counter")
    assert nodes.converge(A, configured(), state_with(A)) == ResumeApplication(name="counter")
    [resumed] = reported_health(nodes, state_with(A)).values()
    assert resumed.status == "starting"
    clock.advance(0)
    [health] = reported_health(nodes, state_with(A)).values()
    assert health.status == "healthy"


def test_instance_not_healthy_is_stopped_at_once() -> None:
    """An instance that is not healthy gets no connections: it is not drained."""
    nodes, clock, _ = probed("connection refused")
    nodes.converge(A, configured(), state_with(A))
    clock.advance(0)
    update = configured().update_application(APP.set(environment={"MODE": "production"}))
    change = nodes.plan(A, update, state_with(A))
    assert RemoveApplication(name="counter") in changes_of(change)


@implementer(IRouter)
class BusyRouter(MemoryRouter):
    """A memory router with one connection open to ``host:port``."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__()
        self.open = Target(host=host, port=port)

    def connections(self) -> PMap[Target, int]:
        """One connection, to the busy target."""
        return pmap({self.open: 1})


def test_health_revision_follows_the_datasets_paths() -> None:
    """
    A container binding its dataset where the node no longer mounts it
    is not the configured one: its health is of no revision.
    """
    nodes, _, _ = probed()
    nodes.converge(A, configured(), state_with(A))
    [health] = reported_health(nodes, state_with(A, path="/mnt/elsewhere")).values()
    assert health.revision is None


def test_health_check_update_keeps_the_container() -> None:
    """
    An update of only the health check does not replace the container:
    the same container is reported at the new revision, keeping its status,
    and probed at once with the new check on the port published for its
    port.
    """
    nodes, clock, probe = probed()
    running_healthy(nodes, clock)
    check = HealthCheck(kind="http", port=80, path="/healthz")
    update = configured().update_application(APP.set(health=check))
    assert nodes.plan(A, update, state_with(A)) == NoOp()
    [health] = reported_health(nodes, state_with(A)).values()
    assert (health.status, health.revision) == ("healthy", 1)
    clock.advance(0)
    assert probe.calls[-1] == (check, ADDRESS[A], published_port(nodes))


def test_health_of_a_stopped_container() -> None:
    """A stopped container is not probed: its probes fail, "not running"."""
    nodes, clock, probe = probed()
    nodes.converge(A, configured(), state_with(A))
    result(nodes.deployers[A].runtime.stop("counter"))
    reported_health(nodes, state_with(A))
    clock.advance(0)
    [health] = reported_health(nodes, state_with(A)).values()
    assert health.reason == NOT_RUNNING
    assert probe.calls == []


def test_health_of_instances_of_applications_configured_elsewhere() -> None:
    """
    A container still running here for an application configured on
    another node (the old end of a move, which serves until it stops) is
    still probed and reported, of no revision; one of an application
    configured nowhere is neither.
    """
    nodes, clock, probe = probed()
    nodes.converge(A, configured(), state_with(A))
    assert set(reported_health(nodes, state_with(A))) == {"counter"}
    nodes.deployers[A].configuration = configured(node=B)
    [moving] = reported_health(nodes, state_with(A)).values()
    assert moving.revision is None
    nodes.deployers[A].configuration = Deployment()
    assert reported_health(nodes, state_with(A)) == {}
    calls = len(probe.calls)
    clock.pump([0.0, 5.0, 5.0])
    assert len(probe.calls) == calls


def test_health_instance() -> None:
    """
    An instance is probed with the application's check on the port the
    engine reports the checked internal port published on now; an older
    container that does not publish that port, or an application with no
    ports, is only checked for running.
    """
    check = HealthCheck(kind="http", port=81, path="/")
    app = APP.set(
        ports=[Port(internal_port=80, external_port=8080), Port(internal_port=81, external_port=9090)],
        health=check,
        revision=4,
    )
    spec = container_spec(app, ADDRESS[A], {DS: "/mnt/ds"})
    assert spec is not None
    instance = health_instance(
        app, spec, ADDRESS[A], running=True, current=True, published={80: 40080, 81: 40081}
    )
    assert (instance.check, instance.host, instance.port) == (check, ADDRESS[A], 40081)
    assert (instance.revision, instance.running, instance.key) == (4, True, spec)
    older = container_spec(APP, ADDRESS[A], {DS: "/mnt/ds"})
    assert older is not None
    stale = health_instance(app, older, ADDRESS[A], running=False, current=False)
    assert (stale.check, stale.port, stale.revision, stale.running) == (None, None, None, False)
    ephemeral = health_instance(app, spec, ADDRESS[A], True, True, published={81: 32768})
    assert ephemeral.port == 32768
    quiet = APP.set(ports=[])
    quiet_spec = container_spec(quiet, ADDRESS[A], {DS: "/mnt/ds"})
    assert quiet_spec is not None
    assert health_instance(quiet, quiet_spec, ADDRESS[A], True, True).check is None


def test_instance_still_routed_here_is_not_stopped() -> None:
    """
    A drained instance that this node's router still sends connections to
    (the routes have not followed the echo yet) is not stopped until they do.
    """
    nodes, clock, _ = probed()
    running_healthy(nodes, clock)
    update = configured().update_application(APP.set(environment={"MODE": "production"}))
    nodes.converge(A, update, state_with(A))
    [draining] = reported_health(nodes, state_with(A)).values()
    echo = echoed(nodes, state_with(A))
    clock.advance(DRAIN_SETTLE + 0.01)
    router = nodes.deployers[A].router
    stale = {8080: Route(external_port=8080, target_host=ADDRESS[A], target_port=draining.ports[80])}
    result(router.set_routes(pmap(stale)))
    plan = nodes.plan(A, update, echo, routes=True)
    assert RemoveApplication(name="counter") not in changes_of(plan)
    result(router.set_routes(pmap({8080: Route(external_port=8080, targets=[])})))
    assert RemoveApplication(name="counter") in changes_of(nodes.plan(A, update, echo))
