"""
Helpers for the ``flocker`` command tests: a fake two-node cluster
(`FakeFlockerClient` and a `Clock`) and `invoke`, which runs a command line
through `flocker.cli.script.run` without sockets or sleeping.
"""

import argparse
import json
from collections.abc import Callable
from io import StringIO
from typing import Any, Protocol, TypeVar
from uuid import UUID

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from flocker.apiclient import (
    Container,
    Dataset,
    FakeFlockerClient,
    IFlockerAPIV1Client,
)
from flocker.cli._wait import POLL_INTERVAL
from flocker.cli.script import run

N1 = UUID("11111111-1111-4111-8111-111111111111")
N2 = UUID("22222222-2222-4222-8222-222222222222")
D1 = UUID("d1d1d1d1-0000-4000-8000-000000000001")
D2 = UUID("d2d2d2d2-0000-4000-8000-000000000002")
D3 = UUID("e3e3e3e3-0000-4000-8000-000000000003")

T = TypeVar("T")


@attrs.define
class Cluster:
    """A fake cluster with two nodes, 10.0.0.1 (N1) and 10.0.0.2 (N2)."""

    clock: Clock
    client: FakeFlockerClient


class CommandCluster(Protocol):
    """What `invoke` runs a command against: its clock and the client it gets."""

    @property
    def clock(self) -> Clock:
        """The command's clock, advanced while it waits."""

    @property
    def client(self) -> IFlockerAPIV1Client:
        """The REST API client the command is given."""


@attrs.frozen
class Result:
    """What a command printed and its exit code; ``connected``: a client was made."""

    code: int
    out: str
    err: str
    connected: bool

    def json(self) -> Any:
        """The JSON it printed."""
        return json.loads(self.out)


def make_cluster() -> "Cluster":
    """An empty fake cluster with two nodes."""
    clock = Clock()
    client = FakeFlockerClient(clock)
    client.add_node(N1, "10.0.0.1")
    client.add_node(N2, "10.0.0.2")
    return Cluster(clock, client)


def collect(deferred: Deferred[int]) -> list[Any]:
    """A list that gets the Deferred's result (or Failure) when it fires."""
    results: list[Any] = []

    def record(result: Any) -> Any:
        results.append(result)
        return None

    deferred.addBoth(record)
    return results


def fired(deferred: Deferred[T]) -> T:
    """The result of a Deferred that has fired (the fake answers at once)."""
    results: list[T | Failure] = []
    deferred.addBoth(results.append)
    [result] = results
    if isinstance(result, Failure):
        result.raiseException()
    return result


def invoke(
    cluster: CommandCluster,
    *argv: str,
    on_poll: Callable[[int], object] | None = None,
    make_client: Callable[[argparse.Namespace], IFlockerAPIV1Client] | None = None,
) -> Result:
    """
    Run ``flocker ARGV``, advancing the clock while it waits.

    :param on_poll: called with the number of the poll before each advance.
    """
    out, err = StringIO(), StringIO()
    made: list[argparse.Namespace] = []

    def make(options: argparse.Namespace) -> IFlockerAPIV1Client:
        made.append(options)
        if make_client is not None:
            return make_client(options)
        return cluster.client

    results = collect(
        Deferred.fromCoroutine(run(list(argv), cluster.clock, out, err, make))
    )
    polls = 0
    while not results:
        polls += 1
        assert polls < 10_000, "the command never finished"
        if on_poll is not None:
            on_poll(polls)
        cluster.clock.advance(POLL_INTERVAL)
    assert isinstance(results[0], int), results[0]
    return Result(results[0], out.getvalue(), err.getvalue(), bool(made))


def configuration(cluster: Cluster) -> tuple[dict[UUID, Dataset], list[Container]]:
    """The fake's dataset and container configuration, to compare before/after."""
    datasets = fired(cluster.client.list_datasets_configuration()).datasets
    containers = fired(cluster.client.list_containers_configuration())
    return dict(datasets), list(containers)


def add_dataset(
    cluster: Cluster,
    dataset_id: UUID = D1,
    node: UUID = N1,
    name: str | None = "db",
    size: int | None = None,
    synchronize: bool = True,
) -> None:
    """Configure a dataset directly; make the state show it mounted."""
    cluster.client.create_dataset(
        node,
        maximum_size=size,
        dataset_id=dataset_id,
        metadata=None if name is None else {"name": name},
    )
    if synchronize:
        cluster.client.synchronize_state()


def assert_error(result: Result, code: int, says: str) -> None:
    """One ``flocker: error:`` line saying ``says``, exit ``code``, nothing on stdout."""
    assert result.code == code, result
    assert result.out == ""
    lines = result.err.splitlines()
    assert lines[-1].startswith("flocker: error: "), result.err
    assert says in lines[-1], result.err
    assert "Traceback" not in result.err
