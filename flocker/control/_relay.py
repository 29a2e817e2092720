"""Asking a node's agent through whichever control instance it is connected to.

Some REST requests need a dataset agent itself, not the configuration:
snapshot operations run on the dataset's primary, and ``GET
/v1/state/transfers`` asks every node what it receives.  With several
control instances, the agent may be connected to another instance than
the one the client asked.  `AgentRelay` stands where the REST layer
expects the `ControlAMPService`: an agent connected here is asked directly;
otherwise the request goes through etcd to the instance the agent last
reported to (`SharedClusterState.instance_of`):

* the asking instance writes ``<prefix>relay/<target>/requests/<id>`` (a
  JSON request, bound to its own lease);
* the target, watching its requests, asks its agent and writes the answer
  to ``<prefix>relay/<asker>/responses/<id>`` (bound to its lease) and
  deletes the request;
* the asker, watching its responses, passes the answer on and deletes it.

Every relayed request is an eliot action, ``flocker:control:relay:ask`` on
the asking side and ``flocker:control:relay:answer`` on the answering one.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import uuid4

import attrs
from eliot import start_action, write_traceback
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, fail
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from ._etcd import EtcdClient, EtcdWatch, EventType, WatchEvent
from ._protocol import AgentUnavailable
from ._shared_state import SharedClusterState
from ._transfers import TRANSFERS_BOUND, GatheredTransfers, gather_transfers

__all__ = ["AgentRelay"]


class RelayedFailure(Exception):
    """The instance holding the agent could not do what was asked (its reason)."""


@attrs.define(eq=False)
class AgentRelay(Service):
    """
    The agents of this instance, and of the other instances through etcd.

    :ivar clock: the time and the scheduler.
    :ivar client: the `flocker.control._etcd.EtcdClient`.
    :ivar instance_id: this instance's identifier.
    :ivar agents: this instance's `ControlAMPService`.
    :ivar sharing: this instance's `SharedClusterState` (who holds which agent,
        this instance's lease).
    :ivar prefix: the cluster's etcd key prefix.
    """

    clock: IReactorTime
    client: EtcdClient
    instance_id: str
    agents: Any
    sharing: SharedClusterState
    prefix: str = "/flocker/"
    _pending: dict[str, Deferred[Any]] = attrs.field(factory=dict, init=False)
    _watches: list[EtcdWatch] = attrs.field(factory=list, init=False)

    def _box(self, instance: str, kind: str) -> str:
        return f"{self.prefix}relay/{instance}/{kind}/"

    @property
    def connections(self) -> Any:
        """The agent connections to this instance."""
        return self.agents.connections

    def startService(self) -> None:  # noqa: N802
        """Watch this instance's requests and responses."""
        Service.startService(self)
        self._watches = [
            self.client.watch(self._box(self.instance_id, "requests"), self._request, prefix=True),
            self.client.watch(
                self._box(self.instance_id, "responses"), self._response, prefix=True
            ),
        ]

    def stopService(self) -> None:  # noqa: N802
        """Stop watching; requests still waiting fail."""
        Service.stopService(self)
        for watch in self._watches:
            watch.stop()
        self._watches = []
        pending, self._pending = self._pending, {}
        for waiting in pending.values():
            waiting.errback(RelayedFailure("the control instance is stopping"))

    # -- what the REST layer asks ------------------------------------------------

    def snapshot_operation(
        self, node_uuid: str, operation: str, dataset_id: str, name: str = ""
    ) -> Deferred[dict[str, Any]]:
        """
        `ControlAMPService.snapshot_operation`, on whichever instance
        ``node_uuid``'s dataset agent is connected to.
        """
        if self._local(node_uuid):
            return self.agents.snapshot_operation(node_uuid, operation, dataset_id, name)  # type: ignore[no-any-return]
        holder = self.sharing.instance_of(node_uuid, "dataset")
        if holder is None or holder == self.instance_id:
            return fail(AgentUnavailable(node_uuid))
        return self._ask(
            holder,
            {
                "kind": "snapshot",
                "node_uuid": node_uuid,
                "operation": operation,
                "dataset_id": dataset_id,
                "name": name,
            },
        )

    def remote_transfers(self, bound: float = TRANSFERS_BOUND) -> Deferred[GatheredTransfers]:
        """
        What the dataset agents connected to the other instances receive:
        each instance holding one of them is asked for its own agents', and
        the nodes whose instance did not answer within ``bound`` count as
        unanswered.
        """
        holders: dict[str, list[str]] = {}
        for node_uuid in self.sharing.nodes_held_elsewhere("dataset"):
            holder = self.sharing.instance_of(node_uuid, "dataset")
            if self._local(node_uuid) or holder is None:
                continue  # (a node held elsewhere always has its holder)
            holders.setdefault(holder, []).append(node_uuid)
        asked = sorted(holders)
        answers = DeferredList(
            [
                self._ask(holder, {"kind": "transfers", "bound": bound}).addTimeout(
                    bound + 1.0, self.clock
                )
                for holder in asked
            ],
            consumeErrors=True,
        )

        def gathered(results: list[tuple[bool, Any]]) -> GatheredTransfers:
            transfers: list[Any] = []
            unanswered: list[str] = []
            for holder, (ok, value) in zip(asked, results, strict=True):
                if ok:
                    transfers.extend(value["transfers"])
                    unanswered.extend(value["unanswered"])
                else:
                    unanswered.extend(holders[holder])
            return GatheredTransfers(transfers=transfers, unanswered=sorted(unanswered))

        return answers.addCallback(gathered)

    def _local(self, node_uuid: str) -> bool:
        return any(
            c.node_uuid == node_uuid and c.agent_kind == "dataset"
            for c in self.agents.connections
        )

    # -- the asking side -----------------------------------------------------------

    def _ask(self, holder: str, request: dict[str, Any]) -> Deferred[Any]:
        request_id = str(uuid4())
        action = start_action(
            action_type="flocker:control:relay:ask",
            to=holder,
            request_id=request_id,
            kind=request["kind"],
        )

        def forget(cancelled: Deferred[Any]) -> None:
            self._pending.pop(request_id, None)

        waiting: Deferred[Any] = Deferred(forget)
        self._pending[request_id] = waiting
        with action.context():
            written = self.client.put(
                self._box(holder, "requests") + request_id,
                json.dumps({**request, "from": self.instance_id}).encode("utf-8"),
                lease=self.sharing.lease,
            )

        def not_written(failure: Any) -> None:
            pending = self._pending.pop(request_id, None)
            if pending is not None:
                pending.errback(failure)

        written.addErrback(not_written)

        def finished(result: Any) -> Any:
            action.finish(result.value if isinstance(result, Failure) else None)
            return result

        return waiting.addBoth(finished)

    def _response(self, event: WatchEvent) -> None:
        if event.type is not EventType.PUT:
            return
        request_id = event.kv.key[len(self._box(self.instance_id, "responses")) :]
        self.client.delete(event.kv.key).addErrback(lambda f: None)
        waiting = self._pending.pop(request_id, None)
        if waiting is None:
            return
        try:
            answer = json.loads(event.kv.value)
        except ValueError as e:
            waiting.errback(RelayedFailure(f"unreadable answer: {e}"))
            return
        if "unavailable" in answer:
            waiting.errback(AgentUnavailable(answer["unavailable"]))
        elif "failure" in answer:
            waiting.errback(RelayedFailure(answer["failure"]))
        else:
            waiting.callback(answer["result"])

    # -- the answering side --------------------------------------------------------

    def _request(self, event: WatchEvent) -> None:
        if event.type is not EventType.PUT:
            return
        Deferred.fromCoroutine(self._answer(event.kv.key, event.kv.value))

    async def _answer(self, key: str, value: bytes) -> None:
        request_id = key[len(self._box(self.instance_id, "requests")) :]
        try:
            request = json.loads(value)
            asker = request["from"]
        except (ValueError, KeyError, TypeError):
            await self.client.delete(key)
            return
        with start_action(
            action_type="flocker:control:relay:answer",
            asker=asker,
            request_id=request_id,
            kind=request.get("kind"),
        ):
            answer: dict[str, Any]
            try:
                if request["kind"] == "snapshot":
                    result = await self.agents.snapshot_operation(
                        request["node_uuid"],
                        request["operation"],
                        request["dataset_id"],
                        request.get("name", ""),
                    )
                    answer = {"result": result}
                elif request["kind"] == "transfers":
                    found = await gather_transfers(
                        self.agents, self.clock, float(request.get("bound", TRANSFERS_BOUND))
                    )
                    answer = {
                        "result": {
                            "transfers": found.transfers,
                            "unanswered": list(found.unanswered),
                        }
                    }
                else:
                    answer = {"failure": f"unknown request {request['kind']!r}"}
            except AgentUnavailable as e:
                answer = {"unavailable": str(e)}
            except Exception as e:
                answer = {"failure": str(e) or repr(e)}
            try:
                await self.client.put(
                    self._box(asker, "responses") + request_id,
                    json.dumps(answer).encode("utf-8"),
                    lease=self.sharing.lease,
                )
                await self.client.delete(key)
            except Exception:
                write_traceback()
