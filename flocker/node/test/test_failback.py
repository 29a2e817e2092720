"""Tests for failback without a full resend: a superseded primary named a
standing replica sets its divergence aside and rejoins from the snapshot
it shares with the new primary; the new primary keeps that snapshot while
it may be needed (in-memory backends).
"""

from pathlib import Path

from flocker.control import Deployment
from flocker.node import NoOp, changes_of
from flocker.node._dataset_changes import KeepDiverged, RejoinAsReplica
from flocker.node._replicator import IDLE_PAUSE, ReplicateDataset
from flocker.node._roles import DIVERGED, REPLICA
from flocker.node._snapshot_names import (
    REPLICA_SNAPSHOT_PREFIX,
    diverged_at,
    diverged_snapshot_name,
)
from flocker.node.test.test_datasets import DS, A, B, C, Cluster, plan, result
from flocker.node.test.test_replication import (
    current_replicas,
    refusing_like_the_agent,
    snapshots,
)


def failed_over_with_a_divergence(
    replicas: tuple[str, ...] = (B,),
) -> tuple[Cluster, Deployment, str]:
    """
    DS replicated from A; A writes what no replica receives; a failover to
    B records B's newest snapshot as the failover snapshot and keeps A as a
    standing replica; B promotes and takes writes; A's copy diverges.
    (cluster, failed-over configuration, the failover snapshot).
    """
    cluster, configuration = current_replicas(replicas)
    base = snapshots(cluster, B)[-1]
    cluster.backends[A].write_file(DS, "data", b"A's last, never replicated")
    failed_over, _ = configuration.failover_dataset(
        DS, B, snapshots={DS: base}, keep_source=True
    )
    cluster.converge_node(B, failed_over)
    cluster.backends[B].write_file(DS, "data", b"written on B")
    cluster.converge_node(A, failed_over)
    assert cluster.roles[A].get(DS) == DIVERGED
    return cluster, failed_over, base


def test_diverged_snapshot_names_carry_the_stale_epoch() -> None:
    """Set-aside names are flocker-diverged-<epoch>-<ns>, and give their epoch back."""
    assert diverged_snapshot_name(3, ns=17) == "flocker-diverged-3-17"
    assert diverged_at(diverged_snapshot_name(3)) == 3
    assert diverged_at("flocker-replica-1-aa") is None


def test_a_diverged_copy_named_replica_sets_aside_and_becomes_a_replica() -> None:
    """
    The old primary rejoins from the failover snapshot: its writes are set
    aside as flocker-diverged-0-…, its copy returns to that snapshot, and
    it becomes a read-only replica at the new epoch.
    """
    cluster, failed_over, base = failed_over_with_a_divergence()
    assert plan(cluster, A, failed_over) == RejoinAsReplica(
        dataset_id=DS, epoch=0, configured_epoch=1, base=base
    )
    cluster.converge_node(A, failed_over)
    assert (cluster.roles[A].get(DS), cluster.roles[A].epoch(DS)) == (REPLICA, 1)
    assert snapshots(cluster, A)[-1] == base
    (kept,) = result(cluster.backends[A].list_set_aside(DS))
    assert diverged_at(kept.name) == 0
    assert cluster.backends[A].read_set_aside(DS, kept.name) == {
        "data": b"A's last, never replicated"
    }
    copy = cluster.state.get_node(A).datasets[DS]
    assert (copy.role, copy.path, [s.name for s in copy.set_aside]) == (
        "replica", None, [kept.name]
    )
    assert result(cluster.backends[A].get(DS)).read_only


def test_the_new_primary_sends_only_increments_from_the_base() -> None:
    """
    After the rejoin, the new primary's round to the old primary starts
    from the failover snapshot, and the copy then holds the new data.
    """
    cluster, failed_over, base = failed_over_with_a_divergence()
    cluster.converge_node(A, failed_over)
    cluster.clock[0] += IDLE_PAUSE
    rounds = [
        c for c in changes_of(plan(cluster, B, failed_over)) if isinstance(c, ReplicateDataset)
    ]
    assert [t.base for t in rounds[0].targets] == [base]
    cluster.converge(failed_over)
    assert cluster.backends[A].read_files(DS) == {"data": b"written on B"}
    assert len(result(cluster.backends[A].list_set_aside(DS))) == 1


def test_moving_the_primary_back_is_an_ordinary_move() -> None:
    """Once rejoined, the dataset moves back to the old primary by increments."""
    cluster, failed_over, _ = failed_over_with_a_divergence()
    cluster.converge(failed_over)
    back = failed_over.move_dataset(DS, A)
    cluster.converge(back)
    assert cluster.backends[A].read_files(DS) == {"data": b"written on B"}
    assert cluster.roles[A].get(DS) == "primary"
    assert len(result(cluster.backends[A].list_set_aside(DS))) == 1


def test_without_a_shared_snapshot_the_copy_stays_diverged() -> None:
    """
    A diverged copy that shares no snapshot with the new primary is kept
    as it is: the reason is logged once, nothing is destroyed or replaced.
    """
    cluster, failed_over, base = failed_over_with_a_divergence()
    for name in snapshots(cluster, A):
        result(cluster.backends[A].destroy_snapshot(DS, name))
    change = plan(cluster, A, failed_over)
    assert isinstance(change, KeepDiverged)
    assert "shares no snapshot" in change.reason
    cluster.converge_node(A, failed_over)
    assert plan(cluster, A, failed_over) == NoOp()
    assert cluster.roles[A].get(DS) == DIVERGED
    assert cluster.backends[A].read_files(DS) == {"data": b"A's last, never replicated"}


def test_without_the_failover_snapshot_the_newest_shared_one_is_the_base() -> None:
    """
    A copy lacking the failover snapshot (a failover that recorded none,
    or one this copy never received) rejoins from the newest snapshot it
    shares with the new primary as reported in the cluster state.
    """
    cluster, configuration = current_replicas((B,))
    shared = snapshots(cluster, B)[-1]
    cluster.backends[A].write_file(DS, "data", b"A's last")
    failed_over, _ = configuration.failover_dataset(
        DS, B, snapshots={DS: "flocker-replica-not-on-A"}, keep_source=True
    )
    cluster.converge_node(B, failed_over)
    cluster.converge_node(A, failed_over)
    change = plan(cluster, A, failed_over)
    assert change == RejoinAsReplica(dataset_id=DS, epoch=0, configured_epoch=1, base=shared)


def test_a_rejoin_repeated_after_a_crash_does_not_set_aside_twice() -> None:
    """
    A rejoin that set aside and crashed before recording the replica role
    (the copy still diverged, at the base, read-only) is finished without
    a second, empty set-aside.
    """
    cluster, failed_over, base = failed_over_with_a_divergence()
    result(cluster.backends[A].set_aside(DS, diverged_snapshot_name(0), base))
    cluster.deployers[A].set_aside_changed(DS)
    assert plan(cluster, A, failed_over) == RejoinAsReplica(
        dataset_id=DS, epoch=0, configured_epoch=1, base=base, set_aside=False
    )
    cluster.converge_node(A, failed_over)
    assert cluster.roles[A].get(DS) == REPLICA
    assert len(result(cluster.backends[A].list_set_aside(DS))) == 1


def test_the_receiver_refuses_a_diverged_copy_until_it_rejoined(tmp_path: Path) -> None:
    """
    Streams of the new epoch are refused while the copy is diverged and
    let in once it rejoined as a replica of that epoch.
    """
    from flocker.node.test.test_dataset_agent import header
    from flocker.node.test.test_fence import make_agent

    agent = make_agent(tmp_path)
    agent.roles.set(DS, DIVERGED, epoch=0)
    assert agent.refuse(header(epoch=1)) is not None
    agent.roles.set(DS, REPLICA, epoch=1)
    assert agent.refuse(header(epoch=1)) is None


def test_the_primary_keeps_the_failover_snapshot_while_a_copy_may_rejoin() -> None:
    """
    While the old primary is diverged (or has received nothing since), the
    new primary never prunes the failover snapshot, however many rounds go
    to its other replicas; snapshots between it and them are pruned.  Once
    the old primary rejoined and received a round, it may go.
    """
    cluster, configuration = current_replicas((B, C))
    base = snapshots(cluster, B)[-1]
    failed_over, _ = configuration.failover_dataset(DS, B, snapshots={DS: base})
    refusing_like_the_agent(cluster, B)
    cluster.converge_node(B, failed_over)
    cluster.converge_node(A, failed_over)  # A diverges (not a replica: stays so)
    for i in range(8):
        cluster.backends[B].write_file(DS, "data", b"v%d" % i)
        cluster.clock[0] += IDLE_PAUSE
        for node in (B, C, B):
            cluster.converge_node(node, failed_over)
        assert base in snapshots(cluster, B)
    ours = [n for n in snapshots(cluster, B) if n.startswith(REPLICA_SNAPSHOT_PREFIX)]
    assert len(ours) <= 4, ours
    again = failed_over.set_replicas(DS, [A, C])
    for _ in range(4):
        cluster.backends[B].write_file(DS, "data", b"more")
        cluster.clock[0] += IDLE_PAUSE
        cluster.converge(again)
    assert cluster.roles[A].get(DS) == REPLICA
    assert base not in snapshots(cluster, B)
