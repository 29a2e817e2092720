"""The container calculator: what this node's containers should become.

Pure: ``calculate_container_changes`` compares the containers discovered
here (``ContainerLocalState``) with the applications configured for the
node (``applications_here``), and the same arguments always give an equal
plan of changes (``_container_changes``):

* an application configured here whose datasets are all mounted here (the
  dataset agent reports their paths) and that has no container: start one;
* a container whose spec differs from the configured application (image,
  environment, ports, a dataset's path…): replace it;
* a container that exited: start it again;
* a container of an application no longer configured here: remove it —
  except when the application moved away with its datasets and the new
  node has not yet received a first copy of them: then the container keeps
  running during the bulk transfer, and it is removed only once the new
  node reports a copy, so the dataset agent's final increment is small —
  a fresh copy (`FRESH_COPY`), when its rounds are timed, so that the
  dataset agent has no other round under way when the application stops;
* an application whose datasets are not mounted here yet waits, its image
  got meanwhile (a moved application starts as soon as its data arrives);
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

A replicated application runs one container per instance placed here
(``instance_placement``): the first is named after the application, the
extra ones a node runs when there are more replicas than nodes
``name..k``; everything here is keyed by that container (instance) name,
and an instance no longer placed here (a scale down) is drained and
removed like any container that is not wanted.

A healthy instance is drained before it is stopped (see ``_stop``), and a
replicated application's instances are updated one at a time, in
placement order, each once the earlier ones report the new revision
healthy.

Containers publish their ports on the node's address at ports the engine
chooses (``container_spec``); the node's router owns the applications'
external ports, on every node (``flocker.route``).

Links become Docker-link style environment variables pointing at this
node's own address (``link_environment``): every node's router forwards
every application's external ports to wherever it runs, so linked
applications keep working after a move without being told where it went.
"""

from __future__ import annotations

from typing import Any

from pyrsistent import PClass, PMap, PSet, field, pmap, pmap_field, pset_field
from zope.interface import implementer

from flocker.control import (
    Application,
    ApplicationHealth,
    Deployment,
    DeploymentState,
    NodeState,
    instance_base,
    instance_nodes,
    instance_placement,
)
from flocker.control import RestartAlways as ModelRestartAlways
from flocker.control import RestartOnFailure as ModelRestartOnFailure
from flocker.route import Route, routes_for_node
from flocker.runtime import (
    ContainerSpec,
    ContainerState,
    PublishedPort,
    RestartAlways,
    RestartNever,
    RestartOnFailure,
    VolumeBind,
)

from ._container_changes import (
    ContainerChange,
    DrainApplication,
    FenceApplication,
    RemoveApplication,
    RestartApplication,
    ResumeApplication,
    SetRoutes,
    StartApplication,
)
from ._deploy import ILocalState, NoOp, in_parallel, sequentially
from ._fence import fence_applies
from ._mover import BULK_PAUSE
from ._pulls import PullImage, PullState
from ._snapshot_names import MOVE_SNAPSHOT_PREFIX, REPLICA_SNAPSHOT_PREFIX


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
    application: Application,
    address: str,
    dataset_paths: dict[str, str],
    name: str | None = None,
) -> ContainerSpec | None:
    """
    The container an application's instance needs on a node, or ``None``
    while one of its datasets is not mounted there.

    :param address: The node's address; ports are published on it, each on
        a port the engine chooses (the node's router owns the application's
        external ports and forwards them there).
    :param dataset_paths: Dataset id → mount path of the datasets the node
        exposes.
    :param name: The instance's name (`instance_placement`), the
        container's name; the application's own name by default.
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
        name=application.name if name is None else name,
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
    #: The applications whose halted containers are being removed now.
    removing = pset_field(str)
    #: When it was discovered, in seconds since the epoch (0: unknown).
    now = field(type=float, initial=0.0)
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
    #: The applications whose stopping instance here has drained: the
    #: connections open to it finished, whichever node's router they came
    #: through (and every other router had `DRAIN_SETTLE` seconds to hear
    #: of it), or its grace period (`DRAIN_GRACE`) is over.
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


def exposed_paths(cluster_state: DeploymentState, node_uuid: str) -> dict[str, str]:
    """Dataset id → mount path for the datasets the node reports mounted."""
    datasets = cluster_state.get_node(node_uuid).datasets or {}
    return {i: d.path for i, d in datasets.items() if d.path is not None}


#: Seconds since the newest round of a move's bulk transfer was taken (by
#: the source's clock, this node's) within which its arrival lets the
#: application stop.  The source's dataset agent sends another round at
#: once after one that took longer than ``_mover.QUICK_ROUND`` and carried
#: much; waiting for a fresh copy, one of a quick round after which it
#: pauses, keeps the final increment from queueing behind another round
#: as the application stops.
FRESH_COPY = 2.0

#: Seconds after which a copy's newest round counts as arrived all the same,
#: once the copy holds more than the move's first (full) round: rounds so
#: slow that they always arrive older than `FRESH_COPY` (a slow link, a
#: loaded pool) must not keep the application from ever stopping.  The
#: source pauses this long (``_mover.BULK_PAUSE``) after a small or quick
#: round before it sends another, so the copy's newest round does get this
#: old.  A long first round (a large dataset) is followed at once by
#: another, which arrives fresh if the writes were few.
STALE_COPY = BULK_PAUSE


def _fresh(copy: Any, now: float) -> bool:
    """
    Whether a copy's newest timed snapshot (a move's or replication's round,
    named with the time the source took it) was taken within `FRESH_COPY`
    seconds of ``now``, or, once the copy holds two rounds of the move or
    more, at least `STALE_COPY` seconds before it (the source is pausing
    after it, or its rounds are slow); a copy without one, or an unknown
    ``now`` (0), is taken as it is.
    """
    timed = [
        s
        for s in copy.snapshots or ()
        if s.created is not None
        and s.name.startswith((MOVE_SNAPSHOT_PREFIX, REPLICA_SNAPSHOT_PREFIX))
    ]
    if not now or not timed:
        return True
    age = now - float(max(s.created for s in timed))
    rounds = sum(1 for s in timed if s.name.startswith(MOVE_SNAPSHOT_PREFIX))
    return age <= FRESH_COPY or (age >= STALE_COPY and rounds >= 2)


def _bulk_copy_arrived(
    application: Application,
    configuration: Deployment,
    cluster_state: DeploymentState,
    node_uuid: str,
    now: float = 0.0,
) -> bool:
    """
    Whether an application that moved away may stop here now.

    True when it has no datasets, or when for each of its datasets the new
    primary has a fresh copy (a replica from the bulk transfer whose newest
    round is `_fresh`, or the exposed dataset) or this node no longer
    reports the dataset mounted.
    """
    here = exposed_paths(cluster_state, node_uuid)
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
        copy = copies.get(volume.dataset_id)
        if copy is None:
            return False
        if copy.path is None and not _fresh(copy, now):
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
    Whether a fenced agent stops an instance: one of its application's
    datasets (as configured wherever the application is) fails over
    automatically.
    """
    return any(
        fence_applies(configuration, volume.dataset_id)
        for application, _ in configuration.all_applications()
        if application.name == instance_base(name)
        for volume in application.volumes
    )


def applications_here(
    node_uuid: str, configuration: Deployment, cluster_state: DeploymentState
) -> dict[str, Application]:
    """
    The containers to run on ``node_uuid``: instance name → its
    application.

    An application configured here runs under its own name; one with
    replicas runs each instance `instance_placement` places here (among
    the nodes whose container agents report their applications), the
    extra ones under ``name..k``; a single stateless instance being
    updated runs its new revision on the surge node too (`_surge_node`).
    """
    wanted: dict[str, Application] = {}
    reporting = _reporting(cluster_state)
    for application, home in configuration.all_applications():
        if application.replicas > 1:
            for node, name in instance_placement(application, home, reporting):
                if node == node_uuid:
                    wanted[name] = application
        elif home == node_uuid or _surge_node(application, home, cluster_state) == node_uuid:
            wanted[application.name] = application
    return wanted


def _reporting(cluster_state: DeploymentState) -> list[str]:
    """The nodes whose container agents report their applications."""
    return [u for u, state in cluster_state.nodes.items() if state.applications is not None]


def _healthy_at(
    node_uuid: str,
    application: Application,
    cluster_state: DeploymentState,
    name: str | None = None,
) -> bool:
    """
    Whether ``node_uuid`` reports the application's configured revision
    healthy: its instance ``name`` there (the application's own name by
    default).
    """
    instance = application.name if name is None else name
    health = (cluster_state.get_node(node_uuid).health or pmap()).get(instance)
    return (
        health is not None
        and health.status == "healthy"
        and health.revision == application.revision
    )


def _surge_node(
    application: Application, home: str, cluster_state: DeploymentState
) -> str | None:
    """
    The node that runs the new revision of a single stateless instance
    beside the old one while it is updated, or ``None``.

    An application without volumes running once is updated without
    holding a connection: its new revision first starts on the node that
    would run its second instance (`instance_nodes`), the old instance is
    replaced once that one is healthy, and the extra instance goes once
    the application's own node runs the new revision healthy (or the
    update is settled).  An update that leaves the container as it is (a
    new health check) needs none: the application's node reports the new
    revision at once, before the surge node has an instance.  On a single
    node there is no such node: the instance is replaced in place, its
    connections held meanwhile.
    """
    if application.replicas != 1 or application.volumes or not application.updating:
        return None
    if _healthy_at(home, application, cluster_state):
        return None
    placed = instance_nodes(application.set(replicas=2), home, _reporting(cluster_state))
    if len(placed) < 2:
        return None
    surge = placed[1]
    at_home = (cluster_state.get_node(home).health or pmap()).get(application.name)
    started = application.name in (cluster_state.get_node(surge).health or pmap())
    if at_home is not None and at_home.revision == application.revision and not started:
        return None
    return surge


def _waits_for_earlier_instances(
    node_uuid: str,
    name: str,
    application: Application,
    configuration: Deployment,
    cluster_state: DeploymentState,
) -> bool:
    """
    Whether the instance ``name`` here must wait before it is replaced by
    a new revision: an update rolls over a replicated application's
    instances one at a time, in `instance_placement` order (keyed by node
    and instance name, so two instances on one node take turns too), each
    once every earlier one reports the new revision healthy, so that the
    others serve meanwhile; a single stateless instance waits for its new
    revision to be healthy on the surge node (`_surge_node`).  An earlier
    instance on the application's own node is not waited for while that
    node's container agent does not report (the node is down): the others
    roll over without it.
    """
    _, home = configuration.get_application(application.name)
    surge = _surge_node(application, home, cluster_state)
    reporting = _reporting(cluster_state)
    if surge is not None:
        order = [(surge, application.name), (home, application.name)]
    elif application.replicas > 1:
        order = instance_placement(application, home, reporting)
    else:
        return False
    if (node_uuid, name) not in order:
        return False
    return not all(
        _healthy_at(node, application, cluster_state, instance)
        for node, instance in order[: order.index((node_uuid, name))]
        if node in reporting
    )


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
    it), this node's router no longer sends it connections, and the health
    probes count it drained (``drained``: the connections open to it
    finished, whichever router they came through, or its grace period is
    over).  An
    instance still *starting* here that the cluster state shows healthy
    (the agent restarted and its probes start over, while the routers
    still send it connections) is drained too.  Without health probes, or
    an instance not healthy or not running, it is stopped at once: nothing
    is routed to it.
    """
    status = _health_status(name, local_state)
    state = local_state.states.get(name)
    if status is None or state is None or not state.running:
        return stopping
    known: PMap[str, ApplicationHealth] = (
        cluster_state.get_node(local_state.node_uuid).health or pmap()
    )
    reported = known.get(name)
    if status == "healthy" or (
        status == "starting" and reported is not None and reported.status == "healthy"
    ):
        return DrainApplication(name=name)
    if status != "stopping":
        return stopping
    if reported is None or reported.status != "stopping" or name not in local_state.drained:
        return NoOp()
    instance: PMap[str, ApplicationHealth] = local_state.health or pmap()
    published = set(instance[name].ports.values()) if name in instance else set()
    if any(
        target.host == local_state.hostname and target.port in published
        for route in local_state.routes.values()
        for target in route.targets
    ):
        return NoOp()  # this node's router still sends it connections
    return stopping


def _leave(
    name: str, local_state: ContainerLocalState, cluster_state: DeploymentState
) -> ContainerChange:
    """
    What takes away the container of an application that may not run here
    any more: drained, then halted and removed in the background.
    """
    return _stop(name, RemoveApplication(name=name, background=True), local_state, cluster_state)


def _wants_image(image: str, local_state: ContainerLocalState, pulled: set[str]) -> bool:
    """
    Whether to get ``image`` now: the deployer pulls, the engine is not
    known to have it, and it is neither being got (or waiting to be tried
    again) nor already asked for in this plan.
    """
    return (
        local_state.pulling
        and image not in local_state.images
        and image not in local_state.images_waiting
        and image not in pulled
    )


def calculate_container_changes(
    node_uuid: str,
    address: str,
    configuration: Deployment,
    cluster_state: DeploymentState,
    local_state: ContainerLocalState,
) -> ContainerChange:
    """The changes that bring this node's containers towards the configuration."""
    wanted = applications_here(node_uuid, configuration, cluster_state)
    paths = exposed_paths(cluster_state, node_uuid)
    running = {spec.name: spec for spec in local_state.specs}
    changes: list[ContainerChange] = []
    pulled: set[str] = set()
    for name in sorted(set(wanted) | set(running)):
        if name in local_state.starting or name in local_state.removing:
            continue  # its container is being created or removed: wait for the runtime
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
                (
                    app
                    for app, _ in configuration.all_applications()
                    if app.name == instance_base(name)
                ),
                None,
            )
            if elsewhere is not None and not _bulk_copy_arrived(
                elsewhere, configuration, cluster_state, node_uuid, local_state.now
            ):
                continue
            changes.append(_leave(name, local_state, cluster_state))
            continue
        spec = container_spec(application, address, paths, name)
        if spec is not None and _rolling_back(application, configuration, cluster_state):
            spec = None  # stopped while its data is rolled back
        if spec is None:
            # Its datasets are not mounted here (yet): nothing may run, but
            # its image is got meanwhile, so that it starts as soon as its
            # data is here (a move's copy is arriving).
            if current is not None:
                changes.append(_leave(name, local_state, cluster_state))
            elif _wants_image(application.image, local_state, pulled):
                pulled.add(application.image)
                changes.append(PullImage(image=application.image))
            continue
        if current != spec and local_state.pulling and spec.image not in local_state.images:
            # Its (new) image is not here: get it; the old container, if
            # any, runs on meanwhile.
            if _wants_image(spec.image, local_state, pulled):
                pulled.add(spec.image)
                changes.append(PullImage(image=spec.image))
            continue
        if current is None:
            changes.append(StartApplication(spec=spec))
        elif current != spec and _waits_for_earlier_instances(
            node_uuid, name, application, configuration, cluster_state
        ):
            # The instances before this one are updated first; one that
            # began to drain while they were healthy serves again meanwhile.
            if _health_status(name, local_state) == "stopping":
                changes.append(ResumeApplication(name=name))
            continue
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


__all__ = [
    "ContainerLocalState",
    "applications_here",
    "calculate_container_changes",
    "container_spec",
    "exposed_paths",
    "link_environment",
]
