"""
The part of `FakeFlockerClient` that holds snapshots, rollbacks, clones,
environments and transfers, with the rules the control service (and the
nodes' dataset agents) apply to them: `flocker.control._httpapi_cloning`,
`flocker.control._cloning` and `flocker.node._snapshots`.

Snapshots are the primary node's: a dataset's snapshots can be worked on
only while its primary reports it exposed (after `synchronize_state`),
and Flocker's own (``flocker…``) are not listed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar
from uuid import UUID, uuid4

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime

from ._interface import (
    BadRequest,
    Container,
    ContainerPort,
    Dataset,
    DatasetState,
    Environment,
    EnvironmentApplication,
    EnvironmentConflict,
    EnvironmentCopy,
    EnvironmentDataset,
    NodeUnavailable,
    Origin,
    Rollback,
    Snapshot,
    SnapshotConflict,
    Transfer,
    Transfers,
    UnknownContainer,
    UnknownEnvironment,
    UnknownSnapshot,
)

__all__ = ["FIRST_FREE_PORT", "FakeCloning"]

#: Ports for environment copies are chosen from here up.
FIRST_FREE_PORT = 20000

#: A snapshot name a user may give (Flocker's own start with ``flocker``).
_USER_SNAPSHOT_NAME = re.compile(
    r"^(?![Ff][Ll][Oo][Cc][Kk][Ee][Rr])[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
)

#: An application, environment or copy name.
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")

T = TypeVar("T")


class _DryRun(Exception):
    """Raised to undo a change that was made only for its checks."""


def _raise(error: Exception) -> Any:
    raise error


@attrs.frozen
class _FakeCopy:
    """A copy: original application → its copy's name; original → clone id."""

    name: str
    applications: Mapping[str, str]
    datasets: Mapping[UUID, UUID]


@attrs.frozen
class _FakeEnvironment:
    """An environment as the fake keeps it (its copies' details are derived)."""

    name: str
    snapshot: str
    applications: tuple[str, ...]
    copies: Mapping[str, _FakeCopy]


class FakeCloning:
    """
    `FakeFlockerClient`'s snapshots, rollbacks, clones, environments and
    transfers; the state they use is `FakeFlockerClient`'s.
    """

    clock: IReactorTime
    _datasets: dict[UUID, Dataset]
    _containers: dict[str, Container]
    _state_datasets: list[DatasetState]
    _snapshots: dict[UUID, list[Snapshot]]
    _environments: dict[str, _FakeEnvironment]
    _rollbacks: dict[UUID, Rollback]
    _transfers: Transfers
    _disconnected: set[UUID]
    _write: Callable[..., Deferred[Any]]
    _get: Callable[..., Dataset]
    _user: Callable[[UUID], Container | None]
    _live_lease: Callable[[UUID], Any]

    def disconnect_agent(self, node_uuid: UUID) -> None:
        """
        Make a node's dataset agent unreachable (snapshot operations on its
        datasets fail with `NodeUnavailable`), as if it were not connected
        to the control service.
        """
        self._disconnected.add(node_uuid)

    def report_transfers(
        self, transfers: Sequence[Transfer], unanswered: Sequence[UUID] = ()
    ) -> None:
        """
        Make the nodes report these transfers in progress (and the
        ``unanswered`` nodes' agents not answer) until this is called again.
        """
        self._transfers = Transfers(
            transfers=sorted(transfers, key=lambda t: (str(t.dataset_id), str(t.node_uuid))),
            unanswered=sorted(unanswered, key=str),
        )

    # -- snapshots, rollback, clones ---------------------------------------------

    @staticmethod
    def _check_snapshot_name(name: str) -> str:
        if not _USER_SNAPSHOT_NAME.match(name):
            raise BadRequest(
                400,
                f"{name!r} is not a snapshot name: 1-64 letters, digits and _.:-, "
                "starting with a letter or digit, not starting with 'flocker'",
            )
        return name

    def _on_primary(self, dataset_id: UUID, error: type = SnapshotConflict) -> Dataset:
        """
        The dataset, if its primary can work on its snapshots now: it is
        not deleted, its primary's agent is connected and reports it exposed.
        """
        dataset = self._get(dataset_id)
        if dataset.deleted:
            raise error(409, f"dataset {dataset_id} is deleted")
        if dataset.primary in self._disconnected:
            raise NodeUnavailable(
                503,
                f"the dataset agent of node {dataset.primary}, the primary of "
                f"dataset {dataset_id}, is not connected to the control service",
            )
        if not any(
            s.dataset_id == dataset_id and s.primary == dataset.primary and s.path
            for s in self._state_datasets
        ):
            raise error(
                409,
                f"dataset {dataset_id} is not exposed on its primary node "
                f"{dataset.primary} yet (being created or moved): try again once "
                "it is mounted",
            )
        return dataset

    def _require_snapshot(self, dataset_id: UUID, name: str) -> Dataset:
        dataset = self._on_primary(dataset_id)
        if name not in {s.name for s in self._snapshots.get(dataset_id, [])}:
            raise UnknownSnapshot(404, f"dataset {dataset_id} has no snapshot {name!r}")
        return dataset

    def _take(self, dataset_id: UUID, name: str, error: type = SnapshotConflict) -> Snapshot:
        """Take a snapshot on the dataset's primary (any name)."""
        self._on_primary(dataset_id, error)
        held = self._snapshots.setdefault(dataset_id, [])
        if name in {s.name for s in held}:
            raise error(409, f"dataset {dataset_id} already has a snapshot {name!r}")
        snapshot = Snapshot(name=name, created=float(self.clock.seconds()))
        held.append(snapshot)
        return snapshot

    def _call(self, action: Callable[[], T]) -> Deferred[T]:
        """``action()``'s result or failure, as a Deferred."""
        try:
            return succeed(action())
        except Exception as e:
            return fail(e)

    def _dry_run(self, change: Callable[[], object]) -> None:
        """Run ``change`` for its checks only: the configuration is restored."""
        failure: list[Any] = []
        self._write(lambda: _raise(_DryRun(change()))).addErrback(failure.append)
        if not failure[0].check(_DryRun):
            failure[0].raiseException()

    def list_snapshots(self, dataset_id: UUID) -> Deferred[list[Snapshot]]:
        """See `IFlockerAPIV1Client.list_snapshots`."""

        def listed() -> list[Snapshot]:
            self._on_primary(dataset_id)
            return [
                s
                for s in self._snapshots.get(dataset_id, [])
                if not s.name.lower().startswith("flocker")
            ]

        return self._call(listed)

    def create_snapshot(self, dataset_id: UUID, name: str) -> Deferred[Snapshot]:
        """See `IFlockerAPIV1Client.create_snapshot`."""
        return self._call(
            lambda: self._take(dataset_id, self._check_snapshot_name(name))
        )

    def delete_snapshot(self, dataset_id: UUID, name: str) -> Deferred[Snapshot]:
        """See `IFlockerAPIV1Client.delete_snapshot`."""

        def delete() -> Snapshot:
            self._check_snapshot_name(name)
            for clone in self._datasets.values():
                if not clone.deleted and clone.origin == Origin(
                    dataset_id=dataset_id, snapshot=name
                ):
                    raise SnapshotConflict(
                        409,
                        f"snapshot {name!r} of {dataset_id} has clones: dataset "
                        f"{clone.dataset_id} is made from it (delete it first)",
                    )
            self._require_snapshot(dataset_id, name)
            held = self._snapshots[dataset_id]
            [snapshot] = [s for s in held if s.name == name]
            held.remove(snapshot)
            return snapshot

        return self._call(delete)

    def _refuse_rollback_past_needed(self, dataset_id: UUID, snapshot: str) -> None:
        """Refuse a rollback discarding a snapshot a clone or an environment needs."""
        names = [s.name for s in self._snapshots.get(dataset_id, [])]
        later = set(names[names.index(snapshot) + 1 :])
        needed = {
            e.snapshot: f"environment {e.name!r}" for e in self._environments.values()
        }
        for dataset in self._datasets.values():
            origin = dataset.origin
            if origin is not None and origin.dataset_id == dataset_id and not dataset.deleted:
                needed.setdefault(origin.snapshot, f"clone {dataset.dataset_id}")
        for name in sorted(later & set(needed)):
            raise SnapshotConflict(
                409,
                f"rolling back to {snapshot!r} would discard the later snapshot "
                f"{name!r}, which {needed[name]} is made from",
            )

    def rollback_dataset(
        self, dataset_id: UUID, snapshot: str, configuration_tag: str | None = None
    ) -> Deferred[Rollback]:
        """See `IFlockerAPIV1Client.rollback_dataset`."""

        def checked() -> None:
            self._check_snapshot_name(snapshot)
            self._require_snapshot(dataset_id, snapshot)
            self._refuse_rollback_past_needed(dataset_id, snapshot)

        def change() -> Rollback:
            rollback = Rollback(
                dataset_id=dataset_id, snapshot=snapshot, request_id=uuid4()
            )
            self._rollbacks[dataset_id] = rollback
            return rollback

        return self._call(checked).addCallback(
            lambda _: self._write(change, configuration_tag)
        )

    def clone_dataset(
        self,
        dataset_id: UUID,
        snapshot: str,
        new_dataset_id: UUID | None = None,
        metadata: Mapping[str, str] | None = None,
        configuration_tag: str | None = None,
    ) -> Deferred[Dataset]:
        """See `IFlockerAPIV1Client.clone_dataset`."""
        new_id = uuid4() if new_dataset_id is None else new_dataset_id

        def checked() -> Dataset:
            self._check_snapshot_name(snapshot)
            return self._require_snapshot(dataset_id, snapshot)

        def change(source: Dataset) -> Dataset:
            if new_id in self._datasets:
                raise SnapshotConflict(409, f"dataset {new_id} already exists")
            clone = Dataset(
                dataset_id=new_id,
                primary=source.primary,
                maximum_size=source.maximum_size,
                metadata=dict(metadata or {}),
                origin=Origin(dataset_id=dataset_id, snapshot=snapshot),
            )
            self._datasets[new_id] = clone
            return clone

        return self._call(checked).addCallback(
            lambda source: self._write(lambda: change(source), configuration_tag)
        )

    # -- transfers -----------------------------------------------------------------

    def list_transfers(self) -> Deferred[Transfers]:
        """See `IFlockerAPIV1Client.list_transfers`."""
        return succeed(self._transfers)

    # -- environments ----------------------------------------------------------------

    def _copy_value(self, environment: _FakeEnvironment, copy: _FakeCopy) -> EnvironmentCopy:
        applications = []
        for original, name in sorted(copy.applications.items()):
            container = self._containers.get(name)
            applications.append(
                EnvironmentApplication(name=name, origin=original)
                if container is None
                else EnvironmentApplication(
                    name=name,
                    origin=original,
                    node_uuid=container.node_uuid,
                    ports=sorted(container.ports, key=lambda p: p.external),
                )
            )
        return EnvironmentCopy(
            name=copy.name,
            applications=applications,
            datasets=[
                EnvironmentDataset(
                    dataset_id=clone,
                    origin=Origin(dataset_id=original, snapshot=environment.snapshot),
                )
                for original, clone in sorted(
                    copy.datasets.items(), key=lambda i: str(i[0])
                )
            ],
        )

    def _environment_value(self, environment: _FakeEnvironment) -> Environment:
        return Environment(
            name=environment.name,
            snapshot=environment.snapshot,
            applications=list(environment.applications),
            copies=[
                self._copy_value(environment, environment.copies[c])
                for c in sorted(environment.copies)
            ],
        )

    def _get_environment(self, name: str) -> _FakeEnvironment:
        environment = self._environments.get(name)
        if environment is None:
            raise UnknownEnvironment(404, f"unknown environment {name!r}")
        return environment

    def _get_copy(self, name: str, copy: str) -> tuple[_FakeEnvironment, _FakeCopy]:
        environment = self._get_environment(name)
        found = environment.copies.get(copy)
        if found is None:
            raise UnknownEnvironment(404, f"environment {name!r} has no copy {copy!r}")
        return environment, found

    def list_environments(self) -> Deferred[list[Environment]]:
        """See `IFlockerAPIV1Client.list_environments`."""
        return succeed(
            [self._environment_value(self._environments[n]) for n in sorted(self._environments)]
        )

    def get_environment(self, name: str) -> Deferred[Environment]:
        """See `IFlockerAPIV1Client.get_environment`."""
        return self._call(lambda: self._environment_value(self._get_environment(name)))

    def _group_datasets(self, originals: Sequence[str]) -> list[UUID]:
        """The datasets the original applications use, in order (checked)."""
        found: list[UUID] = []
        for name in originals:
            container = self._containers.get(name)
            if container is None:
                raise UnknownContainer(404, f"unknown application {name!r}")
            for volume in sorted(container.volumes, key=lambda v: v.mountpoint):
                dataset = self._get(volume.dataset_id)
                if dataset.deleted:
                    raise EnvironmentConflict(409, f"dataset {dataset.dataset_id} is deleted")
                if volume.dataset_id not in found:
                    found.append(volume.dataset_id)
        return found

    def _clone_for_copy(
        self, environment: str, copy: str, snapshot: str, originals: Sequence[UUID]
    ) -> dict[UUID, UUID]:
        """Clone each original dataset for ``copy``; original → clone id."""
        clones = {}
        for dataset_id in originals:
            source = self._datasets[dataset_id]
            name = source.metadata.get("name", str(dataset_id)[:8])
            clone = Dataset(
                dataset_id=uuid4(),
                primary=source.primary,
                maximum_size=source.maximum_size,
                metadata={
                    **dict(source.metadata),
                    "name": f"{name}-{environment}-{copy}",
                    "flocker-environment": environment,
                    "flocker-copy": copy,
                },
                origin=Origin(dataset_id=dataset_id, snapshot=snapshot),
            )
            self._datasets[clone.dataset_id] = clone
            clones[dataset_id] = clone.dataset_id
        return clones

    def _add_environment(
        self,
        name: str,
        originals: Sequence[str],
        copies: Sequence[str],
        snapshot: str,
        ports: Mapping[str, Mapping[str, Mapping[int, int]]],
    ) -> _FakeEnvironment:
        """Add the copies to the configuration, as the control service checks them."""
        if name in self._environments:
            raise EnvironmentConflict(409, f"environment {name!r} already exists")
        for copy in ports:
            if copy not in copies:
                raise BadRequest(400, f"ports given for {copy!r}, which is not one of the copies")
        datasets = self._group_datasets(originals)
        group = {n: self._containers[n] for n in originals}
        taken = {p.external for c in self._containers.values() for p in c.ports}
        next_free = FIRST_FREE_PORT
        made: dict[str, _FakeCopy] = {}
        for copy in copies:
            if not _NAME.match(copy) or not all(
                _NAME.match(f"{o}-{name}-{copy}") for o in originals
            ):
                raise BadRequest(400, f"{copy!r} is not a valid copy name")
            chosen = ports.get(copy, {})
            for app_name in chosen:
                if app_name not in group:
                    raise BadRequest(
                        400, f"ports given for {app_name!r}, which is not in the group"
                    )
            mapping: dict[str, dict[int, int]] = {}
            for app_name, original in group.items():
                mapping[app_name] = {}
                for port in sorted(original.ports, key=lambda p: p.external):
                    new = chosen.get(app_name, {}).get(port.external)
                    if new is None:
                        while next_free in taken:
                            next_free += 1
                        new = next_free
                    elif new in taken:
                        raise BadRequest(
                            400, f"port {new} for copy {copy!r} is already published"
                        )
                    taken.add(new)
                    mapping[app_name][port.external] = new
            links: dict[int, int] = {}
            for app_name in sorted(mapping):
                for external, new in mapping[app_name].items():
                    links.setdefault(external, new)
            clones = self._clone_for_copy(name, copy, snapshot, datasets)
            names = {}
            for app_name, original in group.items():
                new_name = f"{app_name}-{name}-{copy}"
                if new_name in self._containers:
                    raise EnvironmentConflict(
                        409, f"application {new_name!r} already exists"
                    )
                self._containers[new_name] = original.specification().set(
                    name=new_name,
                    ports=[
                        ContainerPort(
                            internal=p.internal, external=mapping[app_name][p.external]
                        )
                        for p in original.ports
                    ],
                    links=[
                        x.set(remote_port=links.get(x.remote_port, x.remote_port))
                        for x in original.links
                    ],
                    volumes=[
                        v.set(dataset_id=clones[v.dataset_id]) for v in original.volumes
                    ],
                )
                names[app_name] = new_name
            made[copy] = _FakeCopy(name=copy, applications=names, datasets=clones)
        environment = _FakeEnvironment(
            name=name, snapshot=snapshot, applications=tuple(originals), copies=made
        )
        self._environments[name] = environment
        return environment

    def create_environment(
        self,
        name: str,
        applications: Sequence[str],
        copies: int | Sequence[str],
        ports: Mapping[str, Mapping[str, Mapping[int, int]]] | None = None,
        configuration_tag: str | None = None,
    ) -> Deferred[Environment]:
        """See `IFlockerAPIV1Client.create_environment`."""
        originals = list(applications)
        names = (
            [str(n) for n in range(1, copies + 1)]
            if isinstance(copies, int)
            else list(copies)
        )
        snapshot = f"flocker-env-{name[:40]}-{uuid4().hex[:8]}"

        def checked() -> None:
            """What the REST API's schema refuses, then every model check."""
            if not _NAME.match(name) or not all(map(_NAME.match, originals)):
                raise BadRequest(400, "a bad environment or application name")
            if not 0 < len(originals) <= 32 or len(set(originals)) != len(originals):
                raise BadRequest(400, "give 1 to 32 distinct applications")
            if not 0 < len(names) <= 50 or len(set(names)) != len(names):
                raise BadRequest(400, "give 1 to 50 distinctly named copies")
            self._dry_run(change)

        def take() -> None:
            for dataset_id in self._group_datasets(originals):
                self._take(dataset_id, snapshot, EnvironmentConflict)

        def change() -> Environment:
            return self._environment_value(
                self._add_environment(name, originals, names, snapshot, ports or {})
            )

        # Every check first, so that a refused request takes no snapshot.
        return (
            self._call(checked)
            .addCallback(lambda _: self._call(take))
            .addCallback(lambda _: self._write(change, configuration_tag))
        )

    def delete_environment(
        self, name: str, configuration_tag: str | None = None
    ) -> Deferred[Environment]:
        """See `IFlockerAPIV1Client.delete_environment`."""

        def change() -> Environment:
            environment = self._get_environment(name)
            for copy in list(environment.copies):
                self._remove_copy(name, copy)
            del self._environments[name]
            return self._environment_value(attrs.evolve(environment, copies={}))

        return self._write(change, configuration_tag)

    def _delete_clone(self, dataset_id: UUID) -> None:
        """Delete a copy's clone, as the control service does (if still there)."""
        dataset = self._datasets.get(dataset_id)
        if dataset is None or dataset.deleted:
            return
        user = self._user(dataset_id)
        if user is not None:
            raise EnvironmentConflict(409, f"dataset {dataset_id} is used by {user.name!r}")
        if self._live_lease(dataset_id) is not None:
            raise EnvironmentConflict(409, f"dataset {dataset_id} is leased")
        self._datasets[dataset_id] = dataset.set(deleted=True)

    def _remove_copy(self, name: str, copy: str) -> _FakeCopy:
        environment, found = self._get_copy(name, copy)
        for app_name in found.applications.values():
            self._containers.pop(app_name, None)
        for dataset_id in found.datasets.values():
            self._delete_clone(dataset_id)
        self._environments[name] = attrs.evolve(
            environment,
            copies={k: v for k, v in environment.copies.items() if k != copy},
        )
        return found

    def reset_environment_copy(
        self, name: str, copy: str, configuration_tag: str | None = None
    ) -> Deferred[EnvironmentCopy]:
        """See `IFlockerAPIV1Client.reset_environment_copy`."""

        def change() -> EnvironmentCopy:
            environment, found = self._get_copy(name, copy)
            clones = self._clone_for_copy(
                name, copy, environment.snapshot, list(found.datasets)
            )
            renamed = {old: clones[original] for original, old in found.datasets.items()}
            for app_name in found.applications.values():
                container = self._containers.get(app_name)
                if container is not None:
                    self._containers[app_name] = container.set(
                        volumes=[
                            v.set(dataset_id=renamed.get(v.dataset_id, v.dataset_id))
                            for v in container.volumes
                        ]
                    )
            for old in found.datasets.values():
                self._delete_clone(old)
            fresh = attrs.evolve(found, datasets=clones)
            environment = attrs.evolve(
                environment, copies={**environment.copies, copy: fresh}
            )
            self._environments[name] = environment
            return self._copy_value(environment, fresh)

        return self._write(change, configuration_tag)

    def delete_environment_copy(
        self, name: str, copy: str, configuration_tag: str | None = None
    ) -> Deferred[EnvironmentCopy]:
        """See `IFlockerAPIV1Client.delete_environment_copy`."""

        def change() -> EnvironmentCopy:
            environment, _ = self._get_copy(name, copy)
            found = self._remove_copy(name, copy)
            return self._copy_value(environment, found)

        return self._write(change, configuration_tag)
