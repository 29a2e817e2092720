"""The container agent's deployer: applications started, changed, stopped.

``ContainerDeployer`` discovers the node's containers from its runtime
(``ContainerLocalState``), and ``calculate_container_changes`` — pure —
compares them with the applications configured for the node and returns
the changes that bring them towards it.  The work is split:

* ``_container_calculate``: the discovered state, the container an
  application needs (``container_spec``, ``link_environment``) and the
  calculator, whose module docstring states its rules;
* ``_container_changes``: the changes (start, remove, restart, fence,
  drain, resume, set the router's routes) and the ``ContainerContext``
  they run with: what they use of the deployer;
* this module: the deployer, which holds the node's services (runtime,
  router, image pulls, health probes, fencing), discovers the node's
  state through them and hands the calculator the configuration, and
  ``health_instance``.  It re-exports the names of the other two, so
  that ``flocker.node.containers`` stays the one place to import from.

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

A replicated application may run several instances here, one container
each, named by their instance names (``web``, ``web..2``: see
``flocker.control.instance_placement``); health is probed and reported
per instance name (``ApplicationHealth.application`` is the instance
name), and each instance finds its application by ``instance_base``.  The
node's ``applications`` report names each application running here once,
under its own name, however many of its instances run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import attr
from pyrsistent import PMap, PSet, pmap, pset
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IReactorTime

from flocker.control import (
    Application,
    ApplicationHealth,
    AttachedVolume,
    Deployment,
    DeploymentState,
    ImagePull,
    default_health,
    instance_base,
)
from flocker.route import IRouter, MemoryRouter
from flocker.runtime import (
    ContainerRuntimeError,
    ContainerSpec,
    ContainerState,
    IContainerRuntime,
    ImageNotFound,
)

from ._answering import AnsweringWatch
from ._container_calculate import (
    ContainerLocalState,
    applications_here,
    calculate_container_changes,
    container_spec,
    exposed_paths,
    link_environment,
)
from ._container_changes import (
    FENCE_STOP_TIMEOUT,
    ContainerChange,
    ContainerContext,
    DrainApplication,
    FenceApplication,
    RemoveApplication,
    RestartApplication,
    ResumeApplication,
    SetRoutes,
    StartApplication,
)
from ._health import DRAIN_GRACE, DRAIN_SETTLE, HealthProbes, Instance
from ._pulls import ImagePulls


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
    #: Told the name of a container halted here (its processes are gone, its
    #: removal is to come), so that the node reports it stopped at once;
    #: ``None``: the next pass reports it.
    halted: Callable[[str], None] | None = attr.ib(default=None)
    #: Names of the applications whose containers are being created now.
    starting: set[str] = attr.ib(factory=set)
    #: Names of the applications whose halted containers are being removed now.
    removing: set[str] = attr.ib(factory=set)
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
    #: Delays the removal of halted containers (`REMOVE_AFTER`), and tells
    #: the time (how fresh a moving application's copy is, by this node's
    #: own clock: the source's); ``None``: removed at once, ``time.time``.
    clock: IReactorTime | None = attr.ib(default=None)

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
            # Before the listing and after it: a container whose background
            # start or removal ends while it is listed is still left alone
            # by this pass (the next one sees it as it is then).
            starting, removing = set(self.starting), set(self.removing)
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
            # First: it forgets the failures of images no longer wanted.
            image_pulls = None if pulls is None else self._image_pulls(pulls, cluster_state)
            connected = await self._connected(health, states)
            return ContainerLocalState(
                health=health,
                drained=self._drained(health, connected),
                image_pulls=image_pulls,
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
                starting=starting | self.starting,
                removing=removing | self.removing,
                busy_ports=None if listened is None else self._others(listened, states),
                port_conflicts=self._conflicts(),
                fenced=bool(self.fenced()),
                era=self.era,
                now=float(time.time() if self.clock is None else self.clock.seconds()),
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
        still serves until it stops), and say what they found, by instance
        name, with the ports each instance is published on now; ``None``
        without probes, or while the configuration is not known.
        """
        if self.health is None or self.configuration is None:
            return None
        wanted = applications_here(self.node_uuid, self.configuration, cluster_state)
        configured = {app.name: app for app, _ in self.configuration.all_applications()}
        paths = exposed_paths(cluster_state, self.node_uuid)
        instances = {}
        for spec in specs:
            application = configured.get(instance_base(spec.name))
            if application is None:
                continue
            state = states.get(spec.name)
            instances[spec.name] = health_instance(
                application,
                spec,
                self.hostname,
                running=state is not None and state.running,
                current=spec.name in wanted
                and spec == container_spec(application, self.hostname, paths, spec.name),
                published=None if state is None else state.ports,
            )
        self.health.observe(instances)
        return pmap(
            {
                name: health.set(ports=states[name].ports) if name in states else health
                for name, health in self.health.states().items()
            }
        )

    async def _connected(
        self, health: PMap[str, ApplicationHealth] | None, states: Mapping[str, ContainerState]
    ) -> dict[str, bool]:
        """
        Running stopping instance here → whether a connection on which it
        may owe something is open to it, as its container sees them
        (through any node's router or none; idle ones do not count).  An
        instance whose connections cannot be counted is left out, and so
        is one whose container no longer runs (halted, its removal to
        come: nothing is left to count).
        """
        stopping = sorted(
            name
            for name, instance in (health or {}).items()
            if instance.status == "stopping" and name in states and states[name].running
        )

        async def connected(name: str) -> bool | None:
            try:
                return bool(await self.runtime.connections(name))
            except ContainerRuntimeError:
                return None  # logged by the runtime's action

        counted = await gatherResults(
            [Deferred.fromCoroutine(connected(name)) for name in stopping],
            consumeErrors=True,
        )
        return {
            name: busy
            for name, busy in zip(stopping, counted, strict=True)
            if busy is not None
        }

    def _drained(
        self, health: PMap[str, ApplicationHealth] | None, connected: Mapping[str, bool] = pmap()
    ) -> PSet[str]:
        """
        The applications whose stopping instance here has drained, once
        `DRAIN_SETTLE` is over: no connection on which it may owe something
        is open to it (``connected``, as its container counts them), or,
        where it could not be counted, none is open to it through this
        node's router; or its grace period is over.
        """
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
            busy = connected.get(name)
            if busy is None:
                busy = any(port in instance.ports.values() for port in open_here)
            if waited >= DRAIN_GRACE or (waited >= DRAIN_SETTLE and not busy):
                found.add(name)
        return pset(found)

    def _image_pulls(
        self, pulls: ImagePulls, cluster_state: DeploymentState
    ) -> PMap[str, ImagePull]:
        """
        Application name → its image's pull, for the applications with an
        instance here whose image is being got, or failed to be (once,
        however many of its instances are placed here).  The failures of
        images no application here wants any longer are forgotten.
        """
        wanted = (
            applications_here(self.node_uuid, self.configuration, cluster_state)
            if self.configuration is not None
            else {}
        )
        if self.configuration is not None:
            pulls.keep_only(frozenset(a.image for a in wanted.values()))
        states = pulls.states()
        found = {}
        for application in wanted.values():
            state = states.get(application.image)
            if state is None:
                continue
            found[application.name] = state.reported(application.name)
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
        The applications whose containers run here, as last configured,
        each once under its own name however many of its instances run
        (an instance finds its application by ``instance_base``).

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
            application = configured.get(instance_base(spec.name))
            if application is None or state is None or not state.running:
                continue
            actual = {
                AttachedVolume(dataset_id=paths[bind.host_path], mountpoint=bind.container_path)
                for bind in spec.volumes
                if bind.host_path in paths
            }
            if len(actual) == len(spec.volumes) and actual != set(application.volumes):
                application = application.set(volumes=actual)
            found[application.name] = application
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
    "FENCE_STOP_TIMEOUT",
    "ContainerChange",
    "ContainerContext",
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
