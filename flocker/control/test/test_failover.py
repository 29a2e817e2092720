"""
Tests of automatic failover (flocker.control._failover): the pure planner
`plan_failovers`, `apply_failover`, and the `AutomaticFailover` service over
a real `ConfigurationService` and `ClusterStateService` with a `Clock`.
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest
from eliot import MemoryLogger
from eliot.testing import LoggedAction, LoggedMessage
from twisted.internet.task import Clock

from flocker.control import (
    Application,
    AttachedVolume,
    ClusterStateService,
    ConfigurationService,
    Dataset,
    DatasetState,
    Deployment,
    DeploymentState,
    MemoryConfigurationStore,
    NodeState,
    Replication,
)
from flocker.control._failover import (
    AutomaticFailover,
    Failover,
    FailoverCalledOff,
    apply_failover,
    plan_failovers,
)
from flocker.control._logging import AUTOMATIC_FAILOVER, FAILOVER_WAITING
from flocker.control._state import Snapshot

A, B, C = sorted(str(uuid4()) for _ in range(3))
DS, DS2 = sorted(str(uuid4()) for _ in range(2))
AFTER = 20.0
START = 1_000.0
AUTOMATIC = Replication(failover="automatic")


def replicated(
    *replicas: str, dataset_id: str = DS, replication: Replication = AUTOMATIC
) -> Deployment:
    """A dataset on A with standing replicas, failing over automatically."""
    return (
        Deployment()
        .add_dataset(Dataset(dataset_id=dataset_id), A)
        .set_replicas(dataset_id, list(replicas), replication=replication)
    )


def with_app(deployment: Deployment, *dataset_ids: str) -> Deployment:
    """The application "db" on A, mounting the datasets."""
    app = Application(
        name="db",
        image="postgres:16",
        volumes=[
            AttachedVolume(dataset_id=d, mountpoint=f"/m{i}")
            for i, d in enumerate(dataset_ids)
        ],
    )
    return deployment.add_application(app, A)


def copy(
    role: str = "replica", *snapshots: str, dataset_id: str = DS, epoch: int = 0
) -> DatasetState:
    """A reported copy holding ``snapshots``; snapshot ``sN`` was taken at N."""
    return DatasetState(
        dataset_id=dataset_id,
        role=role,
        epoch=epoch,
        snapshots=[Snapshot(name=s, created=float(s[1:])) for s in snapshots],
    )


def state(**nodes: list[DatasetState]) -> DeploymentState:
    """Cluster state: node name (A, B, C) → the copies it reports."""
    names = {"A": A, "B": B, "C": C}
    result = DeploymentState()
    for name, copies in nodes.items():
        result = result.update_node(
            NodeState(uuid=names[name], datasets={c.dataset_id: c for c in copies})
        )
    return result


def plan(
    deployment: Deployment,
    cluster: DeploymentState,
    heard: dict[str, float],
    now: float = START + 100,
    started: float = START,
) -> Any:
    """The plan at ``now`` with nodes last heard at the times given."""
    return plan_failovers(deployment, cluster, now, heard.get, AFTER, started)


NOW = START + 100
#: A silent for exactly failover_after; B and C heard just now.
SILENT_A = {A: NOW - AFTER, B: NOW, C: NOW}


# -- the planner ---------------------------------------------------------------


def test_newest_replica_chosen() -> None:
    """Of two live replicas, the one whose newest snapshot is newer becomes primary."""
    result = plan(
        replicated(B, C),
        state(B=[copy("replica", "s1", "s2")], C=[copy("replica", "s1", "s2", "s3")]),
        SILENT_A,
    )
    (failover,) = result.failovers
    assert (failover.source, failover.target, failover.epoch) == (A, C, 1)
    assert dict(failover.snapshots) == {DS: "s3"}
    assert list(failover.datasets) == [DS]
    assert A in failover.reason and "s3" in failover.reason
    assert not result.waiting


def test_lineage_beats_clock() -> None:
    """
    A copy holding another's newest snapshot and more is newer even when its
    newest snapshot's reported time is older (clocks differ; order does not).
    """
    behind = DatasetState(
        dataset_id=DS, role="replica", snapshots=[Snapshot(name="x", created=50.0)]
    )
    ahead = DatasetState(
        dataset_id=DS,
        role="replica",
        snapshots=[Snapshot(name="x", created=50.0), Snapshot(name="y", created=10.0)],
    )
    (failover,) = plan(
        replicated(B, C), state(B=[ahead], C=[behind]), SILENT_A
    ).failovers
    assert failover.target == B


def test_dead_target_excluded() -> None:
    """A replica whose node is silent too is never the target, however new."""
    heard = {A: NOW - 50, B: NOW - AFTER, C: NOW - 1}
    result = plan(
        replicated(B, C),
        state(B=[copy("replica", "s1", "s9")], C=[copy("replica", "s1")]),
        heard,
    )
    (failover,) = result.failovers
    assert failover.target == C


def test_no_live_replica_waits() -> None:
    """With every replica's node silent or unusable, nothing changes and it waits."""
    heard = {A: NOW - 50, B: NOW - 30}
    result = plan(
        replicated(B, C),
        state(B=[copy("replica", "s1")], C=[copy("replica", "s1")]),
        heard,
    )
    assert not result.failovers
    (waiting,) = result.waiting
    assert (waiting.dataset_id, waiting.primary, waiting.silent_since) == (
        DS,
        A,
        NOW - 50,
    )
    assert f"node {B} has been silent" in waiting.reason
    assert f"node {C} has not been heard from" in waiting.reason


@pytest.mark.parametrize(
    "reported, words",
    [
        (copy("replica"), "no snapshot"),
        (copy("diverged", "s1"), "as diverged"),
        (copy("fenced", "s1"), "as fenced"),
        (None, "reports no copy"),
    ],
)
def test_unusable_copy_waits(reported: DatasetState | None, words: str) -> None:
    """A replica with no snapshot, or reported in another role, or not at all, waits."""
    result = plan(
        replicated(B), state(B=[] if reported is None else [reported]), SILENT_A
    )
    assert not result.failovers
    assert words in result.waiting[0].reason


def test_group_goes_together() -> None:
    """The application's datasets fail over together, to the node holding both."""
    deployment = with_app(
        replicated(B, C)
        .add_dataset(Dataset(dataset_id=DS2), A)
        .set_replicas(DS2, [C], replication=AUTOMATIC),
        DS,
        DS2,
    )
    cluster = state(
        B=[copy("replica", "s1", "s5")],
        C=[copy("replica", "s1"), copy("replica", "s2", dataset_id=DS2)],
    )
    (failover,) = plan(deployment, cluster, SILENT_A).failovers
    assert (failover.target, list(failover.datasets)) == (C, [DS, DS2])
    assert dict(failover.snapshots) == {DS: "s1", DS2: "s2"}
    after = apply_failover(deployment, failover)
    assert after.get_application("db")[1] == C
    assert {after.get_dataset(d)[1] for d in (DS, DS2)} == {C}


def test_group_not_at_all() -> None:
    """If no live node holds replicas of every dataset of the application, none fails over."""
    deployment = with_app(
        replicated(B)
        .add_dataset(Dataset(dataset_id=DS2), A)
        .set_replicas(DS2, [C], replication=AUTOMATIC),
        DS,
        DS2,
    )
    cluster = state(
        B=[copy("replica", "s1")], C=[copy("replica", "s2", dataset_id=DS2)]
    )
    result = plan(deployment, cluster, SILENT_A)
    assert not result.failovers
    (waiting,) = result.waiting
    assert list(waiting.datasets) == [DS, DS2]
    assert "every dataset of its application" in waiting.reason


def test_group_with_a_manual_dataset_waits() -> None:
    """An application using a manual-failover dataset is never failed over automatically."""
    deployment = with_app(
        replicated(B).add_dataset(Dataset(dataset_id=DS2), A).set_replicas(DS2, [B]),
        DS,
        DS2,
    )
    cluster = state(B=[copy("replica", "s1"), copy("replica", "s1", dataset_id=DS2)])
    result = plan(deployment, cluster, SILENT_A)
    assert not result.failovers
    assert f"dataset {DS2}" in result.waiting[0].reason
    assert "manually" in result.waiting[0].reason


def test_flapping_primary_causes_nothing() -> None:
    """A primary heard again within failover_after is not failed over."""
    cluster = state(B=[copy("replica", "s1")])
    heard = {A: NOW - AFTER + 0.5, B: NOW}
    assert plan(replicated(B), cluster, heard) == plan(
        replicated(B), DeploymentState(), {}, now=START
    )
    assert not plan(replicated(B), cluster, heard).failovers
    assert not plan(replicated(B), cluster, heard).waiting


def test_control_restart_grace() -> None:
    """
    After the control service starts, a primary not yet heard from gets
    failover_after seconds (from the start) to reconnect; so does one last
    heard before the start.
    """
    cluster = state(B=[copy("replica", "s1")])
    for heard in ({B: NOW}, {A: START - 500, B: NOW}):
        early = plan(replicated(B), cluster, heard, now=START + AFTER - 1)
        assert not early.failovers and not early.waiting
        (failover,) = plan(replicated(B), cluster, heard, now=START + AFTER).failovers
        assert "since the control service started" in failover.reason


def test_manual_datasets_never_touched() -> None:
    """A dataset that fails over manually is never planned, nor waits."""
    deployment = replicated(B, replication=Replication(failover="manual"))
    result = plan(deployment, state(B=[copy("replica", "s1")]), SILENT_A)
    assert not result.failovers and not result.waiting


def test_deleted_datasets_ignored() -> None:
    """A deleted dataset never fails over."""
    deployment = replicated(B).delete_dataset(DS)
    result = plan(deployment, state(B=[copy("replica", "s1")]), SILENT_A)
    assert not result.failovers and not result.waiting


def test_failed_over_dataset_not_failed_over_again() -> None:
    """
    After a failover the old primary (silent still) is a standing replica
    and the new primary is the one whose silence counts: nothing more happens.
    """
    deployment = replicated(B)
    cluster = state(B=[copy("replica", "s1")])
    (failover,) = plan(deployment, cluster, SILENT_A).failovers
    after = apply_failover(deployment, failover)
    assert after.replicas_of(DS) == [A]
    result = plan(after, cluster, SILENT_A)
    assert not result.failovers and not result.waiting


def test_apply_records_failover_snapshot_and_keeps_source() -> None:
    """
    A failover raises the epoch, records the target's newest snapshot as
    failover_snapshot on every copy, and keeps the old primary as a
    standing replica.
    """
    deployment = replicated(B, C)
    (failover,) = plan(
        deployment, state(B=[copy("replica", "s1", "s4")]), {**SILENT_A, C: NOW - 99}
    ).failovers
    after = apply_failover(deployment, failover)
    dataset, primary = after.get_dataset(DS)
    assert (primary, dataset.epoch, dataset.failover_snapshot) == (B, 1, "s4")
    assert after.replicas_of(DS) == sorted([A, C])
    for node in (A, C):
        assert after.nodes[node].manifestations[DS].dataset == dataset


def test_apply_called_off_when_configuration_changed() -> None:
    """A planned failover whose primary changed since is refused."""
    deployment = replicated(B, C)
    failover = Failover(
        dataset_id=DS,
        datasets=[DS],
        source=C,
        target=B,
        epoch=1,
        snapshots={DS: "s1"},
        reason="test",
    )
    with pytest.raises(FailoverCalledOff):
        apply_failover(deployment, failover)


# -- the service ---------------------------------------------------------------


class Cluster:
    """A loaded ConfigurationService, a ClusterStateService and a Clock."""

    def __init__(self, deployment: Deployment) -> None:
        """Store ``deployment``; nodes A and B report: A primary, B a replica."""
        self.clock = Clock()
        self.clock.advance(START)
        store = MemoryConfigurationStore()
        self.configuration = ConfigurationService(store)
        self.configuration.load()
        self.configuration.change(lambda _: deployment)
        self.state = ClusterStateService(self.clock)
        self.state.update_node_state(
            NodeState(uuid=A, datasets={DS: DatasetState(dataset_id=DS, path="/d")})
        )
        self.state.update_node_state(
            NodeState(uuid=B, datasets={DS: copy("replica", "s1", "s2")})
        )
        self.service = AutomaticFailover(
            self.clock, self.configuration, self.state, AFTER
        )

    def heard(self, *nodes: str) -> None:
        """The nodes' dataset agents are heard from now."""
        for node in nodes:
            self.state.touch(node, "dataset")

    def run_for(self, seconds: float, keep_alive: tuple[str, ...] = ()) -> None:
        """Advance a second at a time; ``keep_alive`` nodes are heard every second."""
        for _ in range(int(seconds)):
            self.clock.advance(1)
            self.heard(*keep_alive)


def test_service_fails_over_a_silent_primary(eliot_logger: MemoryLogger) -> None:
    """
    Once A has been silent for failover_after, the service promotes B's
    replica durably, in one flocker:control:failover:automatic task with
    its fields.
    """
    cluster = Cluster(replicated(B))
    cluster.service.startService()
    cluster.heard(A, B)
    cluster.run_for(AFTER - 1, keep_alive=(B,))
    assert cluster.configuration.deployment.get_dataset(DS)[1] == A
    cluster.run_for(2, keep_alive=(B,))
    dataset, primary = cluster.configuration.deployment.get_dataset(DS)
    assert (primary, dataset.epoch, dataset.failover_snapshot) == (B, 1, "s2")
    assert cluster.configuration.deployment.replicas_of(DS) == [A]
    (action,) = LoggedAction.of_type(eliot_logger.messages, AUTOMATIC_FAILOVER)
    assert action.succeeded
    start = action.start_message
    assert (start["dataset_id"], start["datasets"]) == (DS, [DS])
    assert (start["from"], start["to"], start["epoch"], start["snapshot"]) == (
        A,
        B,
        1,
        "s2",
    )
    assert "last heard from" in start["reason"]
    assert action.end_message["generation"] == cluster.configuration.generation
    assert start["task_level"] == [1]  # a task of its own
    cluster.run_for(AFTER * 2, keep_alive=(B,))
    assert len(LoggedAction.of_type(eliot_logger.messages, AUTOMATIC_FAILOVER)) == 1
    cluster.service.stopService()


def test_service_keeps_checking_after_an_error(
    eliot_logger: MemoryLogger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    A check that raises is logged as a traceback and the next ticks plan
    again: once planning works, the silent primary is failed over.
    """
    cluster = Cluster(replicated(B))
    real = cluster.service.plan
    broken = {"left": 3}

    def plan(configuration: Deployment) -> object:
        if broken["left"]:
            broken["left"] -= 1
            raise ZeroDivisionError("a planning bug")
        return real(configuration)

    monkeypatch.setattr(cluster.service, "plan", plan)
    cluster.service.startService()
    cluster.heard(A, B)
    cluster.run_for(AFTER + 5, keep_alive=(B,))
    assert cluster.configuration.deployment.get_dataset(DS)[1] == B
    assert broken["left"] == 0
    eliot_logger.flush_tracebacks(ZeroDivisionError)
    cluster.service.stopService()


def test_service_leaves_a_flapping_primary(eliot_logger: MemoryLogger) -> None:
    """A primary heard from every failover_after - 1 seconds never fails over."""
    cluster = Cluster(replicated(B))
    cluster.service.startService()
    for _ in range(5):
        cluster.heard(A)
        cluster.run_for(AFTER - 1, keep_alive=(B,))
    assert cluster.configuration.deployment.get_dataset(DS)[1] == A
    assert not LoggedAction.of_type(eliot_logger.messages, AUTOMATIC_FAILOVER)
    cluster.service.stopService()


def test_service_waits_and_logs_once(eliot_logger: MemoryLogger) -> None:
    """
    With no live replica the service changes nothing and logs the wait once
    per silence of the primary: again only after A was heard and fell silent.
    """
    cluster = Cluster(replicated(B))
    cluster.service.startService()
    cluster.heard(A)
    cluster.run_for(AFTER * 3)
    assert cluster.configuration.deployment.get_dataset(DS)[1] == A
    (message,) = LoggedMessage.of_type(eliot_logger.messages, FAILOVER_WAITING)
    assert (message.message["dataset_id"], message.message["primary"]) == (DS, A)
    assert f"node {B} has not been heard from" in message.message["reason"]
    cluster.heard(A)
    cluster.run_for(AFTER + 1)
    assert len(LoggedMessage.of_type(eliot_logger.messages, FAILOVER_WAITING)) == 2
    cluster.service.stopService()


def test_service_gives_agents_time_after_start(eliot_logger: MemoryLogger) -> None:
    """A control service just started waits failover_after before failing anything over."""
    cluster = Cluster(replicated(B))
    cluster.service.startService()
    cluster.run_for(AFTER - 1, keep_alive=(B,))
    assert cluster.configuration.deployment.get_dataset(DS)[1] == A
    cluster.run_for(1, keep_alive=(B,))
    assert cluster.configuration.deployment.get_dataset(DS)[1] == B
    (action,) = LoggedAction.of_type(eliot_logger.messages, AUTOMATIC_FAILOVER)
    assert "since the control service started" in action.start_message["reason"]
    cluster.service.stopService()


def test_service_does_nothing_once_stopped() -> None:
    """A stopped service no longer checks."""
    cluster = Cluster(replicated(B))
    cluster.service.startService()
    cluster.service.stopService()
    cluster.run_for(AFTER * 2, keep_alive=(B,))
    assert cluster.configuration.deployment.get_dataset(DS)[1] == A
