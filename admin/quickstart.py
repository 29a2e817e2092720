"""
The quick-start demonstration of Flocker's real parts on one machine.

Creates a ZFS pool on a sparse file, a dataset in it, writes data, takes a
snapshot, clones it in constant time, runs a container from the locally
built busybox image that writes into the dataset, reads the result back, and
removes everything it made.  Every step goes through Flocker's own code, and
the eliot log of the run is written to ``quickstart.log``.
"""

from __future__ import annotations

import os
import sys
import tempfile

from twisted.internet.task import react
from twisted.internet.threads import deferToThread

from flocker.common import (
    CommandFailed,
    retry_failure,
    run_command,
    start_daemon_logging,
)
from flocker.testtools.images import ensure_busybox_image
from flocker.testtools.zfs import create_pool, destroy_pool


def say(text: str) -> None:
    """Tell the user what just happened."""
    print(f"  {text}", flush=True)


async def demo(reactor, workdir: str) -> None:
    """Run the demonstration in ``workdir``; raise if any step fails."""
    import docker

    def zfs(*args: str):
        return run_command(reactor, ["zfs", *args])

    pool = create_pool(workdir, size="2G", prefix="flocker-quickstart")
    say(f"created ZFS pool {pool.name} on the sparse file {pool.image}")
    client = docker.from_env()
    try:
        dataset = f"{pool.name}/app-data"
        await zfs("create", "-o", "refquota=512M", dataset)
        mount = os.path.join(pool.mountpoint, "app-data")
        say(f"created dataset {dataset} (maximum size 512M) mounted at {mount}")
        with open(os.path.join(mount, "greeting"), "w") as handle:
            handle.write("hello from Flocker\n")
        await zfs("snapshot", f"{dataset}@first")
        say(f"took snapshot {dataset}@first")
        await zfs("clone", f"{dataset}@first", f"{pool.name}/app-copy")
        used = (await zfs("get", "-Hp", "-o", "value", "used", f"{pool.name}/app-copy")).stdout
        say(f"cloned it to {pool.name}/app-copy using {int(used)} bytes")

        image = await deferToThread(ensure_busybox_image, client)
        output = await deferToThread(
            client.containers.run,
            image,
            ["sh", "-c", "cat /data/greeting; date >> /data/log; echo written"],
            volumes={mount: {"bind": "/data", "mode": "rw"}},
            labels={"org.flocker.quickstart": "1"},
            remove=True,
        )
        say(f"container from {image} read and wrote the dataset: {output.decode().split()}")
        with open(os.path.join(mount, "log")) as handle:
            say(f"the container's write is on the dataset: {handle.read().strip()}")
        clone_has = os.path.exists(os.path.join(pool.mountpoint, "app-copy", "log"))
        say(f"the clone is independent: it has the container's write? {clone_has}")

        for name, flags in ((f"{pool.name}/app-copy", ()), (dataset, ("-r",))):
            await retry_failure(
                reactor,
                lambda name=name, flags=flags: zfs("destroy", *flags, name),
                expected=(CommandFailed,),
                steps=[0.1] * 50,
            )
        say("destroyed the clone and the dataset")
    except BaseException:
        client.close()
        try:
            destroy_pool(pool)
        except Exception as error:  # keep the first error, it says what broke
            say(f"could not destroy pool {pool.name} after the failure: {error}")
        raise
    client.close()
    destroy_pool(pool)
    say(f"destroyed pool {pool.name}")


def main(reactor) -> object:
    """Set up logging and run the demonstration."""
    workdir = tempfile.mkdtemp(prefix="flocker-quickstart-")
    log_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "_lab")
    start_daemon_logging("quickstart", os.path.abspath(log_dir), None, False)
    print("Flocker quick start: ZFS datasets and a container, through Flocker's code")
    d = demo(reactor, workdir)

    async def run():
        try:
            await d
        finally:
            os.rmdir(workdir) if not os.listdir(workdir) else None
        print(f"done; the eliot log of this run is in {os.path.abspath(log_dir)}/quickstart.log")

    from twisted.internet.defer import ensureDeferred

    return ensureDeferred(run())


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    react(main)
