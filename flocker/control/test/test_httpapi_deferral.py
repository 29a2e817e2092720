"""
Moves and deletions of leased datasets through the REST API: accepted and
carried out when the lease is released or lapses, as the original Flocker
v1 API did, or refused on request with ``X-Refuse-If-Leased: true``.
"""

from __future__ import annotations

from flocker.control.test.test_httpapi import (
    DATASET,
    NODE_A,
    NODE_B,
    APIHarness,
    api,
)

__all__ = ["api"]

PATH = f"/v1/configuration/datasets/{DATASET}"


def _lease(api: APIHarness, expires: float | None) -> None:
    """Lease DATASET (on NODE_A) to NODE_A."""
    body = {"dataset_id": DATASET, "node_uuid": NODE_A, "expires": expires}
    assert api.request("POST", "/v1/configuration/leases", body).code in (200, 201)


def _primary(api: APIHarness) -> str:
    return str(api.stored().deployment.get_dataset(DATASET)[1])


def test_move_waits_for_release(api: APIHarness) -> None:
    """
    A move of a leased dataset is answered 200 with the dataset as it will
    be, leaves the configuration alone while the lease holds, and is carried
    out when the lease is released.
    """
    api.create_dataset(dataset_id=DATASET)
    _lease(api, None)
    before = api.stored().generation
    result = api.request("POST", PATH, {"primary": NODE_B})
    assert (result.code, result.body["primary"]) == (200, NODE_B)
    assert (_primary(api), api.stored().generation) == (NODE_A, before)
    api.clock.advance(3600)
    assert _primary(api) == NODE_A
    released = api.request("DELETE", f"/v1/configuration/leases/{DATASET}")
    assert released.code == 200
    assert _primary(api) == NODE_B


def test_move_waits_for_expiry(api: APIHarness) -> None:
    """A move waiting for a lease that lapses is carried out when it lapses."""
    api.create_dataset(dataset_id=DATASET)
    _lease(api, 30)
    assert api.request("POST", PATH, {"primary": NODE_B}).code == 200
    api.clock.advance(29)
    assert _primary(api) == NODE_A
    api.clock.advance(1)
    assert _primary(api) == NODE_B


def test_renewed_lease_keeps_waiting(api: APIHarness) -> None:
    """A lease renewed while a move waits holds the move until the new expiry."""
    api.create_dataset(dataset_id=DATASET)
    _lease(api, 30)
    api.request("POST", PATH, {"primary": NODE_B})
    api.clock.advance(20)
    _lease(api, 30)
    api.clock.advance(15)
    assert _primary(api) == NODE_A
    api.clock.advance(15)
    assert _primary(api) == NODE_B


def test_delete_waits_for_release(api: APIHarness) -> None:
    """
    Deleting a leased dataset answers it as deleted, keeps it while leased
    and deletes it when the lease is released.
    """
    api.create_dataset(dataset_id=DATASET)
    _lease(api, None)
    result = api.request("DELETE", PATH)
    assert (result.code, result.body["deleted"]) == (200, True)
    assert not api.stored().deployment.get_dataset(DATASET)[0].deleted
    api.request("DELETE", f"/v1/configuration/leases/{DATASET}")
    assert api.stored().deployment.get_dataset(DATASET)[0].deleted


def test_later_request_replaces_waiting_one(api: APIHarness) -> None:
    """Of two requests waiting on one lease, the later is carried out."""
    api.create_dataset(dataset_id=DATASET)
    _lease(api, None)
    api.request("POST", PATH, {"primary": NODE_B})
    api.request("DELETE", PATH)
    api.request("DELETE", f"/v1/configuration/leases/{DATASET}")
    dataset, primary = api.stored().deployment.get_dataset(DATASET)
    assert (dataset.deleted, primary) == (True, NODE_A)


def test_refusal_on_request(api: APIHarness) -> None:
    """
    With ``X-Refuse-If-Leased: true`` a move or deletion of a leased
    dataset is refused (409) and nothing waits for the lease.
    """
    api.create_dataset(dataset_id=DATASET)
    _lease(api, None)
    refuse = {"X-Refuse-If-Leased": "true"}
    api.refused(409, "POST", PATH, {"primary": NODE_B}, headers=refuse)
    api.refused(409, "DELETE", PATH, headers=refuse)
    api.request("DELETE", f"/v1/configuration/leases/{DATASET}")
    dataset, primary = api.stored().deployment.get_dataset(DATASET)
    assert (dataset.deleted, primary) == (False, NODE_A)


def test_waiting_change_checked_again(api: APIHarness) -> None:
    """
    A waiting deletion is checked again when the lease ends: a container
    mounting the dataset by then keeps it (the deletion is dropped), and
    the release itself succeeds.
    """
    api.create_dataset(dataset_id=DATASET)
    _lease(api, None)
    api.request("DELETE", PATH)
    container = {
        "node_uuid": NODE_A,
        "name": "db",
        "image": "busybox",
        "volumes": [{"dataset_id": DATASET, "mountpoint": "/data"}],
    }
    assert api.request("POST", "/v1/configuration/containers", container).code == 201
    released = api.request("DELETE", f"/v1/configuration/leases/{DATASET}")
    assert released.code == 200
    assert not api.stored().deployment.get_dataset(DATASET)[0].deleted
