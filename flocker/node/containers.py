"""The container agent's deployer: applications started, changed, stopped.

``ContainerDeployer`` discovers the node's containers from its runtime, and
``calculate_container_changes`` — pure — compares them with the
applications configured for the node:

* an application configured here whose datasets are all mounted here (the
  dataset agent reports their paths) and that has no container: start one;
* a container whose spec differs from the configured application (image,
  environment, ports, a dataset's path…): replace it;
* a container that exited: start it again;
* a container of an application no longer configured here: remove it —
  except when the application moved away with its datasets and the new
  node has not yet received a first copy of them: then the container keeps
  running during the bulk transfer, and it is removed only once the new
  node reports a copy, so the dataset agent's final increment is small;
* an application whose datasets are not mounted here yet waits;
* an application whose image the engine lacks waits while the image is got
  in the background (``_pulls``: pulled from its registry, retried with
  backoff); a container being replaced by one of a new image runs on
  until the new image is here;
* an application one of whose datasets has a rollback pending is stopped
  until the dataset's primary reports the rollback done;
* the node's router forwards every application's external ports to its
  healthy instances, wherever they run, and holds new connections while
  there is none (``flocker.route``);
* while the agent is fenced (``_fence``: nothing heard from the control
  service for ``fence-after`` seconds), a running container of an
  application that uses a dataset failing over automatically is stopped —
  not removed — and nothing else is done to it; once a configuration
  arrives, the rules above start it again if it still belongs here.

Discovery also reads which TCP ports other programs listen on at the
node's address (``flocker.node._ports``, in a thread) and reports them as
the node's ``busy_ports``, so that the control service chooses ports for
environment copies that can be published here.  The ports the cluster's
configuration publishes are left out: this node's containers and router
hold them, the control service avoids them anyway, and leaving them out
keeps the report from changing each time an application starts or moves.
Ports below 1024 stay in: a user may ask for one explicitly.

Containers publish their ports on the node's address at ports the engine
chooses; the node's router owns the applications' external ports, on
every node (``flocker.route``).  When something else holds one of the
external ports of an application configured here, so that the router
cannot listen on it, the node reports it (``port_conflicts``).  The
control service moves an environment copy off such ports, so that it is
never unreachable for ever.

With health probes (``_health``), discovery also hands the probes each
configured application that has a container here, and the node reports
what they found (``health``) with the ports each instance is published on:
the application's check (``default_health``), probed at this node's
address on the port its container publishes the checked internal port on,
and the
application's ``revision`` when the container is the one the
configuration wants now (its spec is the one this deployer would start),
else ``None`` (an older instance, running while the new one's image is
got).  Neither the check nor the revision is part of a container's spec:
changing only them never replaces a container.

Links become Docker-link style environment variables pointing at this
node's own address: every node's router forwards every application's
external ports to wherever it runs, so linked applications keep working
after a move without being told where it went.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attr
from eliot import start_action
from eliot.twisted import DeferredContext
from pyrsistent import PClass, PMap, PSet, field, pmap, pmap_field, pset, pset_field
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from zope.interface import implementer

from flocker.control import (
    Application,
    ApplicationHealth,
    AttachedVolume,
    Deployment,
    DeploymentState,
    ImagePull,
    NodeState,
    default_health,
    instance_nodes,
)
from flocker.control import RestartAlways as ModelRestartAlways
from flocker.control import RestartOnFailure as ModelRestartOnFailure
from flocker.route import IRouter, MemoryRouter, Route, routes_for_node
from flocker.runtime import (
    ContainerSpec,
    ContainerState,
    IContainerRuntime,
    ImageNotFound,
    PublishedPort,
    RestartAlways,
    RestartNever,
    RestartOnFailure,
    VolumeBind,
)

from ._answering import AnsweringWatch
from ._deploy import (
    ILocalState,
    IStateChange,
    NoOp,
    StateChange,
    in_parallel,
    sequentially,
)
from ._fence import fence_applies
from ._health import DRAIN_GRACE, DRAIN_SETTLE, HealthProbes, Instance
from ._pulls import ImagePulls, PullImage, PullState


def link_environment(application: Application, address: str) -> dict[str, str]:
    """
    Docker-link style variables for an application's links.

    For a link ``alias`` with local port L and remote port R:
    ``ALIAS_PORT_L_TCP=tcp://address:R`` and its ``_ADDR``, ``_PORT`` and
    ``_PROTO`` parts, where ``address`` is this node's own address (the node
    forwards R to wherever the linked application runs).
    """
    environment = {}
    for link in application.links:
        prefix = f"{link.alias.upper().replace('-', '_')}_PORT_{link.local_port}_TCP"
        environment[prefix] = f"tcp://{address}:{link.remote_port}"
        environment[f"{prefix}_ADDR"] = address
        environment[f"{prefix}_PORT"] = str(link.remote_port)
        environment[f"{prefix}_PROTO"] = "tcp"
    return environment


def _restart_policy(application: Application) -> Any:
    policy = application.restart_policy
    if isinstance(policy, ModelRestartAlways):
        return RestartAlways()
    if isinstance(policy, ModelRestartOnFailure):
        return RestartOnFailure(maximum_retry_count=policy.maximum_retry_count)
    return RestartNever()


def container_spec(
    application: Application, address: str, dataset_paths: dict[str, str]
) -> ContainerSpec | None:
    """
    The container an application needs on a node, or ``None`` while one of
    its datasets is not mounted there.

    :param address: The node's address; ports are published on it, each on
        a port the engine chooses (the node's router owns the application's
        external ports and forwards them there).
    :param dataset_paths: Dataset id → mount path of the datasets the node
        exposes.
    """
    volumes = []
    for volume in application.volumes:
        path = dataset_paths.get(volume.dataset_id)
        if path is None:
            return None
        volumes.append(VolumeBind(host_path=path, container_path=volume.mountpoint))
    environment = dict(application.environment)
    environment.update(link_environment(application, address))
    return ContainerSpec(
        name=application.name,
        image=application.image,
        command=application.command_line,
        environment=environment,
        ports=[
            PublishedPort(
                internal_port=port.internal_port,
                external_port=0,
                host_ip=address,
            )
            for port in application.ports
        ],
        volumes=volumes,
        restart_policy=_restart_policy(application),
        cpu_shares=application.cpu_shares,
        memory_limit=application.memory_limit,
        swappiness=application.swappiness,
    )


def health_instance(
    application: Application,
    spec: ContainerSpec,
    address: str,
    running: bool,
    current: bool,
    published: Mapping[int, int] | None = None,
) -> Instance:
    """
    What the health probes watch of an application's container.

    The application's check (``default_health``) is probed at the node's
    address on the host port the container publishes the checked internal
    port on (the one the engine reports now, for an ephemeral port);
    an older container that does not publish that port is taken as ready
    while it runs (there is nothing to probe).

    :param spec: The container's spec (its key: another container starts
        the probes over).
    :param running: Whether the container runs.
    :param current: Whether the container is the configured one (its spec
        is the one the deployer would start now); if not, its revision is
        reported as ``None``.
    :param published: Internal port → the host port it is published on
        now (``ContainerState.ports``).
    """
    check = default_health(application)
    port = None
    if check is not None:
        port = min(
            (p.external_port for p in spec.ports if p.internal_port == check.port),
            default=None,
        )
        if port is None:
            check = None
        elif published and check.port in published:
            port = published[check.port]
    return Instance(
        check=check,
        host=address,
        port=port,
        revision=application.revision if current else None,
        running=running,
        key=spec,
    )


@implementer(ILocalState)
class ContainerLocalState(PClass):
    """The node's containers, as the container deployer discovered them."""

    node_uuid = field(type=str, mandatory=True)
    hostname = field(type=str, mandatory=True)
    specs = pset_field(ContainerSpec)
    states = pmap_field(str, ContainerState)
    applications = pmap_field(str, Application)
    routes = pmap_field(int, Route)
    starting = pset_field(str)
    busy_ports = field(type=(PSet, type(None)), initial=None)
    port_conflicts = pmap_field(str, PSet)
    #: Whether the agent fenced itself (``_fence``).
    fenced = field(type=bool, initial=False)
    #: The node's era (``_era``: changes at every boot), or ``None``.
    era = field(type=(str, type(None)), initial=None)
    #: Whether the deployer gets missing images (``_pulls``); if not, an
    #: application is started whatever its image, as before.
    pulling = field(type=bool, initial=False)
    #: The images the engine is known to have.
    images = pset_field(str)
    #: The images being got now, or whose pull failed and is not due again.
    images_waiting = pset_field(str)
    #: Image → what is known of its pull (being pulled, or failed).
    pulls = pmap_field(str, PullState)
    #: Application name → its image's pull, for the applications configured
    #: here whose image is being got or failed to be (``None``: not known).
    image_pulls = field(type=(PMap, type(None)), initial=None)
    #: Application name → its instance's health, for the applications
    #: configured here that have a container here (``None``: not known —
    #: no probes, or the configuration is not known yet).
    health = field(type=(PMap, type(None)), initial=None)
    #: The applications whose stopping instance here has drained: its
    #: connections through this node's router finished (and every other
    #: router had `DRAIN_SETTLE` seconds to hear of it), or its grace
    #: period (`DRAIN_GRACE`) is over.
    drained = pset_field(str)

    def shared_state_changes(self) -> NodeState:
        """
        The applications half of the node's state: what runs here, the busy
        ports and the applications that could not publish their ports, the
        images being got for applications configured here, their health,
        and the node's era.
        """
        return NodeState(
            uuid=self.node_uuid,
            hostname=self.hostname,
            era=self.era,
            applications=self.applications,
            busy_ports=self.busy_ports,
            port_conflicts=self.port_conflicts,
            image_pulls=self.image_pulls,
            health=self.health,
        )


#: A change of the container agent: it runs with the agent's deployer.
ContainerChange = StateChange["ContainerDeployer"]


def _fields(change: RemoveApplication | FenceApplication | RestartApplication) -> dict[str, Any]:
    return {"name": change.name}


@implementer(IStateChange)
class StartApplication(PClass):
    """Create and start an application's container."""

    spec = field(type=ContainerSpec, mandatory=True)
    action_type = "flocker:node:container:start"

    @property
    def name(self) -> str:
        """The application's name."""
        return self.spec.name

    def log_fields(self) -> dict[str, Any]:
        """The application's name and image."""
        return {"name": self.spec.name, "image": self.spec.image}

    def run(self, deployer: ContainerDeployer) -> Deferred[None]:
        """
        Create it in the runtime; then time how soon it answers.

        With a ``poke``, the deployer starts containers in the background:
        this returns at once, so a slow ``docker create`` does not hold up
        the next pass (another application's data may be ready meanwhile);
        the application counts as *starting* — no other change touches it —
        until the runtime answers, and then the loop is poked.
        """
        if deployer.poke is None:
            return self._create(deployer)
        name = self.spec.name
        deployer.starting.add(name)
        action = start_action(action_type="flocker:node:container:background_start", name=name)
        with action.context():
            created = DeferredContext(maybeDeferred(self._create, deployer))
            created.addActionFinish()

        def done(result: Any) -> None:
            deployer.starting.discard(name)
            assert deployer.poke is not None
            deployer.poke()

        created.result.addBoth(done)
        return succeed(None)

    def _create(self, deployer: ContainerDeployer) -> Deferred[None]:
        created = deployer.runtime.create(self.spec)
        spec = self.spec

        created.addErrback(deployer.refused)
        if deployer.answering is not None:
            watch = deployer.answering

            def answering(_: None) -> None:
                # Timed in the background: the ports are read from the engine.
                states = deployer.runtime.inspect(spec.name)
                states.addCallback(lambda state: watch.started(spec, state.ports))
                states.addErrback(lambda _: None)

            created.addCallback(answering)
        return created


@implementer(IStateChange)
class RemoveApplication(PClass):
    """Stop and remove an application's container."""

    name = field(type=str, mandatory=True)
    action_type = "flocker:node:container:remove"

    def log_fields(self) -> dict[str, Any]:
        """The application's name."""
        return _fields(self)

    def run(self, deployer: ContainerDeployer) -> Deferred[None]:
        """Remove it (killing it first)."""
        return deployer.runtime.remove(self.name)


#: Seconds a fenced application gets to stop before it is killed (an
#: application that ignores SIGTERM would otherwise run on for Docker's
#: default ten seconds, past a short failover-after).
FENCE_STOP_TIMEOUT = 1.0


@implementer(IStateChange)
class FenceApplication(PClass):
    """
    Stop (not remove) an application's container while the agent is
    fenced: its dataset fails over automatically, so another node may be
    about to run it on a promoted replica.
    """

    name = field(type=str, mandatory=True)
    action_type = "flocker:node:container:fence"

    def log_fields(self) -> dict[str, Any]:
        """The application's name."""
        return _fields(self)

    def run(self, deployer: ContainerDeployer) -> Deferred[None]:
        """
        Stop its container, killing it after `FENCE_STOP_TIMEOUT`: it
        must be down well before the control service may fail over.
        """
        return deployer.runtime.stop(self.name, timeout=FENCE_STOP_TIMEOUT)


@implementer(IStateChange)
class SetRoutes(PClass):
    """Give the node's router the routes to applications on other nodes."""

    routes = pmap_field(int, Route)
    action_type = "flocker:node:container:set_routes"

    def log_fields(self) -> dict[str, Any]:
        """The routed ports."""
        return {"ports": sorted(self.routes)}

    def run(self, deployer: ContainerDeployer) -> Deferred[None]:
        """Hand them to the router."""
        return deployer.router.set_routes(self.routes)


@implementer(IStateChange)
class DrainApplication(PClass):
    """
    Have the application's instance here drain before it is stopped: the
    node reports it *stopping*, so that every router sends it no new
    connection while those open finish.
    """

    name = field(type=str, mandatory=True)
    action_type = "flocker:node:container:drain"

    def log_fields(self) -> dict[str, Any]:
        """The application's name."""
        return {"name": self.name}

    def run(self, deployer: ContainerDeployer) -> Deferred[None]:
        """Tell the health probes."""
        if deployer.health is not None:
            deployer.health.drain(self.name)
        return succeed(None)


@implementer(IStateChange)
class ResumeApplication(PClass):
    """A draining instance is wanted after all: probe it again, from *starting*."""

    name = field(type=str, mandatory=True)
    action_type = "flocker:node:container:resume"

    def log_fields(self) -> dict[str, Any]:
        """The application's name."""
        return {"name": self.name}

    def run(self, deployer: ContainerDeployer) -> Deferred[None]:
        """Tell the health probes."""
        if deployer.health is not None:
            deployer.health.resume(self.name)
        return succeed(None)


@implementer(IStateChange)
class RestartApplication(PClass):
    """Start an application's container that exited."""

    name = field(type=str, mandatory=True)
    action_type = "flocker:node:container:restart"

    def log_fields(self) -> dict[str, Any]:
        """The application's name."""
        return _fields(self)

    def run(self, deployer: ContainerDeployer) -> Deferred[None]:
        """Start it again."""
        return deployer.runtime.start(self.name)


def _exposed_paths(cluster_state: DeploymentState, node_uuid: str) -> dict[str, str]:
    """Dataset id → mount path for the datasets the node reports mounted."""
    datasets = cluster_state.get_node(node_uuid).datasets or {}
    return {i: d.path for i, d in datasets.items() if d.path is not None}


def _bulk_copy_arrived(
    application: Application,
    configuration: Deployment,
    cluster_state: DeploymentState,
    node_uuid: str,
) -> bool:
    """
    Whether an application that moved away may stop here now.

    True when it has no datasets, or when for each of its datasets the new
    primary has a copy (a replica from the bulk transfer, or the exposed
    dataset) or this node no longer reports the dataset mounted.
    """
    here = _exposed_paths(cluster_state, node_uuid)
    for volume in application.volumes:
        if volume.dataset_id not in here:
            continue
        try:
            _, primary = configuration.get_dataset(volume.dataset_id)
        except KeyError:
            continue
        if primary == node_uuid:
            continue
        copies = cluster_state.get_node(primary).datasets or {}
        if volume.dataset_id not in copies:
            return False
    return True


def _rolling_back(
    application: Application, configuration: Deployment, cluster_state: DeploymentState
) -> bool:
    """
    Whether one of the application's datasets has a rollback pending: it
    must not run until the dataset's primary reports the rollback done.
    """
    for volume in application.volumes:
        try:
            dataset, primary = configuration.get_dataset(volume.dataset_id)
        except KeyError:
            continue
        if dataset.rollback is None:
            continue
        copy = (cluster_state.get_node(primary).datasets or {}).get(volume.dataset_id)
        if copy is None or copy.rolled_back != dataset.rollback.request_id:
            return True
    return False


def _fenced(name: str, configuration: Deployment) -> bool:
    """
    Whether a fenced agent stops an application: one of its datasets (as
    configured wherever the application is) fails over automatically.
    """
    return any(
        fence_applies(configuration, volume.dataset_id)
        for application, _ in configuration.all_applications()
        if application.name == name
        for volume in application.volumes
    )


def applications_here(
    node_uuid: str, configuration: Deployment, cluster_state: DeploymentState
) -> dict[str, Application]:
    """
    The applications that run an instance on ``node_uuid``: those configured
    here, and those with replicas whose instances `instance_nodes` places
    here (among the nodes whose container agents report their
    applications).
    """
    wanted = dict(configuration.get_node(node_uuid).applications)
    reporting = [u for u, state in cluster_state.nodes.items() if state.applications is not None]
    for application, home in configuration.all_applications():
        if application.replicas > 1 and home != node_uuid:
            if node_uuid in instance_nodes(application, home, reporting):
                wanted[application.name] = application
    return wanted


def _waits_for_earlier_instances(
    node_uuid: str,
    application: Application,
    configuration: Deployment,
    cluster_state: DeploymentState,
) -> bool:
    """
    Whether this node's instance of a replicated application must wait
    before it is replaced by a new revision: an update rolls over the
    instances one at a time, in `instance_nodes` order, each once every
    earlier one reports the new revision healthy, so that the others serve
    meanwhile.
    """
    if application.replicas < 2:
        return False
    _, home = configuration.get_application(application.name)
    reporting = [u for u, state in cluster_state.nodes.items() if state.applications is not None]
    placed = instance_nodes(application, home, reporting)
    if node_uuid not in placed:
        return False
    for earlier in placed[: placed.index(node_uuid)]:
        health = (cluster_state.get_node(earlier).health or pmap()).get(application.name)
        if (
            health is None
            or health.status != "healthy"
            or health.revision != application.revision
        ):
            return True
    return False


def _health_status(name: str, local_state: ContainerLocalState) -> str | None:
    """The status the health probes give the application's instance here, if any."""
    reported: PMap[str, ApplicationHealth] = local_state.health or pmap()
    health = reported.get(name)
    return None if health is None else health.status


def _stop(
    name: str,
    stopping: ContainerChange,
    local_state: ContainerLocalState,
    cluster_state: DeploymentState,
) -> ContainerChange:
    """
    ``stopping`` (a change that stops the application's running container),
    once its instance has drained, else what drains it.

    A healthy instance (one the routers may send connections to) is first
    drained (`DrainApplication`: reported *stopping*, so that the routers
    send it no new connection).  It is stopped once the cluster state
    shows this node's report of it stopping (so every router has heard
    it) and the health probes count it drained (``drained``: its open
    connections through this node's router finished, or its grace period
    is over).  Without health probes, or an instance not healthy or not
    running, it is stopped at once: nothing is routed to it.
    """
    status = _health_status(name, local_state)
    state = local_state.states.get(name)
    if status is None or state is None or not state.running:
        return stopping
    if status == "healthy":
        return DrainApplication(name=name)
    if status != "stopping":
        return stopping
    known: PMap[str, ApplicationHealth] = (
        cluster_state.get_node(local_state.node_uuid).health or pmap()
    )
    reported = known.get(name)
    if reported is None or reported.status != "stopping" or name not in local_state.drained:
        return NoOp()
    return stopping


def calculate_container_changes(
    node_uuid: str,
    address: str,
    configuration: Deployment,
    cluster_state: DeploymentState,
    local_state: ContainerLocalState,
) -> ContainerChange:
    """The changes that bring this node's containers towards the configuration."""
    wanted = applications_here(node_uuid, configuration, cluster_state)
    paths = _exposed_paths(cluster_state, node_uuid)
    running = {spec.name: spec for spec in local_state.specs}
    changes: list[ContainerChange] = []
    pulled: set[str] = set()
    for name in sorted(set(wanted) | set(running)):
        if name in local_state.starting:
            continue  # its container is being created: wait for the runtime
        current = running.get(name)
        application = wanted.get(name)
        if local_state.fenced and _fenced(name, configuration):
            if current is not None and local_state.states.get(
                name, ContainerState(running=False)
            ).running:
                changes.append(FenceApplication(name=name))
            continue  # the configuration held may be stale: wait to hear it
        if application is None:
            assert current is not None
            elsewhere = next(
                (app for app, _ in configuration.all_applications() if app.name == name),
                None,
            )
            if elsewhere is not None and not _bulk_copy_arrived(
                elsewhere, configuration, cluster_state, node_uuid
            ):
                continue
            changes.append(_stop(name, RemoveApplication(name=name), local_state, cluster_state))
            continue
        spec = container_spec(application, address, paths)
        if spec is not None and _rolling_back(application, configuration, cluster_state):
            spec = None  # stopped while its data is rolled back
        if spec is None:
            # Its datasets are not mounted here (yet): nothing may run.
            if current is not None:
                changes.append(
                    _stop(name, RemoveApplication(name=name), local_state, cluster_state)
                )
            continue
        if current != spec and local_state.pulling and spec.image not in local_state.images:
            # Its (new) image is not here: get it; the old container, if
            # any, runs on meanwhile.
            if spec.image not in local_state.images_waiting and spec.image not in pulled:
                pulled.add(spec.image)
                changes.append(PullImage(image=spec.image))
            continue
        if current is None:
            changes.append(StartApplication(spec=spec))
        elif current != spec and _waits_for_earlier_instances(
            node_uuid, application, configuration, cluster_state
        ):
            continue  # the instances before this one are updated first
        elif current != spec:
            replace: list[ContainerChange] = [
                RemoveApplication(name=name),
                StartApplication(spec=spec),
            ]
            changes.append(_stop(name, sequentially(replace), local_state, cluster_state))
        elif not local_state.states.get(name, ContainerState(running=False)).running:
            changes.append(RestartApplication(name=name))
        elif _health_status(name, local_state) == "stopping":
            changes.append(ResumeApplication(name=name))  # wanted here after all
    routes = routes_for_node(node_uuid, configuration, cluster_state, {})
    if routes != local_state.routes:
        changes.append(SetRoutes(routes=routes))
    return in_parallel(changes)


@attr.s(eq=False)
class ContainerDeployer:
    """
    Converges one node's containers.

    :ivar node_uuid: This node's UUID.
    :ivar hostname: This node's address: ports are published on it.
    :ivar runtime: The node's container runtime.
    :ivar router: Forwards this node's connections to applications elsewhere.
    :ivar answering: Times how long moved applications were unavailable
        (``flocker.node._answering``); ``None`` leaves that out.
    """

    node_uuid: str = attr.ib()
    hostname: str = attr.ib()
    runtime: IContainerRuntime = attr.ib()
    router: IRouter = attr.ib(factory=MemoryRouter)
    configuration: Deployment | None = attr.ib(default=None)
    answering: AnsweringWatch | None = attr.ib(default=None)
    #: Wakes the convergence loop; when set, containers start in the background.
    poke: Callable[[], None] | None = attr.ib(default=None)
    #: Names of the applications whose containers are being created now.
    starting: set[str] = attr.ib(factory=set)
    #: Reads the ports listened on at the node's address (``_ports``); a
    #: Deferred, so that the blocking read runs in a thread.  ``None``
    #: reports them as unknown.
    listening: Callable[[], Deferred[frozenset[int]]] | None = attr.ib(default=None)
    #: Whether the agent fenced itself now (``_fence``).
    fenced: Callable[[], bool] = attr.ib(default=lambda: False)
    #: The node's era to report (``_era``), or ``None`` to report none.
    era: str | None = attr.ib(default=None)
    #: Gets the images the engine lacks (``_pulls``); ``None``: never pull.
    pulls: ImagePulls | None = attr.ib(default=None)
    #: Probes the applications' instances (``_health``); ``None``: the
    #: node's health is reported as unknown.
    health: HealthProbes | None = attr.ib(default=None)

    def refused(self, failure: Any) -> Any:
        """An image found missing after all is got again; pass the failure on."""
        if failure.check(ImageNotFound) and self.pulls is not None:
            self.pulls.forget(failure.value.image)
        return failure

    def discover_state(
        self, cluster_state: DeploymentState
    ) -> Deferred[ContainerLocalState]:
        """List the runtime's containers and their states, and the busy ports."""

        async def discover() -> ContainerLocalState:
            specs = await self.runtime.list_containers()
            states = await self.runtime.list_states()
            listened: frozenset[int] | None = None
            if self.listening is not None:
                try:
                    listened = await self.listening()
                except OSError:
                    listened = None  # unreadable socket tables: unknown, not "none busy"
            pulls = self.pulls
            if pulls is not None:
                pulls.seen(spec.image for spec in specs)
            health = self._health(specs, states, cluster_state)
            return ContainerLocalState(
                health=health,
                drained=self._drained(health),
                image_pulls=None if pulls is None else self._image_pulls(pulls, cluster_state),
                pulling=pulls is not None,
                images=pset() if pulls is None else pulls.known(),
                images_waiting=pset() if pulls is None else pulls.waiting(),
                pulls=pmap() if pulls is None else pulls.states(),
                node_uuid=self.node_uuid,
                hostname=self.hostname,
                specs=specs,
                states=states,
                applications=self._running_applications(specs, states, cluster_state),
                routes=self.router.routes(),
                starting=set(self.starting),
                busy_ports=None if listened is None else self._others(listened, states),
                port_conflicts=self._conflicts(),
                fenced=bool(self.fenced()),
                era=self.era,
            )

        return Deferred.fromCoroutine(discover())

    def _conflicts(self) -> PMap[str, PSet[int]]:
        """
        Application name → those of its external ports this node's router
        cannot listen on (something else holds them), for the applications
        configured here.
        """
        wanted = (
            self.configuration.get_node(self.node_uuid).applications
            if self.configuration is not None
            else {}
        )
        blocked = self.router.unavailable()
        found = {}
        for name, application in wanted.items():
            taken = {p.external_port for p in application.ports} & set(blocked)
            if taken:
                found[name] = pset(taken)
        return pmap(found)

    def _health(
        self, specs: Any, states: Any, cluster_state: DeploymentState
    ) -> PMap[str, ApplicationHealth] | None:
        """
        Have the probes watch the instances here of the configured
        applications (wherever they are configured: the old end of a move
        still serves until it stops), and say what they found, with the
        ports each instance is published on now; ``None`` without probes,
        or while the configuration is not known.
        """
        if self.health is None or self.configuration is None:
            return None
        wanted = applications_here(self.node_uuid, self.configuration, cluster_state)
        configured = {app.name: app for app, _ in self.configuration.all_applications()}
        paths = _exposed_paths(cluster_state, self.node_uuid)
        instances = {}
        for spec in specs:
            application = configured.get(spec.name)
            if application is None:
                continue
            state = states.get(spec.name)
            instances[spec.name] = health_instance(
                application,
                spec,
                self.hostname,
                running=state is not None and state.running,
                current=spec.name in wanted
                and spec == container_spec(application, self.hostname, paths),
                published=None if state is None else state.ports,
            )
        self.health.observe(instances)
        return pmap(
            {
                name: health.set(ports=states[name].ports) if name in states else health
                for name, health in self.health.states().items()
            }
        )

    def _drained(self, health: PMap[str, ApplicationHealth] | None) -> PSet[str]:
        """The applications whose stopping instance here has drained."""
        if self.health is None or health is None:
            return pset()
        now = float(self.health.clock.seconds())
        open_here = [
            target.port
            for target, count in self.router.connections().items()
            if count and target.host == self.hostname
        ]
        found = set()
        for name, instance in health.items():
            if instance.status != "stopping":
                continue
            waited = now - instance.since
            busy = any(port in instance.ports.values() for port in open_here)
            if waited >= DRAIN_GRACE or (waited >= DRAIN_SETTLE and not busy):
                found.add(name)
        return pset(found)

    def _image_pulls(
        self, pulls: ImagePulls, cluster_state: DeploymentState
    ) -> PMap[str, ImagePull]:
        """
        Application name → its image's pull, for the applications with an
        instance here whose image is being got, or failed to be.
        """
        wanted = (
            applications_here(self.node_uuid, self.configuration, cluster_state)
            if self.configuration is not None
            else {}
        )
        states = pulls.states()
        found = {}
        for name, application in wanted.items():
            state = states.get(application.image)
            if state is None:
                continue
            found[name] = state.reported(name)
        return pmap(found)

    def _others(
        self, listening: frozenset[int], states: Mapping[str, ContainerState]
    ) -> PSet[int]:
        """
        The listened-on ports less those the configuration publishes (the
        router's) and those the engine chose for this node's containers.
        """
        published = (
            {p.external_port for app, _ in self.configuration.all_applications() for p in app.ports}
            if self.configuration is not None
            else set()
        )
        chosen = {port for state in states.values() for port in state.ports.values()}
        return pset(listening - published - chosen)

    def _running_applications(
        self, specs: Any, states: Any, cluster_state: DeploymentState
    ) -> Any:
        """
        The applications whose containers run here, as last configured.

        An application that is moving away still runs here during the bulk
        transfer and is reported (so the dataset agent knows its datasets
        are in use); it is found wherever the configuration now puts it.
        A container still running on other datasets than the configuration
        now gives its application (a reset environment copy, until the
        container is replaced) is reported with the datasets it really
        mounts, found by their paths: the cluster state and the dataset
        agent's idea of what is in use stay true.
        """
        configured = (
            {app.name: app for app, _ in self.configuration.all_applications()}
            if self.configuration is not None
            else {}
        )
        paths = {
            d.path: dataset_id
            for dataset_id, d in (cluster_state.get_node(self.node_uuid).datasets or {}).items()
            if d.path is not None
        }
        found = {}
        for spec in specs:
            state = states.get(spec.name)
            application = configured.get(spec.name)
            if application is None or state is None or not state.running:
                continue
            actual = {
                AttachedVolume(dataset_id=paths[bind.host_path], mountpoint=bind.container_path)
                for bind in spec.volumes
                if bind.host_path in paths
            }
            if len(actual) == len(spec.volumes) and actual != set(application.volumes):
                application = application.set(volumes=actual)
            found[spec.name] = application
        return pmap(found)

    def calculate_changes(
        self,
        configuration: Deployment,
        cluster_state: DeploymentState,
        local_state: ContainerLocalState,
    ) -> ContainerChange:
        """See ``calculate_container_changes``."""
        self.configuration = configuration
        if self.answering is not None:
            self.answering.observe(
                set(applications_here(self.node_uuid, configuration, cluster_state)),
                cluster_state,
            )
        return calculate_container_changes(
            self.node_uuid, self.hostname, configuration, cluster_state, local_state
        )


__all__ = [
    "ContainerDeployer",
    "ContainerLocalState",
    "applications_here",
    "DrainApplication",
    "ResumeApplication",
    "FenceApplication",
    "RemoveApplication",
    "RestartApplication",
    "SetRoutes",
    "StartApplication",
    "calculate_container_changes",
    "container_spec",
    "health_instance",
    "link_environment",
]
