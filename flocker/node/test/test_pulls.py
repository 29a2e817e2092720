"""
Tests for the container agent's image pulls: an application whose image
the engine lacks waits while the image is got in the background, a failed
pull is reported and retried with backoff, and nothing else waits.
"""

from __future__ import annotations

from collections.abc import Callable
from uuid import uuid4

from eliot import MemoryLogger
from eliot.testing import LoggedAction, LoggedMessage
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from flocker.control import (
    Application,
    AttachedVolume,
    Dataset,
    DatasetState,
    Deployment,
    DeploymentState,
    NodeState,
)
from flocker.node import NoOp, run_state_change
from flocker.node._pulls import BACKOFF, ImagePulls, PullImage, registry_of
from flocker.node.containers import (
    ContainerChange,
    ContainerDeployer,
    ContainerLocalState,
    RemoveApplication,
    StartApplication,
)
from flocker.node.test.test_containers import result
from flocker.runtime import (
    IContainerRuntime,
    MemoryEngine,
    MemoryRuntime,
    PullProgress,
    RegistryCredentials,
)
from flocker.runtime.testtools import WrappedRuntime

NODE = str(uuid4())
ADDRESS = "127.0.0.11"
HERE = "flocker-test/busybox:1"
REMOTE = "registry.test:5000/team/app:2"
CREDENTIALS = RegistryCredentials(username="deploy", password="s3cret")


class _HeldPulls(WrappedRuntime):
    """A runtime whose pulls complete only when the test says so."""

    def __init__(self, runtime: IContainerRuntime) -> None:
        super().__init__(runtime)
        self.held: list[tuple[str, Deferred[None]]] = []

    def pull_image(
        self,
        image: str,
        credentials: RegistryCredentials | None = None,
        progress: Callable[[PullProgress], object] | None = None,
    ) -> Deferred[None]:
        """Hold the pull until ``release``."""
        waiting: Deferred[None] = Deferred()
        self.held.append((image, waiting))
        return waiting

    def release(self) -> None:
        """Let every held pull happen."""
        held, self.held = self.held, []
        for image, waiting in held:
            self.runtime.pull_image(image).chainDeferred(waiting)


class Node:
    """One node: a fake engine and registry, a deployer that pulls, a clock."""

    def __init__(
        self, credentials: dict[str, RegistryCredentials] | None = None
    ) -> None:
        self.engine = MemoryEngine(images={HERE})
        self.runtime: IContainerRuntime = MemoryRuntime(NODE, self.engine)
        self.clock = Clock()
        self.pokes = 0
        self.deployer = ContainerDeployer(NODE, ADDRESS, self.runtime, poke=self._poke)
        self.deployer.pulls = ImagePulls(
            self.runtime, self.clock, credentials or {}, self._poke
        )

    def _poke(self) -> None:
        self.pokes += 1

    def hold_pulls(self) -> _HeldPulls:
        """Make the runtime's pulls wait for the test."""
        held = _HeldPulls(self.runtime)
        self.runtime = held
        self.deployer.runtime = held
        assert self.deployer.pulls is not None
        self.deployer.pulls.runtime = held
        return held

    def local(self) -> ContainerLocalState:
        """What discovery finds."""
        return result(self.deployer.discover_state(state()))

    def plan(self, configuration: Deployment) -> ContainerChange:
        """What the node would do now."""
        return self.deployer.calculate_changes(configuration, state(), self.local())

    def converge(self, configuration: Deployment) -> ContainerChange:
        """Run one pass; its plan."""
        change = self.plan(configuration)
        result(run_state_change(change, self.deployer))
        return change

    def running(self) -> dict[str, str]:
        """Application name → image of its container."""
        return {s.name: s.image for s in result(self.runtime.list_containers())}


def state() -> DeploymentState:
    """The node reports itself (no datasets needed)."""
    return DeploymentState().update_node(NodeState(uuid=NODE, hostname=ADDRESS))


def with_apps(*apps: Application) -> Deployment:
    """A configuration with ``apps`` on the node."""
    deployment = Deployment()
    for app in apps:
        deployment = deployment.add_application(app, NODE)
    return deployment


def app(image: str, name: str = "web") -> Application:
    """A stateless application of ``image``."""
    return Application(name=name, image=image)


def test_an_image_the_engine_has_is_confirmed_then_started() -> None:
    """
    An image not yet known here is asked for first; the engine has it, so
    nothing is pulled, the loop is poked, and the next pass starts it.
    """
    node = Node()
    configuration = with_apps(app(HERE))
    assert node.converge(configuration) == PullImage(image=HERE)
    assert node.pokes == 1 and node.engine.registry == {}
    assert isinstance(node.converge(configuration), StartApplication)
    assert node.running() == {"web": HERE}


def test_a_missing_image_is_pulled_then_the_application_starts() -> None:
    """An image the engine lacks is pulled from its registry, then used."""
    node = Node()
    node.engine.publish(REMOTE)
    configuration = with_apps(app(REMOTE))
    node.converge(configuration)
    assert REMOTE in node.engine.images and node.local().pulls == {}
    node.converge(configuration)
    assert node.running() == {"web": REMOTE}


def test_a_private_registry_is_pulled_from_with_the_agent_credentials() -> None:
    """
    The credentials ``agent.yml`` gives for the image's registry are used;
    without them the pull fails with the registry's refusal.
    """
    refused = Node()
    refused.engine.publish(REMOTE, CREDENTIALS)
    refused.converge(with_apps(app(REMOTE)))
    assert "unauthorized" in (refused.local().pulls[REMOTE].reason or "")
    allowed = Node({"registry.test:5000": CREDENTIALS})
    allowed.engine.publish(REMOTE, CREDENTIALS)
    allowed.converge(with_apps(app(REMOTE)))
    assert REMOTE in allowed.engine.images


def test_a_failed_pull_is_reported_and_retried_with_doubling_delays() -> None:
    """
    A pull that fails is reported with the registry's message and the
    number of attempts; it is tried again only once its delay has passed,
    and the delay doubles; once the image appears, the application starts.
    """
    node = Node()
    configuration = with_apps(app(REMOTE))
    node.converge(configuration)
    failed = node.local().pulls[REMOTE]
    assert not failed.pulling and failed.attempts == 1
    assert "manifest unknown" in (failed.reason or "")
    assert node.converge(configuration) == NoOp()  # not due yet
    node.clock.advance(BACKOFF[0])
    assert node.converge(configuration) == PullImage(image=REMOTE)
    second = node.local().pulls[REMOTE]
    assert second.attempts == 2
    assert second.retry_at - node.clock.seconds() == BACKOFF[0] * BACKOFF[1]
    node.engine.publish(REMOTE)
    node.clock.advance(BACKOFF[0] * BACKOFF[1])
    node.converge(configuration)
    node.converge(configuration)
    assert node.running() == {"web": REMOTE} and node.local().pulls == {}


def test_nothing_else_waits_for_a_pull() -> None:
    """
    While one application's image is being pulled, another starts in the
    same passes, and the pulling one is reported as such.
    """
    node = Node()
    node.engine.publish(REMOTE)
    held = node.hold_pulls()
    configuration = with_apps(app(REMOTE, "slow"), app(HERE, "quick"))
    node.converge(configuration)
    node.converge(configuration)
    assert node.running() == {"quick": HERE}
    assert node.local().pulls[REMOTE].pulling
    held.release()
    node.converge(configuration)
    assert node.running() == {"quick": HERE, "slow": REMOTE}


def test_a_container_runs_on_until_its_new_image_is_here() -> None:
    """
    Changing an application's image pulls the new one first; the old
    container keeps running (and is not replaced) until the image is here.
    """
    node = Node()
    node.engine.publish(REMOTE)
    node.converge(with_apps(app(HERE)))
    node.converge(with_apps(app(HERE)))
    assert node.running() == {"web": HERE}
    held = node.hold_pulls()
    changed = with_apps(app(REMOTE))
    plan = node.converge(changed)
    assert plan == PullImage(image=REMOTE)
    assert not any(
        isinstance(c, RemoveApplication) for c in getattr(plan, "changes", ())
    )
    assert node.running() == {"web": HERE}
    held.release()
    node.converge(changed)
    assert node.running() == {"web": REMOTE}


def test_an_image_is_got_while_the_application_waits_for_its_data() -> None:
    """
    An application configured here whose dataset is not mounted here yet
    (a move's copy is still arriving) has its image got meanwhile, so it
    starts as soon as its data is here: a move to a node without the image
    does not pull it while the application runs nowhere.
    """
    node = Node()
    node.engine.publish(REMOTE)
    dataset_id = str(uuid4())
    db = Application(
        name="db",
        image=REMOTE,
        volumes=[AttachedVolume(dataset_id=dataset_id, mountpoint="/data")],
    )
    configuration = (
        Deployment().add_dataset(Dataset(dataset_id=dataset_id), NODE).add_application(db, NODE)
    )
    waiting = state()
    local = result(node.deployer.discover_state(waiting))
    plan = node.deployer.calculate_changes(configuration, waiting, local)
    assert plan == PullImage(image=REMOTE)
    result(run_state_change(plan, node.deployer))
    assert REMOTE in node.engine.images
    mounted = waiting.update_node(
        NodeState(
            uuid=NODE,
            datasets={dataset_id: DatasetState(dataset_id=dataset_id, path="/flocker/db")},
        )
    )
    local = result(node.deployer.discover_state(mounted))
    assert isinstance(
        node.deployer.calculate_changes(configuration, mounted, local), StartApplication
    )


def test_an_image_removed_behind_the_agents_back_is_got_again() -> None:
    """
    A creation that finds the image gone after all makes the agent forget
    it had the image, so the next pass gets it again.
    """
    node = Node()
    configuration = with_apps(app(HERE))
    node.converge(configuration)
    node.engine.images.discard(HERE)
    node.engine.publish(HERE)
    node.converge(configuration)  # the start fails: ImageNotFound
    assert node.converge(configuration) == PullImage(image=HERE)
    node.converge(configuration)
    assert node.running() == {"web": HERE}


def test_registry_of_an_image_reference() -> None:
    """The registry is the first component when it looks like a host."""
    assert registry_of("busybox") == "docker.io"
    assert registry_of("library/busybox:1") == "docker.io"
    assert registry_of("127.0.0.1:5000/app:1") == "127.0.0.1:5000"
    assert registry_of("registry.example.com/team/app") == "registry.example.com"
    assert registry_of("localhost/app") == "localhost"


def test_the_node_state_reports_pulls_by_application() -> None:
    """
    The container agent's report names, by application, the images being
    pulled and those whose pull failed (with the registry's message), and
    nothing once the image is here.
    """
    node = Node()
    node.engine.publish(REMOTE)
    held = node.hold_pulls()
    configuration = with_apps(app(REMOTE, "slow"), app(REMOTE + "-gone", "broken"))
    node.converge(configuration)
    node.converge(configuration)
    reported = node.local().shared_state_changes().image_pulls
    assert reported is not None
    assert set(reported) == {"slow", "broken"}
    assert reported["slow"].pulling and reported["slow"].image == REMOTE
    held.release()
    node.converge(configuration)
    reported = node.local().shared_state_changes().image_pulls
    assert reported is not None and set(reported) == {"broken"}
    broken = reported["broken"]
    assert not broken.pulling and broken.attempts == 1
    assert "manifest unknown" in (broken.reason or "")


def test_a_pull_and_its_progress_are_logged(eliot_logger: MemoryLogger) -> None:
    """
    A pull is one ``flocker:node:container:pull`` action naming the image
    and its registry (whether credentials were given, never which), with
    its progress as messages inside it.
    """
    node = Node({"registry.test:5000": CREDENTIALS})
    node.engine.publish(REMOTE, CREDENTIALS)
    node.converge(with_apps(app(REMOTE)))
    [pull] = LoggedAction.of_type(eliot_logger.messages, "flocker:node:container:pull")
    assert pull.succeeded
    assert pull.start_message["image"] == REMOTE
    assert pull.start_message["registry"] == "registry.test:5000"
    assert pull.start_message["authenticated"] is True
    progress = [
        child.message
        for child in pull.children
        if isinstance(child, LoggedMessage)
        and child.message["message_type"] == "flocker:node:container:pull_progress"
    ]
    assert progress and progress[-1]["layers_done"] == progress[-1]["layers_total"]
    assert CREDENTIALS.password not in repr(eliot_logger.messages)


def test_an_image_no_longer_wanted_forgets_its_failed_pulls() -> None:
    """
    Once no application here wants an image whose pulls failed (its
    update was rolled back), its failures are forgotten: trying the same
    image again pulls at once and counts from the first failure, so a
    retried update is not rolled back on the failures of the last try.
    """
    node = Node()
    bad = with_apps(app(REMOTE))
    node.converge(bad)
    node.clock.advance(BACKOFF[0])
    node.converge(bad)
    assert node.local().pulls[REMOTE].attempts == 2
    node.converge(with_apps(app(HERE)))
    assert REMOTE not in node.local().pulls
    assert node.converge(bad) == PullImage(image=REMOTE)
    reported = node.local().shared_state_changes().image_pulls
    assert reported is not None and reported["web"].attempts == 1


def test_a_running_pull_of_an_image_no_longer_wanted_is_kept_its_failures_forgotten() -> None:
    """
    A pull still running when its image stops being wanted goes on (it
    ends by itself) and is still known as running, but the failures before
    it are forgotten: if it fails too, that is its image's first failure.
    """
    node = Node()
    bad = with_apps(app(REMOTE))
    node.converge(bad)  # fails: nothing published
    held = node.hold_pulls()
    node.clock.advance(BACKOFF[0])
    node.converge(bad)
    assert node.local().pulls[REMOTE].attempts == 1
    node.converge(with_apps(app(HERE)))
    running = node.local().pulls[REMOTE]
    assert running.pulling and running.attempts == 0 and running.reason is None
    held.release()
    failed = node.deployer.pulls.states()[REMOTE] if node.deployer.pulls else None
    assert failed is not None and not failed.pulling and failed.attempts == 1
