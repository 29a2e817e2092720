"""
Tests of automatic rollback (flocker.control._updates): the pure planner
`plan_update_outcomes`, `apply_update_outcome(s)`, and the
`AutomaticRollback` duty over a real `ConfigurationService` (a file store in
a temporary directory, its thread work run at once) and
`ClusterStateService`, alone and under the leadership.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar, cast

import pytest
from eliot import MemoryLogger
from eliot.testing import LoggedAction, LoggedMessage
from hypothesis import HealthCheck as Hypothesis
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from flocker.control import (
    Application,
    ApplicationHealth,
    ClusterStateService,
    ConfigurationService,
    Deployment,
    DeploymentState,
    FileConfigurationStore,
    IConfigurationStore,
    ImagePull,
    MemoryConfigurationStore,
    NodeState,
    Port,
    StoredConfiguration,
    instance_base,
    instance_placement,
)
from flocker.control._leader import Leadership
from flocker.control._logging import CONFLICT
from flocker.control._maintenance import build_duties
from flocker.control._updates import (
    CONFIRMED,
    FAILED_PULLS,
    ROLLED_BACK,
    SETTLE_UPDATES,
    UPDATE_CONFIRMED,
    UPDATE_FAILED,
    AutomaticRollback,
    UpdateCalledOff,
    UpdateOutcome,
    apply_update_outcome,
    apply_update_outcomes,
    plan_update_outcomes,
)
from flocker.control.strategies import deployments, node_uuids
from flocker.runtime.testtools import ImmediateReactor, ImmediateThreadPool

A = "11111111-1111-4111-8111-111111111111"
B = "22222222-2222-4222-8222-222222222222"

WEB = Application(
    name="web",
    image="example/web:1",
    ports=[Port(internal_port=80, external_port=8080)],
)

T = TypeVar("T")


def updated(times: int = 1, node: str = A) -> Deployment:
    """``web`` on ``node``, updated ``times`` times (image ``example/web:N+1``)."""
    deployment = Deployment().add_application(WEB, node)
    for n in range(times):
        app, _ = deployment.get_application("web")
        deployment = deployment.update_application(
            app.set(image=f"example/web:{n + 2}")
        )
    return deployment


def web(deployment: Deployment) -> Application:
    """The configured ``web``."""
    return deployment.get_application("web")[0]


def health(
    status: str,
    revision: int | None,
    reason: str | None = None,
    failures: int = 0,
    name: str = "web",
) -> ApplicationHealth:
    """A health report of ``name``'s instance."""
    return ApplicationHealth(
        application=name,
        status=status,
        revision=revision,
        reason=reason,
        failures=failures,
        since=1000.0,
    )


def reported(*reports: ApplicationHealth, node: str = A) -> DeploymentState:
    """A cluster state where ``node`` reports these health entries."""
    return DeploymentState(
        nodes={node: NodeState(uuid=node, health={h.application: h for h in reports})}
    )


# -- planning ------------------------------------------------------------------


def test_healthy_new_revision_confirms() -> None:
    """A healthy report at the application's revision confirms the update."""
    assert plan_update_outcomes(updated(), reported(health("healthy", 1))) == [
        UpdateOutcome(application="web", node_uuid=A, revision=1, outcome=CONFIRMED)
    ]


def test_unhealthy_new_revision_rolls_back_saying_what_was_seen() -> None:
    """
    An unhealthy report at the application's revision rolls the update
    back, with a reason made of the revision, the name, what the probe saw
    and how many probes failed.
    """
    state = reported(health("unhealthy", 3, reason="HTTP 503", failures=3))
    assert plan_update_outcomes(updated(3), state) == [
        UpdateOutcome(
            application="web",
            node_uuid=A,
            revision=3,
            outcome=ROLLED_BACK,
            reason="revision 3 of 'web' was unhealthy: HTTP 503 (3 probes failed)",
        )
    ]


def pulls_failing(
    image: str, attempts: int, pulling: bool = False, node: str = A, name: str = "web"
) -> DeploymentState:
    """A cluster state where ``node`` reports pulls of ``image`` failing ``attempts`` times."""
    pull = ImagePull(
        application=name,
        image=image,
        pulling=pulling,
        reason="manifest for example/web:2 not found",
        attempts=attempts,
        since=1000.0,
    )
    return DeploymentState(nodes={node: NodeState(uuid=node, image_pulls={name: pull})})


def test_new_image_that_cannot_be_got_rolls_back_saying_why() -> None:
    """
    An update whose new image failed to be pulled `FAILED_PULLS` times in
    a row on a node due to run it is rolled back, with the registry's words.
    """
    assert plan_update_outcomes(updated(), pulls_failing("example/web:2", FAILED_PULLS)) == [
        UpdateOutcome(
            application="web",
            node_uuid=A,
            revision=1,
            outcome=ROLLED_BACK,
            reason=(
                f"revision 1 of 'web' could not get image 'example/web:2' on node {A}: "
                f"manifest for example/web:2 not found ({FAILED_PULLS} pulls failed)"
            ),
        )
    ]


def test_failed_pull_of_an_extra_instance_on_another_node_rolls_back() -> None:
    """A failing pull reported for an instance ``web..2`` on another node counts too."""
    state = pulls_failing("example/web:2", FAILED_PULLS, node=B, name="web..2")
    [outcome] = plan_update_outcomes(updated(), state)
    assert outcome.outcome == ROLLED_BACK and f"on node {B}" in (outcome.reason or "")


@pytest.mark.parametrize(
    "image, attempts, pulling",
    [
        ("example/web:2", FAILED_PULLS - 1, False),  # may be back in a moment
        ("example/web:2", FAILED_PULLS, True),  # being tried again now
        ("example/web:1", FAILED_PULLS, False),  # not the new revision's image
    ],
)
def test_pull_not_failed_enough_or_of_another_image_changes_nothing(
    image: str, attempts: int, pulling: bool
) -> None:
    """
    Fewer failed pulls than `FAILED_PULLS`, a pull running now, or failed
    pulls of another image than the new revision's settle nothing.
    """
    assert plan_update_outcomes(updated(), pulls_failing(image, attempts, pulling)) == []


def test_failed_pull_of_an_application_not_updating_changes_nothing() -> None:
    """A new application whose image cannot be got is not an update to roll back."""
    deployment = Deployment().add_application(WEB, A)
    assert plan_update_outcomes(deployment, pulls_failing("example/web:1", 5)) == []


@pytest.mark.parametrize(
    "reason, failures, words",
    [
        (None, 3, "revision 1 of 'web' was unhealthy (3 probes failed)"),
        (
            "connection refused",
            1,
            "revision 1 of 'web' was unhealthy: connection refused (1 probe failed)",
        ),
        (
            "the container is not running",
            0,
            "revision 1 of 'web' was unhealthy: the container is not running",
        ),
        (None, 0, "revision 1 of 'web' was unhealthy"),
        ("", 2, "revision 1 of 'web' was unhealthy (2 probes failed)"),
    ],
)
def test_rollback_reason_words(reason: str | None, failures: int, words: str) -> None:
    """The reason says only what the report holds: no empty colon, no zero count."""
    state = reported(health("unhealthy", 1, reason=reason, failures=failures))
    [outcome] = plan_update_outcomes(updated(), state)
    assert outcome.reason == words


@pytest.mark.parametrize(
    "state",
    [
        pytest.param(DeploymentState(), id="node never reported"),
        pytest.param(
            DeploymentState(nodes={A: NodeState(uuid=A)}), id="health unknown"
        ),
        pytest.param(reported(), id="no entry for the application"),
        pytest.param(
            reported(health("unhealthy", 0, failures=3)), id="older revision unhealthy"
        ),
        pytest.param(reported(health("healthy", 0)), id="older revision healthy"),
        pytest.param(
            reported(health("unhealthy", None, failures=3)), id="old instance unhealthy"
        ),
        pytest.param(reported(health("healthy", None)), id="old instance healthy"),
        pytest.param(reported(health("starting", 1)), id="new revision starting"),
        pytest.param(
            reported(health("unhealthy", 2)), id="a later revision than configured"
        ),
        pytest.param(
            reported(health("healthy", 1), node=B), id="another node's healthy report"
        ),
        pytest.param(
            reported(health("unhealthy", 1, name="other")),
            id="another application's report",
        ),
    ],
)
def test_nothing_settles_without_a_verdict_on_the_new_revision(
    state: DeploymentState,
) -> None:
    """
    No report, a report of an older instance or of another revision,
    ``starting``, or a report from a node the application is not configured
    on, settles nothing.
    """
    assert plan_update_outcomes(updated(), state) == []


@pytest.mark.parametrize("status", ["healthy", "unhealthy", "starting"])
def test_application_not_updating_is_left(status: str) -> None:
    """An application not waiting on an update is never touched, whatever its health."""
    deployment = Deployment().add_application(WEB, A)
    assert plan_update_outcomes(deployment, reported(health(status, 0))) == []
    confirmed = updated().update_node(
        updated()
        .get_node(A)
        .set(applications={"web": web(updated()).set(updating=False)})
    )
    assert plan_update_outcomes(confirmed, reported(health(status, 1))) == []


def test_unhealthy_without_previous_is_left() -> None:
    """An updating application with no previous specification cannot be rolled back."""
    deployment = Deployment().add_application(WEB.set(revision=1, updating=True), A)
    assert plan_update_outcomes(deployment, reported(health("unhealthy", 1))) == []
    [outcome] = plan_update_outcomes(deployment, reported(health("healthy", 1)))
    assert outcome.outcome == CONFIRMED


def test_moved_application_is_judged_by_its_new_node() -> None:
    """Only the node the application is configured on now has a say."""
    deployment = updated(node=A).move_application("web", B)
    both = DeploymentState(
        nodes={
            A: NodeState(uuid=A, health={"web": health("healthy", 1)}),
            B: NodeState(uuid=B, health={"web": health("unhealthy", 1, failures=3)}),
        }
    )
    [outcome] = plan_update_outcomes(deployment, both)
    assert (outcome.outcome, outcome.node_uuid) == (ROLLED_BACK, B)


def test_outcomes_ordered_by_name() -> None:
    """Several applications settle together, in the order of their names."""
    deployment = updated()
    for name, port in [("api", 9000), ("db", 9001)]:
        app = Application(
            name=name, image="x:1", ports=[Port(internal_port=1, external_port=port)]
        )
        deployment = deployment.add_application(app, A)
        deployment = deployment.update_application(app.set(image="x:2"))
    state = reported(
        health("healthy", 1, name="db"),
        health("unhealthy", 1, name="api"),
        health("healthy", 1),
    )
    assert [
        (o.application, o.outcome) for o in plan_update_outcomes(deployment, state)
    ] == [
        ("api", ROLLED_BACK),
        ("db", CONFIRMED),
        ("web", CONFIRMED),
    ]


def test_outcome_refuses_an_unknown_kind() -> None:
    """An outcome is confirmed or rolled back, nothing else."""
    with pytest.raises(Exception, match="not an update outcome"):
        UpdateOutcome(application="web", node_uuid=A, revision=1, outcome="ignored")


# -- applying ----------------------------------------------------------------


def test_apply_confirmed_clears_updating_and_keeps_previous() -> None:
    """A confirmation clears ``updating`` only: same revision, previous kept."""
    before = updated()
    [outcome] = plan_update_outcomes(before, reported(health("healthy", 1)))
    after = web(apply_update_outcome(before, outcome))
    assert after == web(before).set(updating=False)
    assert after.previous is not None and after.previous.image == "example/web:1"


def test_apply_rolled_back_returns_to_previous_with_reason() -> None:
    """A rollback makes the previous specification the next revision, with the reason."""
    before = updated()
    state = reported(health("unhealthy", 1, reason="HTTP 500", failures=3))
    [outcome] = plan_update_outcomes(before, state)
    after = web(apply_update_outcome(before, outcome))
    assert (after.image, after.revision, after.updating, after.previous) == (
        "example/web:1",
        2,
        False,
        None,
    )
    assert (
        after.update_failed
        == "revision 1 of 'web' was unhealthy: HTTP 500 (3 probes failed)"
    )


def _changed_meanwhile() -> list[Any]:
    """Configurations the planned rollback of revision 1 no longer applies to."""
    confirmed = updated()
    confirmed = confirmed.update_node(
        confirmed.get_node(A).set(
            applications={"web": web(confirmed).set(updating=False)}
        )
    )
    return [
        pytest.param(updated(2), id="updated again"),
        pytest.param(updated().rollback_application("web"), id="rolled back by hand"),
        pytest.param(confirmed, id="settled already"),
        pytest.param(updated().move_application("web", B), id="moved"),
        pytest.param(updated().remove_application("web"), id="removed"),
    ]


@pytest.mark.parametrize("outcome_kind", [CONFIRMED, ROLLED_BACK])
@pytest.mark.parametrize("meanwhile", _changed_meanwhile())
def test_apply_called_off_when_configuration_changed(
    meanwhile: Deployment, outcome_kind: str
) -> None:
    """
    An outcome planned for revision 1 on node A is called off if the
    configuration changed since: the user's write wins.
    """
    outcome = UpdateOutcome(
        application="web", node_uuid=A, revision=1, outcome=outcome_kind, reason="r"
    )
    with pytest.raises(UpdateCalledOff, match="no longer waiting"):
        apply_update_outcome(meanwhile, outcome)
    assert apply_update_outcomes(meanwhile, [outcome]) == (meanwhile, [])


def test_apply_several_leaves_out_those_called_off() -> None:
    """The outcomes that still apply are applied; the others are left out."""
    deployment = updated(2)
    stale = UpdateOutcome(
        application="web", node_uuid=A, revision=1, outcome=ROLLED_BACK
    )
    fresh = UpdateOutcome(application="web", node_uuid=A, revision=2, outcome=CONFIRMED)
    result, applied = apply_update_outcomes(deployment, [stale, fresh])
    assert applied == [fresh]
    assert web(result) == web(deployment).set(updating=False)


# -- the whole space -------------------------------------------------------------


@st.composite
def updates_with_reports(draw: Any) -> tuple[Deployment, DeploymentState]:
    """
    Valid deployments whose applications may be updating (at some revision,
    mostly with a previous specification), and health reports of them from
    their node or another (of their first instance there, or of an extra
    one), of any status and of revisions around theirs.
    """
    deployment = draw(deployments())
    states: dict[str, dict[str, ApplicationHealth]] = {}
    others = draw(st.lists(node_uuids, max_size=1))
    for app, node_uuid in list(deployment.all_applications()):
        revision = draw(st.integers(0, 4))
        previous = (
            app.specification().set(
                image=app.image + "0", revision=max(revision - 1, 0)
            )
            if draw(st.integers(0, 9))
            else None
        )
        app = app.set(
            revision=revision, previous=previous, updating=draw(st.booleans())
        )
        node = deployment.get_node(node_uuid)
        deployment = deployment.update_node(
            node.set(applications=node.applications.set(app.name, app))
        )
        if not draw(st.integers(0, 4)):
            continue  # no report
        where = draw(st.sampled_from([node_uuid, node_uuid, *others]))
        instance = draw(st.sampled_from([app.name, app.name, f"{app.name}..2"]))
        states.setdefault(where, {})[instance] = ApplicationHealth(
            application=instance,
            status=draw(st.sampled_from(["starting", "healthy", "unhealthy"])),
            revision=draw(
                st.sampled_from([None, revision - 1, revision, revision + 1])
            ),
            reason=draw(st.none() | st.sampled_from(["HTTP 500", "timed out"])),
            failures=draw(st.integers(0, 5)),
        )
    unknown = [u for u in deployment.nodes if u not in states and draw(st.booleans())]
    state = DeploymentState(
        nodes={
            **{uuid: NodeState(uuid=uuid, health=None) for uuid in unknown},
            **{
                uuid: NodeState(uuid=uuid, health=entries)
                for uuid, entries in states.items()
            },
        }
    )
    return deployment, state


@settings(max_examples=150, deadline=None, suppress_health_check=[Hypothesis.too_slow])
@given(updates_with_reports())
def test_outcomes_follow_the_rules_and_settle_once(
    case: tuple[Deployment, DeploymentState],
) -> None:
    """
    For any configuration and reports: exactly the updating applications
    whose own node, and every instance placed (keyed by node and instance
    name), report their revision healthy (confirmed), or, failing that,
    some instance on some node reports it unhealthy and there is a previous
    specification (rolled back), settle; applying them changes only those
    applications, and planning again settles nothing.
    """
    deployment, state = case
    outcomes = plan_update_outcomes(deployment, state)
    names = [o.application for o in outcomes]
    assert names == sorted(set(names))
    by_name = {o.application: o for o in outcomes}
    for app, node_uuid in deployment.all_applications():
        report = (state.get_node(node_uuid).health or {}).get(app.name)
        unhealthy_somewhere = any(
            instance_base(name) == app.name
            and h.revision == app.revision
            and h.status == "unhealthy"
            for node in state.nodes.values()
            for name, h in (node.health or {}).items()
        )
        reporting = [u for u, n in state.nodes.items() if n.applications is not None]
        every_instance = all(
            (h := (state.get_node(u).health or {}).get(name)) is not None
            and h.revision == app.revision
            and h.status == "healthy"
            for u, name in instance_placement(app, node_uuid, reporting)
        )
        verdict = (
            None
            if not app.updating
            else CONFIRMED
            if report is not None and report.revision == app.revision
            and report.status == "healthy"
            and every_instance
            else ROLLED_BACK
            if unhealthy_somewhere and app.previous is not None
            else None
        )
        outcome = by_name.get(app.name)
        assert (None if outcome is None else outcome.outcome) == verdict
        if outcome is not None:
            assert (outcome.node_uuid, outcome.revision) == (node_uuid, app.revision)
            assert (outcome.reason is None) == (verdict == CONFIRMED)
    settled, applied = apply_update_outcomes(deployment, outcomes)
    assert applied == outcomes
    for app, node_uuid in deployment.all_applications():
        after, where = settled.get_application(app.name)
        assert where == node_uuid
        if app.name not in by_name:
            assert after == app
        else:
            assert not after.updating
    assert plan_update_outcomes(settled, state) == []


# -- the service -------------------------------------------------------------------


def file_store(directory: Path) -> FileConfigurationStore:
    """A file store in ``directory`` whose thread work runs at once."""
    return FileConfigurationStore(
        cast(IReactorFromThreads, ImmediateReactor()),
        cast(ThreadPool, ImmediateThreadPool()),
        directory,
    )


@implementer(IConfigurationStore)
class HeldSaves:
    """
    An `IConfigurationStore` passing through to another, whose saves can
    be held until released (a user's write in flight).
    """

    def __init__(self, store: Any) -> None:
        """Pass through to ``store``."""
        self.store = store
        self.held: list[tuple[Deferred[int], Deployment, int]] = []
        self.holding = False
        self.failures: list[Exception] = []

    def load(self) -> Deferred[StoredConfiguration]:
        """The wrapped store's."""
        loaded: Deferred[StoredConfiguration] = self.store.load()
        return loaded

    def save(self, deployment: Deployment, expected_generation: int) -> Deferred[int]:
        """Fail with the next queued failure, hold, or pass through."""
        if self.failures:
            return fail(self.failures.pop(0))
        if self.holding:
            waiting: Deferred[int] = Deferred()
            self.held.append((waiting, deployment, expected_generation))
            return waiting
        saved: Deferred[int] = self.store.save(deployment, expected_generation)
        return saved

    def release(self) -> None:
        """Stop holding, and make the saves held."""
        self.holding = False
        held, self.held = self.held, []
        for waiting, deployment, expected in held:
            self.store.save(deployment, expected).chainDeferred(waiting)


class Control:
    """A loaded ConfigurationService on a file store, a ClusterStateService, the duty."""

    def __init__(self, directory: Path, deployment: Deployment) -> None:
        """Store ``deployment`` in ``directory``."""
        self.directory = directory
        self.clock = Clock()
        self.clock.advance(1000)
        self.store = HeldSaves(file_store(directory))
        self.configuration = ConfigurationService(self.store)
        assert_fired(self.configuration.load())
        assert_fired(self.configuration.change(lambda _: deployment))
        self.state = ClusterStateService(self.clock)
        self.service = AutomaticRollback(self.configuration, self.state)

    def report(self, *reports: ApplicationHealth, node: str = A) -> None:
        """``node``'s container agent reports these health entries."""
        self.state.update_node_state(
            NodeState(uuid=node, health={h.application: h for h in reports}),
            "container",
        )

    def web(self) -> Application:
        """The configured ``web``."""
        return web(self.configuration.deployment)

    def stored(self) -> Deployment:
        """What a new file store on the directory loads: what is durable."""
        loaded = assert_fired(file_store(self.directory).load())
        return loaded.deployment


def assert_fired(d: Deferred[T]) -> T:
    """The result of a Deferred that has fired (failing the test otherwise)."""
    results: list[T | Failure] = []
    d.addBoth(results.append)
    assert results, "the Deferred has not fired"
    result = results[0]
    if isinstance(result, Failure):
        result.raiseException()
    return result


def test_service_rolls_back_and_logs_update_failed(
    tmp_path: Path, eliot_logger: MemoryLogger
) -> None:
    """
    Once the node reports the new revision unhealthy, the configuration
    returns to the previous specification durably, with the reason, in a
    flocker:control:updates:settle task holding one update_failed message.
    """
    control = Control(tmp_path, updated())
    control.service.startService()
    control.report(health("starting", 1))
    assert control.web().updating
    control.report(health("unhealthy", 1, reason="HTTP 503", failures=3))
    reason = "revision 1 of 'web' was unhealthy: HTTP 503 (3 probes failed)"
    after = control.web()
    assert (after.image, after.revision, after.updating, after.update_failed) == (
        "example/web:1",
        2,
        False,
        reason,
    )
    assert web(control.stored()) == after
    (action,) = LoggedAction.of_type(eliot_logger.messages, SETTLE_UPDATES)
    assert action.succeeded
    assert action.start_message["applications"] == ["web"]
    assert action.start_message["task_level"] == [1]  # a task of its own
    assert action.end_message["generation"] == control.configuration.generation
    assert action.end_message["changed"] is True
    (message,) = LoggedMessage.of_type(eliot_logger.messages, UPDATE_FAILED)
    assert (message.message["name"], message.message["revision"]) == ("web", 1)
    assert message.message["reason"] == reason
    assert message in action.descendants()
    assert not LoggedMessage.of_type(eliot_logger.messages, UPDATE_CONFIRMED)
    control.service.stopService()


def test_service_confirms_a_healthy_update(
    tmp_path: Path, eliot_logger: MemoryLogger
) -> None:
    """A healthy report of the new revision clears ``updating`` and keeps ``previous``."""
    control = Control(tmp_path, updated())
    control.service.startService()
    before = control.web()
    control.report(health("healthy", 1))
    assert control.web() == before.set(updating=False)
    assert web(control.stored()) == control.web()
    (message,) = LoggedMessage.of_type(eliot_logger.messages, UPDATE_CONFIRMED)
    assert (message.message["name"], message.message["revision"]) == ("web", 1)
    assert not LoggedMessage.of_type(eliot_logger.messages, UPDATE_FAILED)
    control.service.stopService()


def test_service_settles_once(tmp_path: Path, eliot_logger: MemoryLogger) -> None:
    """
    Reports that keep saying the old revision was unhealthy after the
    rollback change nothing more: one rollback, one message.
    """
    control = Control(tmp_path, updated())
    control.service.startService()
    for failures in range(3, 8):
        control.report(health("unhealthy", 1, failures=failures))
    generation = control.configuration.generation
    control.report(health("unhealthy", 1, failures=9))
    control.report(health("healthy", 2))
    assert control.configuration.generation == generation
    assert control.web().revision == 2
    assert len(LoggedMessage.of_type(eliot_logger.messages, UPDATE_FAILED)) == 1
    assert len(LoggedAction.of_type(eliot_logger.messages, SETTLE_UPDATES)) == 1
    control.service.stopService()


def test_service_settles_what_was_reported_before_it_started(
    tmp_path: Path, eliot_logger: MemoryLogger
) -> None:
    """A duty started (a new leader) settles what the reports already say."""
    control = Control(tmp_path, updated())
    control.report(health("unhealthy", 1, failures=3))
    assert control.web().updating
    control.service.startService()
    assert control.web().update_failed is not None
    control.service.stopService()


def test_service_leaves_unsettled_updates(
    tmp_path: Path, eliot_logger: MemoryLogger
) -> None:
    """While the new revision is starting or unreported, nothing is written or logged."""
    control = Control(tmp_path, updated())
    generation = control.configuration.generation
    control.service.startService()
    control.report(health("starting", 1, failures=2))
    control.report(health("unhealthy", None, failures=3))
    control.report(health("healthy", 1), node=B)
    assert control.configuration.generation == generation
    assert control.web().updating
    assert not LoggedAction.of_type(eliot_logger.messages, SETTLE_UPDATES)
    control.service.stopService()


def test_service_leaves_an_update_made_while_it_was_planning(
    tmp_path: Path, eliot_logger: MemoryLogger
) -> None:
    """
    A user's update in flight when the rollback of the previous revision is
    planned wins: the rollback's change, made after it, finds revision 2
    and rolls nothing back.
    """
    control = Control(tmp_path, updated())
    control.service.startService()
    control.store.holding = True
    users = control.configuration.change(
        lambda d: d.update_application(web(d).set(image="example/web:3"))
    )
    control.report(health("unhealthy", 1, failures=3))  # planned against revision 1
    assert control.web().revision == 1
    control.store.release()
    assert_fired(users)
    after = control.web()
    assert (after.image, after.revision, after.updating, after.update_failed) == (
        "example/web:3",
        2,
        True,
        None,
    )
    assert web(control.stored()) == after
    assert not LoggedMessage.of_type(eliot_logger.messages, UPDATE_FAILED)
    (action,) = LoggedAction.of_type(eliot_logger.messages, SETTLE_UPDATES)
    assert action.succeeded and action.end_message["changed"] is False
    control.service.stopService()


def test_service_never_overwrites_another_writers_update(
    eliot_logger: MemoryLogger,
) -> None:
    """
    When another control instance stored a new update first, the rollback
    planned from the stale configuration meets the compare-and-swap,
    re-plans against the stored configuration and rolls nothing back.
    """
    store = MemoryConfigurationStore()
    ours, theirs = ConfigurationService(store), ConfigurationService(store)
    assert_fired(ours.load())
    assert_fired(ours.change(lambda _: updated()))
    assert_fired(theirs.load())
    assert_fired(
        theirs.change(lambda d: d.update_application(web(d).set(image="example/web:3")))
    )
    state = ClusterStateService(Clock())
    service = AutomaticRollback(ours, state)
    service.startService()
    state.update_node_state(
        NodeState(uuid=A, health={"web": health("unhealthy", 1, failures=3)})
    )
    stored = assert_fired(store.load())
    assert web(stored.deployment).revision == 2
    assert web(stored.deployment).update_failed is None
    assert web(ours.deployment) == web(stored.deployment)
    assert len(LoggedMessage.of_type(eliot_logger.messages, CONFLICT)) == 1
    assert not LoggedMessage.of_type(eliot_logger.messages, UPDATE_FAILED)
    service.stopService()


def test_service_logs_a_failed_write_and_tries_again(
    tmp_path: Path, eliot_logger: MemoryLogger
) -> None:
    """
    A store that fails the rollback's write leaves the configuration as it
    was, logs the failure and keeps the duty running: the next report
    rolls the update back.
    """
    control = Control(tmp_path, updated())
    control.service.startService()
    control.store.failures.append(OSError("disk full"))
    control.report(health("unhealthy", 1, failures=3))
    assert control.web().updating
    (action,) = LoggedAction.of_type(eliot_logger.messages, SETTLE_UPDATES)
    assert not action.succeeded
    assert not LoggedMessage.of_type(eliot_logger.messages, UPDATE_FAILED)
    control.report(health("unhealthy", 1, failures=4))
    assert control.web().revision == 2
    assert len(LoggedMessage.of_type(eliot_logger.messages, UPDATE_FAILED)) == 1
    eliot_logger.flush_tracebacks(OSError)
    control.service.stopService()


def test_service_survives_a_planning_error(
    tmp_path: Path, eliot_logger: MemoryLogger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A planning bug is logged, not raised into the reporting agent; the next report works."""
    control = Control(tmp_path, updated())
    real = control.service.plan
    broken = {"left": 1}

    def plan(configuration: Deployment) -> list[UpdateOutcome]:
        if broken["left"]:
            broken["left"] -= 1
            raise ZeroDivisionError("a planning bug")
        return real(configuration)

    monkeypatch.setattr(control.service, "plan", plan)
    control.service.startService()  # the first check fails
    assert control.web().updating
    control.report(health("unhealthy", 1, failures=3))
    assert control.web().revision == 2
    eliot_logger.flush_tracebacks(ZeroDivisionError)
    control.service.stopService()


def test_service_waits_for_the_configuration_to_load(
    eliot_logger: MemoryLogger,
) -> None:
    """Reports arriving before the configuration is loaded are ignored without error."""
    state = ClusterStateService(Clock())
    service = AutomaticRollback(ConfigurationService(MemoryConfigurationStore()), state)
    service.startService()
    state.update_node_state(NodeState(uuid=A, health={"web": health("unhealthy", 1)}))
    assert not LoggedAction.of_type(eliot_logger.messages, SETTLE_UPDATES)
    service.stopService()


def test_stopped_service_does_nothing(tmp_path: Path) -> None:
    """A stopped duty (this instance no longer leads) leaves updates alone."""
    control = Control(tmp_path, updated())
    control.service.startService()
    control.service.stopService()
    control.report(health("unhealthy", 1, failures=3))
    assert control.web().updating


class Contested:
    """An etcd stand-in whose leadership key another instance holds until freed."""

    def __init__(self) -> None:
        """The key is taken."""
        self.free = False

    def grant_lease(self, ttl: int) -> Deferred[int]:
        """A lease, at once."""
        return succeed(7)

    def keep_alive(self, lease_id: int) -> Deferred[int]:
        """Renewed."""
        return succeed(4)

    def revoke_lease(self, lease_id: int) -> Deferred[None]:
        """Revoked."""
        return succeed(None)

    def create(
        self, key: str, value: bytes, lease: int | None = None
    ) -> Deferred[bool]:
        """Created only once freed."""
        return succeed(self.free)


def test_only_the_leader_rolls_back(tmp_path: Path, eliot_logger: MemoryLogger) -> None:
    """
    The duty runs among the singleton duties: while another instance leads,
    an unhealthy report changes nothing here; once this instance leads, the
    update is rolled back.
    """
    control = Control(tmp_path, updated())
    etcd = Contested()
    duties = build_duties(control.clock, control.configuration, control.state, 30.0)
    leadership = Leadership(control.clock, etcd, "this", duties)
    leadership.startService()
    control.report(health("unhealthy", 1, failures=3))
    control.clock.advance(5)
    assert not leadership.is_leader
    assert control.web().updating
    assert not LoggedAction.of_type(eliot_logger.messages, SETTLE_UPDATES)
    etcd.free = True
    control.clock.advance(1)
    assert leadership.is_leader
    assert control.web().revision == 2
    (message,) = LoggedMessage.of_type(eliot_logger.messages, UPDATE_FAILED)
    assert message.message["revision"] == 1
    assert_fired(leadership.stopService())


def test_another_node_reporting_the_new_revision_unhealthy_rolls_it_back() -> None:
    """
    An instance of the new revision on another node (a replica, or the one
    a single stateless instance is updated beside) reported unhealthy rolls
    the update back, in the words of that report; the application's own
    node is named in the outcome, since it is where the configuration has it.
    """
    [outcome] = plan_update_outcomes(
        updated(), reported(health("unhealthy", 1, failures=3), node=B)
    )
    assert outcome.outcome == ROLLED_BACK and outcome.node_uuid == A
    assert outcome.reason is not None and "unhealthy" in outcome.reason


def test_a_replicated_update_is_confirmed_once_every_instance_is_healthy() -> None:
    """
    The update of an application with two instances (on A and B) is not
    confirmed while only A runs the new revision healthy: B's turn comes
    after, and its new revision may still fail.  Once B reports it healthy
    too, it is.
    """
    configuration = Deployment().add_application(
        Application(name="web", image="example/web:1", replicas=2), A
    )
    app, _ = configuration.get_application("web")
    configuration = configuration.update_application(app.set(image="example/web:2"))
    both_known = DeploymentState(
        nodes={
            A: NodeState(uuid=A, applications={}, health={"web": health("healthy", 1)}),
            B: NodeState(uuid=B, applications={}, health={"web": health("healthy", None)}),
        }
    )
    assert plan_update_outcomes(configuration, both_known) == []
    done = both_known.update_node(
        NodeState(uuid=B, applications={}, health={"web": health("healthy", 1)})
    )
    [outcome] = plan_update_outcomes(configuration, done)
    assert outcome.outcome == CONFIRMED
