"""
Acceptance tests: a highly available control plane on a real local cluster
(``admin/lab up --control 3 --store etcd``): three real etcd members, three
real ``flocker-control`` processes sharing them, two nodes with real agents
on real zfs-fuse pools, real TLS everywhere.

The instances are killed with SIGKILL and etcd members with them, while
clients write through every instance; what is checked is what a user sees:
every acknowledged write is in the configuration every instance serves, the
agents keep converging, the leader's duties go on somewhere, and a store
that lost its quorum answers 503 and loses nothing.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from flocker.testtools import lab
from flocker.testtools.waiting import wait_for

pytestmark = pytest.mark.acceptance

MIB = 1024 * 1024
FENCE_AFTER = 4.0
FAILOVER_AFTER = 10.0


@pytest.fixture(scope="module")
def ha_cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """
    Three etcd members, three control instances, two nodes (one per
    module), with short fencing and failover timings.
    """
    from flocker.testtools.pytest_plugin import TEST_NETWORK, require_zfs

    require_zfs()
    directory = str(tmp_path_factory.mktemp("ha-lab"))
    try:
        cluster = lab.up(
            directory,
            nodes=2,
            network=TEST_NETWORK,
            control_instances=3,
            store="etcd",
            fence_after=FENCE_AFTER,
            failover_after=FAILOVER_AFTER,
        )
        yield cluster
    finally:
        lab.down(directory)


def _context(cluster: dict[str, Any]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=cluster["certificates"]["ca"])
    context.load_cert_chain(
        cluster["certificates"]["user_cert"], cluster["certificates"]["user_key"]
    )
    return context


def call(
    cluster: dict[str, Any],
    url: str,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> tuple[int, dict[str, str], Any]:
    """One request to one instance: (status, headers, decoded body); errors too."""
    request = urllib.request.Request(
        url + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(
            request, context=_context(cluster), timeout=timeout
        ) as reply:
            return reply.status, dict(reply.headers), json.loads(reply.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read() or b"null")


def _instance_running(cluster: dict[str, Any], number: int) -> None:
    """Start control instance ``number`` again if a test left it stopped."""
    lab.start_control_instance(cluster["dir"], number)
    url = lab.api_urls(cluster)[number - 1]

    def answers() -> bool:
        try:
            return call(cluster, url, "GET", "/v1/version")[0] == 200
        except OSError:
            return False

    wait_for(answers, 60, f"control instance {number} to answer")


def _configured(cluster: dict[str, Any], url: str) -> dict[str, Any]:
    status, _, body = call(cluster, url, "GET", "/v1/configuration/datasets")
    assert status == 200, body
    return {d["dataset_id"]: d for d in body}


def test_move_requested_through_one_instance_while_agents_use_another(
    ha_cluster: dict[str, Any],
) -> None:
    """
    A dataset created through the second instance, snapshotted through one
    its node's dataset agent is not connected to and moved through the third
    gets where it was sent, and every instance's state says so.
    """
    urls = lab.api_urls(ha_cluster)
    first, second = (node["uuid"] for node in ha_cluster["nodes"])
    status, _, created = call(
        ha_cluster,
        urls[1],
        "POST",
        "/v1/configuration/datasets",
        {"primary": first, "maximum_size": 64 * MIB},
    )
    assert status == 201, created
    dataset_id = created["dataset_id"]

    def held_by(node: str) -> bool:
        for url in urls:
            _, _, state = call(ha_cluster, url, "GET", "/v1/state/datasets")
            if not any(
                d["dataset_id"] == dataset_id and d.get("primary") == node for d in state
            ):
                return False
        return True

    wait_for(lambda: held_by(first), 120, "the dataset on the first node")
    # Requests that need the node's agent itself reach it through the
    # instance it is connected to, whichever instance they are sent to.
    holder = lab.agent_instance(ha_cluster["dir"], first)
    assert holder is not None
    other = 1 + holder % 3  # an instance the first node's dataset agent does not use
    status, _, snapshot = call(
        ha_cluster,
        urls[other - 1],
        "POST",
        f"/v1/datasets/{dataset_id}/snapshots",
        {"name": "through-another-instance"},
    )
    assert status == 201, snapshot
    status, _, listed = call(ha_cluster, urls[1], "GET", f"/v1/datasets/{dataset_id}/snapshots")
    assert status == 200, listed
    assert "through-another-instance" in [s["name"] for s in listed]
    asking_log = Path(lab.controls(ha_cluster)[other - 1]["log_dir"], "flocker-control.log")
    assert '"flocker:control:relay:ask"' in asking_log.read_text()
    status, headers, _ = call(ha_cluster, urls[2], "GET", "/v1/state/transfers")
    assert status == 200
    assert "x-unanswered-nodes" not in {k.lower() for k in headers}
    status, _, moved = call(
        ha_cluster,
        urls[2],
        "POST",
        f"/v1/configuration/datasets/{dataset_id}",
        {"primary": second},
    )
    assert status == 200, moved
    wait_for(lambda: held_by(second), 120, "the dataset moved to the second node")


def test_same_tag_through_two_instances_only_one_write_wins(
    ha_cluster: dict[str, Any],
) -> None:
    """
    Two writes carrying the same X-If-Configuration-Matches tag, sent at
    once through two instances, never both succeed: one gets 412.  (A round
    where a background change, such as the leader's clean-up, came first
    and refused both is tried again.)
    """
    urls = lab.api_urls(ha_cluster)
    node = ha_cluster["nodes"][0]["uuid"]
    for attempt in range(10):
        _, headers, _ = call(ha_cluster, urls[0], "GET", "/v1/configuration/datasets")
        tag = {k.lower(): v for k, v in headers.items()}["x-configuration-tag"]
        statuses: list[int] = []
        ready = threading.Barrier(2)

        def write(
            url: str,
            n: int,
            tag: str = tag,
            ready: Any = ready,
            statuses: list[int] = statuses,
            attempt: int = attempt,
        ) -> None:
            ready.wait()
            status, _, _ = call(
                ha_cluster,
                url,
                "POST",
                "/v1/configuration/datasets",
                {"primary": node, "metadata": {"name": f"tagged-{attempt}-{n}"}},
                headers={"X-If-Configuration-Matches": tag},
            )
            statuses.append(status)

        writers = [
            threading.Thread(target=write, args=(url, n)) for n, url in enumerate(urls[:2])
        ]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join(60)
        assert set(statuses) <= {201, 412} and statuses.count(201) <= 1, statuses
        if statuses.count(201) == 1:
            return
    raise AssertionError("every round was refused: the configuration never stood still")


def test_etcd_members_lost_and_back(ha_cluster: dict[str, Any]) -> None:
    """
    With one etcd member killed everything keeps working; with two, writes
    answer 503 with a description while reads still answer; once they are
    back, writes succeed again and every instance serves one configuration.
    """
    urls = lab.api_urls(ha_cluster)
    node = ha_cluster["nodes"][0]["uuid"]
    members = ha_cluster["etcd"]["members"]
    lab.stop_etcd_member(ha_cluster["dir"], 3)
    try:
        status, _, body = call(
            ha_cluster,
            urls[0],
            "POST",
            "/v1/configuration/datasets",
            {"primary": node, "metadata": {"name": "one-member-down"}},
        )
        assert status == 201, body
        lab.stop_etcd_member(ha_cluster["dir"], 2)
        before = _configured(ha_cluster, urls[0])
        started = time.monotonic()
        status, _, body = call(
            ha_cluster,
            urls[0],
            "POST",
            "/v1/configuration/datasets",
            {"primary": node, "metadata": {"name": "no-quorum"}},
            timeout=120,
        )
        assert status == 503, body
        assert "configuration store cannot be reached" in body["description"]
        assert time.monotonic() - started < 120  # a hang guard, not a timing goal

        def marked_stale() -> bool:
            status, headers, _ = call(
                ha_cluster, urls[1], "GET", "/v1/configuration/datasets"
            )
            assert status == 200
            return "x-configuration-stale" in {k.lower() for k in headers}

        wait_for(marked_stale, 60, "reads to be marked as possibly stale")
        assert _configured(ha_cluster, urls[0]) == before
    finally:
        lab.start_etcd_member(ha_cluster["dir"], 2)
        lab.start_etcd_member(ha_cluster["dir"], 3)
    assert len(members) == 3

    def writable() -> bool:
        status, _, _ = call(
            ha_cluster,
            urls[2],
            "POST",
            "/v1/configuration/datasets",
            {"primary": node, "metadata": {"name": "quorum-back"}},
        )
        return status == 201

    wait_for(writable, 120, "writes to succeed with the members back")
    wait_for(
        lambda: len({json.dumps(_configured(ha_cluster, url), sort_keys=True) for url in urls})
        == 1,
        60,
        "every instance to serve the same configuration",
    )
    names = [d["metadata"].get("name") for d in _configured(ha_cluster, urls[0]).values()]
    assert "no-quorum" not in names
    assert "one-member-down" in names


class Writer(threading.Thread):
    """
    Updates one dataset's metadata with a counter, again and again, through
    one instance (the next one when it cannot be reached at all), keeping
    the last counter acknowledged.
    """

    def __init__(self, cluster: dict[str, Any], start: int, dataset_id: str) -> None:
        super().__init__(daemon=True)
        self.cluster, self.dataset_id = cluster, dataset_id
        self.urls = lab.api_urls(cluster)
        self.index = start
        self.acknowledged = 0
        self.refused: list[int] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        """Write until stopped."""
        counter = 0
        while not self.stopping.is_set():
            counter += 1
            try:
                status, _, _ = call(
                    self.cluster,
                    self.urls[self.index % len(self.urls)],
                    "POST",
                    f"/v1/configuration/datasets/{self.dataset_id}",
                    {"metadata": {"counter": str(counter)}},
                    timeout=10,
                )
            except OSError:
                self.index += 1  # that instance is gone: the next one
                continue
            if status == 200:
                self.acknowledged = counter
            else:
                self.refused.append(status)
            time.sleep(0.05)


def test_writes_survive_killing_the_leader(ha_cluster: dict[str, Any]) -> None:
    """
    Writers on every instance while the leader instance is SIGKILLed: every
    acknowledged write is in the final configuration of every instance, the
    agents keep converging, and the leader's duties go on elsewhere (a
    deleted dataset is cleaned out of the configuration).
    """
    urls = lab.api_urls(ha_cluster)
    node = ha_cluster["nodes"][1]["uuid"]
    datasets = []
    for index in range(3):
        status, _, body = call(
            ha_cluster,
            urls[index],
            "POST",
            "/v1/configuration/datasets",
            {"primary": node, "maximum_size": 64 * MIB, "metadata": {"counter": "0"}},
        )
        assert status == 201, body
        datasets.append(body["dataset_id"])
    writers = [Writer(ha_cluster, index, datasets[index]) for index in range(3)]
    for writer in writers:
        writer.start()
    leader = lab.leader_instance(ha_cluster["dir"])
    assert leader is not None, "no control instance leads"
    try:
        # 60 s of writes in all, the leader killed after the first 20.
        time.sleep(20)
        lab.stop_control(ha_cluster["dir"], leader, kill=True)
        time.sleep(40)
    finally:
        for writer in writers:
            writer.stopping.set()
        for writer in writers:
            writer.join(30)
    try:
        alive = [url for number, url in enumerate(urls, 1) if number != leader]
        for url in alive:
            configured = _configured(ha_cluster, url)
            for writer in writers:
                counter = int(configured[writer.dataset_id]["metadata"]["counter"])
                # The last acknowledged write, or one written whose answer was lost.
                assert counter >= writer.acknowledged > 0
        assert all(status in (409, 412, 503) for w in writers for status in w.refused)

        def converged() -> bool:
            _, _, state = call(ha_cluster, alive[0], "GET", "/v1/state/datasets")
            held = {d["dataset_id"] for d in state if d.get("primary") == node}
            return set(datasets) <= held

        wait_for(converged, 120, "the datasets on their node")
        new_leader = wait_for(
            lambda: lab.leader_instance(ha_cluster["dir"]), 60, "a new leader"
        )
        assert new_leader != leader
        status, _, _ = call(
            ha_cluster, alive[0], "DELETE", f"/v1/configuration/datasets/{datasets[0]}"
        )
        assert status == 200
        wait_for(
            lambda: datasets[0] not in _configured(ha_cluster, alive[1]),
            120,
            "the leader's clean-up to remove the deleted dataset",
        )
    finally:
        _instance_running(ha_cluster, leader)


def test_automatic_failover_when_the_leader_dies_with_the_primary(
    ha_cluster: dict[str, Any],
) -> None:
    """
    The primary's node loses power and the leader instance is SIGKILLed at
    the same moment: the instance that leads next sees, through the state
    the instances share, that the primary has been silent, and fails the
    dataset over to its standing replica.
    """
    urls = lab.api_urls(ha_cluster)
    second: str
    first, second = (node["uuid"] for node in ha_cluster["nodes"])
    status, _, created = call(
        ha_cluster,
        urls[0],
        "POST",
        "/v1/configuration/datasets",
        {
            "primary": first,
            "maximum_size": 64 * MIB,
            "replicas": [second],
            "replication": {"interval_seconds": 1, "failover": "automatic"},
        },
    )
    assert status == 201, created
    dataset_id = created["dataset_id"]

    def replicated() -> bool:
        _, _, state = call(ha_cluster, urls[1], "GET", "/v1/state/datasets")
        for entry in state:
            if entry["dataset_id"] == dataset_id and entry.get("primary") == first:
                return any(
                    r["node_uuid"] == second and r.get("replicated_at")
                    for r in entry.get("replicas", [])
                )
        return False

    wait_for(replicated, 180, "a replication round on the second node")
    leader = wait_for(lambda: lab.leader_instance(ha_cluster["dir"]), 60, "a leader")
    assert leader is not None  # wait_for returns a true value
    lab.stop_node(ha_cluster["dir"], 1, power_cut=True)
    lab.stop_control(ha_cluster["dir"], leader, kill=True)
    try:
        alive = [url for number, url in enumerate(urls, 1) if number != leader]

        def failed_over() -> bool:
            configured = _configured(ha_cluster, alive[0])
            primary: str = configured[dataset_id]["primary"]
            return primary == second

        wait_for(failed_over, 180, "the dataset to fail over to its replica")
        assert lab.leader_instance(ha_cluster["dir"]) not in (None, leader)

        def served_by_second() -> bool:
            _, _, state = call(ha_cluster, alive[1], "GET", "/v1/state/datasets")
            return any(
                e["dataset_id"] == dataset_id and e.get("primary") == second and e.get("path")
                for e in state
            )

        wait_for(served_by_second, 180, "the second node to expose the dataset")
    finally:
        lab.start_node(ha_cluster["dir"], 1)
        _instance_running(ha_cluster, leader)
