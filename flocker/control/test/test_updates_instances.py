"""
Tests for settling the update of an application running more instances
than there are nodes: every instance, keyed by node and instance name,
counts.
"""

from __future__ import annotations

from flocker.control import (
    Application,
    ApplicationHealth,
    Deployment,
    DeploymentState,
    NodeState,
    plan_update_outcomes,
)
from flocker.control._updates import CONFIRMED, ROLLED_BACK

A = "11111111-1111-4111-8111-111111111111"
B = "22222222-2222-4222-8222-222222222222"


def updated(replicas: int = 3) -> Deployment:
    """``web`` on A with ``replicas`` instances, updated once (revision 1)."""
    configuration = Deployment().add_application(
        Application(name="web", image="example/web:1", replicas=replicas), A
    )
    app, _ = configuration.get_application("web")
    return configuration.update_application(app.set(image="example/web:2"))


def health(instance: str, status: str, revision: int | None) -> ApplicationHealth:
    """A report of one instance of ``web``."""
    return ApplicationHealth(
        application=instance, status=status, revision=revision, reason="HTTP 500"
    )


def state(**reports: list[ApplicationHealth]) -> DeploymentState:
    """Nodes A and B report their applications, and the health given by node name."""
    return DeploymentState(
        nodes={
            uuid: NodeState(
                uuid=uuid,
                applications={},
                health={h.application: h for h in reports.get(name, [])},
            )
            for name, uuid in (("A", A), ("B", B))
        }
    )


def test_confirmed_only_once_the_extra_instance_is_healthy_too() -> None:
    """
    Three instances on two nodes (``web`` and ``web..2`` on A, ``web`` on
    B): the update is not confirmed while A's ``web..2`` has not reported
    the new revision healthy, and is once it has.
    """
    firsts = state(A=[health("web", "healthy", 1)], B=[health("web", "healthy", 1)])
    assert plan_update_outcomes(updated(), firsts) == []
    older = state(
        A=[health("web", "healthy", 1), health("web..2", "healthy", None)],
        B=[health("web", "healthy", 1)],
    )
    assert plan_update_outcomes(updated(), older) == []
    every = state(
        A=[health("web", "healthy", 1), health("web..2", "healthy", 1)],
        B=[health("web", "healthy", 1)],
    )
    [outcome] = plan_update_outcomes(updated(), every)
    assert (outcome.outcome, outcome.node_uuid) == (CONFIRMED, A)


def test_an_extra_instance_unhealthy_rolls_the_update_back() -> None:
    """
    Any instance of the new revision reported unhealthy rolls the update
    back, an extra one on any node included, in the words of its report.
    """
    for reports in (
        state(A=[health("web", "healthy", 1), health("web..2", "unhealthy", 1)]),
        state(A=[health("web", "healthy", 1)], B=[health("web..2", "unhealthy", 1)]),
    ):
        [outcome] = plan_update_outcomes(updated(5), reports)
        assert (outcome.outcome, outcome.node_uuid) == (ROLLED_BACK, A)
        assert outcome.reason is not None and "HTTP 500" in outcome.reason


def test_an_older_extra_instance_unhealthy_changes_nothing() -> None:
    """An extra instance's report of another revision settles nothing."""
    reports = state(A=[health("web", "starting", 1), health("web..2", "unhealthy", None)])
    assert plan_update_outcomes(updated(), reports) == []
