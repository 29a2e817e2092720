"""Moving a dataset to its new primary: bulk rounds, then the final increment.

`DatasetMover` keeps each move's progress (`MoveProgress`: the destination,
the snapshot it last confirmed there, the rounds sent, when a round was
last small) so that discovery can show a copy as *moving* and the next
pass can go on from where the last one ended.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import attr
from eliot import write_failure
from pyrsistent import PClass, field
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from flocker.volume import IEvictsCache, IVolumeBackend

from ._dataset_changes import PushDataset
from ._replicator import newest_common
from ._roles import HANDOFF, PRIMARY, REPLICA, IDatasetRoles
from ._snapshot_names import MOVE_SNAPSHOT_PREFIX, timed_snapshot_name

#: An incremental move round smaller than this is followed by the final one.
SMALL_DELTA = 8 * 1024 * 1024

#: At most this many bulk rounds per pass before the final increment.
MAXIMUM_ROUNDS = 5

#: A bulk round that took less than this many seconds counts as small
#: (unless it carried much, see `QUICK_ROUND_MOST`): what was written
#: meanwhile is at most that long's writes, which the final increment
#: carries about as fast as another round would (a round costs a few tenths of a second on zfs-fuse
#: however small), and the application is about to stop (its container
#: agent stops it once the destination has a copy): another round would
#: only hold the final increment up.
QUICK_ROUND = 1.0

#: A quick round counts as small only if it carried less than this many
#: `SMALL_DELTA`s (a first, full round excepted: its size is the dataset's,
#: not what was written meanwhile): a writer that fast would otherwise
#: leave as much again to the final increment.
QUICK_ROUND_MOST = 4

#: Seconds a pass waits, once the bulk rounds are done, for an application
#: its node reports *stopping* (draining before it stops: it is about to
#: release the dataset) to stop, looking every `STOP_POLL` seconds at the
#: cluster state the control service pushes meanwhile.  The final
#: increment then goes at once, without the discovery of a new pass.
STOP_WAIT = 1.0
STOP_POLL = 0.005

#: Once a bulk round was small, no further one goes for this many seconds
#: while the dataset stays in use: the application using it is about to
#: stop (the container agent stops it as soon as the destination has a
#: copy), and a bulk round still running then would delay the final
#: increment.  After this long, another round keeps the final one small.
BULK_PAUSE = 5.0



class MoveProgress(PClass):
    """
    How far the move of one dataset has come.

    :ivar destination: The node the dataset is moving to.
    :ivar confirmed: The newest snapshot the destination confirmed it
        stored (newer than what its reported state may say yet), or ``None``.
    :ivar rounds: Bulk rounds sent so far.
    :ivar settled_at: When (the mover's clock) a bulk round was last small,
        or ``None``.
    """

    destination = field(type=str, mandatory=True)
    confirmed = field(type=(str, type(None)), initial=None)
    rounds = field(type=int, initial=0)
    settled_at = field(type=(float, type(None)), initial=None)


#: ``send(dataset_id, snapshot, base, host, final, epoch=…)``.
Sender = Callable[..., Deferred[int]]


@attr.s(eq=False)
class DatasetMover:
    """
    Pushes a dataset to its new primary over the transfer protocol.

    :ivar backend: This node's backend.
    :ivar roles: This node's dataset roles.
    :ivar send: ``send(dataset_id, snapshot, base, host, final)`` pushes one
        stream to ``host`` and fires with the bytes sent; with ``final`` the
        receiver exposes the dataset once it has it.
    :ivar in_use: Whether something on this node still uses the dataset (a
        lease or a running application); the final increment waits for it.
    :ivar on_handoff: Called with the dataset id once this node stops
        exposing it, before the final increment (a Deferred it returns is
        waited for): the agent reports it at once, so the cluster state
        never shows the dataset mounted on two nodes.
    :ivar stopping: Whether an application using the dataset here is
        stopping now (it will release it within moments).
    :ivar clock: Waits for a stopping application (`STOP_WAIT`); ``None``:
        never wait.
    :ivar still_wanted: Whether the configuration held now still moves the
        dataset as the change says (asked after such a wait, which may have
        outlasted it).
    """

    backend: IVolumeBackend = attr.ib()
    roles: IDatasetRoles = attr.ib()
    send: Sender = attr.ib()
    in_use: Callable[[str], bool] = attr.ib(default=lambda dataset_id: False)
    on_handoff: Callable[[str], Any] = attr.ib(default=lambda dataset_id: None)
    small_delta: int = attr.ib(default=SMALL_DELTA)
    maximum_rounds: int = attr.ib(default=MAXIMUM_ROUNDS)
    bulk_pause: float = attr.ib(default=BULK_PAUSE)
    quick_round: float = attr.ib(default=QUICK_ROUND)
    stopping: Callable[[str], bool] = attr.ib(default=lambda dataset_id: False)
    clock: IReactorTime | None = attr.ib(default=None)
    still_wanted: Callable[[PushDataset], bool] = attr.ib(default=lambda change: True)
    now: Callable[[], float] = attr.ib(default=time.monotonic)

    #: dataset id → the progress of its move.
    _progress: dict[str, MoveProgress] = attr.ib(factory=dict, init=False)
    #: dataset id → the dropping of its cache under way (`_evict_soon`).
    _evicting: dict[str, Deferred[None]] = attr.ib(factory=dict, init=False)

    def forget(self, dataset_id: str) -> None:
        """Drop a move's progress (the copy will not be moved from here)."""
        self._progress.pop(dataset_id, None)

    def progress(self, dataset_id: str) -> MoveProgress | None:
        """The progress of a dataset's move, or ``None`` if none is under way."""
        return self._progress.get(dataset_id)

    async def _snapshot(self, dataset_id: str) -> str:
        name = timed_snapshot_name(MOVE_SNAPSHOT_PREFIX)
        await self.backend.snapshot(dataset_id, name)
        return name

    def _towards(self, dataset_id: str, destination: str) -> MoveProgress:
        """The progress towards ``destination`` (none yet if it was elsewhere)."""
        progress = self._progress.get(dataset_id)
        if progress is None or progress.destination != destination:
            return MoveProgress(destination=destination)
        return progress

    async def _stopped_soon(self, dataset_id: str) -> bool:
        """
        Whether the dataset is free after waiting (at most `STOP_WAIT`
        seconds) while an application using it here is stopping.
        """
        clock = self.clock
        assert clock is not None
        until = clock.seconds() + STOP_WAIT
        while self.in_use(dataset_id) and self.stopping(dataset_id) and clock.seconds() < until:
            await deferLater(clock, STOP_POLL, lambda: None)
        return not self.in_use(dataset_id)

    def _evict_soon(self, dataset_id: str) -> None:
        """
        Bulk rounds are about to go while an application uses the dataset:
        have the kernel drop what it caches of the dataset's files, where
        the backend can (``IEvictsCache``), while the application still
        runs, so that the hand-off's fence (an unmount on zfs-fuse, which
        drops that cache) is quick.  In the background, alongside the
        rounds (it is over long before the application stops, and it
        does not compete with the hand-off); a hand-off waits for one
        still under way.  Only time depends on it: a failure is logged.
        """
        if not IEvictsCache.providedBy(self.backend) or dataset_id in self._evicting:
            return
        evicting = self.backend.evict_cache(dataset_id)
        self._evicting[dataset_id] = evicting

        def done(result: object) -> None:
            if isinstance(result, Failure):
                write_failure(result)
            if self._evicting.get(dataset_id) is evicting:
                del self._evicting[dataset_id]

        evicting.addBoth(done)

    def _pausing(self, dataset_id: str, destination: str) -> bool:
        """Whether a small bulk round to ``destination`` went recently."""
        settled = self._towards(dataset_id, destination).settled_at
        return settled is not None and self.now() - settled < self.bulk_pause

    async def push(self, change: PushDataset) -> None:
        """
        Bulk rounds while the dataset stays in use, then the final increment.

        While the dataset is in use, each pass sends the changes since the
        last round (until a round is small, or quick) and ends; after a
        small round the passes send nothing for :data:`BULK_PAUSE`
        seconds, waiting for the application to stop (a pass that finds
        it stopping waits for it, up to :data:`STOP_WAIT`, having listed
        the snapshots meanwhile).  Once it is no longer in use and the
        destination already has a recent copy, the final increment goes at
        once, keeping the time the dataset is unavailable to the size of
        the last changes.
        """
        dataset_id = change.dataset_id
        local: list[str] | None = None
        if (
            self.roles.get(dataset_id) == PRIMARY
            and self.in_use(dataset_id)
            and self._pausing(dataset_id, change.destination)
        ):
            if self.clock is None or not self.stopping(dataset_id):
                return
            # Listed while it stops: only a user's snapshot may come or go
            # meanwhile, which cannot be the base (the destination does not
            # have it) or, destroyed, fails the send (the next pass retries).
            local = [s.name for s in await self.backend.list_snapshots(dataset_id)]
            if not await self._stopped_soon(dataset_id) or not self.still_wanted(change):
                return
        if local is None:
            local = [s.name for s in await self.backend.list_snapshots(dataset_id)]
        known = set(change.remote_snapshots)
        confirmed = self._towards(dataset_id, change.destination).confirmed
        if confirmed is not None:
            known.add(confirmed)
        base = newest_common(local, known)

        async def send(final: bool) -> int:
            snapshot = await self._snapshot(dataset_id)
            try:
                sent = await self.send(
                    dataset_id, snapshot, base, change.host, final, epoch=change.epoch
                )
            except Exception:
                # What the destination confirmed may be gone (the move was
                # called off and its copy destroyed): from now on only what
                # it reports counts.
                progress = self._towards(dataset_id, change.destination)
                self._progress[dataset_id] = progress.set(confirmed=None)
                raise
            progress = self._towards(dataset_id, change.destination)
            self._progress[dataset_id] = progress.set(
                confirmed=snapshot, rounds=progress.rounds + (0 if final else 1)
            )
            return sent

        if self.roles.get(dataset_id) == PRIMARY:
            if base is None or self.in_use(dataset_id):
                if self.in_use(dataset_id):
                    self._evict_soon(dataset_id)
                for _ in range(self.maximum_rounds):
                    began, full = self.now(), base is None
                    sent = await send(False)
                    base = self._progress[dataset_id].confirmed
                    quick = self.now() - began < self.quick_round
                    if sent < self.small_delta or (
                        quick and (full or sent < QUICK_ROUND_MOST * self.small_delta)
                    ):
                        self._progress[dataset_id] = self._progress[dataset_id].set(
                            settled_at=float(self.now())
                        )
                        break
                if self.in_use(dataset_id):
                    return
            # From here on the dataset is exposed nowhere, and writable
            # nowhere, until the destination has the final increment.
            self.roles.set(dataset_id, HANDOFF)
            # The report goes out while the dataset is made read-only: both
            # are done before the final increment, one does not wait for
            # the other.
            handoff = maybeDeferred(self.on_handoff, dataset_id)
            try:
                evicting = self._evicting.get(dataset_id)
                if evicting is not None:
                    await evicting  # its open files would make the fence fail
                await self.backend.set_read_only(dataset_id, True)
            finally:
                await handoff
        await send(True)
        self._progress.pop(dataset_id, None)
        if change.keep:
            # A move to a standing replica: this copy becomes one of the
            # new primary's replicas, current up to the final increment.
            self.roles.set(dataset_id, REPLICA)
            return
        # The destination has it and exposes it: this copy is a leftover
        # replica from now on, whether or not it can be destroyed now (ZFS
        # refuses while clones of its snapshots exist).  It is never pushed
        # again, so a failed destroy cannot send a stale final increment
        # over the data the new primary's application is writing.
        self.roles.forget(dataset_id)
        await self.backend.destroy(dataset_id)


__all__ = [
    "BULK_PAUSE",
    "MAXIMUM_ROUNDS",
    "QUICK_ROUND",
    "QUICK_ROUND_MOST",
    "STOP_POLL",
    "STOP_WAIT",
    "SMALL_DELTA",
    "DatasetMover",
    "MoveProgress",
    "Sender",
]
