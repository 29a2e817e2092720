"""A process that saves configurations through the file store until killed.

Run as ``python -m flocker.control.test._crash_writer DIRECTORY``.  After each
save is acknowledged it prints the new generation on its own line; the crash
test SIGKILLs it and checks every printed generation survived.
"""

import sys

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.task import react

from flocker.control import Dataset, Deployment, FileConfigurationStore

NODE = "c0c0c0c0-0000-4000-8000-00000000000c"
DATASET = "c1c1c1c1-0000-4000-8000-00000000000c"


def deployment_for(generation: int) -> Deployment:
    """The deployment the writer saves as ``generation``."""
    if generation == 0:
        return Deployment()
    dataset = Dataset(
        dataset_id=DATASET,
        metadata={"generation": str(generation), "padding": "x" * 4096},
        maximum_size=generation,
    )
    return Deployment().add_dataset(dataset, NODE)


async def write_forever(reactor: IReactorThreads, directory: str) -> None:
    """Save generation after generation, announcing each once durable."""
    store = FileConfigurationStore(reactor, reactor.getThreadPool(), directory)
    generation = (await store.load()).generation
    while True:
        generation = await store.save(deployment_for(generation + 1), generation)
        sys.stdout.write(f"{generation}\n")
        sys.stdout.flush()


def main(reactor: IReactorThreads, directory: str) -> Deferred[None]:
    """Entry point for ``react``."""
    return Deferred.fromCoroutine(write_forever(reactor, directory))


if __name__ == "__main__":
    react(main, sys.argv[1:])
