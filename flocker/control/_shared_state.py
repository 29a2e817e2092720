"""One picture of the cluster across several control instances, through etcd.

Each agent talks to one control instance, but every instance must answer
``GET /v1/state/...``, push agents the whole cluster's state and (the leader)
decide failovers from every node's silence.  `SharedClusterState` shares what
this instance's own agents tell it:

* each report, as ``<prefix>state/<node>/<agent kind>`` (the partial
  `NodeState` that agent reported, as JSON), written at once if it differs
  from the last one written, else again only after ``rewrite_after``
  seconds (agents report every second; most reports change nothing);
* when each of its agents was last heard from (reports and keep-alives), as
  one ``<prefix>heard/<instance>`` document, written at most every
  ``publish_interval`` seconds;

both bound to this instance's etcd lease, so they vanish when the instance
dies (its agents then report to another instance within seconds).  It
watches both prefixes and merges what other instances wrote into its own
`ClusterStateService` (`apply_shared_state`, `heard_at`), skipping its own
writes, so every instance's state is the same within a watch round trip.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
from eliot import Field, MessageType
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall, deferLater

from ._clusterstate import ClusterStateService
from ._etcd import EventType
from ._logging import INSTANCE, REASON
from ._serialization import SerializationError, node_state_from_json, node_state_to_json
from ._state import NodeState

__all__ = ["SharedClusterState"]

_KEY = Field.for_types("key", [str], "An etcd key.")

#: Sharing this instance's reports through etcd failed; it is retried.
SHARE_FAILED = MessageType(
    "flocker:control:shared_state:failed",
    [INSTANCE, REASON],
    "Writing this instance's agents' reports to etcd, or keeping its lease, "
    "failed; the next round writes them again.",
)

#: Another instance shared something this one could not read.
SHARED_UNREADABLE = MessageType(
    "flocker:control:shared_state:unreadable",
    [_KEY, REASON],
    "A report another control instance shared could not be read; it is ignored.",
)


#: The most reports written to etcd in one transaction.
REPORTS_PER_WRITE = 64


@attrs.define(eq=False)
class SharedClusterState(Service):
    """
    Share this instance's agents' reports through etcd and merge the others'.

    :ivar clock: the time and the scheduler.
    :ivar client: the `flocker.control._etcd.EtcdClient`.
    :ivar cluster_state: this instance's `ClusterStateService`.
    :ivar instance_id: this instance's identifier.
    :ivar prefix: the cluster's etcd key prefix.
    :ivar ttl: this instance's lease time to live, in seconds.
    :ivar publish_interval: seconds between writes of the heard document
        (and between rounds that retry failed writes and renew the lease).
    :ivar rewrite_after: seconds after which a report equal to the one last
        written is written again (so an instance that forgot the node, by
        expiry for instance, learns it again); sooner, it is not written.
    """

    clock: IReactorTime
    client: Any
    cluster_state: ClusterStateService
    instance_id: str
    prefix: str = "/flocker/"
    ttl: int = 10
    publish_interval: float = 0.5
    rewrite_after: float = 10.0
    _lease: int | None = attrs.field(default=None, init=False)
    _written: dict[tuple[str, str], float] = attrs.field(factory=dict, init=False)
    _renewed: float = attrs.field(default=0.0, init=False)
    _own: dict[tuple[str, str], bytes] = attrs.field(factory=dict, init=False)
    _encoded: dict[tuple[str, str], tuple[NodeState, bytes]] = attrs.field(
        factory=dict, init=False
    )
    _dirty: set[tuple[str, str]] = attrs.field(factory=set, init=False)
    _heard: dict[str, dict[str, float]] = attrs.field(factory=dict, init=False)
    _heard_dirty: bool = attrs.field(default=False, init=False)
    _stop_listening: Any = attrs.field(default=None, init=False)
    _watch: Any = attrs.field(default=None, init=False)
    _loop: LoopingCall | None = attrs.field(default=None, init=False)
    _round: Deferred[None] | None = attrs.field(default=None, init=False)
    _failing: tuple[float, str] | None = attrs.field(default=None, init=False)
    _holders: dict[tuple[str, str], str] = attrs.field(factory=dict, init=False)

    @property
    def lease(self) -> int | None:
        """The etcd lease of this instance (``None`` until granted)."""
        return self._lease

    def instance_of(self, node_uuid: str, agent_kind: str) -> str | None:
        """
        The instance the node's agent of ``agent_kind`` last reported to, as
        far as this instance knows (``None``: none that still runs).
        """
        return self._holders.get((node_uuid, agent_kind))

    def nodes_held_elsewhere(self, agent_kind: str) -> list[str]:
        """The nodes whose agent of ``agent_kind`` last reported to another instance."""
        return sorted(
            node
            for (node, kind), holder in self._holders.items()
            if kind == agent_kind and holder != self.instance_id
        )

    def stale_reason(self) -> str | None:
        """
        Why this instance's picture may be behind the other instances' (its
        last round with etcd failed), or ``None`` while etcd answers.
        """
        if self._failing is None:
            return None
        since, reason = self._failing
        return f"etcd has not answered this control instance since {since:.0f}: {reason}"

    @property
    def _state_prefix(self) -> str:
        return f"{self.prefix}state/"

    @property
    def _heard_prefix(self) -> str:
        return f"{self.prefix}heard/"

    def startService(self) -> None:  # noqa: N802
        """Listen to this instance's agents, catch up with the others, watch."""
        Service.startService(self)
        self._stop_listening = self.cluster_state.listen(self._reported, self._heard_now)
        self._loop = LoopingCall(self._tick)
        self._loop.clock = self.clock
        self._loop.start(self.publish_interval, now=True)
        Deferred.fromCoroutine(self._start_watching())

    def stopService(self) -> Deferred[None]:  # noqa: N802
        """Stop sharing; revoke the lease so the others forget this instance's part."""
        Service.stopService(self)
        if self._stop_listening is not None:
            self._stop_listening()
            self._stop_listening = None
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self._watch is not None:
            self._watch.stop()
            self._watch = None

        async def stop() -> None:
            if self._round is not None:
                try:
                    await self._round
                except Exception:
                    pass
            lease, self._lease = self._lease, None
            if lease is not None:
                try:
                    await self.client.revoke_lease(lease)
                except Exception as e:
                    SHARE_FAILED.log(instance=self.instance_id, reason=str(e) or repr(e))

        return Deferred.fromCoroutine(stop())

    # -- this instance's agents ------------------------------------------------

    def _reported(self, state: NodeState, agent_kind: str | None) -> None:
        kind = agent_kind or "unknown"
        key = (state.uuid, kind)
        self._holders[key] = self.instance_id
        encoded = self._encode(key, state)
        now = self.clock.seconds()
        if (
            self._own.get(key) == encoded
            and now - self._written.get(key, now) < self.rewrite_after
        ):
            return  # etcd has it (or it is still to be written)
        self._own[key] = encoded
        self._written[key] = now
        self._dirty.add(key)
        self._tick()

    def _encode(self, key: tuple[str, str], state: NodeState) -> bytes:
        """What to write for a report (not encoded again if the same object)."""
        known = self._encoded.get(key)
        if known is not None and known[0] is state:
            return known[1]
        document = {"instance": self.instance_id, "state": node_state_to_json(state)}
        encoded = json.dumps(document).encode("utf-8")
        self._encoded[key] = (state, encoded)
        return encoded

    def _heard_now(self, node_uuid: str, agent_kind: str, when: float) -> None:
        self._heard.setdefault(node_uuid, {})[agent_kind] = when
        self._heard_dirty = True

    def _tick(self) -> None:
        if self._round is not None or not self.running:
            return
        self._round = Deferred.fromCoroutine(self._publish())

        def done(result: object) -> None:
            self._round = None
            if self._dirty and self.running:
                self.clock.callLater(0, self._tick)

        self._round.addBoth(done)

    async def _publish(self) -> None:
        try:
            await self._keep_lease()
            while self._dirty:
                # Many reports in one transaction: after a restart a
                # thousand agents report at once.
                batch = sorted(self._dirty)[:REPORTS_PER_WRITE]
                self._dirty.difference_update(batch)
                try:
                    await self.client.put_many(
                        [
                            (f"{self._state_prefix}{node}/{kind}", self._own[(node, kind)])
                            for node, kind in batch
                        ],
                        lease=self._lease,
                    )
                except Exception:
                    self._dirty.update(batch)
                    raise
            if self._heard_dirty:
                self._heard_dirty = False
                document = {"instance": self.instance_id, "heard": self._heard}
                try:
                    await self.client.put(
                        f"{self._heard_prefix}{self.instance_id}",
                        json.dumps(document).encode("utf-8"),
                        lease=self._lease,
                    )
                except Exception:
                    self._heard_dirty = True
                    raise
        except Exception as e:
            reason = str(e) or repr(e)
            if self._failing is None:
                self._failing = (self.clock.seconds(), reason)
            SHARE_FAILED.log(instance=self.instance_id, reason=reason)
        else:
            self._failing = None

    async def _keep_lease(self) -> None:
        now = self.clock.seconds()
        if self._lease is not None and now - self._renewed < self.ttl / 3:
            return
        if self._lease is not None:
            remaining = await self.client.keep_alive(self._lease)
            if remaining and remaining > 0:
                self._renewed = now
                return
        # No lease yet, or it expired (etcd was out of reach too long): a
        # new one, and everything this instance shared is written again.
        self._lease = await self.client.grant_lease(self.ttl)
        self._renewed = now
        self._dirty.update(self._own)
        self._heard_dirty = True

    # -- the other instances ---------------------------------------------------

    async def _start_watching(self) -> None:
        """Merge what the other instances shared so far, then watch for more."""
        while self.running and self._watch is None:
            try:
                found = await self.client.get_prefix(self.prefix)
            except Exception as e:
                SHARE_FAILED.log(instance=self.instance_id, reason=str(e) or repr(e))
                await deferLater(self.clock, self.publish_interval * 2, lambda: None)
                continue
            if not self.running:
                return
            for entry in found.kvs:
                self._merge(entry.key, entry.value)
            self._watch = self.client.watch(
                self.prefix,
                self._event,
                prefix=True,
                start_revision=found.revision + 1,
                on_compacted=self._compacted,
            )

    def _compacted(self, revision: int) -> None:
        """Events were lost to compaction: read everything again."""
        Deferred.fromCoroutine(self._read_all())

    async def _read_all(self) -> None:
        try:
            found = await self.client.get_prefix(self.prefix)
        except Exception as e:
            SHARE_FAILED.log(instance=self.instance_id, reason=str(e) or repr(e))
            return
        for entry in found.kvs:
            self._merge(entry.key, entry.value)

    def _event(self, event: Any) -> None:
        if event.type is EventType.PUT:
            self._merge(event.kv.key, event.kv.value)
        elif event.kv.key.startswith(self._heard_prefix):
            # That instance is gone (its lease expired or was revoked): none
            # of the agents it held is reachable through it any more.
            gone = event.kv.key[len(self._heard_prefix) :]
            for key, holder in list(self._holders.items()):
                if holder == gone:
                    del self._holders[key]

    def _merge(self, key: str, value: bytes) -> None:
        if not (key.startswith(self._state_prefix) or key.startswith(self._heard_prefix)):
            return
        try:
            document = json.loads(value)
            if document.get("instance") == self.instance_id:
                return  # our own write, echoed by the watch
            if key.startswith(self._state_prefix):
                state = node_state_from_json(document["state"])
                # That agent now reports to another instance: what it last
                # told this one must not be written again over its news.
                node, _, kind = key[len(self._state_prefix) :].partition("/")
                own = (node, kind)
                self._own.pop(own, None)
                self._dirty.discard(own)
                self._holders[own] = document["instance"]
                self.cluster_state.apply_shared_state(state)
            else:
                for node, kinds in document["heard"].items():
                    for kind, when in kinds.items():
                        self.cluster_state.heard_at(node, kind, float(when))
        except (ValueError, KeyError, TypeError, AttributeError, SerializationError) as e:
            SHARED_UNREADABLE.log(key=key, reason=str(e) or repr(e))
