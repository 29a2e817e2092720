"""
The quick-start demonstration: a local Flocker cluster moving data.

Starts a two-node local cluster (``admin/lab``: a control service and two
nodes on 198.18.0.11 and 198.18.0.12, each with its own ZFS pool and
agents), creates a dataset on node 1 through the REST API, writes data into
it, moves it to node 2 through the REST API, shows that the data arrived
intact and how long the dataset was unavailable; gives it a standing
replica on node 1, shows how far behind the replica is and fails over to
it by hand (node 2's copy is kept as diverged); then runs a stateful
application (a counter keeping its count in its dataset) on node 1 and
moves it with its data to node 2 while a client keeps writing (with the
interruption node 2 logged), and updates its specification under that
load without a failed request; then clones it, with its data, into a staging
environment of two copies, each on its own port and its own copy-on-write
clone of the data.  It leaves the cluster running with instructions for
talking to it.  Running it again replaces the previous cluster.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from flocker.runtime.testimages import ensure_counter_image  # noqa: E402
from flocker.testtools import lab  # noqa: E402

LAB_DIR = os.path.join(ROOT, "_lab", "quickstart")
MIB = 1024 * 1024


def say(text: str) -> None:
    """Tell the user what just happened."""
    print(f"  {text}", flush=True)


def exposed_on(cluster: dict, dataset_id: str) -> dict | None:
    """The dataset's state entry if some node has it mounted, else None."""
    for entry in lab.api_request(cluster, "GET", "/v1/state/datasets"):
        if entry["dataset_id"] == dataset_id and entry.get("path"):
            return entry
    return None


def wait_on(cluster: dict, dataset_id: str, node: dict, timeout: float = 300) -> dict:
    """Wait until ``node`` has the dataset mounted; its state entry."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = exposed_on(cluster, dataset_id)
        if entry is not None and entry["primary"] == node["uuid"]:
            return entry
        time.sleep(0.02)
    raise SystemExit(f"quickstart: {dataset_id} did not reach {node['address']} in time")


def replicate_and_fail_over(
    cluster: dict, dataset_id: str, one: dict, two: dict, written: str
) -> None:
    """
    Keep a standing replica of the dataset on node 1, show its lag, then
    fail over to it by hand while node 2 still runs (``force``): node 1
    exposes the data as it was replicated, node 2's copy is kept as diverged.
    """
    path = f"/v1/configuration/datasets/{dataset_id}"
    lab.api_request(cluster, "POST", path, {"replicas": [one["uuid"]]})
    deadline = time.monotonic() + 120
    while True:
        entry = exposed_on(cluster, dataset_id) or {}
        lags = [r["lag_seconds"] for r in entry.get("replicas", []) if r["node_uuid"] == one["uuid"]]
        if lags and lags[0] is not None and lags[0] < 10:
            break
        if time.monotonic() > deadline:
            raise SystemExit("quickstart: the replica on node 1 did not catch up in time")
        time.sleep(0.2)
    say(f"node 1 keeps a standing replica of it, {lags[0]:.1f} s behind node 2 (continuous)")
    answer = lab.api_request(
        cluster,
        "POST",
        f"/v1/datasets/{dataset_id}/failover",
        {"node_uuid": one["uuid"], "force": True},
    )
    entry = wait_on(cluster, dataset_id, one)
    if digest(os.path.join(entry["path"], "data")) != written:
        raise SystemExit("quickstart: the promoted replica's data differs from what was written")
    say(
        f"failed over to node 1 by hand (epoch {answer['epoch']}, starting from a "
        f"snapshot {answer['data_loss_window_seconds']:.1f} s old): the data is intact"
    )
    deadline = time.monotonic() + 60
    while not (exposed_on(cluster, dataset_id) or {}).get("diverged"):
        if time.monotonic() > deadline:
            raise SystemExit("quickstart: node 2 did not report its copy as diverged")
        time.sleep(0.2)
    say("node 2 stopped exposing its copy as soon as it saw the new epoch; it keeps it as diverged")


def digest(path: str) -> str:
    """SHA-256 of a file."""
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(MIB), b""):
            sha.update(block)
    return sha.hexdigest()


def counter(address: str, port: int, text: str, timeout: float = 1) -> int | None:
    """One request to the counter application: its count, or None."""
    try:
        with urllib.request.urlopen(f"http://{address}:{port}/?{text}", timeout=timeout) as reply:
            return int(reply.read().decode().strip())
    except (OSError, ValueError):
        return None


def move_application(cluster: dict, one: dict, two: dict) -> tuple[int, int]:
    """
    Run a stateful application on node 1 and move it, data and all, to
    node 2; its count afterwards, and its port.
    """
    import docker

    client = docker.from_env()
    try:
        image = ensure_counter_image(client)
    finally:
        client.close()
    dataset_id = str(uuid.uuid4())
    lab.api_request(
        cluster, "POST", "/v1/configuration/datasets",
        {"primary": one["uuid"], "dataset_id": dataset_id, "metadata": {"name": "counter-data"}},
    )
    port = lab._free_port([one["address"], two["address"]])
    lab.api_request(
        cluster, "POST", "/v1/configuration/containers",
        {
            "node_uuid": one["uuid"], "name": "counter", "image": image,
            "ports": [{"internal": 80, "external": port}],
            "volumes": [{"dataset_id": dataset_id, "mountpoint": "/data"}],
        },
    )
    deadline = time.monotonic() + 180
    while counter(one["address"], port, "hello") is None:
        if time.monotonic() > deadline:
            raise SystemExit("quickstart: the counter application did not start")
        time.sleep(0.1)
    for n in range(20):
        count = counter(one["address"], port, f"write-{n}")
    say(f"the counter application runs on node 1 ({one['address']}:{port}), "
        f"keeping its count in its dataset: {count}")
    started = time.monotonic()
    lab.api_request(
        cluster, "POST", "/v1/configuration/containers/counter", {"node_uuid": two["uuid"]}
    )
    last_answer, longest_gap, failed = time.monotonic(), 0.0, 0
    while True:
        answer = counter(one["address"], port, "during-move", timeout=30)
        now = time.monotonic()
        if answer is None:
            failed += 1
        else:
            longest_gap = max(longest_gap, now - last_answer)
            last_answer = now
        running = [
            c for c in lab.api_request(cluster, "GET", "/v1/state/containers")
            if c["name"] == "counter" and c["node_uuid"] == two["uuid"]
        ]
        if running and answer is not None:
            break
        if now - started > 300:
            raise SystemExit("quickstart: the application did not move in time")
        time.sleep(0.02)
    say(
        f"moved the application to node 2 in {now - started:.2f} s while a client kept "
        f"writing through node 1's port: {failed} requests failed, the longest wait for "
        f"an answer was {longest_gap:.2f} s"
    )
    after = counter(two["address"], port, "after-move")
    if after is None or after <= count:
        raise SystemExit("quickstart: the moved application lost its count")
    say(f"on node 2 the count carries on from node 1's ({count} before the move): {after}")
    deadline = time.monotonic() + 30
    while (answered := lab.logged_answering(two, "counter")) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    if answered is not None and answered.get("unavailable_seconds") is not None:
        say(
            "node 2's container agent logged the application unavailable for "
            f"{answered['unavailable_seconds']:.2f} s (flocker:node:container:answering)"
        )
    return after, port


def update_application(cluster: dict, one: dict, port: int, count: int) -> int:
    """
    Update the counter's specification while a client keeps writing through
    node 1's port: no request fails, the routers hold them while it restarts.
    """
    started = time.monotonic()
    updated = lab.api_request(
        cluster, "POST", "/v1/configuration/containers/counter",
        {"environment": {"GREETING": "hello"}},
    )
    failed, longest = 0, 0.0
    while True:
        began = time.monotonic()
        answer = counter(one["address"], port, "during-update", timeout=30)
        longest = max(longest, time.monotonic() - began)
        if answer is None:
            failed += 1
        [configured] = [
            c for c in lab.api_request(cluster, "GET", "/v1/configuration/containers")
            if c["name"] == "counter"
        ]
        if answer is not None and "updating" not in configured:
            break
        if time.monotonic() - started > 300:
            raise SystemExit("quickstart: the update was not confirmed in time")
        time.sleep(0.02)
    if "update_failed" in configured:
        raise SystemExit(f"quickstart: the update was rolled back: {configured['update_failed']}")
    say(
        f"updated the application's environment (revision {updated['revision']}), confirmed "
        f"healthy after {time.monotonic() - started:.2f} s, while a client kept writing "
        f"through node 1's port: {failed} requests failed, the longest waited {longest:.2f} s "
        "(the routers hold new connections while it restarts)"
    )
    if failed:
        raise SystemExit("quickstart: requests failed during the update")
    if answer <= count:
        raise SystemExit("quickstart: the updated application lost its count")
    say(f"on the same data the count carries on: {answer}")
    return answer


def pool_used(node: dict) -> int:
    """Bytes the node's ZFS pool uses."""
    import subprocess

    out = subprocess.run(
        ["zfs", "get", "-Hp", "-o", "value", "used", node["pool"]],
        capture_output=True, text=True, check=True,
    ).stdout
    return int(out.strip())


def clone_environment(cluster: dict, two: dict, count: int) -> None:
    """Clone the counter into a staging environment of two copies."""
    before = pool_used(two)
    started = time.monotonic()
    environment = lab.api_request(
        cluster, "POST", "/v1/environments",
        {"name": "staging", "applications": ["counter"], "copies": ["alice", "bob"]},
    )
    ports = {
        c["name"]: c["applications"][0]["ports"][0]["external"] for c in environment["copies"]
    }
    counts = {}
    deadline = time.monotonic() + 180
    while len(counts) < len(ports):
        for copy, copy_port in ports.items():
            if copy not in counts:
                answer = counter(two["address"], copy_port, f"hello-{copy}")
                if answer is not None:
                    counts[copy] = answer
        if time.monotonic() > deadline:
            raise SystemExit("quickstart: the staging copies did not start")
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    time.sleep(1)
    extra = pool_used(two) - before
    say(
        f"cloned the counter with its data into a staging environment in {elapsed:.2f} s: "
        + ", ".join(f"copy {c} on port {p}" for c, p in ports.items())
        + f", {extra / MIB:.1f} MiB of extra pool space"
    )
    for _ in range(5):
        counter(two["address"], ports["alice"], "alice-only")
    alice = counter(two["address"], ports["alice"], "alice-only")
    bob = counter(two["address"], ports["bob"], "bob")
    say(
        f"each copy starts from the production count ({count}) and keeps its own: "
        f"alice {alice}, bob {bob}; reset one with POST /v1/environments/staging/copies/alice/reset"
    )


def main() -> None:
    """Run the demonstration."""
    print("Flocker quick start: a local cluster moves data and applications between nodes")
    if os.path.exists(os.path.join(LAB_DIR, lab.CLUSTER_FILE)):
        lab.down(LAB_DIR)
        say("stopped the cluster a previous run left")
    cluster = lab.up(LAB_DIR, nodes=2, backend="zfs")
    one, two = cluster["nodes"]
    say(f"control service: {cluster['control']['api_url']}")
    for number, node in enumerate(cluster["nodes"], 1):
        say(f"node {number}: {node['address']}  uuid {node['uuid']}  ZFS pool {node['pool']}")

    dataset_id = str(uuid.uuid4())
    lab.api_request(
        cluster,
        "POST",
        "/v1/configuration/datasets",
        {
            "primary": one["uuid"],
            "dataset_id": dataset_id,
            "maximum_size": 1024 * MIB,
            "metadata": {"name": "quickstart"},
        },
    )
    entry = wait_on(cluster, dataset_id, one)
    say(f"created dataset {dataset_id} on node 1, mounted at {entry['path']}")

    data = os.path.join(entry["path"], "data")
    with open(data, "wb") as handle:
        for _ in range(64):
            handle.write(os.urandom(MIB))
    before = digest(data)
    say(f"wrote 64 MiB of random data (sha256 {before[:16]}…)")

    started = time.monotonic()
    lab.api_request(
        cluster, "POST", f"/v1/configuration/datasets/{dataset_id}", {"primary": two["uuid"]}
    )
    gone_at = None
    while True:
        current = exposed_on(cluster, dataset_id)
        now = time.monotonic()
        if current is None and gone_at is None:
            gone_at = now
        if current is not None and current["primary"] == two["uuid"]:
            break
        if now - started > 300:
            raise SystemExit("quickstart: the move did not finish in time")
        time.sleep(0.005)
    unavailable = (now - gone_at) if gone_at is not None else 0.0
    say(
        f"moved it to node 2 through the REST API in {now - started:.2f} s; "
        f"it was unavailable for {unavailable:.2f} s"
    )
    after = digest(os.path.join(current["path"], "data"))
    if after != before:
        raise SystemExit("quickstart: the data on node 2 differs from what was written")
    say(f"node 2 has it at {current['path']}, sha256 identical: the data arrived intact")
    replicate_and_fail_over(cluster, dataset_id, one, two, before)
    count, port = move_application(cluster, one, two)
    count = update_application(cluster, one, port, count)
    clone_environment(cluster, two, count)

    certs = cluster["certificates"]
    print()
    print("The cluster is still running. Talk to it with its user certificate, e.g.:")
    print(
        f"  curl --cacert {certs['ca']} --cert {certs['user_cert']} "
        f"--key {certs['user_key']} {cluster['control']['api_url']}/v1/state/datasets"
    )
    print(f"Its description is in {os.path.join(LAB_DIR, lab.CLUSTER_FILE)}; logs under {LAB_DIR}")
    print("or with the flocker command, e.g.:")
    print(f"  .venv/bin/flocker --cluster {os.path.join(LAB_DIR, lab.CLUSTER_FILE)} apps ls")
    print(f"  admin/lab status --dir {LAB_DIR}")
    print(f"  admin/lab down --dir {LAB_DIR}     # stop it and remove everything")


if __name__ == "__main__":
    try:
        main()
    except lab.LabError as error:
        raise SystemExit(f"quickstart: {error}") from None
