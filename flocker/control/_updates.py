"""Automatic rollback: the control service settles application updates by itself.

An update (`Deployment.update_application`) makes an application's next
revision and leaves it ``updating``: it waits for its instance to be
healthy.  The container agent of the application's node reports the
instance's health (`NodeState.health`, an `ApplicationHealth` per
application, naming the configured revision the probed instance runs).

Rules (`plan_update_outcomes`, a pure calculation; `AutomaticRollback`
applies it):

* Only applications with ``updating`` set are considered, and only the
  report of the node they are configured on counts.
* A report of that node saying ``healthy`` at the application's revision
  *confirms* the update: ``updating`` is cleared, ``previous`` is kept (so
  the user can still roll back by hand).
* A report saying ``unhealthy`` at the application's revision *rolls the
  update back* (`Deployment.rollback_application`), with a reason saying
  what was seen, kept as the application's ``update_failed``; an update
  without a previous specification (which `Deployment.update_application`
  never makes) cannot be rolled back and is left as it is.
* A replicated application's update is confirmed only once every
  instance `instance_placement` places reports the new revision healthy,
  each keyed by its node and instance name (a node running two instances
  reports ``web`` and ``web..2``); it is rolled back as soon as any
  instance of the application, on any node, reports the new revision
  ``unhealthy``.
* An update whose new image cannot be got is rolled back too: when a node
  that is to run an instance of the new revision reports that
  `FAILED_PULLS` pulls of the new image failed in a row (``image_pulls``:
  a missing tag, a registry refusing the credentials, one out of reach),
  with the registry's words as the reason.  The old instances serve
  meanwhile; a pull still running, or failed fewer times, changes nothing
  (a large image may take long, a registry may be back in a moment).
* Anything else changes nothing: no report, a report of another (older)
  instance (``revision`` not the application's), or ``starting``.

Each outcome is re-checked against the configuration it is applied to
(`apply_update_outcome`): if the application was updated, moved or settled
meanwhile, the outcome is called off.
"""

from __future__ import annotations

from typing import Any

import attrs
from eliot import ActionType, Field, MessageType, write_traceback
from eliot.twisted import DeferredContext
from pyrsistent import PClass, field
from twisted.internet.defer import Deferred

from ._logging import CHANGED, GENERATION, REASON
from ._model import Application, Deployment, instance_base, instance_placement
from ._persistence import StoredConfiguration
from ._state import ApplicationHealth, DeploymentState, ImagePull
from ._watching import WatchingDuty

__all__ = [
    "CONFIRMED",
    "FAILED_PULLS",
    "ROLLED_BACK",
    "SETTLE_UPDATES",
    "UPDATE_CONFIRMED",
    "UPDATE_FAILED",
    "AutomaticRollback",
    "UpdateCalledOff",
    "UpdateOutcome",
    "apply_update_outcome",
    "apply_update_outcomes",
    "plan_update_outcomes",
]

#: The update's instance was healthy: ``updating`` is cleared.
CONFIRMED = "confirmed"

#: The update's instance was unhealthy: the previous specification returns.
ROLLED_BACK = "rolled back"

_OUTCOMES = (CONFIRMED, ROLLED_BACK)

#: Pulls of an update's new image failed in a row on a node, after which
#: the update is rolled back (the agent tries them again after 2, 4, 8…
#: seconds).
FAILED_PULLS = 3


# -- logging -------------------------------------------------------------------

_NAME = Field.for_types("name", [str], "An application's name.")
_REVISION = Field.for_types(
    "revision", [int], "The application's revision the update made."
)
_APPLICATIONS = Field(
    "applications",
    lambda names: sorted(names),
    "The applications whose updates were to be confirmed or rolled back.",
)

#: The leader confirmed or rolled back updates from their nodes' health reports.
SETTLE_UPDATES = ActionType(
    "flocker:control:updates:settle",
    [_APPLICATIONS],
    [GENERATION, CHANGED],
    "Updated applications' nodes reported their new revisions healthy or "
    "unhealthy: the updates were confirmed or rolled back in one "
    "configuration change (outcomes no longer applying were called off).",
)

#: An update was rolled back by the control service itself.
UPDATE_FAILED = MessageType(
    "flocker:control:update_failed",
    [_NAME, _REVISION, REASON],
    "An application's update was rolled back automatically: its node "
    "reported the new revision's instance unhealthy.",
)

#: An update's instance was reported healthy: it no longer waits.
UPDATE_CONFIRMED = MessageType(
    "flocker:control:update_confirmed",
    [_NAME, _REVISION],
    "An application's update was confirmed: its node reported the new "
    "revision's instance healthy (the previous specification is kept for a "
    "rollback by hand).",
)


# -- planning --------------------------------------------------------------------


class UpdateOutcome(PClass):
    """
    How one application's update is settled.

    :ivar application: the application's name.
    :ivar node_uuid: the node it is configured on (whose report decided).
    :ivar revision: its revision the update made (the one reported).
    :ivar outcome: `CONFIRMED` or `ROLLED_BACK`.
    :ivar reason: for a rollback, what was seen, in words; else ``None``.
    """

    application = field(type=str, mandatory=True)
    node_uuid = field(type=str, mandatory=True)
    revision = field(type=int, mandatory=True)
    outcome = field(
        type=str,
        mandatory=True,
        invariant=lambda o: (o in _OUTCOMES, f"not an update outcome: {o!r}"),
    )
    reason = field(type=(str, type(None)), initial=None)


def _unhealthy_words(name: str, health: ApplicationHealth) -> str:
    """What an unhealthy report says, e.g. ``revision 3 of 'web' was unhealthy: HTTP 503 (3 probes failed)``."""
    words = f"revision {health.revision} of {name!r} was unhealthy"
    if health.reason:
        words += f": {health.reason}"
    if health.failures:
        plural = "s" if health.failures != 1 else ""
        words += f" ({health.failures} probe{plural} failed)"
    return words


def _outcome(
    application: Application, node_uuid: str, cluster_state: DeploymentState
) -> UpdateOutcome | None:
    """
    How the nodes' reports settle the application's update, if they do:
    confirmed when its own node reports the new revision healthy (and, for
    a replicated application, every instance placed, on every node);
    rolled back when its node, or any other node running an instance of
    that revision (a replica, an extra instance on one node, or the
    instance a single stateless one is updated beside), reports one
    unhealthy, or that `FAILED_PULLS` pulls of the new image failed.
    """
    if not application.updating:
        return None
    health = _report(cluster_state, node_uuid, application)
    if (
        health is not None
        and health.status == "healthy"
        and _every_instance_healthy(application, node_uuid, cluster_state)
    ):
        return UpdateOutcome(
            application=application.name,
            node_uuid=node_uuid,
            revision=application.revision,
            outcome=CONFIRMED,
        )
    if application.previous is None:
        return None
    others = sorted(set(cluster_state.nodes) - {node_uuid})
    for uuid in [node_uuid, *others]:
        for health in _instance_reports(cluster_state, uuid, application):
            if health.status == "unhealthy":
                return UpdateOutcome(
                    application=application.name,
                    node_uuid=node_uuid,
                    revision=application.revision,
                    outcome=ROLLED_BACK,
                    reason=_unhealthy_words(application.name, health),
                )
    for uuid in [node_uuid, *others]:
        pulls = cluster_state.get_node(uuid).image_pulls or {}
        for name, pull in sorted(pulls.items()):
            if (
                instance_base(name) == application.name
                and pull.image == application.image
                and not pull.pulling
                and pull.attempts >= FAILED_PULLS
            ):
                return UpdateOutcome(
                    application=application.name,
                    node_uuid=node_uuid,
                    revision=application.revision,
                    outcome=ROLLED_BACK,
                    reason=_pull_failed_words(application, uuid, pull),
                )
    return None


def _pull_failed_words(application: Application, node_uuid: str, pull: ImagePull) -> str:
    """
    What a failed pull says, e.g. ``revision 2 of 'web' could not get image
    'example/web:2' on node 1111…: manifest unknown (3 pulls failed)``.
    """
    words = (
        f"revision {application.revision} of {application.name!r} could not get "
        f"image {pull.image!r} on node {node_uuid}"
    )
    if pull.reason:
        words += f": {pull.reason}"
    return words + f" ({pull.attempts} pulls failed)"


def _every_instance_healthy(
    application: Application, home: str, cluster_state: DeploymentState
) -> bool:
    """
    Whether every instance of a replicated application, each keyed by its
    node and instance name as `instance_placement` places them, reports
    its configured revision healthy (an update rolls over them one at a
    time, so it is over only then).
    """
    if application.replicas < 2:
        return True
    reporting = [u for u, state in cluster_state.nodes.items() if state.applications is not None]
    for uuid, name in instance_placement(application, home, reporting):
        health = _report(cluster_state, uuid, application, name)
        if health is None or health.status != "healthy":
            return False
    return True


def _report(
    cluster_state: DeploymentState,
    node_uuid: str,
    application: Application,
    name: str | None = None,
) -> ApplicationHealth | None:
    """
    The node's report of the application's configured revision for its
    instance ``name`` there (the application's own name by default), if it
    has one.
    """
    reports = cluster_state.get_node(node_uuid).health
    health: ApplicationHealth | None = (
        None if reports is None else reports.get(application.name if name is None else name)
    )
    if health is None or health.revision != application.revision:
        return None
    return health


def _instance_reports(
    cluster_state: DeploymentState, node_uuid: str, application: Application
) -> list[ApplicationHealth]:
    """
    The node's reports of the application's configured revision, one per
    instance of it the node runs (``web``, ``web..2``…), by instance name.
    """
    reports = cluster_state.get_node(node_uuid).health or {}
    return [
        health
        for name, health in sorted(reports.items())
        if instance_base(name) == application.name and health.revision == application.revision
    ]


def plan_update_outcomes(
    configuration: Deployment, cluster_state: DeploymentState
) -> list[UpdateOutcome]:
    """The updates that the nodes' health reports settle now, by application name."""
    outcomes = []
    for application, node_uuid in configuration.all_applications():
        outcome = _outcome(application, node_uuid, cluster_state)
        if outcome is not None:
            outcomes.append(outcome)
    return outcomes


class UpdateCalledOff(Exception):
    """A planned outcome no longer applies to the configuration."""


def apply_update_outcome(
    configuration: Deployment, outcome: UpdateOutcome
) -> Deployment:
    """
    Settle one update in ``configuration``: clear ``updating`` (confirmed)
    or roll the application back with the outcome's reason.

    :raise UpdateCalledOff: the application is gone, moved to another node,
        at another revision (updated again) or no longer updating (settled).
    """
    node = configuration.nodes.get(outcome.node_uuid)
    current = None if node is None else node.applications.get(outcome.application)
    if (
        node is None
        or current is None
        or not current.updating
        or current.revision != outcome.revision
        or (outcome.outcome == ROLLED_BACK and current.previous is None)
    ):
        raise UpdateCalledOff(
            f"revision {outcome.revision} of application {outcome.application!r} "
            f"on node {outcome.node_uuid} is no longer waiting to be settled"
        )
    if outcome.outcome == ROLLED_BACK:
        return configuration.rollback_application(outcome.application, outcome.reason)
    return configuration.update_node(
        node.set(
            applications=node.applications.set(
                outcome.application, current.set(updating=False)
            )
        )
    )


def apply_update_outcomes(
    configuration: Deployment, outcomes: list[UpdateOutcome]
) -> tuple[Deployment, list[UpdateOutcome]]:
    """
    Settle each update that still applies (`apply_update_outcome`),
    leaving out those called off.

    :return: the configuration and the outcomes applied.
    """
    applied = []
    for outcome in outcomes:
        try:
            configuration = apply_update_outcome(configuration, outcome)
        except UpdateCalledOff:
            continue
        applied.append(outcome)
    return configuration, applied


# -- the service -------------------------------------------------------------------


@attrs.define(eq=False)
class AutomaticRollback(WatchingDuty):
    """
    Confirm or roll back updates by themselves, from their nodes' health reports.

    A singleton duty (`flocker.control._maintenance.build_duties`, run by
    the leader alone).  On every cluster state change and every
    configuration change (and once when started) it plans
    (`plan_update_outcomes`); when anything is to settle it makes one
    configuration change through `ConfigurationService.change`
    (compare-and-swap, durable before it counts, retried on another
    writer's change) that re-plans against the configuration being changed
    and the cluster state then, so an application updated again meanwhile
    is left alone.  Each settling is its own eliot task,
    ``flocker:control:updates:settle``, logging once stored an
    ``update_failed`` message per rollback and an ``update_confirmed``
    message per confirmation.  One change is in flight at a time; calls
    meanwhile are coalesced into one more check.  Errors are logged and
    the next change checks again.

    :ivar configuration_service: the loaded `ConfigurationService`.
    :ivar cluster_state_service: the `ClusterStateService`.
    """

    def plan(self, configuration: Deployment) -> list[UpdateOutcome]:
        """What `plan_update_outcomes` decides for ``configuration`` now."""
        return plan_update_outcomes(
            configuration, self.cluster_state_service.as_deployment_state()
        )

    def check(self) -> None:
        """
        Settle what the reports settle now, if anything (coalescing
        overlapping calls).  Never raises: errors are logged.
        """
        if self._running:
            self._again = True
            return
        try:
            configuration: Deployment = self.configuration_service.deployment
        except RuntimeError:
            return  # not loaded yet: the first change after loading checks
        try:
            planned = self.plan(configuration)
        except Exception:
            write_traceback()
            return
        if not planned:
            return
        self._running = True
        self._again = False
        self._settle(planned).addBoth(self._finished)

    def _finished(self, result: object) -> None:
        self._running = False
        if self._again and self.running:
            self.check()

    def _settle(self, planned: list[UpdateOutcome]) -> Deferred[None]:
        """One configuration change settling what is still to settle."""
        applied: list[UpdateOutcome] = []

        def change(current: Deployment) -> Deployment:
            settled, made = apply_update_outcomes(current, self.plan(current))
            applied[:] = made
            return settled

        def logged(stored: StoredConfiguration) -> None:
            for outcome in applied:
                if outcome.outcome == ROLLED_BACK:
                    UPDATE_FAILED.log(
                        name=outcome.application,
                        revision=outcome.revision,
                        reason=outcome.reason or "",
                    )
                else:
                    UPDATE_CONFIRMED.log(
                        name=outcome.application, revision=outcome.revision
                    )
            action.add_success_fields(
                generation=stored.generation, changed=bool(applied)
            )

        def failed(failure: Any) -> None:
            write_traceback(exc_info=(failure.type, failure.value, failure.tb))

        action = SETTLE_UPDATES.as_task(
            applications=[outcome.application for outcome in planned]
        )
        with action.context():
            changing = DeferredContext(self.configuration_service.change(change))
            changing.addCallback(logged)
            changing.addActionFinish()
        d: Deferred[None] = changing.result
        d.addErrback(failed)
        return d
