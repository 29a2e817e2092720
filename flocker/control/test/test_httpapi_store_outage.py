"""The REST API while the shared configuration store (etcd) cannot be reached."""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail

from .. import Dataset, Deployment
from .._etcd import EtcdUnavailable
from .._persistence import MemoryConfigurationStore
from .test_httpapi import DATASET as DATASET_PG
from .test_httpapi import NODE_A, APIHarness


class UnreachableStore(MemoryConfigurationStore):
    """A store that loaded once and whose writes now find no etcd member."""

    def save(self, deployment: Deployment, expected_generation: int) -> Deferred[int]:
        """No member answers."""
        return fail(EtcdUnavailable(["http://127.0.0.1:1"], "connection refused"))


def test_write_answers_503_and_changes_nothing() -> None:
    """
    A write while etcd is unreachable answers 503 with a description, and
    the configuration every read serves stays as it was.
    """
    api = APIHarness(UnreachableStore())
    description = api.refused(
        503,
        "POST",
        "/v1/configuration/datasets",
        {"primary": NODE_A, "dataset_id": DATASET_PG},
    )
    assert "configuration store cannot be reached" in description
    assert api.request("GET", "/v1/configuration/datasets").body == []


def test_reads_still_answered() -> None:
    """Reads serve the last configuration this instance saw."""
    store = UnreachableStore()
    api = APIHarness(store)
    api.configuration._current = api.configuration._loaded().set(
        deployment=api.configuration.deployment.add_dataset(
            Dataset(dataset_id=DATASET_PG), NODE_A
        )
    )
    [dataset] = api.request("GET", "/v1/configuration/datasets").body
    assert dataset["dataset_id"] == DATASET_PG


def test_reads_marked_while_the_store_cannot_be_reached() -> None:
    """
    While the instance cannot reach etcd, reads carry X-Configuration-Stale
    saying why; once it can, the header is gone.
    """
    api = APIHarness(UnreachableStore())
    reason: list[str] = ["etcd has not answered this control instance since 5: refused"]
    api.configuration.stale_reason = lambda: reason[0] if reason else None
    result = api.request("GET", "/v1/configuration/datasets")
    assert result.headers["x-configuration-stale"] == reason[0]
    reason.clear()
    assert "x-configuration-stale" not in api.request("GET", "/v1/configuration/datasets").headers


class AlwaysChangedElsewhere(MemoryConfigurationStore):
    """A shared store that other writers change before every save lands."""

    def save(self, deployment: Deployment, expected_generation: int) -> Deferred[int]:
        """Another writer came first."""
        from .._persistence import GenerationMismatch

        return fail(GenerationMismatch(expected_generation, None))


def test_write_without_tag_losing_every_retry_says_so() -> None:
    """
    A write that sent no X-If-Configuration-Matches, but lost every retry
    to other writers, gets 412 saying the configuration kept changing, not
    that a tag it never sent is stale; nothing changes.
    """
    api = APIHarness(AlwaysChangedElsewhere())
    description = api.refused(
        412,
        "POST",
        "/v1/configuration/datasets",
        {"primary": NODE_A, "dataset_id": DATASET_PG},
    )
    assert "kept changing" in description
    assert "X-If-Configuration-Matches" not in description
