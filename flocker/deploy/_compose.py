"""
docker-compose application files, read as Flocker applications.

Either a ``services:`` mapping (with an optional ``version:``) or, in the
oldest compose format, the services at the top level.  Each service may
have:

* ``image`` (required: flocker-deploy does not build images);
* ``ports``: ``"EXTERNAL:INTERNAL"`` strings, optionally ending ``/tcp``;
* ``environment``: a mapping, or a list of ``"NAME=VALUE"`` strings;
* ``links``: ``"SERVICE"`` or ``"SERVICE:ALIAS"``.  Flocker links go through
  published ports, so the link uses the linked service's **first published
  port** (the first entry of its ``ports``): inside the container, port
  INTERNAL of ``ALIAS`` reaches port EXTERNAL of the node running the linked
  service.  A link to a service that publishes no port is refused;
* ``volumes``: one container path (``- /data``), which becomes the
  mountpoint of the application's dataset; host paths and named volumes are
  refused;
* ``mem_limit`` (bytes or ``"256m"``), ``cpu_shares``;
* ``restart``: ``no``, ``always``, ``on-failure`` or ``on-failure:N``;
* ``healthcheck``, where its test says "this port answers" (``curl -f``,
  ``wget --spider`` or ``nc -z`` of one of the service's internal ports;
  see `flocker.deploy._health`), or ``disable: true``;
* ``deploy: {replicas: N}`` (``mode: replicated`` may be given too), or
  the older ``scale: N`` (both must then agree): how many instances run,
  1 to 64, one per node and then doubled up on the nodes when there are
  more instances than nodes (see `flocker.deploy._flockerformat`); a
  service with a volume runs once.  Compose's other ``deploy`` keys (resources,
  placement, update and restart policies…) are refused.

Any other key is refused, naming it.
"""

from __future__ import annotations

import re
from typing import Any

from ..apiclient import ContainerPort, Link, RestartPolicy
from ._checks import (
    PORT_RANGE,
    REPLICAS_RANGE,
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
    string,
)
from ._flockerformat import application_from_fields, cpu_shares, memory_limit
from ._health import compose_health, published_health
from ._model import Application, Volume

__all__ = ["parse_compose_applications"]

_SERVICE_KEYS = (
    "image",
    "ports",
    "environment",
    "links",
    "volumes",
    "mem_limit",
    "cpu_shares",
    "restart",
    "healthcheck",
    "deploy",
    "scale",
)

#: Compose keys flocker-deploy knows and cannot honour.
_UNSUPPORTED = frozenset(
    """
    build cap_add cap_drop cgroup_parent command configs container_name cpu_count
    cpu_percent cpu_period cpu_quota cpus cpuset depends_on devices dns
    dns_search domainname entrypoint env_file expose extends external_links
    extra_hosts group_add hostname init ipc isolation labels logging
    mac_address mem_reservation mem_swappiness memswap_limit network_mode networks
    oom_kill_disable oom_score_adj pid platform privileged profiles pull_policy
    read_only secrets security_opt shm_size stdin_open stop_grace_period
    stop_signal storage_opt sysctls tmpfs tty ulimits user userns_mode
    volume_driver volumes_from working_dir
    """.split()
)

#: The keys of a service's ``deploy`` that flocker-deploy knows and cannot honour.
_UNSUPPORTED_DEPLOY = frozenset(
    """
    endpoint_mode labels placement resources restart_policy rollback_config
    update_config
    """.split()
)

_PORT = re.compile(r"^(\d+):(\d+)(?:/tcp)?$")


def parse_compose_applications(source: str, document: Any) -> dict[str, Application]:
    """The applications of a docker-compose file, by service name."""
    top = mapping(source, "", document)
    if not top:
        fail(source, "", "no services")
    if "services" in top or "version" in top:
        keys(
            source,
            "",
            top,
            ("services", "version"),
            ("services",),
            "is not supported by flocker-deploy",
        )
        base = "services"
        services = mapping(source, base, top["services"])
    else:
        base, services = "", top
    keys(source, base, services, services)
    parsed: dict[str, dict[str, Any]] = {}
    first_ports: dict[str, ContainerPort] = {}
    for service, fields in services.items():
        path = child(base, service)
        name(source, path, service)
        fields = mapping(source, path, fields)
        _service_keys(source, path, fields)
        ports = _ports(source, child(path, "ports"), fields.get("ports", []))
        if ports:
            first_ports[service] = ports[0]
        parsed[service] = {
            "image": image(source, child(path, "image"), fields["image"]),
            "ports": ports,
            "volume": _volume(source, child(path, "volumes"), fields.get("volumes")),
            "environment": _environment(
                source, child(path, "environment"), fields.get("environment")
            ),
            "restart_policy": _restart(
                source, child(path, "restart"), fields.get("restart", "no")
            ),
            "memory_limit": memory_limit(source, child(path, "mem_limit"), fields),
            "cpu_shares": cpu_shares(source, child(path, "cpu_shares"), fields),
            "health": published_health(
                source,
                child(child(path, "healthcheck"), "test"),
                compose_health(source, child(path, "healthcheck"), fields.get("healthcheck")),
                ports,
            ),
            **_replicas(source, path, fields),
        }
    result = {}
    for service, fields in parsed.items():
        path = child(base, service)
        links = _links(
            source,
            child(path, "links"),
            services[service].get("links", []),
            first_ports,
            set(services),
        )
        result[service] = application_from_fields(
            source, path, service, links=links, **fields
        )
    return result


def _service_keys(source: str, path: str, fields: dict[Any, Any]) -> None:
    for key in fields:
        if not isinstance(key, str):
            fail(source, child(path, str(key)), "keys must be strings")
    for key in sorted(fields):
        if key in _UNSUPPORTED:
            fail(source, child(path, key), "is not supported by flocker-deploy")
    keys(source, path, fields, _SERVICE_KEYS, ("image",))


def _replicas(source: str, path: str, fields: dict[Any, Any]) -> dict[str, Any]:
    """
    How many instances a service runs, from ``deploy.replicas`` and/or
    ``scale`` (1 if neither is given), and the path to name if that is too
    many for a service with a volume.
    """
    found: list[tuple[str, int]] = []
    deploy = fields.get("deploy")
    if deploy is not None:
        where = child(path, "deploy")
        deploy = mapping(source, where, deploy)
        keys(source, where, deploy, {"mode", "replicas", *_UNSUPPORTED_DEPLOY})
        for key in sorted(deploy):
            if key in _UNSUPPORTED_DEPLOY:
                fail(source, child(where, key), "is not supported by flocker-deploy")
        mode = deploy.get("mode", "replicated")
        if mode != "replicated":
            fail(
                source,
                child(where, "mode"),
                f"{mode!r} is not supported: only replicated (give replicas)",
            )
        if deploy.get("replicas") is not None:
            where = child(where, "replicas")
            found.append(
                (where, integer(source, where, deploy["replicas"], *REPLICAS_RANGE))
            )
    if fields.get("scale") is not None:
        where = child(path, "scale")
        found.append((where, integer(source, where, fields["scale"], *REPLICAS_RANGE)))
    if len(found) == 2 and found[0][1] != found[1][1]:
        fail(
            source,
            found[1][0],
            f"{found[1][1]} differs from {found[0][0]} ({found[0][1]}): give one",
        )
    if not found:
        return {}
    return {"replicas": found[0][1], "replicas_path": found[0][0]}


def _ports(source: str, path: str, value: Any) -> list[ContainerPort]:
    result = []
    for index, entry in enumerate(sequence(source, path, value)):
        where = child(path, index)
        if isinstance(entry, int) and not isinstance(entry, bool):
            fail(
                source,
                where,
                f"{entry} publishes no node port: write 'EXTERNAL:INTERNAL' "
                "(quoted: YAML reads some unquoted ones as numbers)",
            )
        text = string(source, where, entry)
        match = _PORT.match(text)
        if match is None:
            fail(
                source,
                where,
                f"{text!r} is not 'EXTERNAL:INTERNAL' (host addresses, ranges "
                "and UDP are not supported)",
            )
        external, internal = (int(x) for x in match.groups())
        result.append(
            ContainerPort(
                internal=integer(source, where, internal, *PORT_RANGE),
                external=integer(source, where, external, *PORT_RANGE),
            )
        )
    return result


def _environment(source: str, path: str, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return {
            environment_name(source, path, key): environment_value(
                source, child(path, key), entry
            )
            for key, entry in value.items()
        }
    result = {}
    for index, entry in enumerate(sequence(source, path, value)):
        where = child(path, index)
        text = string(source, where, entry)
        key, equals, text = text.partition("=")
        if not equals:
            fail(
                source,
                where,
                f"{key!r} has no value: write 'NAME=VALUE' (values are not "
                "taken from the shell)",
            )
        result[environment_name(source, where, key)] = text
    return result


def _volume(source: str, path: str, value: Any) -> Volume | None:
    if value is None:
        return None
    entries = sequence(source, path, value)
    if not entries:
        return None
    if len(entries) > 1:
        fail(source, child(path, 1), "an application has at most one volume")
    where = child(path, 0)
    text = string(source, where, entries[0])
    if ":" in text:
        fail(
            source,
            where,
            f"{text!r}: host paths and named volumes are not supported; give "
            "only the path inside the container (e.g. /data)",
        )
    return Volume(mountpoint=mountpoint(source, where, text))


def _restart(source: str, path: str, value: Any) -> RestartPolicy:
    if value is False or value == "no":  # YAML reads an unquoted no as false
        return RestartPolicy(name="never")
    text = string(source, path, value)
    if text == "always":
        return RestartPolicy(name="always")
    policy, colon, retries = text.partition(":")
    if policy == "on-failure":
        if not colon:
            return RestartPolicy(name="on-failure")
        if retries.isdigit():
            return RestartPolicy(
                name="on-failure",
                maximum_retry_count=integer(source, path, int(retries), 1, 2**31 - 1),
            )
    fail(
        source,
        path,
        f"{text!r} is not one of no, always, on-failure, on-failure:N",
    )


def _links(
    source: str,
    path: str,
    value: Any,
    first_ports: dict[str, ContainerPort],
    services: set[str],
) -> list[Link]:
    result = []
    for index, entry in enumerate(sequence(source, path, value)):
        where = child(path, index)
        text = string(source, where, entry)
        service, _, alias = text.partition(":")
        alias = alias or service
        name(source, where, alias)
        if service not in first_ports:
            problem = (
                "publishes no port to link to"
                if service in services
                else "is not a service in this file"
            )
            fail(source, where, f"{service!r} {problem}")
        port = first_ports[service]
        result.append(
            Link(alias=alias, local_port=port.internal, remote_port=port.external)
        )
    return result

