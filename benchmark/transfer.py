"""
Benchmark: a full transfer of a dataset between two ZFS pools.

1 GiB of random data in a dataset on pool A is pushed to pool B through
Flocker's TCP+TLS transfer (:func:`flocker.volume.transfer.push` in this
process, the receiver a separate ``flocker-volume receive --forever``
process, as on two nodes).  In the same run it is also copied by

* a plain local ``zfs send | zfs recv`` pipe: the baseline of the figure,
  the ratio of the medians (Flocker's throughput / the pipe's, target
  >= 0.9);
* ``zfs send | socat`` over TLS to ``socat | zfs recv`` on loopback, with the
  cluster's certificates: what a C program pays for the same encryption and
  TCP on the same machine, the ceiling for any TLS transport here.

Repetitions rotate through the three.  The CPU time each Flocker end used
(this process sending, the receiver process) is reported per GiB.

    benchmark/run transfer [--size 1G] [--repetitions 3]

The pools live on sparse files in a temporary directory and are destroyed
afterwards, even on failure.  This module's helpers are shared by the
``incremental`` and ``clone`` scenarios.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from benchmark._harness import Timer, summarize, write_results

MiB = 1024 * 1024
GiB = 1024 * MiB
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATASET = "5be4c6a2-3f5e-4a3b-9d0e-6f1c2b3a4d5e"


def parse_size(text: str) -> int:
    """``"1G"`` -> bytes (uses flocker-volume's rules)."""
    from flocker.volume.script import parse_size as parse

    return parse(text)


def zfs(*arguments: str) -> str:
    """Run a zfs command; its standard output."""
    return subprocess.run(
        ["zfs", *arguments], check=True, capture_output=True, text=True
    ).stdout


def pool_allocated(pool: str) -> int:
    """Bytes the pool has allocated, after letting ZFS settle."""
    subprocess.run(["sync"], check=True)
    time.sleep(6)  # zfs-fuse commits a transaction group every ~5 s
    output = zfs("get", "-Hp", "-o", "value", "used", pool)
    return int(output.strip())


def destroy_dataset(name: str) -> None:
    """Destroy a filesystem and its snapshots, through zfs-fuse's "busy"."""
    for _ in range(50):
        if subprocess.run(["zfs", "list", name], capture_output=True).returncode:
            return
        subprocess.run(["zfs", "unmount", name], capture_output=True)
        if not subprocess.run(
            ["zfs", "destroy", "-r", name], capture_output=True
        ).returncode:
            return
        time.sleep(0.2)
    raise RuntimeError(f"cannot destroy {name}")


@contextmanager
def scratch_pools(count: int, size: str) -> Iterator[tuple[str, list[Any]]]:
    """``count`` file-backed pools of ``size`` (sparse), destroyed afterwards."""
    from flocker.testtools.zfs import create_pool, destroy_pool

    directory = tempfile.mkdtemp(prefix="flocker-bench-")
    pools: list[Any] = []
    try:
        for _ in range(count):
            pools.append(create_pool(directory, size=size, prefix="flkbench"))
        yield directory, pools
    finally:
        left = []
        for pool in reversed(pools):
            # zfs-fuse says a pool with filesystems is busy: empty it first.
            try:
                listed = subprocess.run(
                    ["zfs", "list", "-H", "-d", "1", "-o", "name", pool.name],
                    capture_output=True,
                    text=True,
                    timeout=120,
                ).stdout.split()
                for name in listed[1:]:
                    destroy_dataset(name)
                destroy_pool(pool)
            except Exception as error:
                left.append(pool.name)
                print(f"could not destroy pool {pool.name}: {error}", file=sys.stderr)
        if not left:  # never delete the file of a pool that is still there
            subprocess.run(["rm", "-rf", directory], check=False)


def fill(path: str, size: int, name: str = "data", seed: int = 1) -> None:
    """Write ``size`` bytes of (incompressible) pseudo-random data to a file."""
    generator = random.Random(seed)
    with open(os.path.join(path, name), "wb") as handle:
        left = size
        while left:
            chunk = min(left, 4 * MiB)
            handle.write(generator.randbytes(chunk))
            left -= chunk
    subprocess.run(["sync"], check=True)


def credentials(directory: str) -> Any:
    """A test cluster's certificates in ``directory/credentials``."""
    from flocker.ca.testtools import make_test_cluster_credentials

    path = os.path.join(directory, "credentials")
    os.makedirs(path)
    return make_test_cluster_credentials(path)


@contextmanager
def receiver_process(pool: str, certificates: str) -> Iterator[tuple[int, int]]:
    """A ``flocker-volume receive --forever`` process; yields its port and pid."""
    process = subprocess.Popen(
        [
            sys.executable, "-m", "flocker.volume.script",
            "--backend", "zfs", "--pool", pool,
            "receive", "--listen", "0", "--interface", "127.0.0.1",
            "--certificates", certificates, "--forever",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("listening on port "):
            raise RuntimeError(f"the receiver did not start: {line!r}")
        yield int(line.split()[-1]), process.pid
    finally:
        process.kill()
        process.wait()


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds process ``pid`` has used so far."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def listening(port: int) -> bool:
    """Whether a TCP socket listens on ``port`` (without connecting to it)."""
    with open("/proc/net/tcp") as handle:
        for line in handle.readlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.split(":")[1], 16) == port:
                return True
    return False


def tls_pipe(source: str, target: str, port: int, certificates: Any) -> float:
    """
    Seconds for ``zfs send source`` through socat over TLS (mutually
    authenticated with the cluster's node certificates) into ``zfs recv
    target``: the same encryption and loopback TCP, done by a C program.
    """
    client, server = certificates.node_directories[0], certificates.node_directories[1]
    authority = certificates.node_directories[1] / "cluster.crt"
    block = "-b", str(MiB)
    listen = (
        f"OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,cert={server}/node.crt,"
        f"key={server}/node.key,cafile={authority},verify=1"
    )
    connect = (
        f"OPENSSL:127.0.0.1:{port},cert={client}/node.crt,key={client}/node.key,"
        f"cafile={authority},verify=0"
    )
    with Timer() as timer:
        receiving = subprocess.Popen(
            ["bash", "-c", f"set -o pipefail; socat {' '.join(block)} -u {listen} - "
             f"| zfs recv {target}"],
            start_new_session=True,  # its socat and zfs recv can be killed together
        )  # fmt: skip
        try:
            for _ in range(200):  # until socat listens (it takes one connection)
                if listening(port):
                    break
                time.sleep(0.05)
            subprocess.run(
                ["bash", "-c", f"set -o pipefail; zfs send {source} | "
                 f"socat {' '.join(block)} -u - {connect}"],
                check=True,
            )  # fmt: skip
            if receiving.wait(timeout=600):
                raise RuntimeError("socat | zfs recv failed")
        finally:
            if receiving.poll() is None:  # the sending side failed
                os.killpg(receiving.pid, signal.SIGKILL)
                receiving.wait()
    return timer.seconds


def local_pipe(source: str, target: str, base: str | None = None) -> float:
    """Seconds for ``zfs send [-i base] source | zfs recv target``."""
    incremental = f"-i {base} " if base else ""
    with Timer() as timer:
        subprocess.run(
            [
                "bash",
                "-c",
                f"set -o pipefail; zfs send {incremental}{source} | zfs recv {target}",
            ],
            check=True,
        )
    return timer.seconds


async def push_once(
    reactor: Any, backend: Any, snapshot: str, base: str | None, port: int, tls: Any
) -> tuple[float, Any]:
    """Seconds for one Flocker push to 127.0.0.1:port, and its result."""
    from flocker.volume.transfer import push

    with Timer() as timer:
        result = await push(
            reactor, backend, DATASET, snapshot, base, "127.0.0.1", port, tls
        )
    return timer.seconds, result


async def run(reactor: Any, size: int, repetitions: int) -> dict[str, Any]:
    """Measure both ways of copying; the results document."""
    from flocker.ca import load_tls_files
    from flocker.volume.zfs import ZFSVolumeBackend

    pool_size = f"{max(2 * GiB, size * 2 + 512 * MiB) // MiB}M"
    with scratch_pools(2, pool_size) as (directory, (a, b)):
        creds = credentials(directory)
        sender_tls = load_tls_files(creds.node_directories[0], "node")
        backend = ZFSVolumeBackend(reactor, a.name)
        info = await backend.create(DATASET)
        print(f"writing {size / MiB:.0f} MiB of random data", flush=True)
        fill(info.path, size)
        await backend.snapshot(DATASET, "s1")
        source = f"{a.name}/{DATASET}@s1"
        pipe_seconds: list[float] = []
        tls_seconds: list[float] = []
        flocker_seconds: list[float] = []
        cpu: dict[str, list[float]] = {"sender": [], "receiver": []}
        stream_bytes = 0
        with receiver_process(b.name, str(creds.node_directories[1])) as (port, pid):
            for repetition in range(repetitions):
                target = f"{b.name}/pipe-copy"
                pipe_seconds.append(local_pipe(source, target))
                destroy_dataset(target)
                subprocess.run(["sync"], check=True)
                target = f"{b.name}/tls-copy"
                tls_seconds.append(tls_pipe(source, target, free_port(), creds))
                destroy_dataset(target)
                subprocess.run(["sync"], check=True)
                before = (own_cpu_seconds(), process_cpu_seconds(pid))
                seconds, result = await push_once(
                    reactor, backend, "s1", None, port, sender_tls
                )
                cpu["sender"].append(own_cpu_seconds() - before[0])
                cpu["receiver"].append(process_cpu_seconds(pid) - before[1])
                flocker_seconds.append(seconds)
                stream_bytes = result.bytes_sent
                destroy_dataset(f"{b.name}/{DATASET}")
                subprocess.run(["sync"], check=True)
                print(
                    f"repetition {repetition + 1}: pipe {pipe_seconds[-1]:.2f} s, "
                    f"socat TLS {tls_seconds[-1]:.2f} s, flocker {seconds:.2f} s "
                    f"(CPU: sender {cpu['sender'][-1]:.2f} s, "
                    f"receiver {cpu['receiver'][-1]:.2f} s)",
                    flush=True,
                )
        await backend.destroy(DATASET)
    pipe = summarize(pipe_seconds)
    tls = summarize(tls_seconds)
    flocker = summarize(flocker_seconds)
    ratio = pipe["median"] / flocker["median"]
    gib = stream_bytes / GiB
    return {
        "data_bytes": size,
        "stream_bytes": stream_bytes,
        "repetitions": repetitions,
        "local_pipe_seconds": pipe,
        "socat_tls_seconds": tls,
        "flocker_tls_seconds": flocker,
        "local_pipe_mb_per_s": stream_bytes / pipe["median"] / 1e6,
        "socat_tls_mb_per_s": stream_bytes / tls["median"] / 1e6,
        "flocker_tls_mb_per_s": stream_bytes / flocker["median"] / 1e6,
        "throughput_ratio": ratio,
        "ratio_to_socat_tls": tls["median"] / flocker["median"],
        "socat_tls_ratio": pipe["median"] / tls["median"],
        "flocker_cpu_seconds_per_gib": {
            end: summarize(samples)["median"] / gib for end, samples in cpu.items()
        },
        "target_ratio": 0.9,
        "meets_target": ratio >= 0.9,
        "samples": {
            "local_pipe": pipe_seconds,
            "socat_tls": tls_seconds,
            "flocker_tls": flocker_seconds,
            "flocker_cpu_sender": cpu["sender"],
            "flocker_cpu_receiver": cpu["receiver"],
        },
    }


def own_cpu_seconds() -> float:
    """User plus system CPU seconds this process (all its threads) used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def plot(results: dict[str, Any]) -> Any:
    """A bar chart of both throughputs, with the ratio in the title."""

    def draw(axes: Any) -> None:
        names = [
            "local zfs send | zfs recv",
            "zfs send | socat TLS | zfs recv",
            "Flocker push over TLS",
        ]
        rates = [
            results["local_pipe_mb_per_s"],
            results["socat_tls_mb_per_s"],
            results["flocker_tls_mb_per_s"],
        ]
        bars = axes.bar(names, rates, color=["#888888", "#bbbbbb", "#2a7ab9"])
        for bar, rate in zip(bars, rates, strict=True):
            axes.annotate(
                f"{rate:.0f} MB/s",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
            )
        axes.set_ylabel("throughput (MB/s, median)")
        axes.set_title(
            f"Full transfer of {results['data_bytes'] / GiB:.2g} GiB between pools: "
            f"ratio {results['throughput_ratio']:.2f} to the pipe (target >= 0.9), "
            f"{results['ratio_to_socat_tls']:.2f} to socat",
            fontsize="medium",
        )

    return draw


def main(argv: list[str] | None = None) -> None:
    """Run the scenario and write benchmark/results/transfer.json and .png."""
    parser = argparse.ArgumentParser(prog="benchmark/run transfer")
    parser.add_argument("--size", default="1G", help="data size (default 1G)")
    parser.add_argument("--repetitions", type=int, default=3)
    options = parser.parse_args(argv)
    from twisted.internet.defer import Deferred
    from twisted.internet.task import react

    async def body(reactor: Any) -> None:
        results = await run(reactor, parse_size(options.size), options.repetitions)
        paths = write_results("transfer", results, plot(results))
        print(
            f"local pipe {results['local_pipe_mb_per_s']:.0f} MB/s, socat TLS "
            f"{results['socat_tls_mb_per_s']:.0f} MB/s, Flocker "
            f"{results['flocker_tls_mb_per_s']:.0f} MB/s: ratio "
            f"{results['throughput_ratio']:.2f} (to socat "
            f"{results['ratio_to_socat_tls']:.2f}) -> {paths[0]}"
        )

    react(lambda reactor: Deferred.fromCoroutine(body(reactor)))


if __name__ == "__main__":
    main()
