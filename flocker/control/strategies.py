"""Hypothesis strategies for every class of the control model.

Product-side so that any package's tests can build arbitrary valid
configurations and states (``from flocker.control.strategies import
deployments``).  Every value drawn satisfies the model's invariants.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from ._checks import INSTANCE_SUFFIX
from ._environments import Environment, EnvironmentCopy
from ._model import (
    FAILOVER_MODES,
    MAXIMUM_INSTANCES,
    Application,
    AttachedVolume,
    Dataset,
    Deployment,
    HealthCheck,
    Lease,
    Leases,
    Link,
    Manifestation,
    Node,
    Origin,
    Port,
    Replication,
    RestartAlways,
    RestartNever,
    RestartOnFailure,
    RollbackRequest,
)
from ._state import (
    DATASET_ROLES,
    HEALTH_STATUSES,
    ApplicationHealth,
    ChangeFailure,
    DatasetState,
    DeploymentState,
    ImagePull,
    NodeState,
    PoolState,
    Snapshot,
)

__all__ = [
    "application_healths",
    "application_names",
    "applications",
    "attached_volumes",
    "change_failures",
    "dataset_ids",
    "pool_states",
    "dataset_states",
    "datasets",
    "deployment_states",
    "deployments",
    "health_checks",
    "leases",
    "leases_collections",
    "links",
    "manifestations",
    "node_states",
    "node_uuids",
    "nodes",
    "ports",
    "restart_policies",
    "snapshots",
]

#: Canonical UUID strings.
node_uuids = st.uuids().map(str)
dataset_ids = st.uuids().map(str)

#: Valid application names and link aliases.
_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
application_names = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(_ALNUM),
    st.text(alphabet=_ALNUM + "_.-", max_size=15),
).filter(lambda name: INSTANCE_SUFFIX.search(name) is None)  # web..2: an extra instance


def _word(alphabet: str, max_size: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=alphabet, min_size=1, max_size=max_size)


_LOWER = "abcdefghijklmnopqrstuvwxyz0123456789"

_text = st.text(max_size=12)
_port_numbers = st.integers(min_value=1, max_value=65535)
_sizes = st.integers(min_value=1, max_value=2**50)
_times = st.floats(min_value=0, max_value=2**32, allow_nan=False, allow_infinity=False)
_mountpoints = st.lists(_word(_LOWER + "_.-", 8), min_size=1, max_size=3).map(
    lambda parts: "/" + "/".join(parts)
)


def datasets(dataset_id: Any = None, deleted: Any = None) -> st.SearchStrategy[Dataset]:
    """Datasets, optionally with a given id or deleted flag."""
    return st.builds(
        Dataset,
        dataset_id=dataset_ids if dataset_id is None else st.just(dataset_id),
        metadata=st.dictionaries(_text, _text, max_size=3),
        maximum_size=st.none() | _sizes,
        deleted=st.booleans() if deleted is None else st.just(deleted),
        origin=st.none() | st.builds(Origin, dataset_id=dataset_ids, snapshot=snapshot_names),
        rollback=st.none()
        | st.builds(RollbackRequest, snapshot=snapshot_names, request_id=dataset_ids),
        replication=replications(),
        epoch=st.integers(0, 1000),
    )


def replications() -> st.SearchStrategy[Replication]:
    """Replication settings (mostly the default)."""
    return st.just(Replication()) | st.builds(
        Replication,
        interval_seconds=st.integers(0, 86400),
        failover=st.sampled_from(FAILOVER_MODES),
    )


#: Snapshot names (user-style and Flocker's own).
snapshot_names = st.one_of(
    st.text(_ALNUM, min_size=1, max_size=8),
    st.text(_ALNUM, min_size=1, max_size=8).map(lambda s: f"flocker-env-{s}"),
)


def environments(name: str) -> st.SearchStrategy[Environment]:
    """Environments with a few copies (names need not match the configuration)."""
    copy = st.builds(
        lambda n, apps, datasets: EnvironmentCopy(name=n, applications=apps, datasets=datasets),
        st.text(_LOWER, min_size=1, max_size=6),
        st.dictionaries(application_names, application_names, max_size=3),
        st.dictionaries(dataset_ids, dataset_ids, max_size=3),
    )
    return st.builds(
        lambda snapshot, apps, copies: Environment(
            name=name,
            snapshot=snapshot,
            applications=apps,
            copies={c.name: c for c in copies},
        ),
        snapshot_names,
        st.lists(application_names, max_size=3),
        st.lists(copy, max_size=3),
    )


def manifestations() -> st.SearchStrategy[Manifestation]:
    """Manifestations of arbitrary datasets: primaries, standing replicas, transients."""
    return st.builds(
        lambda dataset, kind: Manifestation(
            dataset=dataset, primary=kind == "primary", standing=kind == "standing"
        ),
        datasets(),
        st.sampled_from(["primary", "standing", "transient"]),
    )


def ports() -> st.SearchStrategy[Port]:
    """Published ports."""
    return st.builds(Port, internal_port=_port_numbers, external_port=_port_numbers)


def links() -> st.SearchStrategy[Link]:
    """Links to other applications."""
    return st.builds(
        Link,
        alias=application_names,
        local_port=_port_numbers,
        remote_port=_port_numbers,
    )


def attached_volumes() -> st.SearchStrategy[AttachedVolume]:
    """Volumes attached at some mountpoint."""
    return st.builds(AttachedVolume, dataset_id=dataset_ids, mountpoint=_mountpoints)


def restart_policies() -> st.SearchStrategy[Any]:
    """Any restart policy."""
    return st.one_of(
        st.just(RestartNever()),
        st.just(RestartAlways()),
        st.builds(
            RestartOnFailure, maximum_retry_count=st.none() | st.integers(1, 100)
        ),
    )


_seconds = st.floats(min_value=0.001, max_value=86400, allow_nan=False)


@st.composite
def health_checks(draw: Any, ports: Any = None) -> HealthCheck:
    """
    Health checks: HTTP (with a path) or TCP.

    :param ports: the internal ports it may probe (default: any port).
    """
    kind = draw(st.sampled_from(["http", "tcp"]))
    path = "/" + draw(st.text(_LOWER + "/._-?=&", max_size=15))
    return HealthCheck(
        kind=kind,
        port=draw(_port_numbers if ports is None else st.sampled_from(sorted(ports))),
        path=path if kind == "http" else None,
        interval=draw(_seconds),
        timeout=draw(_seconds),
        retries=draw(st.integers(1, 1000)),
        start_period=draw(st.just(0.0) | _seconds),
    )


#: How many instances an application without volumes runs: mostly one.
_instances = st.just(1) | st.integers(1, MAXIMUM_INSTANCES)


@st.composite
def applications(
    draw: Any,
    name: Any = None,
    dataset_ids: Any = None,
    external_ports: Any = None,
    history: bool = True,
) -> Application:
    """
    Applications, some with a health check of their own, some without
    volumes running several instances (``replicas`` up to
    `MAXIMUM_INSTANCES`), some updated (a revision above 0, maybe a
    previous specification of the same volumes and external ports, maybe
    waiting to be healthy, maybe rolled back by themselves).

    :param name: a fixed name, or ``None`` for any.
    :param dataset_ids: the ids its volumes use (default: some random ones).
    :param external_ports: the external ports it publishes (default: random).
    :param history: whether it may have an update history.
    """
    if dataset_ids is None:
        dataset_ids = draw(st.lists(st.uuids().map(str), max_size=2, unique=True))
    mountpoints = draw(
        st.lists(
            _mountpoints,
            min_size=len(dataset_ids),
            max_size=len(dataset_ids),
            unique=True,
        )
    )
    if external_ports is None:
        external_ports = draw(st.lists(_port_numbers, max_size=2, unique=True))
    app_ports = [
        Port(internal_port=draw(_port_numbers), external_port=p) for p in external_ports
    ]
    application = Application(
        name=draw(application_names) if name is None else name,
        image=draw(_word(_LOWER, 1)) + draw(st.text(_LOWER + "/._-", max_size=15)),
        ports=app_ports,
        links=draw(st.lists(links(), max_size=2, unique_by=lambda x: x.alias)),
        environment=draw(st.dictionaries(_text, _text, max_size=3)),
        volumes=[
            AttachedVolume(dataset_id=d, mountpoint=m)
            for d, m in zip(dataset_ids, mountpoints, strict=True)
        ],
        restart_policy=draw(restart_policies()),
        cpu_shares=draw(st.none() | st.integers(1, 1024)),
        memory_limit=draw(st.none() | _sizes),
        swappiness=draw(st.none() | st.integers(0, 100)),
        command_line=draw(st.none() | st.lists(_text, max_size=3)),
        health=draw(
            st.none() | health_checks({p.internal_port for p in app_ports})
            if app_ports
            else st.none()
        ),
        replicas=1 if dataset_ids else draw(_instances),
    )
    if not history or not draw(st.booleans()):
        return application
    if draw(st.booleans()):
        previous = draw(
            applications(
                name=application.name,
                dataset_ids=[],
                external_ports=external_ports,
                history=False,
            )
        )
        previous = previous.set(
            volumes=application.volumes,
            replicas=1 if application.volumes else previous.replicas,
        )
        return application.set(
            revision=draw(st.integers(1, 50)),
            previous=previous.set(revision=draw(st.integers(0, 49))),
            updating=draw(st.booleans()),
        )
    return application.set(
        revision=draw(st.integers(1, 50)),
        update_failed=draw(st.none() | _word(_LOWER + " :", 30)),
    )


@st.composite
def deployments(draw: Any, max_nodes: int = 3, max_datasets: int = 5) -> Deployment:
    """Valid deployments: datasets with one primary and maybe replicas, apps, leases."""
    uuids = draw(st.lists(node_uuids, max_size=max_nodes, unique=True))
    if not uuids:
        return Deployment()
    manifestations: dict[str, dict[str, Manifestation]] = {u: {} for u in uuids}
    live_primaries: dict[str, list[str]] = {u: [] for u in uuids}
    all_ids = []
    for dataset in draw(
        st.lists(datasets(), max_size=max_datasets, unique_by=lambda d: d.dataset_id)
    ):
        primary = draw(st.sampled_from(uuids))
        replicas = draw(st.lists(st.sampled_from(uuids), max_size=2, unique=True))
        for r in replicas:
            if r != primary:
                manifestations[r][dataset.dataset_id] = Manifestation(
                    dataset=dataset, primary=False, standing=draw(st.booleans())
                )
        manifestations[primary][dataset.dataset_id] = Manifestation(
            dataset=dataset, primary=True
        )
        if not dataset.deleted:
            live_primaries[primary].append(dataset.dataset_id)
        all_ids.append(dataset.dataset_id)
    names = iter(
        draw(st.lists(application_names, max_size=4 * len(uuids), unique=True))
    )
    nodes = {}
    for uuid in uuids:
        apps = {}
        free = list(live_primaries[uuid])
        used_ports: set[int] = set()
        for name in names:
            if not draw(st.booleans()):
                break
            take = draw(st.integers(0, min(2, len(free))))
            mine, free = free[:take], free[take:]
            ext = [
                p
                for p in draw(st.lists(_port_numbers, max_size=2, unique=True))
                if p not in used_ports
            ]
            used_ports.update(ext)
            apps[name] = draw(
                applications(name=name, dataset_ids=mine, external_ports=ext)
            )
        nodes[uuid] = Node(
            uuid=uuid, applications=apps, manifestations=manifestations[uuid]
        )
    leased = draw(st.lists(st.sampled_from(all_ids), unique=True)) if all_ids else []
    lease_map = {
        d: Lease(
            dataset_id=d,
            node_uuid=draw(st.sampled_from(uuids)),
            expiration=draw(st.none() | _times),
        )
        for d in leased
    }
    envs = {
        name: draw(environments(name))
        for name in draw(st.lists(st.text(_LOWER, min_size=1, max_size=6), max_size=2, unique=True))
    }
    return Deployment(nodes=nodes, leases=Leases(leases=lease_map), environments=envs)


def nodes() -> st.SearchStrategy[Node]:
    """Valid nodes (taken from valid deployments)."""
    return (
        deployments(max_nodes=1)
        .filter(lambda d: len(d.nodes) == 1)
        .map(lambda d: next(iter(d.nodes.values())))
    )


def leases() -> st.SearchStrategy[Lease]:
    """Leases."""
    return st.builds(
        Lease,
        dataset_id=dataset_ids,
        node_uuid=node_uuids,
        expiration=st.none() | _times,
    )


def leases_collections() -> st.SearchStrategy[Leases]:
    """Collections of leases."""
    return st.lists(leases(), max_size=4, unique_by=lambda x: x.dataset_id).map(
        lambda ls: Leases(leases={x.dataset_id: x for x in ls})
    )


def snapshots() -> st.SearchStrategy[Snapshot]:
    """Snapshots."""
    return st.builds(Snapshot, name=_word(_LOWER + "-", 12), created=st.none() | _times)


def dataset_states(dataset_id: Any = None) -> st.SearchStrategy[DatasetState]:
    """Datasets as a node reports them."""
    return st.builds(
        DatasetState,
        dataset_id=dataset_ids if dataset_id is None else st.just(dataset_id),
        path=st.none() | _mountpoints,
        size=st.none() | st.integers(0, 2**50),
        maximum_size=st.none() | _sizes,
        snapshots=st.lists(snapshots(), max_size=3),
        rolled_back=st.none() | dataset_ids,
        role=st.none() | st.sampled_from(DATASET_ROLES),
        epoch=st.none() | st.integers(0, 1000),
    )


def change_failures() -> st.SearchStrategy[ChangeFailure]:
    """Changes an agent reports failing."""
    return st.builds(
        ChangeFailure,
        dataset_id=st.none() | dataset_ids,
        change=st.sampled_from(["flocker:node:dataset:push", "flocker:node:discover"]),
        reason=_word(_LOWER + " :", 30),
        since=st.floats(0, 2e9, allow_nan=False),
        count=st.integers(1, 1000),
    )


def pool_states() -> st.SearchStrategy[PoolState]:
    """Storage pools as a node reports them."""
    return st.builds(
        PoolState,
        size=st.integers(0, 2**50),
        free=st.integers(0, 2**50),
        full=st.booleans(),
        oversized=st.lists(dataset_ids, max_size=2),
    )


@st.composite
def image_pulls(draw: Any) -> ImagePull:
    """Images being got, or that failed to be, for an application."""
    return ImagePull(
        application=draw(_word(_LOWER, 8)),
        image=draw(_word(_LOWER + "/:.", 20)),
        pulling=draw(st.booleans()),
        reason=draw(st.none() | st.text(max_size=20)),
        attempts=draw(st.integers(0, 9)),
        since=draw(st.floats(0, 2e9, allow_nan=False)),
        layers_done=draw(st.integers(0, 5)),
        layers_total=draw(st.integers(0, 5)),
        bytes_done=draw(st.integers(0, 10**9)),
        bytes_total=draw(st.integers(0, 10**9)),
    )


def application_healths(
    application: Any = None,
) -> st.SearchStrategy[ApplicationHealth]:
    """What a node says of an application instance's health."""
    return st.builds(
        ApplicationHealth,
        application=_word(_LOWER, 8) if application is None else st.just(application),
        status=st.sampled_from(HEALTH_STATUSES),
        revision=st.none() | st.integers(0, 50),
        reason=st.none() | st.text(max_size=20),
        failures=st.integers(0, 9),
        since=st.floats(0, 2e9, allow_nan=False),
        ports=st.dictionaries(st.integers(1, 65535), st.integers(1, 65535), max_size=3),
    )


@st.composite
def node_states(draw: Any, uuid: Any = None) -> NodeState:
    """Node reports, each half possibly unknown (``None``)."""
    apps = draw(
        st.none() | st.lists(applications(), max_size=3, unique_by=lambda a: a.name)
    )
    datasets_ = draw(
        st.none()
        | st.lists(dataset_states(), max_size=3, unique_by=lambda d: d.dataset_id)
    )
    return NodeState(
        uuid=draw(node_uuids) if uuid is None else uuid,
        hostname=draw(st.none() | _word(_LOWER + ".-", 20)),
        era=draw(st.none() | node_uuids),
        applications=None if apps is None else {a.name: a for a in apps},
        datasets=None if datasets_ is None else {d.dataset_id: d for d in datasets_},
        busy_ports=draw(st.none() | st.frozensets(st.integers(1, 65535), max_size=5)),
        port_conflicts=draw(
            st.none()
            | st.dictionaries(
                _word(_LOWER, 8), st.frozensets(st.integers(1, 65535), min_size=1, max_size=2),
                max_size=2,
            )
        ),
        last_converged=draw(st.none() | st.floats(0, 2e9, allow_nan=False)),
        failing_changes=draw(st.none() | st.lists(change_failures(), max_size=2)),
        pool=draw(st.none() | pool_states()),
        deletions_seen=draw(st.none() | st.frozensets(dataset_ids, max_size=2)),
        image_pulls=draw(
            st.none()
            | st.lists(image_pulls(), max_size=2, unique_by=lambda p: p.application).map(
                lambda pulls: {p.application: p for p in pulls}
            )
        ),
        health=draw(
            st.none()
            | st.lists(
                application_healths(), max_size=2, unique_by=lambda h: h.application
            ).map(lambda healths: {h.application: h for h in healths})
        ),
    )


def deployment_states() -> st.SearchStrategy[DeploymentState]:
    """Whole-cluster states."""
    return st.lists(node_states(), max_size=3, unique_by=lambda n: n.uuid).map(
        lambda ns: DeploymentState(nodes={n.uuid: n for n in ns})
    )
