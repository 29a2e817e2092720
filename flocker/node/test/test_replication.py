"""Tests for standing replicas on the dataset agents: rounds, retention,
moves to a replica, and failover by epoch (in-memory backends).
"""

from collections.abc import Callable, Sequence
from itertools import product
from uuid import uuid4

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred

from flocker.control import Dataset, Deployment, ModelError, Replication
from flocker.node import NoOp, changes_of
from flocker.node._dataset_calculate import TABLE
from flocker.node._dataset_changes import DivergeDataset, PromoteDataset, ProtectDataset
from flocker.node._mover import Sender
from flocker.node._phases import Desired, Phase
from flocker.node._replicator import (
    IDLE_PAUSE,
    ReplicateDataset,
    prunable_on_primary,
    prunable_on_replica,
)
from flocker.node._roles import DIVERGED, PRIMARY, REPLICA
from flocker.node._snapshot_names import REPLICA_SNAPSHOT_PREFIX, snapshot_time
from flocker.node.test.test_datasets import DS, MIB, A, B, C, Cluster, plan, result
from flocker.volume import UnknownDataset


def replicated(
    primary: str = A, replicas: Sequence[str] = (B, C), interval: int = 0
) -> Deployment:
    """A configuration with DS on ``primary`` and standing replicas."""
    deployment = Deployment().add_dataset(Dataset(dataset_id=DS), primary)
    return deployment.set_replicas(
        DS, list(replicas), replication=Replication(interval_seconds=interval)
    )


def clocked_cluster() -> Cluster:
    """Three nodes whose deployers share a clock the test moves."""
    cluster = Cluster(nodes=(A, B, C))
    cluster.clock = [1000.0]
    for deployer in cluster.deployers.values():
        deployer.now = lambda: cluster.clock[0]
        deployer.replicator.now = deployer.now
    cluster.converge(Deployment())  # every node has reported its datasets
    return cluster


def current_replicas(replicas: Sequence[str]) -> tuple[Cluster, Deployment]:
    """
    A clocked cluster with DS on A holding b"replicated", and standing
    replicas on ``replicas`` that have all of it; (cluster, configuration).
    """
    cluster = clocked_cluster()
    configuration = replicated(replicas=replicas)
    cluster.converge(configuration)
    cluster.backends[A].write_file(DS, "data", b"replicated")
    cluster.clock[0] += IDLE_PAUSE
    cluster.converge(configuration)
    return cluster, configuration


def stuck_in_handoff(cluster: Cluster, moved: Deployment, why: str) -> None:
    """
    Let A hand DS off for ``moved`` while its final increment fails for
    ``why``: A's copy is left in hand-off, exposed nowhere.
    """
    real = refusing_like_the_agent(cluster, A)

    def final_fails(
        dataset_id: str, snapshot: str, base: str | None, host: str, final: bool, epoch: int = 0
    ) -> Deferred[int]:
        if final:
            raise RuntimeError(why)
        return real(dataset_id, snapshot, base, host, final, epoch=epoch)

    cluster.deployers[A].mover.send = final_fails
    with pytest.raises(RuntimeError):
        cluster.converge_node(A, moved)
    assert cluster.roles[A].get(DS) == "handoff"


def snapshots(cluster: Cluster, node: str) -> list[str]:
    """The names of a node's snapshots of DS."""
    return [s.name for s in result(cluster.backends[node].list_snapshots(DS))]


def test_replicas_receive_the_data_and_are_never_exposed() -> None:
    """Each standing replica gets the primary's data; only the primary has a path."""
    cluster = clocked_cluster()
    cluster.converge(replicated())
    cluster.backends[A].write_file(DS, "data", b"v1")
    cluster.clock[0] += IDLE_PAUSE
    cluster.converge(replicated())
    for replica in (B, C):
        assert cluster.backends[replica].read_files(DS) == {"data": b"v1"}
        assert cluster.roles[replica].get(DS) == REPLICA
        reported = cluster.state.get_node(replica).datasets[DS]
        assert (reported.path, reported.role) == (None, "replica")
    assert cluster.state.get_node(A).datasets[DS].path is not None


def test_continuous_rounds_follow_writes_and_pause_when_idle() -> None:
    """
    In continuous mode a round follows a round that carried changes at
    once; after an empty one the next waits for the idle pause.
    """
    cluster = clocked_cluster()
    configuration = replicated()
    cluster.converge(configuration)
    assert plan(cluster, A, configuration) == NoOp()
    cluster.clock[0] += IDLE_PAUSE
    assert isinstance(plan(cluster, A, configuration), ReplicateDataset)


def test_interval_mode_waits_for_the_interval() -> None:
    """An interval replica is not due again until the interval has passed."""
    cluster = clocked_cluster()
    configuration = replicated(interval=30)
    cluster.converge(configuration)
    cluster.backends[A].write_file(DS, "data", b"v2")
    cluster.clock[0] += 29
    assert not any(isinstance(c, ReplicateDataset) for c in changes_of(plan(cluster, A, configuration)))
    cluster.clock[0] += 1
    assert any(isinstance(c, ReplicateDataset) for c in changes_of(plan(cluster, A, configuration)))


def test_retention_keeps_the_shared_snapshot_and_bounds_the_rest() -> None:
    """
    Over many rounds the replication snapshots stay few on both sides, the
    newest one the primary and each replica share always survives, and a
    user's snapshot is never pruned.
    """
    cluster = clocked_cluster()
    configuration = replicated()
    cluster.converge(configuration)
    result(cluster.backends[A].snapshot(DS, "mine"))
    for round_ in range(12):
        cluster.backends[A].write_file(DS, "data", b"round %d" % round_)
        cluster.clock[0] += IDLE_PAUSE
        cluster.converge(configuration)
        ours = [n for n in snapshots(cluster, A) if n.startswith(REPLICA_SNAPSHOT_PREFIX)]
        for replica in (B, C):
            theirs = [n for n in snapshots(cluster, replica) if n.startswith(REPLICA_SNAPSHOT_PREFIX)]
            assert set(ours) & set(theirs), "primary and replica share no snapshot"
            assert len(theirs) <= 3
        assert len(ours) <= 3
    assert "mine" in snapshots(cluster, A)
    assert cluster.backends[C].read_files(DS) == {"data": b"round 11"}


def test_pruning_never_passes_the_newest_shared_snapshot() -> None:
    """The retention rules keep what each side shares with the other."""
    local = ["mine", "flocker-replica-1", "flocker-replica-2", "flocker-replica-3"]
    assert prunable_on_primary(local, ["flocker-replica-2", "flocker-replica-3"]) == [
        "flocker-replica-1"
    ]
    assert prunable_on_primary(local, [None]) == ["flocker-replica-1", "flocker-replica-2"]
    assert prunable_on_replica(local, ["flocker-replica-3"]) == [
        "flocker-replica-1",
        "flocker-replica-2",
    ]
    assert prunable_on_replica(local, ["other"]) == []


def test_move_to_a_replica_sends_only_the_final_increment_and_swaps() -> None:
    """
    Moving the primary to a node with a current replica sends little more
    than the last changes, and the old primary stays as a replica.
    """
    cluster = clocked_cluster()
    configuration = replicated(replicas=(B,))
    cluster.converge(configuration)
    cluster.backends[A].write_file(DS, "big", b"x" * (4 * MIB))
    cluster.clock[0] += IDLE_PAUSE
    cluster.converge(configuration)
    sent: list[int] = []
    real_send = cluster.deployers[A].mover.send

    def counted(n: int) -> int:
        sent.append(n)
        return n

    def counting(*args: object, **kwargs: object) -> Deferred[int]:
        return real_send(*args, **kwargs).addCallback(counted)

    cluster.deployers[A].mover.send = counting
    cluster.backends[A].write_file(DS, "last", b"y")
    moved = configuration.move_dataset(DS, B)
    cluster.converge(moved)
    assert sum(sent) < MIB
    assert cluster.roles[B].get(DS) == PRIMARY
    assert cluster.roles[A].get(DS) == REPLICA
    assert cluster.backends[B].read_files(DS)["last"] == b"y"
    assert moved.replicas_of(DS) == [A]


def test_failover_promotes_the_replica_and_the_old_primary_diverges() -> None:
    """
    A failover's newer epoch promotes the replica at once and makes the
    old primary stop exposing its copy, which it keeps.
    """
    cluster = clocked_cluster()
    configuration = replicated()
    cluster.converge(configuration)
    cluster.backends[A].write_file(DS, "data", b"before")
    cluster.clock[0] += IDLE_PAUSE
    cluster.converge(configuration)
    cluster.backends[A].write_file(DS, "data", b"after, never replicated")
    failed_over, _ = configuration.failover_dataset(DS, B)
    assert plan(cluster, B, failed_over) == PromoteDataset(dataset_id=DS, epoch=1)
    assert plan(cluster, A, failed_over) == DivergeDataset(dataset_id=DS, epoch=0, configured_epoch=1)
    cluster.converge(failed_over)
    assert (cluster.roles[B].get(DS), cluster.roles[B].epoch(DS)) == (PRIMARY, 1)
    assert cluster.roles[A].get(DS) == DIVERGED
    assert cluster.backends[A].read_files(DS) == {"data": b"after, never replicated"}
    assert cluster.state.get_node(A).datasets[DS].path is None
    assert cluster.backends[B].read_files(DS) == {"data": b"before"}
    # The remaining replica now follows the new primary at the new epoch.
    cluster.backends[B].write_file(DS, "data", b"on B")
    cluster.clock[0] += IDLE_PAUSE
    cluster.converge(failed_over)
    assert cluster.backends[C].read_files(DS) == {"data": b"on B"}
    assert cluster.roles[C].epoch(DS) == 1


def test_replica_configured_primary_at_the_same_epoch_waits_for_the_move() -> None:
    """A replica named primary by a move (same epoch) waits for the final push."""
    cluster = clocked_cluster()
    configuration = replicated(replicas=(B,))
    cluster.converge(configuration)
    assert plan(cluster, B, configuration.move_dataset(DS, B)) == NoOp()


@pytest.mark.parametrize(("desired", "phase"), list(product(Desired, Phase)))
def test_every_pair_has_a_decision(desired: Desired, phase: Phase) -> None:
    """
    Every (desired role, discovered phase) pair is either a row of the
    table or one of the pairs that deliberately do nothing: an absent copy
    that is deleted, lives elsewhere, is moving away or is fenced.
    """
    deliberate_nothing = {
        (Desired.DELETED, Phase.ABSENT),
        (Desired.ELSEWHERE, Phase.ABSENT),
        (Desired.SOURCE, Phase.ABSENT),
        (Desired.FENCED, Phase.ABSENT),
    }
    assert ((desired, phase) in TABLE) != ((desired, phase) in deliberate_nothing)


def test_replicas_are_never_writable_and_roles_swap_with_writability() -> None:
    """
    A replica's copy refuses writes; after a failover the promoted copy
    takes writes and the diverged one refuses them; after a move to a
    replica the old primary's copy refuses them too.
    """
    cluster = clocked_cluster()
    configuration = replicated(replicas=(B, C))
    cluster.converge(configuration)
    for replica in (B, C):
        with pytest.raises(OSError):
            cluster.backends[replica].write_file(DS, "x", b"no")
    failed_over, _ = configuration.failover_dataset(DS, B)
    cluster.converge(failed_over)
    cluster.backends[B].write_file(DS, "x", b"yes")
    with pytest.raises(OSError):
        cluster.backends[A].write_file(DS, "x", b"no")
    cluster.clock[0] += IDLE_PAUSE
    cluster.converge(failed_over)
    moved = failed_over.move_dataset(DS, C)
    cluster.converge(moved)
    cluster.backends[C].write_file(DS, "x", b"yes")
    with pytest.raises(OSError):
        cluster.backends[B].write_file(DS, "x", b"no")


IDS = [str(uuid4()) for _ in range(3)]
NODES = (A, B, C)


@st.composite
def replicated_configurations(draw: st.DrawFn) -> Deployment:
    """Up to three datasets over nodes A, B and C, some with standing replicas."""
    deployment = Deployment()
    for dataset_id in draw(st.lists(st.sampled_from(IDS), unique=True, min_size=1)):
        primary = draw(st.sampled_from(NODES))
        deployment = deployment.add_dataset(Dataset(dataset_id=dataset_id), primary)
        others = [n for n in NODES if n != primary]
        replicas = draw(st.lists(st.sampled_from(others), unique=True, max_size=2))
        deployment = deployment.set_replicas(dataset_id, replicas)
    return deployment


#: An operation: its kind, which configured dataset, and the nodes it names.
Operation = tuple[str, int, list[str]]

OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["move", "replicas", "failover", "delete"]),
        st.integers(min_value=0, max_value=2),
        st.lists(st.sampled_from(NODES), unique=True, max_size=2),
    ),
    max_size=4,
)


def _apply(
    configuration: Deployment,
    operation: Operation,
    holds: Callable[[str, str], bool],
    taken_up: Callable[[str, Dataset], bool],
) -> Deployment:
    """
    One operation on the configuration; one the model refuses changes
    nothing, and so do those the REST API refuses: a failover to a replica
    that holds no copy yet (``holds(node, dataset_id)``), and a move after
    a failover whose new primary has not taken the dataset up yet
    (``taken_up(node, dataset)``).
    """
    kind, index, nodes = operation
    configured = sorted(d.dataset_id for d, _ in configuration.all_datasets())
    dataset_id = configured[index % len(configured)]
    try:
        if kind == "move" and nodes:
            dataset, primary = configuration.get_dataset(dataset_id)
            if dataset.epoch > 0 and not taken_up(primary, dataset):
                return configuration
            return configuration.move_dataset(dataset_id, nodes[0])
        if kind == "replicas":
            return configuration.set_replicas(dataset_id, nodes)
        if kind == "failover":
            # To one of its replicas (any other node is refused anyway).
            replicas = [r for r in configuration.replicas_of(dataset_id) if holds(r, dataset_id)]
            if replicas:
                chosen = replicas[len(nodes) % len(replicas)]
                return configuration.failover_dataset(dataset_id, chosen)[0]
        if kind == "delete":
            return configuration.delete_dataset(dataset_id)
    except ModelError:
        pass
    return configuration


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(start=replicated_configurations(), operations=OPERATIONS)
def test_converges_through_moves_replication_and_failover(
    start: Deployment, operations: list[Operation]
) -> None:
    """
    From a converged configuration with standing replicas, any sequence of
    moves, replica changes, failovers and deletions converges: each live
    dataset is exposed and writable exactly on its primary at its epoch,
    each standing replica holds a read-only copy (unless that node's own
    copy diverged), the only other copies are diverged ones (kept,
    read-only), deleted datasets are nowhere, and no data appears that the
    dataset never had.
    """
    cluster = clocked_cluster()
    cluster.converge(start)
    for dataset, primary in start.all_datasets():
        cluster.backends[primary].write_file(dataset.dataset_id, "id", dataset.dataset_id.encode())
    cluster.clock[0] += IDLE_PAUSE
    cluster.converge(start)
    target = start

    def holds(node: str, dataset_id: str) -> bool:
        # The REST API fails over only to a node reporting a replica copy.
        listed = {i.dataset_id for i in result(cluster.backends[node].list_datasets())}
        return dataset_id in listed and cluster.roles[node].get(dataset_id) == REPLICA

    def taken_up(node: str, dataset: Dataset) -> bool:
        # The REST API moves a failed-over dataset only once its primary
        # reports its copy as the primary of the configured epoch.
        roles = cluster.roles[node]
        return (
            roles.get(dataset.dataset_id) == PRIMARY
            and roles.epoch(dataset.dataset_id) == dataset.epoch
        )

    for operation in operations:
        applied = _apply(target, operation, holds, taken_up)
        event(f"{operation[0]} {'applied' if applied != target else 'refused'}")
        target = applied
    cluster.converge(target, passes=10)
    for dataset, primary in target.all_datasets():
        dataset_id = dataset.dataset_id
        holders = {
            n for n in NODES
            if dataset_id in {i.dataset_id for i in result(cluster.backends[n].list_datasets())}
        }
        if dataset.deleted:
            assert holders == set()
            continue
        roles = {n: cluster.roles[n].get(dataset_id) for n in holders}
        assert roles.get(primary) == PRIMARY
        assert cluster.roles[primary].epoch(dataset_id) == dataset.epoch
        assert not result(cluster.backends[primary].get(dataset_id)).read_only
        for replica in target.replicas_of(dataset_id):
            assert roles.get(replica) in (REPLICA, DIVERGED)
        for node in holders - {primary}:
            assert result(cluster.backends[node].get(dataset_id)).read_only
            if node not in target.replicas_of(dataset_id):
                assert roles[node] == DIVERGED
        for node in holders:
            files = cluster.backends[node].read_files(dataset_id)
            assert files in ({}, {"id": dataset_id.encode()})


def test_a_writable_replica_is_made_read_only() -> None:
    """
    A replica that is still writable (received before copies arrived
    read-only, or a first attempt that failed) is made read-only.
    """
    cluster = clocked_cluster()
    configuration = replicated(replicas=(B,))
    cluster.converge(configuration)
    result(cluster.backends[B].set_read_only(DS, False))
    assert ProtectDataset(dataset_id=DS) in changes_of(plan(cluster, B, configuration))
    cluster.converge(configuration)
    assert result(cluster.backends[B].get(DS)).read_only


def test_replicas_follow_a_primary_moved_to_a_node_without_one() -> None:
    """
    After the primary moves to a node that held no replica, the new
    primary shares no snapshot with the standing replica; the replica is
    brought up to date with a full stream that replaces its stale copy.
    """
    cluster = clocked_cluster()
    configuration = replicated(replicas=(B,))
    cluster.converge(configuration)
    moved = configuration.move_dataset(DS, C)
    cluster.converge(moved)
    cluster.backends[C].write_file(DS, "data", b"written on C")
    cluster.clock[0] += IDLE_PAUSE
    cluster.converge(moved)
    assert cluster.backends[B].read_files(DS) == {"data": b"written on C"}
    assert cluster.roles[B].get(DS) == REPLICA


def test_a_replica_removed_and_added_again_fills_again() -> None:
    """
    A replica removed (its copy destroyed) and added again before the
    primary's next round gets a full copy: the round from the snapshot it
    had confirmed fails, and the primary then forgets that snapshot.
    """
    cluster = clocked_cluster()
    configuration = replicated(replicas=(B,))
    cluster.converge(configuration)
    removed = configuration.set_replicas(DS, [])
    for _ in range(3):
        cluster.converge_node(B, removed)
    assert DS not in {i.dataset_id for i in result(cluster.backends[B].list_datasets())}
    cluster.backends[A].write_file(DS, "data", b"after")
    cluster.clock[0] += IDLE_PAUSE
    with pytest.raises(UnknownDataset):
        cluster.converge_node(A, configuration)
    cluster.clock[0] += IDLE_PAUSE
    cluster.converge(configuration)
    assert cluster.backends[B].read_files(DS) == {"data": b"after"}


def test_replication_snapshots_report_their_time_to_the_nanosecond() -> None:
    """
    The agents' own snapshots are reported with the time their names carry
    (ZFS gives whole seconds), so a replica's lag is not a second too high;
    other snapshots keep the backend's time.
    """
    assert snapshot_time("flocker-replica-1796290633820622764-bbe625", 1796290633.0) == (
        pytest.approx(1796290633.820622764)
    )
    assert snapshot_time("flocker-move-1796290633500000000-aa", 1796290633.0) == (
        pytest.approx(1796290633.5)
    )
    assert snapshot_time("mine", 12.0) == 12.0
    assert snapshot_time("flocker-replica-x-1", 12.0) == 12.0


def refusing_like_the_agent(cluster: Cluster, source: str) -> Sender:
    """
    ``source``'s sender turned away as the agent's ``refuse`` does: into an
    exposed or diverged copy (the in-memory `Cluster` accepts everything).
    """
    real = cluster.deployers[source].mover.send
    by_host = {cluster.deployers[n].hostname: n for n in cluster.deployers}

    def send(
        dataset_id: str, snapshot: str, base: str | None, host: str, final: bool, epoch: int = 0
    ) -> Deferred[int]:
        if cluster.roles[by_host[host]].get(dataset_id) in (PRIMARY, DIVERGED):
            raise RuntimeError("refused")
        return real(dataset_id, snapshot, base, host, final, epoch=epoch)

    cluster.deployers[source].mover.send = send
    cluster.deployers[source].replicator.send = send
    return real


def test_a_handoff_superseded_by_a_failover_is_kept_as_diverged() -> None:
    """
    A moves DS to C (no replica there); its final increment fails (C went
    down), leaving A's copy in hand-off with writes B never received (no
    replication rounds run while a dataset moves).  The user fails over to
    the replica B.  A's copy must be kept as diverged, never destroyed.
    """
    cluster, configuration = current_replicas((B,))
    cluster.backends[A].write_file(DS, "data", b"written on A only")
    moved = configuration.move_dataset(DS, C)
    stuck_in_handoff(cluster, moved, "C went down")
    failed_over, _ = moved.failover_dataset(DS, B)
    refusing_like_the_agent(cluster, A)
    cluster.converge_node(B, failed_over)  # B promotes and reports its exposure
    assert cluster.roles[B].get(DS) == PRIMARY
    for _ in range(3):
        try:
            cluster.converge_node(A, failed_over)
        except RuntimeError:
            pass  # the refused push
    held = {i.dataset_id for i in result(cluster.backends[A].list_datasets())}
    assert DS in held, "A's copy, the only one with its last writes, was destroyed"
    assert cluster.backends[A].read_files(DS) == {"data": b"written on A only"}
    assert cluster.roles[A].get(DS) == DIVERGED


def test_a_swap_handoff_superseded_by_a_failover_keeps_its_writes() -> None:
    """
    A moves DS to its replica B; the final increment fails (B went down),
    leaving A's copy in hand-off with writes no replica has.  The user
    fails over to the other replica C.  A's writes must be kept: A
    diverges, and rejoining as C's replica it sets them aside before C's
    rounds bring its copy up to date.
    """
    cluster, configuration = current_replicas((B, C))
    cluster.backends[A].write_file(DS, "data", b"written on A only")
    moved = configuration.move_dataset(DS, B)
    stuck_in_handoff(cluster, moved, "B went down")
    failed_over, _ = moved.failover_dataset(DS, C)
    assert A in failed_over.replicas_of(DS)
    cluster.converge_node(C, failed_over)  # C promotes and reports its exposure
    for _ in range(3):
        try:
            cluster.converge_node(A, failed_over)
        except RuntimeError:
            pass  # the refused push
    cluster.clock[0] += IDLE_PAUSE
    cluster.converge_node(C, failed_over)  # C's round to its replicas
    assert cluster.roles[A].get(DS) == REPLICA
    (kept,) = result(cluster.backends[A].list_set_aside(DS))
    assert kept.name.startswith("flocker-diverged-0-")
    assert cluster.backends[A].read_set_aside(DS, kept.name) == {"data": b"written on A only"}
    assert cluster.backends[A].read_files(DS) == cluster.backends[C].read_files(DS)


def test_a_diverged_copy_named_replica_again_does_not_stop_pruning() -> None:
    """
    After a failover to B, the old primary A (diverged) is named a replica
    again, as the docs allow: while its copy refuses the streams, and once
    it rejoined as a replica, B's replication snapshots stay bounded.
    """
    cluster = clocked_cluster()
    configuration = replicated(replicas=(B, C))
    cluster.converge(configuration)
    cluster.backends[A].write_file(DS, "data", b"v1")
    cluster.clock[0] += IDLE_PAUSE
    cluster.converge(configuration)
    failed_over, _ = configuration.failover_dataset(DS, B)
    # The user names A a replica again at once (before B's first round).
    again = failed_over.set_replicas(DS, [A, C])
    refusing_like_the_agent(cluster, B)
    for node in (B, A):
        try:
            cluster.converge_node(node, again)
        except RuntimeError:
            pass  # A refuses B's streams
    counts = []
    for i in range(12):
        cluster.backends[B].write_file(DS, "data", b"v%d" % i)
        cluster.clock[0] += IDLE_PAUSE
        for node in (B, C, A, B):
            try:
                cluster.converge_node(node, again)
            except RuntimeError:
                pass  # A refuses B's streams until it rejoined
        counts.append(
            len([s for s in snapshots(cluster, B) if s.startswith(REPLICA_SNAPSHOT_PREFIX)])
        )
    assert cluster.backends[C].read_files(DS) == {"data": b"v11"}
    assert cluster.roles[A].get(DS) == REPLICA
    assert counts[-1] <= 3, counts


def test_a_move_destination_is_not_reported_as_a_standing_replica() -> None:
    """
    While a dataset with no standing replicas moves from A to C (bulk
    rounds, its application still running), the state the REST API gives
    lists no replica: C's partial copy cannot be failed over to.
    """
    from flocker.control._httpjson import copies_json

    cluster = clocked_cluster()
    configuration = Deployment().add_dataset(Dataset(dataset_id=DS), A)
    cluster.converge(configuration)
    cluster.backends[A].write_file(DS, "data", b"v1")
    cluster.in_use.add((A, DS))
    moved = configuration.move_dataset(DS, C)
    cluster.converge_node(A, moved)  # a bulk round
    cluster.converge_node(C, moved)  # C reports its copy
    assert moved.replicas_of(DS) == []
    with pytest.raises(ModelError):
        moved.failover_dataset(DS, C)
    copies = copies_json(cluster.state, DS, cluster.clock[0], 0)
    assert "replicas" not in copies, copies


def test_an_old_primary_moved_back_to_is_not_promoted_over_the_new_data() -> None:
    """
    A (primary) goes down; the user fails over to B, B takes writes; the
    user then moves the dataset back to A, before A's agent runs again.
    A's own copy is of epoch 0 and lacks B's writes: it must not be
    exposed at epoch 1, and B's writes must reach A or stay on B.
    """
    cluster, configuration = current_replicas((B,))
    cluster.backends[A].write_file(DS, "data", b"A's last, never replicated")
    failed_over, _ = configuration.failover_dataset(DS, B)  # A is down
    for node in (B, C):
        cluster.converge_node(node, failed_over)
    cluster.backends[B].write_file(DS, "data", b"written on B after the failover")
    back = failed_over.move_dataset(DS, A)
    refusing_like_the_agent(cluster, B)
    assert plan(cluster, A, back) != PromoteDataset(dataset_id=DS, epoch=1)
    for _ in range(4):
        for node in (A, B, C):
            try:
                cluster.converge_node(node, back)
            except RuntimeError:
                pass  # a refused push
    copies = [
        cluster.backends[n].read_files(DS)
        for n in (A, B, C)
        if DS in {i.dataset_id for i in result(cluster.backends[n].list_datasets())}
    ]
    assert {"data": b"written on B after the failover"} in copies


def test_a_move_to_a_replica_right_after_a_failover_waits_for_the_final_increment() -> None:
    """
    Fail over to B (epoch 1), B takes writes; before any round of B's
    reaches C, the user moves the dataset to the replica C.  C must wait
    for B's final increment, not expose its epoch-0 copy.
    """
    cluster, configuration = current_replicas((B, C))
    failed_over, _ = configuration.failover_dataset(DS, B)
    assert cluster.converge_node(B, failed_over) == PromoteDataset(dataset_id=DS, epoch=1)
    cluster.backends[B].write_file(DS, "data", b"written on B")
    moved = failed_over.move_dataset(DS, C)
    assert moved.get_dataset(DS)[0].epoch == 1
    assert plan(cluster, C, moved) == NoOp()


def test_a_move_to_a_node_with_a_diverged_copy_leaves_the_dataset_exposed() -> None:
    """
    After a failover to B (A's copy diverged), the dataset is moved to A
    (the REST API refuses that while A reports its diverged copy, but an
    agent may be given such a configuration before the report arrives):
    A sets its divergence aside and rejoins, receives the final increment
    and exposes the dataset, which is never exposed nowhere for good.
    """
    cluster, configuration = current_replicas((B,))
    failed_over, _ = configuration.failover_dataset(DS, B)
    cluster.converge(failed_over)
    assert cluster.roles[A].get(DS) == DIVERGED
    moved = failed_over.move_dataset(DS, A)
    refusing_like_the_agent(cluster, B)
    for _ in range(3):
        for node in (A, B, C):
            try:
                cluster.converge_node(node, moved)
            except RuntimeError:
                pass  # the refused push
    exposed = [n for n in (A, B, C) if cluster.roles[n].get(DS) == PRIMARY]
    assert exposed, {n: cluster.roles[n].get(DS) for n in (A, B, C)}
    cluster.converge(moved)
    assert cluster.roles[A].get(DS) == PRIMARY
    assert cluster.roles[A].epoch(DS) == 1
