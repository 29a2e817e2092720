"""One leader among the control instances (`flocker.control._leader`)."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import pytest_twisted
from twisted.application.service import MultiService, Service
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock, deferLater

from ...testtools.etcd import EtcdCluster
from ...testtools.waiting import eventually
from .._etcd import EtcdClient
from .._leader import AlwaysLeader, Leadership


@attrs.define(eq=False)
class Duty(Service):
    """A singleton duty that records whether it runs."""

    starts: int = 0
    stops: int = 0

    def startService(self) -> None:  # noqa: N802
        """Count a start."""
        Service.startService(self)
        self.starts += 1

    def stopService(self) -> None:  # noqa: N802
        """Count a stop."""
        Service.stopService(self)
        self.stops += 1


def _duties() -> tuple[MultiService, Duty]:
    duties = MultiService()
    duty = Duty()
    duty.setServiceParent(duties)
    return duties, duty


class HangingKeepAlive:
    """An etcd client whose leases are granted but never renewed in time."""

    def grant_lease(self, ttl: int) -> Deferred[int]:
        """A lease, at once."""
        return succeed(7)

    def create(self, key: str, value: bytes, lease: int | None = None) -> Deferred[bool]:
        """The key was free."""
        return succeed(True)

    def keep_alive(self, lease_id: int) -> Deferred[int]:
        """etcd does not answer."""
        return Deferred()

    def revoke_lease(self, lease_id: int) -> Deferred[None]:
        """Revoked."""
        return succeed(None)


def test_leader_that_cannot_renew_stops_before_its_lease_can_expire() -> None:
    """
    A leader whose renewals go unanswered stops its duties at the last
    renewal sent plus the lease's time to live minus the safety margin:
    before etcd could let any other instance take the key.
    """
    clock = Clock()
    duties, duty = _duties()
    leadership = Leadership(clock, HangingKeepAlive(), "a", duties, ttl=4, safety=0.5)
    leadership.startService()
    assert leadership.is_leader and duty.running
    clock.advance(3.4)
    assert duty.running
    clock.advance(0.1)
    assert not leadership.is_leader
    assert not duty.running


def test_always_leader_runs_its_duties_while_running() -> None:
    """With the file store the one control service always runs the duties."""
    duties, duty = _duties()
    leadership = AlwaysLeader(duties)
    leadership.startService()
    assert leadership.is_leader and duty.running
    leadership.stopService()
    assert not leadership.is_leader and not duty.running


@pytest.fixture
def etcd_client(etcd_cluster: EtcdCluster) -> Any:
    """A client of a fresh one-member real etcd."""
    client = EtcdClient(reactor, etcd_cluster.endpoints, timeout=1.0)
    yield client
    pytest_twisted.blockon(client.close())


def _leadership(client: Any, name: str) -> tuple[Leadership, Duty]:
    duties, duty = _duties()
    leadership = Leadership(reactor, client, name, duties, ttl=2, interval=0.2)
    return leadership, duty


@pytest.mark.functional
@pytest_twisted.ensureDeferred
async def test_exactly_one_instance_leads(etcd_client: EtcdClient) -> None:
    """Of two instances on one etcd, one runs the duties and the other does not."""
    a, duty_a = _leadership(etcd_client, "a")
    b, duty_b = _leadership(etcd_client, "b")
    a.startService()
    b.startService()
    try:
        await eventually(lambda: a.is_leader or b.is_leader, what="a leader")
        # Let both go through a few more rounds before looking again.
        await deferLater(reactor, 0.6, lambda: None)
        assert [a.is_leader, b.is_leader].count(True) == 1
        assert [duty_a.running, duty_b.running].count(True) == 1
        leader_key = await etcd_client.get("/flocker/leader")
        assert leader_key is not None
        assert leader_key.value == (b"a" if a.is_leader else b"b")
    finally:
        await a.stopService()
        await b.stopService()


@pytest.mark.functional
@pytest_twisted.ensureDeferred
async def test_stopping_leader_hands_over(etcd_client: EtcdClient) -> None:
    """A leader that stops gives the key up; the other instance takes over."""
    a, duty_a = _leadership(etcd_client, "a")
    a.startService()
    await eventually(lambda: a.is_leader, what="a to lead")
    b, duty_b = _leadership(etcd_client, "b")
    b.startService()
    try:
        await a.stopService()
        assert not duty_a.running
        await eventually(lambda: b.is_leader and duty_b.running, what="b to lead")
    finally:
        await b.stopService()


@pytest.mark.functional
@pytest_twisted.ensureDeferred
async def test_leader_cut_off_from_etcd_stops_and_leads_again_later(
    etcd_cluster: EtcdCluster, etcd_client: EtcdClient
) -> None:
    """
    When etcd goes away the leader stops its duties by itself; once etcd
    is back, an instance leads again.
    """
    a, duty = _leadership(etcd_client, "a")
    a.startService()
    try:
        await eventually(lambda: a.is_leader, what="a to lead")
        etcd_cluster.kill_member(0)
        await eventually(lambda: not duty.running, what="the duties to stop")
        assert not a.is_leader
        etcd_cluster.start_member(0)
        await eventually(lambda: a.is_leader and duty.running, what="a to lead again")
    finally:
        await a.stopService()
