"""
Flocker's own file formats: ``application.yml`` and ``deployment.yml``.

``application.yml``::

    version: 1
    applications:
      web:
        image: nginx:1.25
        ports: [{internal: 80, external: 8080}]
        links: [{alias: db, local_port: 5432, remote_port: 5432}]
        volume: {mountpoint: /data, maximum_size: 1G}
        environment: {MODE: production}
        restart_policy: {name: on-failure, maximum_retry_count: 3}
        mem_limit: 256M
        cpu_shares: 512
        replicas: 1                          # instances, 1 to 64 (see below)
        health:
          http: {port: 80, path: /healthz}   # or tcp: {port: 80}
          interval: 5                        # seconds, or "5s", "1m30s", "500ms"
          timeout: 2
          retries: 3
          start_period: 30

(``health`` is described in `flocker.deploy._health`: its port is one of
the application's internal ports.)

``replicas`` (default 1) runs that many instances of the application, one
per node while there are nodes: the first on the node the deployment file
names, the others on the nodes after it in the order of their UUIDs
(wrapping around), the extra ones doubled up round the same ring; the
routers of every node spread connections to its ports over the healthy
ones.  An
application with a ``volume`` runs once (its data is on one node), so
``replicas`` above 1 with a ``volume`` is refused.

``deployment.yml``::

    version: 1
    nodes:
      198.18.0.11: [web]
      7c4c0f0e-…: [db]

A node is named by its address (the ``host`` of ``/v1/state/nodes``) or its
UUID.
"""

from __future__ import annotations

from typing import Any

from ..apiclient import ContainerPort, HealthCheck, Link, RestartPolicy
from ._checks import (
    CPU_SHARES_RANGE,
    MEBIBYTE,
    MINIMUM_MEMORY_LIMIT,
    PORT_RANGE,
    REPLICAS_RANGE,
    SINGLE_INSTANCE,
    child,
    environment_name,
    environment_value,
    fail,
    image,
    integer,
    keys,
    mapping,
    mountpoint,
    name,
    sequence,
    size,
)
from ._health import flocker_health, published_health
from ._model import Application, Placement, Volume

__all__ = [
    "application_from_fields",
    "is_flocker_format",
    "parse_deployment",
    "parse_flocker_applications",
]

_APPLICATION_KEYS = (
    "image",
    "ports",
    "links",
    "volume",
    "environment",
    "restart_policy",
    "mem_limit",
    "cpu_shares",
    "health",
    "replicas",
)


def is_flocker_format(document: Any) -> bool:
    """Whether an application file is in Flocker's format (not compose's)."""
    return isinstance(document, dict) and (
        "applications" in document
        or (document.get("version") == 1 and document.get("version") is not True)
    )


def _version(source: str, document: dict[Any, Any]) -> None:
    version = document["version"]
    if version != 1 or isinstance(version, bool):
        fail(source, "version", f"must be 1, not {version!r}")


def parse_flocker_applications(source: str, document: Any) -> dict[str, Application]:
    """The applications of a Flocker-format application file, by name."""
    top = mapping(source, "", document)
    keys(source, "", top, ("version", "applications"), ("version", "applications"))
    _version(source, top)
    applications = mapping(source, "applications", top["applications"])
    keys(source, "applications", applications, applications)
    result = {}
    for app_name, fields in applications.items():
        path = child("applications", app_name)
        name(source, path, app_name)
        fields = mapping(source, path, fields)
        keys(source, path, fields, _APPLICATION_KEYS, ("image",))
        ports = _ports(source, child(path, "ports"), fields.get("ports", []))
        health, port_path = flocker_health(source, child(path, "health"), fields.get("health"))
        result[app_name] = application_from_fields(
            source,
            path,
            app_name,
            image=image(source, child(path, "image"), fields["image"]),
            ports=ports,
            links=_links(source, child(path, "links"), fields.get("links", [])),
            volume=_volume(source, child(path, "volume"), fields.get("volume")),
            environment=_environment(
                source, child(path, "environment"), fields.get("environment", {})
            ),
            restart_policy=_restart_policy(
                source, child(path, "restart_policy"), fields.get("restart_policy")
            ),
            memory_limit=memory_limit(source, child(path, "mem_limit"), fields),
            cpu_shares=cpu_shares(source, child(path, "cpu_shares"), fields),
            health=published_health(source, port_path, health, ports),
            replicas=replica_count(source, child(path, "replicas"), fields),
            replicas_path=child(path, "replicas"),
        )
    return result


def application_from_fields(
    source: str,
    path: str,
    app_name: str,
    image: str,
    ports: list[ContainerPort],
    links: list[Link],
    volume: Volume | None,
    environment: dict[str, str],
    restart_policy: RestartPolicy,
    memory_limit: int | None,
    cpu_shares: int | None,
    health: HealthCheck | None = None,
    replicas: int = 1,
    replicas_path: str = "",
) -> Application:
    """
    An `Application` from checked fields, refusing an external port
    published twice, a link alias used twice, or more than one instance of
    an application with a volume; ports and links sorted.

    :param replicas_path: where the file gives ``replicas``, for its error.
    """
    if replicas > 1 and volume is not None:
        fail(
            source,
            replicas_path or child(path, "replicas"),
            f"{replicas} instances of {app_name!r}, which has a volume: "
            f"{SINGLE_INSTANCE}",
        )
    external = [p.external for p in ports]
    for index, port in enumerate(external):
        if external.index(port) != index:
            fail(source, child(path, "ports"), f"port {port} is published twice")
    aliases = [x.alias for x in links]
    for index, alias in enumerate(aliases):
        if aliases.index(alias) != index:
            fail(source, child(path, "links"), f"alias {alias!r} is used twice")
    return Application(
        name=app_name,
        image=image,
        ports=sorted(ports, key=lambda p: (p.external, p.internal)),
        links=sorted(links, key=lambda x: x.alias),
        volume=volume,
        environment=environment,
        restart_policy=restart_policy,
        memory_limit=memory_limit,
        cpu_shares=cpu_shares,
        health=health,
        replicas=replicas,
    )


def memory_limit(source: str, path: str, fields: dict[Any, Any]) -> int | None:
    """The ``mem_limit`` field: bytes (or ``"256M"``), at least 4 MiB."""
    if fields.get("mem_limit") is None:
        return None
    return size(source, path, fields["mem_limit"], MINIMUM_MEMORY_LIMIT)


def cpu_shares(source: str, path: str, fields: dict[Any, Any]) -> int | None:
    """The ``cpu_shares`` field: an integer from 1 to 262144."""
    if fields.get("cpu_shares") is None:
        return None
    return integer(source, path, fields["cpu_shares"], *CPU_SHARES_RANGE)


def replica_count(source: str, path: str, fields: dict[Any, Any]) -> int:
    """The ``replicas`` field: an integer from 1 to 64 (1 if not given)."""
    if fields.get("replicas") is None:
        return 1
    return integer(source, path, fields["replicas"], *REPLICAS_RANGE)


def _ports(source: str, path: str, value: Any) -> list[ContainerPort]:
    result = []
    for index, entry in enumerate(sequence(source, path, value)):
        where = child(path, index)
        entry = mapping(source, where, entry)
        keys(source, where, entry, ("internal", "external"), ("internal", "external"))
        result.append(
            ContainerPort(
                internal=integer(
                    source, child(where, "internal"), entry["internal"], *PORT_RANGE
                ),
                external=integer(
                    source, child(where, "external"), entry["external"], *PORT_RANGE
                ),
            )
        )
    return result


def _links(source: str, path: str, value: Any) -> list[Link]:
    result = []
    fields = ("alias", "local_port", "remote_port")
    for index, entry in enumerate(sequence(source, path, value)):
        where = child(path, index)
        entry = mapping(source, where, entry)
        keys(source, where, entry, fields, fields)
        result.append(
            Link(
                alias=name(source, child(where, "alias"), entry["alias"]),
                local_port=integer(
                    source, child(where, "local_port"), entry["local_port"], *PORT_RANGE
                ),
                remote_port=integer(
                    source,
                    child(where, "remote_port"),
                    entry["remote_port"],
                    *PORT_RANGE,
                ),
            )
        )
    return result


def _volume(source: str, path: str, value: Any) -> Volume | None:
    if value is None:
        return None
    value = mapping(source, path, value)
    keys(source, path, value, ("mountpoint", "maximum_size"), ("mountpoint",))
    maximum_size = value.get("maximum_size")
    return Volume(
        mountpoint=mountpoint(source, child(path, "mountpoint"), value["mountpoint"]),
        maximum_size=None
        if maximum_size is None
        else size(source, child(path, "maximum_size"), maximum_size, MEBIBYTE),
    )


def _environment(source: str, path: str, value: Any) -> dict[str, str]:
    value = mapping(source, path, value)
    return {
        environment_name(source, path, key): environment_value(
            source, child(path, key), entry
        )
        for key, entry in value.items()
    }


def _restart_policy(source: str, path: str, value: Any) -> RestartPolicy:
    if value is None:
        return RestartPolicy()
    value = mapping(source, path, value)
    keys(source, path, value, ("name", "maximum_retry_count"), ("name",))
    policy = value["name"]
    if policy not in ("never", "always", "on-failure"):
        fail(
            source,
            child(path, "name"),
            f"{policy!r} is not one of never, always, on-failure",
        )
    retries = value.get("maximum_retry_count")
    if retries is not None:
        if policy != "on-failure":
            fail(
                source,
                child(path, "maximum_retry_count"),
                "only allowed with on-failure",
            )
        retries = integer(
            source, child(path, "maximum_retry_count"), retries, 1, 2**31 - 1
        )
    return RestartPolicy(name=policy, maximum_retry_count=retries)


def parse_deployment(source: str, document: Any) -> Placement:
    """Where each application runs, from a deployment file."""
    top = mapping(source, "", document)
    keys(source, "", top, ("version", "nodes"), ("version", "nodes"))
    _version(source, top)
    nodes = mapping(source, "nodes", top["nodes"])
    keys(source, "nodes", nodes, nodes)
    placed: dict[str, str] = {}
    paths: dict[str, str] = {}
    for node, names in nodes.items():
        path = child("nodes", node)
        if not node.strip():
            fail(source, path, "a node must be named by its address or UUID")
        for index, app_name in enumerate(sequence(source, path, names or [])):
            where = child(path, index)
            app_name = name(source, where, app_name)
            if app_name in placed:
                fail(
                    source,
                    where,
                    f"{app_name!r} is already deployed at {paths[app_name]}",
                )
            placed[app_name] = node
            paths[app_name] = where
    return Placement(nodes=placed, paths=paths, node_names=nodes)
