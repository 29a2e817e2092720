"""Leases: a node's hold on a dataset, so it is neither moved nor deleted.

Split out of `flocker.control._model`, which re-exports every name here.
"""

from __future__ import annotations

from collections.abc import Iterator

from pyrsistent import PClass, field, pmap, pmap_field

from ._checks import LeaseError, finite_or_none, uuid_field

__all__ = ["Lease", "Leases"]


class Lease(PClass):
    """
    A lease keeps a dataset on a node (it will not be moved or deleted).

    :ivar expiration: POSIX time after which it lapses, or ``None`` (never).
    """

    dataset_id = uuid_field()
    node_uuid = uuid_field()
    expiration = field(
        type=(float, type(None)),
        initial=None,
        factory=lambda v: None if v is None else float(v),
        invariant=finite_or_none,
    )


class Leases(PClass):
    """All leases, keyed by dataset id (a dataset has at most one lease)."""

    leases = pmap_field(str, Lease)

    def __invariant__(self) -> tuple[bool, str]:
        """Each lease is keyed by its own dataset id."""
        return (
            all(k == v.dataset_id for k, v in self.leases.items()),
            "a lease must be keyed by its dataset id",
        )

    def __iter__(self) -> Iterator[Lease]:
        """Iterate the leases, ordered by dataset id."""
        return iter(sorted(self.leases.values(), key=lambda lease: lease.dataset_id))

    def __len__(self) -> int:
        """The number of leases."""
        return len(self.leases)

    def get(self, dataset_id: str) -> Lease | None:
        """The lease on a dataset, or ``None``."""
        return self.leases.get(dataset_id)

    def acquire(
        self, now: float, dataset_id: str, node_uuid: str, expires: float | None = None
    ) -> Leases:
        """
        Acquire or renew the lease on a dataset for a node.

        :param now: current POSIX time.
        :param expires: seconds from ``now`` until it lapses, or ``None``.
        :raise LeaseError: another node holds an unexpired lease on it.
        """
        current = self.leases.get(dataset_id)
        if (
            current is not None
            and current.node_uuid != node_uuid
            and not _lapsed(current, now)
        ):
            raise LeaseError(
                f"dataset {dataset_id} is leased to node {current.node_uuid}"
            )
        lease = Lease(
            dataset_id=dataset_id,
            node_uuid=node_uuid,
            expiration=None if expires is None else now + expires,
        )
        return self.set(leases=self.leases.set(dataset_id, lease))

    def release(self, dataset_id: str, node_uuid: str | None = None) -> Leases:
        """
        Release the lease on a dataset.

        :param node_uuid: if given, the lease must be held by this node.
        :raise LeaseError: there is no such lease, or another node holds it.
        """
        current = self.leases.get(dataset_id)
        if current is None:
            raise LeaseError(f"no lease on dataset {dataset_id}")
        if node_uuid is not None and current.node_uuid != node_uuid:
            raise LeaseError(
                f"dataset {dataset_id} is leased to node {current.node_uuid}"
            )
        return self.set(leases=self.leases.remove(dataset_id))

    def expire(self, now: float) -> Leases:
        """Remove every lease that lapsed by ``now``."""
        keep = {k: v for k, v in self.leases.items() if not _lapsed(v, now)}
        if len(keep) == len(self.leases):
            return self
        return self.set(leases=pmap(keep))


def _lapsed(lease: Lease, now: float) -> bool:
    return lease.expiration is not None and lease.expiration <= now
