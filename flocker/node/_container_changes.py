"""The state changes the container agent runs (see `flocker.node.containers`).

Each is a value: ``calculate_container_changes`` (``_container_calculate``)
returns them, plans compare with ``==``, and each runs inside an eliot
action named by its ``action_type``.  Getting an image the engine lacks is
``_pulls.PullImage``.

The changes run with the agent's ``ContainerDeployer``; ``containers``,
which defines the deployer, imports the calculator and so these changes.
So the changes do not name the deployer: they run with a
``ContainerContext``, which says exactly what they use of it and imports
none of them.  ``ContainerDeployer`` provides it structurally; mypy checks
that wherever a deployer is passed to a change's ``run``, since a change
runnable with the context is one runnable with the deployer only if the
deployer provides it.

With a ``poke``, the deployer starts containers in the background
(`StartApplication`): a slow ``docker create`` does not hold up the next
pass.  An application leaving the node is *halted* (its processes
killed, which takes milliseconds) and its container then removed in the
background (`RemoveApplication` with ``background``): the node reports it
gone, and its dataset agent can hand its data on, without waiting for the
engine to tidy up after the container.  A healthy instance about to be
stopped is first drained
(`DrainApplication`), and one wanted after all while it drains is resumed
(`ResumeApplication`).  While the agent is fenced, a container whose
application uses a dataset failing over automatically is stopped, not
removed (`FenceApplication`), and killed after `FENCE_STOP_TIMEOUT`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from eliot import Action, start_action
from eliot.twisted import DeferredContext
from pyrsistent import PClass, field, pmap_field
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from zope.interface import implementer

from flocker.route import IRouter, Route
from flocker.runtime import ContainerRuntimeError, ContainerSpec, IContainerRuntime

from ._answering import AnsweringWatch
from ._deploy import IStateChange, StateChange
from ._health import HealthProbes
from ._pulls import ImagePulls


class ContainerContext(Protocol):
    """
    What the container agent's changes use of the deployer they run with.

    All of it is read, never replaced: the changes call the runtime, the
    router and the services, and update ``starting`` and ``removing`` in
    place.
    """

    @property
    def runtime(self) -> IContainerRuntime:
        """The node's container runtime."""
        ...

    @property
    def router(self) -> IRouter:
        """Forwards this node's connections to applications elsewhere."""
        ...

    @property
    def answering(self) -> AnsweringWatch | None:
        """Times how long moved applications were unavailable, if at all."""
        ...

    @property
    def poke(self) -> Callable[[], None] | None:
        """Wakes the convergence loop; when set, containers start in the background."""
        ...

    @property
    def halted(self) -> Callable[[str], None] | None:
        """Told the name of a container halted here, if at all (reports it at once)."""
        ...

    @property
    def starting(self) -> set[str]:
        """Names of the applications whose containers are being created now."""
        ...

    @property
    def clock(self) -> IReactorTime | None:
        """Delays the removal of halted containers, if at all."""
        ...

    @property
    def removing(self) -> set[str]:
        """Names of the applications whose halted containers are being removed now."""
        ...

    @property
    def health(self) -> HealthProbes | None:
        """Probes the applications' instances, if at all."""
        ...

    @property
    def pulls(self) -> ImagePulls | None:
        """Gets the images the engine lacks (``PullImage`` runs with it too)."""
        ...

    def refused(self, failure: Any) -> Any:
        """An image found missing after all is got again; pass the failure on."""
        ...


#: A change of the container agent: it runs with the agent's deployer.
ContainerChange = StateChange[ContainerContext]


def _in_background(
    deployer: ContainerContext,
    names: set[str],
    name: str,
    action_type: str,
    work: Callable[[Action], Deferred[Any]],
) -> None:
    """
    Run ``work`` (given its eliot action, named ``action_type``) in the
    background: the application ``name`` counts in ``names`` (the
    deployer's ``starting`` or ``removing``: no other change touches it)
    until it is over, and the loop is poked then.
    """
    names.add(name)
    action = start_action(action_type=action_type, name=name)
    with action.context():
        running = DeferredContext(work(action))
        running.addActionFinish()

    def done(result: Any) -> None:
        names.discard(name)
        assert deployer.poke is not None
        deployer.poke()

    running.result.addBoth(done)


def _fields(change: FenceApplication | RestartApplication) -> dict[str, Any]:
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

    def run(self, deployer: ContainerContext) -> Deferred[None]:
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
        _in_background(
            deployer,
            deployer.starting,
            self.spec.name,
            "flocker:node:container:background_start",
            lambda action: maybeDeferred(self._create, deployer),
        )
        return succeed(None)

    def _create(self, deployer: ContainerContext) -> Deferred[None]:
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
    """
    Stop and remove an application's container.

    :ivar background: Whether the container may be removed after the
        change is over (the application leaves the node; nothing here
        needs its name again soon).
    """

    name = field(type=str, mandatory=True)
    background = field(type=bool, initial=False)
    action_type = "flocker:node:container:remove"

    def log_fields(self) -> dict[str, Any]:
        """The application's name."""
        return {"name": self.name, "background": self.background}

    def run(self, deployer: ContainerContext) -> Deferred[None]:
        """
        Remove it (killing it first).

        In the ``background``, with a ``poke``: halt it (the change is over
        as soon as its processes are gone; the deployer's ``halted`` is
        told, and the loop is poked, so that the node reports it stopped at
        once), then remove it (with a
        ``clock``, `REMOVE_AFTER` seconds later), the application counting
        as *removing* — no other change touches it — until the runtime
        answers, and then the loop is poked.  Where the runtime cannot
        halt (it cannot see the container's processes end, or its restart
        policy is restarting it), the whole removal is waited for.
        """
        if not self.background or deployer.poke is None:
            return deployer.runtime.remove(self.name)
        name = self.name

        def remove(action: Action) -> Deferred[None]:
            if deployer.clock is None:
                return deployer.runtime.remove(name)
            return deferLater(
                deployer.clock, REMOVE_AFTER, action.run, deployer.runtime.remove, name
            )

        def remove_later(_: None) -> None:
            _in_background(
                deployer,
                deployer.removing,
                name,
                "flocker:node:container:background_remove",
                remove,
            )
            if deployer.halted is not None:
                deployer.halted(name)  # its node reports it stopped at once
            assert deployer.poke is not None
            deployer.poke()  # it is halted: the next pass reports it so too

        def cannot_halt(failure: Any) -> Deferred[None]:
            failure.trap(ContainerRuntimeError)  # logged by the runtime's action
            return deployer.runtime.remove(name)

        halted = deployer.runtime.halt(name)
        halted.addCallbacks(remove_later, cannot_halt)
        return halted


#: Seconds between halting a container that leaves the node and asking the
#: engine to remove it: the engine's tidying up (network, mounts, files)
#: then does not compete, on the same machine, with the dataset agent
#: handing the container's data on (its unmount, snapshot and send).
REMOVE_AFTER = 1.0


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

    def run(self, deployer: ContainerContext) -> Deferred[None]:
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

    def run(self, deployer: ContainerContext) -> Deferred[None]:
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

    def run(self, deployer: ContainerContext) -> Deferred[None]:
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

    def run(self, deployer: ContainerContext) -> Deferred[None]:
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

    def run(self, deployer: ContainerContext) -> Deferred[None]:
        """Start it again."""
        return deployer.runtime.start(self.name)


__all__ = [
    "FENCE_STOP_TIMEOUT",
    "ContainerChange",
    "ContainerContext",
    "DrainApplication",
    "FenceApplication",
    "RemoveApplication",
    "RestartApplication",
    "ResumeApplication",
    "SetRoutes",
    "StartApplication",
]
