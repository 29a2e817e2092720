"""Tests for the dataset deployer: the pure calculation, moves, convergence."""

from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from uuid import uuid4

import pytest
from eliot import MemoryLogger
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IConsumer, IProducer
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface import implementer, implementer_only

from flocker.control import Dataset, Deployment, DeploymentState
from flocker.node import NoOp, in_parallel, run_state_change
from flocker.node._dataset_changes import DatasetChange
from flocker.node._mover import STOP_POLL, STOP_WAIT, Sender
from flocker.node._roles import HANDOFF, PRIMARY, REPLICA, FileRoles, MemoryRoles
from flocker.node.datasets import (
    CreateDataset,
    DatasetDeployer,
    DatasetMover,
    DestroyDataset,
    ExposeDataset,
    PushDataset,
    ResizeDataset,
)
from flocker.volume import (
    DatasetInfo,
    IEvictsCache,
    IStreamSink,
    IVolumeBackend,
    SnapshotInfo,
)
from flocker.volume.memory import MemoryVolumeBackend

T = TypeVar("T")

A, B, C = (str(uuid4()) for _ in range(3))
HOSTS = {A: "127.0.0.11", B: "127.0.0.12", C: "127.0.0.13"}
DS = str(uuid4())
MIB = 1024 * 1024


def result(d: Deferred[T]) -> T:
    """The result of an already fired Deferred (or raise its failure)."""
    out: list[T | Failure] = []
    d.addBoth(out.append)
    assert out, "Deferred has not fired"
    first = out[0]
    if isinstance(first, Failure):
        first.raiseException()
    return first


class Cluster:
    """Several nodes, each with an in-memory backend, roles and a deployer.

    ``send`` pumps streams straight from one node's backend into another's,
    doing what the transfer receiver does: a full receive is recorded as a
    replica first, and a final one exposes the dataset.
    """

    #: The time the deployers read, when a test sets one (``test_replication``).
    clock: list[float]

    def __init__(
        self,
        nodes: Iterable[str] = (A, B),
        backends: dict[str, MemoryVolumeBackend] | None = None,
    ) -> None:
        self.backends = {n: (backends or {}).get(n) or MemoryVolumeBackend() for n in nodes}
        self.roles = {n: MemoryRoles() for n in nodes}
        self.in_use: set[tuple[str, str]] = set()
        self.state = DeploymentState()
        self.deployers: dict[str, DatasetDeployer] = {}
        for n in nodes:
            mover = DatasetMover(
                self.backends[n],
                self.roles[n],
                self._sender(n),
                in_use=partial(self._in_use, n),
            )
            self.deployers[n] = DatasetDeployer(
                n, HOSTS[n], self.backends[n], self.roles[n], mover
            )

    def _in_use(self, node: str, dataset_id: str) -> bool:
        """Whether the test marked ``dataset_id`` in use on ``node``."""
        return (node, dataset_id) in self.in_use

    def _sender(self, source: str) -> Sender:
        by_host = {host: n for n, host in HOSTS.items()}

        def send(
            dataset_id: str,
            snapshot: str,
            base: str | None,
            host: str,
            final: bool,
            epoch: int = 0,
        ) -> Deferred[int]:
            async def pump() -> int:
                target = by_host[host]
                stream = await self.backends[source].send(dataset_id, snapshot, base)
                if base is None:
                    await self.backends[target].destroy(dataset_id)
                sink = await self.backends[target].receive(dataset_id, base)
                counter = Counter(sink)
                await stream.start(counter)
                await sink.finish()
                if final:
                    await self.backends[target].set_read_only(dataset_id, False)
                    self.roles[target].set(dataset_id, PRIMARY, epoch=epoch)
                elif self.roles[target].get(dataset_id) != PRIMARY:
                    self.roles[target].set(dataset_id, REPLICA, epoch=epoch)
                return counter.count

            return Deferred.fromCoroutine(pump())

        return send

    def converge_node(self, node: str, configuration: Deployment) -> DatasetChange:
        """One pass on one node: discover, report, calculate, run."""
        deployer = self.deployers[node]
        local = result(deployer.discover_state(self.state))
        self.state = self.state.update_node(local.shared_state_changes())
        change = deployer.calculate_changes(configuration, self.state, local)
        result(run_state_change(change, deployer))
        local = result(deployer.discover_state(self.state))
        self.state = self.state.update_node(local.shared_state_changes())
        return change

    def converge(self, configuration: Deployment, passes: int = 6) -> None:
        """Passes over every node until all plans are empty and the state settled."""
        for _ in range(passes):
            before = self.state
            plans = [self.converge_node(n, configuration) for n in self.deployers]
            # Converged: nothing to do, and no report changed (a node that
            # went earlier in the pass may act on what a later one reported).
            if all(p == NoOp() for p in plans) and self.state == before:
                return
        raise AssertionError("did not converge")


@implementer(IConsumer)
class Counter:
    """A consumer wrapper that counts the bytes passing to a sink."""

    def __init__(self, sink: IStreamSink) -> None:
        self.sink = sink
        self.count = 0

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:  # noqa: N802
        """Pass the producer on."""
        self.sink.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:  # noqa: N802
        """Pass it on."""
        self.sink.unregisterProducer()

    def write(self, data: bytes) -> None:
        """Count and pass on."""
        self.count += len(data)
        self.sink.write(data)


def config_with(
    primary: str, deleted: bool = False, maximum_size: int | None = None, dataset_id: str = DS
) -> Deployment:
    """A configuration with one dataset on ``primary``."""
    dataset = Dataset(dataset_id=dataset_id, deleted=deleted, maximum_size=maximum_size)
    return Deployment().add_dataset(dataset, primary)


def plan(cluster: Cluster, node: str, configuration: Deployment) -> DatasetChange:
    """What ``node`` would do now."""
    deployer = cluster.deployers[node]
    local = result(deployer.discover_state(cluster.state))
    state = cluster.state.update_node(local.shared_state_changes())
    return deployer.calculate_changes(configuration, state, local)


def test_create_where_primary() -> None:
    """A dataset configured on this node and held nowhere is created here."""
    cluster = Cluster()
    configuration = config_with(A, maximum_size=64 * MIB)
    assert plan(cluster, A, configuration) == CreateDataset(dataset_id=DS, maximum_size=64 * MIB)
    assert plan(cluster, B, configuration) == NoOp()


def test_not_created_while_held_elsewhere() -> None:
    """A dataset another node holds is not created; the holder pushes it."""
    cluster = Cluster()
    cluster.converge(config_with(A))
    moved = config_with(B)
    assert plan(cluster, B, moved) == NoOp()
    assert isinstance(plan(cluster, A, moved), PushDataset)


def test_resize_and_delete() -> None:
    """A changed maximum size resizes; a deleted dataset is destroyed."""
    cluster = Cluster()
    cluster.converge(config_with(A, maximum_size=64 * MIB))
    assert plan(cluster, A, config_with(A, maximum_size=128 * MIB)) == ResizeDataset(
        dataset_id=DS, maximum_size=128 * MIB
    )
    assert plan(cluster, A, config_with(A, deleted=True)) == DestroyDataset(dataset_id=DS)
    cluster.converge(config_with(A, deleted=True))
    assert result(cluster.backends[A].list_datasets()) == []


def test_unconfigured_left_alone() -> None:
    """A local dataset unknown to the configuration is never touched."""
    cluster = Cluster()
    result(cluster.backends[A].create(DS))
    assert plan(cluster, A, Deployment()) == NoOp()


def test_unrecorded_dataset_is_replica() -> None:
    """A dataset that arrived without a recorded role is not exposed."""
    cluster = Cluster()
    result(cluster.backends[B].create(DS))
    local = result(cluster.deployers[B].discover_state(cluster.state))
    assert local.shared_state_changes().datasets[DS].path is None


def test_parallel_plan() -> None:
    """Changes for several datasets are combined in parallel."""
    cluster = Cluster()
    one, two = sorted([str(uuid4()), str(uuid4())])
    configuration = config_with(A, dataset_id=one).add_dataset(Dataset(dataset_id=two), A)
    assert plan(cluster, A, configuration) == in_parallel(
        [CreateDataset(dataset_id=one), CreateDataset(dataset_id=two)]
    )


def test_move_carries_data_and_exposes_once() -> None:
    """A move carries the data; the source's copy goes; only B exposes it."""
    cluster = Cluster()
    cluster.converge(config_with(A))
    cluster.backends[A].write_file(DS, "data", b"precious")
    cluster.converge(config_with(B))
    assert result(cluster.backends[A].list_datasets()) == []
    assert cluster.backends[B].read_files(DS) == {"data": b"precious"}
    assert cluster.roles[B].get(DS) == PRIMARY
    exposed = [n for n, s in cluster.state.nodes.items() if DS in s.datasets and s.datasets[DS].path]
    assert exposed == [B]


def test_move_waits_while_in_use() -> None:
    """While the dataset is in use on A, only bulk rounds run; A keeps it."""
    cluster = Cluster()
    cluster.converge(config_with(A))
    cluster.backends[A].write_file(DS, "data", b"v1")
    cluster.in_use.add((A, DS))
    moved = config_with(B)
    cluster.converge_node(A, moved)
    assert cluster.roles[A].get(DS) == PRIMARY
    assert cluster.roles[B].get(DS) == REPLICA
    assert cluster.converge_node(B, moved) == NoOp()  # B waits, and reports
    state_b = cluster.state.get_node(B).datasets
    assert state_b[DS].path is None  # a replica is not exposed
    cluster.backends[A].write_file(DS, "data", b"v2")  # still writable on A
    cluster.in_use.clear()
    cluster.converge(moved)
    assert cluster.backends[B].read_files(DS) == {"data": b"v2"}
    assert result(cluster.backends[A].list_datasets()) == []


def test_bulk_rounds_pause_after_a_small_one() -> None:
    """
    After a small bulk round, passes send nothing while the dataset stays in
    use for ``bulk_pause`` seconds (its application is about to stop); after
    that another round goes; once it is free the final increment goes at once.
    """
    cluster = Cluster()
    now = [100.0]
    mover = cluster.deployers[A].mover
    mover.now = lambda: now[0]
    cluster.converge(config_with(A))
    cluster.backends[A].write_file(DS, "data", b"v1")
    cluster.in_use.add((A, DS))
    moved = config_with(B)
    cluster.converge_node(A, moved)
    rounds = len(result(cluster.backends[B].list_snapshots(DS)))
    cluster.backends[A].write_file(DS, "data", b"v2")
    now[0] += mover.bulk_pause - 0.1
    cluster.converge_node(A, moved)
    assert len(result(cluster.backends[B].list_snapshots(DS))) == rounds
    now[0] += 0.2
    cluster.converge_node(A, moved)
    assert len(result(cluster.backends[B].list_snapshots(DS))) == rounds + 1
    cluster.backends[A].write_file(DS, "data", b"v3")
    cluster.in_use.clear()
    cluster.converge_node(A, moved)
    assert cluster.roles[B].get(DS) == PRIMARY
    assert cluster.backends[B].read_files(DS) == {"data": b"v3"}


@implementer(IEvictsCache)
class EvictingBackend(MemoryVolumeBackend):
    """An in-memory backend noting which datasets' cache it was asked to drop."""

    def __init__(self, refuses: bool = False, holds: bool = False) -> None:
        super().__init__()
        self.evicted: list[str] = []
        self.refuses = refuses
        self.holds = holds
        self.held: list[Deferred[None]] = []

    def evict_cache(self, dataset_id: str) -> Deferred[None]:
        """Note it; fail if it refuses; if it holds, end on `release`."""
        self.evicted.append(dataset_id)
        if self.refuses:
            return fail(OSError("the cache cannot be dropped"))
        if self.holds:
            self.held.append(Deferred())
            return self.held[-1]
        return succeed(None)

    def release(self) -> None:
        """The held evictions end."""
        while self.held:
            self.held.pop(0).callback(None)


def moving_in_use(backend: MemoryVolumeBackend) -> tuple[Cluster, Deployment]:
    """
    A cluster whose node A has ``backend`` and DS (in use there), and the
    configuration that moves DS to B.
    """
    cluster = Cluster(backends={A: backend})
    cluster.converge(config_with(A))
    cluster.backends[A].write_file(DS, "data", b"v1")
    cluster.in_use.add((A, DS))
    return cluster, config_with(B)


def test_the_cache_is_dropped_as_bulk_rounds_go_while_the_application_runs() -> None:
    """
    A pass that sends bulk rounds while the dataset is in use has the
    kernel drop what it caches of the dataset's files (the application
    will stop: the hand-off's fence will be quicker); the passes that
    pause after a small round, and the final increment, do not.
    """
    backend = EvictingBackend()
    cluster, moved = moving_in_use(backend)
    cluster.converge_node(A, moved)
    assert backend.evicted == [DS]
    cluster.converge_node(A, moved)  # pausing
    cluster.in_use.clear()
    cluster.converge(moved)
    assert backend.evicted == [DS]
    assert cluster.roles[B].get(DS) == PRIMARY


def test_the_cache_is_dropped_in_the_background_and_the_hand_off_waits_for_it() -> None:
    """
    The pass that asked for the cache to be dropped ends without waiting
    for it; a hand-off while it is still being dropped waits for it (the
    files it holds open would make the fence fail), then goes on.
    """
    backend = EvictingBackend(holds=True)
    cluster, moved = moving_in_use(backend)
    cluster.converge_node(A, moved)  # ended, though the eviction is held
    assert backend.evicted == [DS] and len(backend.held) == 1
    cluster.in_use.clear()
    deployer = cluster.deployers[A]
    local = result(deployer.discover_state(cluster.state))
    change = deployer.calculate_changes(moved, cluster.state, local)
    done: list[object] = []
    run_state_change(change, deployer).addBoth(done.append)
    assert done == [] and cluster.roles[A].get(DS) == HANDOFF
    assert result(cluster.backends[A].get(DS)).read_only is False  # no fence yet
    backend.release()
    assert done == [None]
    assert cluster.roles[B].get(DS) == PRIMARY
    assert cluster.backends[B].read_files(DS) == {"data": b"v1"}


def test_a_cache_that_cannot_be_dropped_does_not_hold_a_move_up(
    eliot_logger: MemoryLogger,
) -> None:
    """A failure to drop the cache is logged; the move goes on."""
    backend = EvictingBackend(refuses=True)
    cluster, moved = moving_in_use(backend)
    cluster.converge_node(A, moved)
    cluster.in_use.clear()
    cluster.converge(moved)
    assert backend.evicted == [DS]
    assert cluster.backends[B].read_files(DS) == {"data": b"v1"}
    assert len(eliot_logger.flush_tracebacks(OSError)) == 1


def _large_rounds(cluster: Cluster, seconds: float) -> list[float]:
    """
    Make every bulk round from A count as large, and take ``seconds`` on
    the mover's clock; the clock (a one-item list) is returned.
    """
    now = [100.0]
    mover = cluster.deployers[A].mover
    mover.now = lambda: now[0]
    mover.small_delta = 0
    real_send = mover.send

    def timed(*args: Any, **kwargs: Any) -> Any:
        now[0] += seconds
        return real_send(*args, **kwargs)

    mover.send = timed
    return now


def test_a_quick_bulk_round_is_followed_by_a_pause_whatever_it_carried() -> None:
    """
    A bulk round that took less than ``quick_round`` seconds counts as a
    small one: no other round goes in that pass or the passes of the next
    ``bulk_pause`` seconds, so the final increment does not queue behind one
    when the application stops.
    """
    cluster = Cluster()
    cluster.converge(config_with(A))
    now = _large_rounds(cluster, seconds=0.3)
    cluster.backends[A].write_file(DS, "data", b"v1")
    cluster.in_use.add((A, DS))
    moved = config_with(B)
    cluster.converge_node(A, moved)
    rounds = len(result(cluster.backends[B].list_snapshots(DS)))
    assert rounds == 1
    cluster.backends[A].write_file(DS, "data", b"v2")
    now[0] += 0.5
    cluster.converge_node(A, moved)
    assert len(result(cluster.backends[B].list_snapshots(DS))) == rounds


def test_a_quick_round_that_carried_much_is_followed_by_another() -> None:
    """
    A quick incremental round that still carried `QUICK_ROUND_MOST`
    small deltas or more (a fast writer) is followed by another in the
    same pass; a quick full first round is not (its size is the
    dataset's).
    """
    cluster = Cluster()
    cluster.converge(config_with(A))
    mover = cluster.deployers[A].mover
    _large_rounds(cluster, seconds=0.1)
    mover.small_delta = 1  # every incremental round carries "much"
    cluster.backends[A].write_file(DS, "data", b"v1")
    cluster.in_use.add((A, DS))
    cluster.converge_node(A, config_with(B))
    assert len(result(cluster.backends[B].list_snapshots(DS))) == 1  # full, quick
    cluster.backends[A].write_file(DS, "data", b"v2" * 100)
    mover._progress[DS] = mover._progress[DS].set(settled_at=None)
    cluster.converge_node(A, config_with(B))
    assert len(result(cluster.backends[B].list_snapshots(DS))) == 1 + mover.maximum_rounds


def test_slow_large_bulk_rounds_follow_each_other() -> None:
    """
    Bulk rounds that are neither small nor quick follow each other in one
    pass, up to ``maximum_rounds``: each carries what was written during
    the one before, so that the final increment is small.
    """
    cluster = Cluster()
    cluster.converge(config_with(A))
    mover = cluster.deployers[A].mover
    _large_rounds(cluster, seconds=mover.quick_round + 1)
    cluster.backends[A].write_file(DS, "data", b"v1")
    cluster.in_use.add((A, DS))
    cluster.converge_node(A, config_with(B))
    assert len(result(cluster.backends[B].list_snapshots(DS))) == mover.maximum_rounds


def _paused_while_in_use(cluster: Cluster) -> tuple[Deployment, Clock, list[bool]]:
    """
    A's application uses DS while it moves to B; the bulk rounds went and
    the mover pauses.  Returns the configuration, the mover's clock and
    a one-item list saying whether the application is stopping.
    """
    cluster.converge(config_with(A))
    cluster.backends[A].write_file(DS, "data", b"v1")
    cluster.in_use.add((A, DS))
    moved = config_with(B)
    cluster.converge_node(A, moved)
    clock, stopping = Clock(), [False]
    mover = cluster.deployers[A].mover
    mover.clock = clock
    mover.stopping = lambda dataset_id: stopping[0]
    return moved, clock, stopping


def _pass(cluster: Cluster, node: str, configuration: Deployment) -> Deferred[None]:
    """Start one pass's changes on ``node``; fires when they are done."""
    deployer = cluster.deployers[node]
    local = result(deployer.discover_state(cluster.state))
    change = deployer.calculate_changes(configuration, cluster.state, local)
    return run_state_change(change, deployer)


def test_a_move_waits_in_its_pass_for_a_stopping_application() -> None:
    """
    Once the bulk rounds are done, a pass that finds the application
    using the dataset *stopping* waits for it instead of ending: as soon
    as the pushed cluster state says the dataset is free, the final
    increment goes, in that same pass.
    """
    cluster = Cluster()
    moved, clock, stopping = _paused_while_in_use(cluster)
    stopping[0] = True
    done: list[object] = []
    _pass(cluster, A, moved).addBoth(done.append)
    clock.advance(STOP_POLL)
    clock.advance(STOP_POLL)
    assert done == [] and cluster.roles[B].get(DS) == REPLICA
    cluster.backends[A].write_file(DS, "data", b"v2")
    cluster.in_use.clear()  # the container agent's report arrived
    clock.advance(STOP_POLL)
    assert done == [None]
    assert cluster.roles[B].get(DS) == PRIMARY
    assert cluster.backends[B].read_files(DS) == {"data": b"v2"}


def test_a_move_called_off_while_its_pass_waited_is_not_handed_off() -> None:
    """
    When the configuration held no longer moves the dataset once the
    stopping application has released it (the move was called off
    during the wait), the pass ends without handing the dataset off.
    """
    cluster = Cluster()
    moved, clock, stopping = _paused_while_in_use(cluster)
    stopping[0] = True
    mover = cluster.deployers[A].mover
    mover.still_wanted = lambda change: False
    done: list[object] = []
    _pass(cluster, A, moved).addBoth(done.append)
    cluster.in_use.clear()
    clock.advance(STOP_POLL)
    assert done == [None]
    assert cluster.roles[A].get(DS) == PRIMARY and cluster.roles[B].get(DS) == REPLICA
    assert not result(cluster.backends[A].get(DS)).read_only


def test_a_move_waits_for_a_stopping_application_only_so_long() -> None:
    """
    An application that stays stopping longer than `STOP_WAIT` seconds
    ends the pass with the dataset still in use, as does one that is not
    stopping at all (at once).
    """
    cluster = Cluster()
    moved, clock, stopping = _paused_while_in_use(cluster)
    done: list[object] = []
    _pass(cluster, A, moved).addBoth(done.append)
    assert done == [None]  # not stopping: no wait
    stopping[0] = True
    done = []
    _pass(cluster, A, moved).addBoth(done.append)
    clock.pump([STOP_POLL] * int(STOP_WAIT / STOP_POLL + 2))
    assert done == [None]
    assert cluster.roles[A].get(DS) == PRIMARY and cluster.roles[B].get(DS) == REPLICA


def test_move_back() -> None:
    """A dataset moved to B and back to A still has its data."""
    cluster = Cluster()
    cluster.converge(config_with(A))
    cluster.backends[A].write_file(DS, "f", b"x" * 1000)
    cluster.converge(config_with(B))
    cluster.converge(config_with(A))
    assert cluster.backends[A].read_files(DS) == {"f": b"x" * 1000}
    assert result(cluster.backends[B].list_datasets()) == []


def test_receiving_dataset_left_alone() -> None:
    """A dataset a transfer is writing into gets no change at all."""
    cluster = Cluster()
    cluster.converge(config_with(A))
    cluster.deployers[A].receiving = lambda: {DS}
    assert plan(cluster, A, config_with(A, deleted=True)) == NoOp()


def test_handoff_called_off_reexposes() -> None:
    """If a move is called off mid-handoff, the source exposes its copy again."""
    cluster = Cluster()
    cluster.converge(config_with(A))
    cluster.roles[A].set(DS, HANDOFF)
    assert plan(cluster, A, config_with(A)) == ExposeDataset(dataset_id=DS)


def test_failed_final_send_retried() -> None:
    """A final send that fails leaves A handing off; the next pass finishes."""
    cluster = Cluster()
    cluster.converge(config_with(A))
    cluster.backends[A].write_file(DS, "data", b"keep")
    deployer = cluster.deployers[A]
    real_send = deployer.mover.send
    calls: list[bool] = []

    def flaky(
        dataset_id: str, snapshot: str, base: str | None, host: str, final: bool, **kwargs: int
    ) -> Deferred[int]:
        calls.append(final)
        if final and calls.count(True) == 1:
            raise OSError("connection cut")
        return real_send(dataset_id, snapshot, base, host, final, **kwargs)

    deployer.mover.send = flaky
    moved = config_with(B)
    try:
        cluster.converge_node(A, moved)
    except Exception:
        pass
    assert cluster.roles[A].get(DS) == HANDOFF
    assert cluster.backends[A].read_files(DS) == {"data": b"keep"}
    cluster.converge(moved)
    assert cluster.backends[B].read_files(DS) == {"data": b"keep"}


def test_file_roles_durable(tmp_path: Path) -> None:
    """Roles written to the file are there when it is loaded again."""
    path = str(tmp_path / "roles.json")
    roles = FileRoles(path)
    roles.set(DS, PRIMARY)
    assert FileRoles(path).get(DS) == PRIMARY
    roles.set(DS, HANDOFF)
    assert FileRoles(path).get(DS) == HANDOFF
    roles.set(DS, REPLICA)
    assert FileRoles(path).all() == {}
    assert FileRoles(path).get(DS) == REPLICA


def test_file_roles_corrupt(tmp_path: Path) -> None:
    """A corrupt role file is an error, not an empty record."""
    path = tmp_path / "roles.json"
    path.write_text("{not json")
    try:
        FileRoles(str(path))
    except ValueError as error:
        assert "not a valid dataset role record" in str(error)
    else:
        raise AssertionError("no error")


IDS = [str(uuid4()) for _ in range(4)]


@st.composite
def configurations(draw: st.DrawFn) -> Deployment:
    """Deployments of up to four datasets over nodes A, B and C."""
    deployment = Deployment()
    for dataset_id in draw(st.lists(st.sampled_from(IDS), unique=True)):
        deployment = deployment.add_dataset(
            Dataset(
                dataset_id=dataset_id,
                deleted=draw(st.booleans()),
                maximum_size=draw(st.sampled_from([None, 64 * MIB, 128 * MIB])),
            ),
            draw(st.sampled_from([A, B, C])),
        )
    return deployment


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(start=configurations(), target=configurations())
def test_converges_from_any_state_to_any_configuration(
    start: Deployment, target: Deployment
) -> None:
    """
    From whatever a first configuration left on the nodes, the deployers
    reach any second configuration: each live dataset exposed on exactly its
    primary with its maximum size and the data it had, deleted ones nowhere.
    """
    cluster = Cluster(nodes=(A, B, C))
    cluster.converge(start)
    for dataset_id, _ in [(d.dataset_id, p) for d, p in start.all_datasets() if not d.deleted]:
        for node in (A, B, C):
            if dataset_id in {i.dataset_id for i in result(cluster.backends[node].list_datasets())}:
                cluster.backends[node].write_file(dataset_id, "id", dataset_id.encode())
    cluster.converge(target)
    for dataset, primary in target.all_datasets():
        holders = [
            n for n in (A, B, C)
            if dataset.dataset_id in {i.dataset_id for i in result(cluster.backends[n].list_datasets())}
        ]
        if dataset.deleted:
            assert holders == []
            continue
        assert holders == [primary]
        assert cluster.roles[primary].get(dataset.dataset_id) == PRIMARY
        info = result(cluster.backends[primary].get(dataset.dataset_id))
        assert info.maximum_size == dataset.maximum_size
        files = cluster.backends[primary].read_files(dataset.dataset_id)
        assert files in ({}, {"id": dataset.dataset_id.encode()})


def record_sends(mover: DatasetMover, events: list[object]) -> None:
    """Have ``mover`` note each stream it sends in ``events``, as ``("send", final)``."""
    real_send = mover.send

    def send(
        dataset_id: str, snapshot: str, base: str | None, host: str, final: bool, **kwargs: int
    ) -> Deferred[int]:
        events.append(("send", final))
        return real_send(dataset_id, snapshot, base, host, final, **kwargs)

    mover.send = send


def test_handoff_report_and_read_only_overlap_before_final_increment() -> None:
    """
    The source makes the dataset read-only while its hand-off report is on
    its way, not after: the final increment waits for both.
    """
    cluster = Cluster()
    cluster.converge(config_with(A))
    events: list[object] = []
    reported: Deferred[None] = Deferred()
    deployer = cluster.deployers[A]
    mover = deployer.mover

    def handoff(dataset_id: str) -> Deferred[None]:
        events.append("handoff")
        return reported

    backend = cluster.backends[A]
    real_read_only = backend.set_read_only

    def set_read_only(dataset_id: str, read_only: bool) -> object:
        events.append(("read_only", read_only))
        return real_read_only(dataset_id, read_only)

    mover.on_handoff = handoff
    backend.set_read_only = set_read_only  # type: ignore[method-assign, assignment]
    record_sends(mover, events)
    local = result(deployer.discover_state(cluster.state))
    cluster.state = cluster.state.update_node(local.shared_state_changes())
    change = deployer.calculate_changes(config_with(B), cluster.state, local)
    running = run_state_change(change, deployer)
    assert events[-2:] == ["handoff", ("read_only", True)]
    assert not running.called
    reported.callback(None)
    result(running)
    assert events[-1] == ("send", True)


def test_new_primary_waits_for_configured_copy() -> None:
    """
    After a move the new primary waits for the old primary's copy even when
    nobody's state is known (the control service just restarted), rather than
    creating an empty dataset.
    """
    cluster = Cluster()
    moved = config_with(A).move_dataset(DS, B)
    assert plan(cluster, B, moved) == NoOp()


def test_handoff_reported_before_final_increment() -> None:
    """The source announces the hand-off before it sends the final increment."""
    cluster = Cluster()
    cluster.converge(config_with(A))
    events: list[object] = []
    mover = cluster.deployers[A].mover
    mover.on_handoff = lambda dataset_id: events.append(("handoff", cluster.roles[A].get(dataset_id)))
    record_sends(mover, events)
    cluster.converge(config_with(B))
    assert events[-2:] == [("handoff", HANDOFF), ("send", True)]


class CountedListings(MemoryVolumeBackend):
    """An in-memory backend counting how its snapshots are listed."""

    def __init__(self) -> None:
        super().__init__()
        self.at_once = 0
        self.one_by_one = 0

    def list_datasets_with_snapshots(
        self,
    ) -> Deferred[list[tuple[DatasetInfo, list[SnapshotInfo]]]]:
        """The datasets, each with its snapshots, counted."""
        self.at_once += 1
        return super().list_datasets_with_snapshots()

    def list_snapshots(self, dataset_id: str) -> Deferred[list[SnapshotInfo]]:
        """One dataset's snapshots, counted."""
        self.one_by_one += 1
        return super().list_snapshots(dataset_id)


@implementer_only(IVolumeBackend)
class OneByOneListings(CountedListings):
    """A backend that does not list its snapshots with its datasets."""


@pytest.mark.parametrize(
    ("make", "listings"), [(CountedListings, (1, 0)), (OneByOneListings, (0, 2))]
)
def test_discovery_lists_snapshots_with_the_datasets_where_the_backend_can(
    make: type[CountedListings], listings: tuple[int, int]
) -> None:
    """
    Where the backend lists its datasets with their snapshots at once,
    discovery asks it that once; otherwise it lists each dataset's
    snapshots.  Either way it finds the same.
    """
    backend = make()
    result(backend.create(DS))
    result(backend.snapshot(DS, "s1"))
    result(backend.create(str(uuid4())))
    roles = MemoryRoles()

    def never_sends(*args: Any, **kwargs: Any) -> Deferred[int]:
        raise AssertionError("discovery sends nothing")

    deployer = DatasetDeployer(
        A, HOSTS[A], backend, roles, DatasetMover(backend, roles, never_sends)
    )
    local = result(deployer.discover_state(DeploymentState()))
    assert (backend.at_once, backend.one_by_one) == listings
    assert [s.name for s in local.datasets[DS].snapshots] == ["s1"]
    assert len(local.datasets) == 2
