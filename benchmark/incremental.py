"""
Benchmark: an incremental transfer of a 10 MiB change to a 1 GiB dataset.

A dataset with 1 GiB of random data on pool A is pushed in full to pool B
(not measured).  Then, three times, 10 MiB of it are overwritten in place
(at random offsets aligned to ZFS's 128 KiB records), a snapshot is taken
and the change is pushed as an incremental stream.  For each push the
scenario records the time, the stream's bytes, the protocol's bytes and the
bytes that crossed TCP (TLS records and handshake included, counted on the
receiver's socket), and, in the same run, the time of a plain local
``zfs send -i | zfs recv`` of the same increment.  Target: bytes on the
wire within 10% of the change.

    benchmark/run incremental [--size 1G] [--change 10M] [--repetitions 3]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
from typing import Any

from benchmark._harness import summarize, write_results
from benchmark.transfer import (
    DATASET,
    GiB,
    MiB,
    credentials,
    fill,
    local_pipe,
    parse_size,
    push_once,
    scratch_pools,
)

RECORD = 128 * 1024


def overwrite(path: str, size: int, change: int, seed: int) -> None:
    """Overwrite ``change`` bytes of the data file in place, record-aligned."""
    generator = random.Random(seed)
    offset = generator.randrange(0, (size - change) // RECORD + 1) * RECORD
    with open(os.path.join(path, "data"), "r+b") as handle:
        handle.seek(offset)
        handle.write(generator.randbytes(change))
    subprocess.run(["sync"], check=True)


async def counting_receiver(reactor: Any, backend: Any, tls: Any) -> tuple[Any, Any]:
    """A transfer receiver on 127.0.0.1 whose TCP bytes are counted."""
    from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
    from twisted.protocols.tls import TLSMemoryBIOFactory

    from flocker.ca import server_context_factory
    from flocker.volume.transfer import TransferReceiver

    class Counting(ProtocolWrapper):
        def dataReceived(self, data: bytes) -> None:  # noqa: N802
            self.factory.received += len(data)
            super().dataReceived(data)

        def write(self, data: bytes) -> None:
            self.factory.sent += len(data)
            super().write(data)

        def writeSequence(self, data: Any) -> None:  # noqa: N802
            self.write(b"".join(data))

    class CountingFactory(WrappingFactory):
        protocol = Counting
        received = 0
        sent = 0

    tls_factory = TLSMemoryBIOFactory(
        server_context_factory(tls.credential, tls.authority),
        False,
        TransferReceiver(backend),
    )
    factory = CountingFactory(tls_factory)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    return port, factory


async def run(reactor: Any, size: int, change: int, repetitions: int) -> dict[str, Any]:
    """Measure the increments; the results document."""
    from flocker.ca import load_tls_files
    from flocker.volume.zfs import ZFSVolumeBackend

    pool_size = f"{max(2 * GiB, size * 2 + 512 * MiB) // MiB}M"
    with scratch_pools(2, pool_size) as (directory, (a, b)):
        creds = credentials(directory)
        sender_tls = load_tls_files(creds.node_directories[0], "node")
        receiver_tls = load_tls_files(creds.node_directories[1], "node")
        sender = ZFSVolumeBackend(reactor, a.name)
        receiver = ZFSVolumeBackend(reactor, b.name)
        info = await sender.create(DATASET)
        print(f"writing {size / MiB:.0f} MiB of random data", flush=True)
        fill(info.path, size)
        await sender.snapshot(DATASET, "s0")
        port, counter = await counting_receiver(reactor, receiver, receiver_tls)
        number = port.getHost().port
        print("initial full push", flush=True)
        await push_once(reactor, sender, "s0", None, number, sender_tls)
        pipe_copy = f"{b.name}/pipe-copy"
        local_pipe(f"{a.name}/{DATASET}@s0", pipe_copy)
        rows = []
        for i in range(1, repetitions + 1):
            overwrite(info.path, size, change, seed=i)
            await sender.snapshot(DATASET, f"s{i}")
            pipe_seconds = local_pipe(
                f"{a.name}/{DATASET}@s{i}", f"-F {pipe_copy}", base=f"@s{i - 1}"
            )
            before = counter.received + counter.sent
            seconds, result = await push_once(
                reactor, sender, f"s{i}", f"s{i - 1}", number, sender_tls
            )
            tcp = counter.received + counter.sent - before
            rows.append(
                {
                    "flocker_seconds": seconds,
                    "local_pipe_seconds": pipe_seconds,
                    "stream_bytes": result.bytes_sent,
                    "protocol_bytes": result.wire_bytes,
                    "tcp_bytes": tcp,
                }
            )
            print(
                f"increment {i}: {seconds:.3f} s (pipe {pipe_seconds:.3f} s), "
                f"stream {result.bytes_sent}, TCP {tcp} bytes",
                flush=True,
            )
        await port.stopListening()
        await receiver.destroy(DATASET)
        await sender.destroy(DATASET)
    tcp_median = summarize([r["tcp_bytes"] for r in rows])["median"]
    flocker = summarize([r["flocker_seconds"] for r in rows])
    pipe = summarize([r["local_pipe_seconds"] for r in rows])
    return {
        "data_bytes": size,
        "change_bytes": change,
        "repetitions": repetitions,
        "increments": rows,
        "flocker_seconds": flocker,
        "local_pipe_seconds": pipe,
        "time_ratio_pipe_over_flocker": pipe["median"] / flocker["median"],
        "stream_over_change": summarize([r["stream_bytes"] / change for r in rows])[
            "median"
        ],
        "wire_over_change": tcp_median / change,
        "target_wire_over_change": 1.10,
        "meets_target": tcp_median / change <= 1.10,
    }


def plot(results: dict[str, Any]) -> Any:
    """Bytes per increment (change, stream, TCP) and the times."""

    def draw(axes: Any) -> None:
        rows = results["increments"]
        change = results["change_bytes"] / MiB
        x = range(len(rows))
        width = 0.27
        axes.bar([i - width for i in x], [change] * len(rows), width, label="change")
        axes.bar(x, [r["stream_bytes"] / MiB for r in rows], width, label="zfs stream")
        axes.bar(
            [i + width for i in x],
            [r["tcp_bytes"] / MiB for r in rows],
            width,
            label="on the wire (TCP, TLS)",
        )
        axes.set_xticks(
            list(x),
            [
                f"#{i + 1}: {r['flocker_seconds'] * 1000:.0f} ms\n"
                f"(local pipe {r['local_pipe_seconds'] * 1000:.0f} ms)"
                for i, r in enumerate(rows)
            ],
        )
        axes.axhline(change * 1.1, color="red", linestyle="--", label="target: +10%")
        axes.set_ylabel("MiB")
        axes.set_title(
            f"Incremental push of a {change:.0f} MiB change to "
            f"{results['data_bytes'] / GiB:.2g} GiB: wire/change "
            f"{results['wire_over_change']:.3f}"
        )
        axes.legend(loc="lower right")

    return draw


def main(argv: list[str] | None = None) -> None:
    """Run the scenario and write benchmark/results/incremental.json and .png."""
    parser = argparse.ArgumentParser(prog="benchmark/run incremental")
    parser.add_argument("--size", default="1G", help="dataset size (default 1G)")
    parser.add_argument("--change", default="10M", help="change size (default 10M)")
    parser.add_argument("--repetitions", type=int, default=3)
    options = parser.parse_args(argv)
    from twisted.internet.defer import Deferred
    from twisted.internet.task import react

    async def body(reactor: Any) -> None:
        results = await run(
            reactor,
            parse_size(options.size),
            parse_size(options.change),
            options.repetitions,
        )
        paths = write_results("incremental", results, plot(results))
        print(
            f"wire/change {results['wire_over_change']:.3f}, median "
            f"{results['flocker_seconds']['median'] * 1000:.0f} ms -> {paths[0]}"
        )

    react(lambda reactor: Deferred.fromCoroutine(body(reactor)))


if __name__ == "__main__":
    main()
