"""Field checks and the errors of the model's pure change methods.

Split out of `flocker.control._model`, which re-exports every name here.
"""

from __future__ import annotations

import math
import re
from typing import Any
from uuid import UUID

from pyrsistent import field

# --------------------------------------------------------------------------
# Field checks


def is_uuid(value: object) -> bool:
    """Tell whether ``value`` is a UUID in canonical form (lowercase, dashed)."""
    if not isinstance(value, str):
        return False
    try:
        return str(UUID(value)) == value
    except ValueError:
        return False


_NAME = re.compile(r"\A[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}\Z")


def is_valid_name(value: object) -> bool:
    """Tell whether ``value`` is usable as a container name or link alias."""
    return isinstance(value, str) and _NAME.match(value) is not None


def uuid_invariant(value: object) -> tuple[bool, str]:
    return (is_uuid(value), f"not a canonical UUID: {value!r}")


def name_invariant(value: object) -> tuple[bool, str]:
    return (
        is_valid_name(value),
        f"not a valid name ([a-zA-Z0-9][a-zA-Z0-9_.-]*, at most 128): {value!r}",
    )


#: Separates an application's name from the number of one of its extra
#: instances on a node (``web..2``); no application's name ends in it and
#: digits (``my..app`` is a name like any other).
INSTANCE_SEPARATOR = ".."

#: The end of an extra instance's name: ``..`` and its number (``web..2``).
INSTANCE_SUFFIX = re.compile(r"\.\.[0-9]+\Z")

#: Why an application's name may not end in ``..`` and digits.
RESERVED_SEPARATOR = (
    "a name ending in '..' and digits (like web..2) is reserved for the extra "
    "instances Flocker runs of a replicated application on one node"
)


def application_name_invariant(value: object) -> tuple[bool, str]:
    """
    A valid name (`name_invariant`) not ending in ``..`` and digits:
    ``web..2`` names the second instance of ``web`` on a node, while
    ``my..app`` is an application's name like any other.
    """
    ok, message = name_invariant(value)
    if not ok:
        return ok, message
    assert isinstance(value, str)
    return (INSTANCE_SUFFIX.search(value) is None, f"{RESERVED_SEPARATOR}: {value!r}")


def positive_or_none(what: str):  # type: ignore[no-untyped-def]
    def check(value: object) -> tuple[bool, str]:
        ok = value is None or (
            isinstance(value, int) and not isinstance(value, bool) and value > 0
        )
        return (ok, f"{what} must be a positive integer or null: {value!r}")

    return check


def port_invariant(value: object) -> tuple[bool, str]:
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536
    return (ok, f"not a TCP port number (1-65535): {value!r}")


def uuid_field() -> Any:
    return field(type=str, mandatory=True, invariant=uuid_invariant)


# --------------------------------------------------------------------------
# Errors of the pure change functions


class ModelError(Exception):
    """A requested configuration change does not make sense; nothing changed."""


class UnknownDataset(ModelError, KeyError):
    """No dataset with this id is in the configuration."""

    def __str__(self) -> str:
        """Say which dataset is unknown."""
        return f"unknown dataset {self.args[0]}"


class DatasetAlreadyExists(ModelError):
    """A dataset with this id is already in the configuration."""

    def __str__(self) -> str:
        """Say which dataset already exists."""
        return f"dataset {self.args[0]} already exists"


class DatasetDeleted(ModelError):
    """The dataset is deleted, so it can be neither moved nor changed."""

    def __str__(self) -> str:
        """Say which dataset is deleted."""
        return f"dataset {self.args[0]} is deleted"


class DatasetInUse(ModelError):
    """An application mounts the dataset, so it cannot be moved alone or deleted."""

    def __str__(self) -> str:
        """Say which dataset and which application."""
        return f"dataset {self.args[0]} is used by application {self.args[1]!r}"


class DatasetLeased(ModelError):
    """A lease holds the dataset on a node, so it cannot leave that node."""

    def __str__(self) -> str:
        """Say which dataset and which node holds the lease."""
        return f"dataset {self.args[0]} is leased to node {self.args[1]}"


class LeaseError(ModelError):
    """Another node holds the lease, or there is no lease to release."""


class UnknownApplication(ModelError, KeyError):
    """No application with this name is in the configuration."""

    def __str__(self) -> str:
        """Say which application is unknown."""
        return f"unknown application {self.args[0]!r}"


class NothingToRollBack(ModelError):
    """An application has no previous specification to roll back to."""

    def __str__(self) -> str:
        """Say which application has none."""
        return f"application {self.args[0]!r} has no previous specification to roll back to"


class ReplicatedNameTooLong(ModelError):
    """
    A new or updated application would run several instances under a name
    that leaves no room for its extra instances' ``..k`` within a
    container name's 128 characters.

    :ivar args: the name, the replicas asked for and the longest name a
        replicated application may have.
    """

    def __str__(self) -> str:
        """Say how long the name may be, and why."""
        name, replicas, longest = self.args
        return (
            f"a replicated application's name is at most {longest} "
            "characters, so that the names of its extra instances on a node "
            f"({name[:8]}...{INSTANCE_SEPARATOR}{replicas}) are valid too"
        )


class ApplicationAlreadyExists(ModelError):
    """An application with this name is already in the configuration."""

    def __str__(self) -> str:
        """Say which application already exists."""
        return f"application {self.args[0]!r} already exists"


class UnknownEnvironment(ModelError, KeyError):
    """No environment (or no copy of it) with this name is in the configuration."""

    def __str__(self) -> str:
        """Say which environment is unknown."""
        return f"unknown environment {self.args[0]!r}"


class EnvironmentAlreadyExists(ModelError):
    """An environment (or a copy) with this name is already in the configuration."""

    def __str__(self) -> str:
        """Say which environment already exists."""
        return f"environment {self.args[0]!r} already exists"


class PortBusy(ModelError):
    """
    A port asked for an application is one its node reports busy: another
    program listens on it at the node's address.
    """

    def __init__(self, port: int, node_uuid: str, application: str) -> None:
        """Name the port, the node and the application that asked for it."""
        self.port = port
        self.node_uuid = node_uuid
        self.application = application
        super().__init__(port, node_uuid, application)

    def __str__(self) -> str:
        """Say which port is busy where, and for whom."""
        return (
            f"port {self.port} for {self.application!r} is in use on node "
            f"{self.node_uuid}: another program listens on it there"
        )


class DatasetElsewhere(ModelError):
    """An application's volume is a dataset whose primary is on another node."""

    def __str__(self) -> str:
        """Say which dataset, where it is and where it was wanted."""
        dataset_id, primary, node_uuid = self.args
        return f"dataset {dataset_id} is on node {primary}, not {node_uuid}: move it first"


class PortsTaken(ModelError):
    """Another application on the node already publishes these external ports."""

    def __str__(self) -> str:
        """Say which ports and which node."""
        ports, node_uuid = self.args
        return (
            f"external port(s) {', '.join(map(str, ports))} already used on "
            f"node {node_uuid}"
        )


class InvalidSnapshotName(ModelError):
    """A user asked for a snapshot by a name users may not give."""

    def __str__(self) -> str:
        """Say what a snapshot name is."""
        return (
            f"{self.args[0]!r} is not a snapshot name: 1-64 letters, digits and _.:-, "
            "starting with a letter or digit, not starting with 'flocker'"
        )


class SnapshotHasClones(ModelError):
    """A configured clone is made from the snapshot, so it cannot be destroyed."""

    def __str__(self) -> str:
        """Say which snapshot and which clone."""
        dataset_id, name, clone = self.args
        return (
            f"snapshot {name!r} of {dataset_id} has clones: dataset "
            f"{clone} is made from it (delete it first)"
        )


class RollbackDiscardsNeeded(ModelError):
    """A rollback would discard a later snapshot an environment or clone needs."""

    def __str__(self) -> str:
        """Say which snapshot would go and what needs it."""
        snapshot, later, needed_by = self.args
        return (
            f"rolling back to {snapshot!r} would discard the later snapshot "
            f"{later!r}, which {needed_by} is made from"
        )


class UnknownNode(ModelError):
    """A node neither reported its state nor holds configuration."""

    def __str__(self) -> str:
        """Say which node, named as the request named it."""
        what, node_uuid = self.args
        return (
            f"{what} {node_uuid} is not a node of this cluster: it has never "
            "reported its state to the control service and holds no configuration"
        )


class DivergedCopyOnTarget(ModelError):
    """A move's target keeps a diverged copy of the dataset (kept after a failover)."""

    def __str__(self) -> str:
        """Say which node, dataset and epoch."""
        node_uuid, dataset_id, epoch = self.args
        return (
            f"node {node_uuid} keeps a diverged copy of dataset {dataset_id} "
            f"(epoch {epoch}, kept after a failover): a move there cannot "
            "finish until that copy is dealt with; choose another node"
        )


class FailoverNotTakenUp(ModelError):
    """A dataset failed over and its new primary has not reported taking it up."""

    def __str__(self) -> str:
        """Say which dataset, node and epoch."""
        dataset_id, primary, epoch = self.args
        return (
            f"dataset {dataset_id} failed over to node {primary} (epoch "
            f"{epoch}), which has not reported taking it up yet: "
            "move it once that node reports its copy as the primary"
        )


class PoolTooSmall(ModelError):
    """A dataset's maximum size is larger than a pool that would hold a copy."""

    def __str__(self) -> str:
        """Say which pool is too small (the reason the cluster state gives)."""
        return str(self.args[0])


class DeletedDatasetNotMovable(ModelError):
    """A deleted dataset cannot be moved (the original API answered 405)."""

    def __str__(self) -> str:
        """Say which dataset."""
        return f"dataset {self.args[0]} was deleted: it cannot be moved"


class NoLease(ModelError):
    """There is no lease on the dataset to release."""

    def __str__(self) -> str:
        """Say which dataset."""
        return f"there is no lease on dataset {self.args[0]}"


class UnknownCopy(ModelError):
    """The environment has no copy by this name."""

    def __str__(self) -> str:
        """Say which environment and copy."""
        name, copy = self.args
        return f"environment {name!r} has no copy {copy!r}"


class NoConsistentReplica(ModelError):
    """A node has reported no snapshot of its replica, so it cannot be promoted."""

    def __str__(self) -> str:
        """Say which node and dataset."""
        node_uuid, dataset_id = self.args
        return (
            f"node {node_uuid} has reported no snapshot of dataset {dataset_id} "
            "yet: its replica has no consistent data to start from"
        )


class ReplicaNotReady(ModelError):
    """A node reports its copy in another role than replica, so it cannot be promoted."""

    def __str__(self) -> str:
        """Say which node, dataset and role."""
        node_uuid, dataset_id, role = self.args
        return (
            f"node {node_uuid} reports its copy of dataset {dataset_id} as "
            f"{role}, not as a replica (a move to or from it is under way, "
            "or it diverged): it cannot be promoted now"
        )


class PrimaryAsReplica(ModelError):
    """The dataset's primary node was listed as one of its standing replicas."""

    def __str__(self) -> str:
        """Say which node and dataset."""
        return (
            f"node {self.args[1]} is the primary of dataset {self.args[0]}; "
            "it cannot also hold a standing replica of it"
        )


class DuplicateReplicas(ModelError):
    """A node was listed more than once as a standing replica of one dataset."""

    def __str__(self) -> str:
        """Say which nodes are repeated."""
        return (
            f"standing replicas of dataset {self.args[0]} list node(s) "
            f"{', '.join(self.args[1])} more than once"
        )


class TooManyReplicas(ModelError):
    """More standing replicas were asked for than a dataset may have."""

    def __str__(self) -> str:
        """Say how many were asked for and the limit."""
        return (
            f"dataset {self.args[0]} may have at most {self.args[2]} standing "
            f"replicas, not {self.args[1]}"
        )


class NotAReplica(ModelError):
    """A failover target holds no standing replica of a dataset it must take."""

    def __str__(self) -> str:
        """Say which dataset the node holds no standing replica of."""
        return f"node {self.args[1]} holds no standing replica of dataset {self.args[0]}"


#: User snapshot names: Flocker's own snapshots start with "flocker".
_SNAPSHOT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


def is_snapshot_name(value: object, internal: bool = False) -> bool:
    """
    Whether ``value`` may name a snapshot: 1–64 of letters, digits and
    ``_.:-``, starting with a letter or digit; only Flocker itself
    (``internal``) may use names starting with ``flocker``.
    """
    return (
        isinstance(value, str)
        and _SNAPSHOT_NAME.match(value) is not None
        and (internal or not value.lower().startswith("flocker"))
    )


def snapshot_name_invariant(value: object) -> tuple[bool, str]:
    """A snapshot named in the configuration has a valid (possibly internal) name."""
    return (is_snapshot_name(value, internal=True), f"not a snapshot name: {value!r}")


def finite_or_none(value: object) -> tuple[bool, str]:
    """A time must be a finite number or ``None``."""
    return (
        value is None or (isinstance(value, float) and math.isfinite(value)),
        f"not a finite time: {value!r}",
    )
