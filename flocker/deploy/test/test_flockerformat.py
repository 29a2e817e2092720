"""
Tests for Flocker's own application and deployment file formats
(`flocker.deploy._flockerformat`): what they accept, and every rejection
naming the file and the dotted path of the key at fault.
"""

import copy
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from flocker.apiclient import ContainerPort, Link, RestartPolicy
from flocker.deploy import Application, ConfigurationError, Placement, Volume
from flocker.deploy._checks import load_yaml, size
from flocker.deploy._flockerformat import (
    is_flocker_format,
    parse_deployment,
    parse_flocker_applications,
)

MIB = 1024 * 1024

FULL = """
version: 1
applications:
  web:
    image: example/web:1.0
    ports:
      - {internal: 80, external: 8080}
      - {internal: 443, external: 8043}
    links:
      - {alias: db, local_port: 5432, remote_port: 5432}
      - {alias: cache, local_port: 11211, remote_port: 11211}
    volume: {mountpoint: /data, maximum_size: 1G}
    environment: {MODE: production, WORKERS: 4}
    restart_policy: {name: on-failure, maximum_retry_count: 3}
    mem_limit: 256M
    cpu_shares: 512
  db:
    image: postgres
"""


def applications(document: Any) -> dict[str, Application]:
    """Parse an application document (a dict) as ``app.yml``."""
    return parse_flocker_applications("app.yml", document)


def rejection(document: Any) -> str:
    """The message parsing ``document`` as an application file fails with."""
    with pytest.raises(ConfigurationError) as info:
        applications(document)
    return str(info.value)


def test_every_field_is_read() -> None:
    """Every field of an application is read into an `Application`."""
    parsed = applications(yaml.safe_load(FULL))
    assert parsed["web"] == Application(
        name="web",
        image="example/web:1.0",
        ports=[
            ContainerPort(internal=443, external=8043),
            ContainerPort(internal=80, external=8080),
        ],
        links=[
            Link(alias="cache", local_port=11211, remote_port=11211),
            Link(alias="db", local_port=5432, remote_port=5432),
        ],
        volume=Volume(mountpoint="/data", maximum_size=1024**3),
        environment={"MODE": "production", "WORKERS": "4"},
        restart_policy=RestartPolicy(name="on-failure", maximum_retry_count=3),
        memory_limit=256 * MIB,
        cpu_shares=512,
    )


def test_defaults() -> None:
    """An application with only an image has no ports, volume or limits and never restarts."""
    assert applications(yaml.safe_load(FULL))["db"] == Application(
        name="db", image="postgres"
    )


def test_replicas_read() -> None:
    """
    ``replicas`` is how many instances run (1 when left out or null); one
    instance of an application with a volume is allowed.
    """
    document = yaml.safe_load(FULL)
    document["applications"]["db"]["replicas"] = 64
    document["applications"]["web"]["replicas"] = 1
    parsed = applications(document)
    assert (parsed["db"].replicas, parsed["web"].replicas) == (64, 1)
    document["applications"]["db"]["replicas"] = None
    assert applications(document)["db"].replicas == 1
    assert applications(yaml.safe_load(FULL))["db"].replicas == 1


def test_ports_and_links_sorted_like_the_api() -> None:
    """Ports are sorted by external port and links by alias, as the REST API returns them."""
    web = applications(yaml.safe_load(FULL))["web"]
    assert [p.external for p in web.ports] == [8043, 8080]
    assert [x.alias for x in web.links] == ["cache", "db"]


@pytest.mark.parametrize(
    "text, expected",
    [
        (1048576, 1048576),
        ("1048576", 1048576),
        ("1M", MIB),
        ("1G", 1024**3),
        ("1GiB", 1024**3),
        ("2gb", 2 * 1024**3),
        ("512m", 512 * MIB),
        ("1.5G", 3 * 512 * MIB),
        ("1T", 1024**4),
        ("2048K", 2 * MIB),
    ],
)
def test_sizes(text: str, expected: int) -> None:
    """Sizes are bytes, or numbers with K, M, G or T (powers of 1024)."""
    assert size("f", "p", text, MIB) == expected


@given(st.integers(min_value=MIB, max_value=2**62))
def test_integer_sizes_are_bytes(value: int) -> None:
    """Any integer size from 1 MiB up is taken as bytes, as an integer or a string."""
    assert size("f", "p", value, MIB) == value
    assert size("f", "p", str(value), MIB) == value


def mutated(change: Callable[[Any], None]) -> Any:
    """The FULL document with ``change(document)`` applied."""
    document = copy.deepcopy(yaml.safe_load(FULL))
    change(document)
    return document


def web(document: Any) -> Any:
    """The web application's fields in ``document``."""
    return document["applications"]["web"]


def _set(path: tuple[str | int, ...], value: object) -> Callable[[Any], None]:
    """A change setting the key ``path`` (a tuple) under web to ``value``."""

    def change(document: Any) -> None:
        target = web(document)
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


def _delete(*path: str | int) -> Callable[[Any], None]:
    """A change removing the key ``path`` under web."""

    def change(document: Any) -> None:
        target = web(document)
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return change


REJECTIONS = [
    # document level
    (lambda d: d.pop("version"), "app.yml: version: missing"),
    (lambda d: d.update(version=2), "app.yml: version: must be 1, not 2"),
    (lambda d: d.update(version=True), "app.yml: version: must be 1, not True"),
    (lambda d: d.update(extra=1), "app.yml: extra: unknown key"),
    (lambda d: d.update(applications=[]), "app.yml: applications: must be a mapping, not a list"),
    (lambda d: d["applications"].update({"bad name": {"image": "x"}}), "app.yml: applications.bad name: 'bad name' is not a valid name"),
    (lambda d: d["applications"].update({"-x": {"image": "x"}}), "app.yml: applications.-x: '-x' is not a valid name"),
    (lambda d: d["applications"].update({5: {"image": "x"}}), "app.yml: applications.5: keys must be strings"),
    (lambda d: d["applications"].update(db=None), "app.yml: applications.db: must be a mapping, not nothing"),
    # application level
    (_set(("portz",), []), "app.yml: applications.web.portz: unknown key"),
    (_delete("image"), "app.yml: applications.web.image: missing"),
    (_set(("image",), ""), "app.yml: applications.web.image: must not be empty"),
    (_set(("image",), "two words"), "app.yml: applications.web.image: 'two words' is not a valid image name"),
    (_set(("image",), 3), "app.yml: applications.web.image: must be a string, not an integer"),
    # ports
    (_set(("ports",), {"internal": 1}), "app.yml: applications.web.ports: must be a list, not a mapping"),
    (_set(("ports", 0), "80:80"), "app.yml: applications.web.ports[0]: must be a mapping, not a string"),
    (_delete("ports", 0, "external"), "app.yml: applications.web.ports[0].external: missing"),
    (_set(("ports", 0, "protocol"), "udp"), "app.yml: applications.web.ports[0].protocol: unknown key"),
    (_set(("ports", 1, "internal"), 0), "app.yml: applications.web.ports[1].internal: 0 is not between 1 and 65535"),
    (_set(("ports", 1, "external"), 70000), "app.yml: applications.web.ports[1].external: 70000 is not between 1 and 65535"),
    (_set(("ports", 1, "external"), "8080"), "app.yml: applications.web.ports[1].external: must be an integer, not a string"),
    (_set(("ports", 1, "external"), 8080), "app.yml: applications.web.ports: port 8080 is published twice"),
    # links
    (_set(("links", 0, "alias"), "bad alias"), "app.yml: applications.web.links[0].alias: 'bad alias' is not a valid name"),
    (_delete("links", 0, "remote_port"), "app.yml: applications.web.links[0].remote_port: missing"),
    (_set(("links", 0, "local_port"), -1), "app.yml: applications.web.links[0].local_port: -1 is not between 1 and 65535"),
    (_set(("links", 0, "port"), 1), "app.yml: applications.web.links[0].port: unknown key"),
    (_set(("links", 1, "alias"), "db"), "app.yml: applications.web.links: alias 'db' is used twice"),
    # volume
    (_set(("volume",), "/data"), "app.yml: applications.web.volume: must be a mapping, not a string"),
    (_delete("volume", "mountpoint"), "app.yml: applications.web.volume.mountpoint: missing"),
    (_set(("volume", "mountpoint"), "data"), "app.yml: applications.web.volume.mountpoint: 'data' is not an absolute path"),
    (_set(("volume", "size"), "1G"), "app.yml: applications.web.volume.size: unknown key"),
    (_set(("volume", "maximum_size"), "lots"), "app.yml: applications.web.volume.maximum_size: 'lots' is not a size"),
    (_set(("volume", "maximum_size"), 1000), "app.yml: applications.web.volume.maximum_size: 1000 is not between 1048576"),
    (_set(("volume", "maximum_size"), "1.5"), "app.yml: applications.web.volume.maximum_size: 1 is not between 1048576"),
    # environment
    (_set(("environment",), ["A=1"]), "app.yml: applications.web.environment: must be a mapping, not a list"),
    (_set(("environment", "DEBUG"), True), "app.yml: applications.web.environment.DEBUG: must be a string, not a boolean (quote it)"),
    (_set(("environment", "EMPTY"), None), "app.yml: applications.web.environment.EMPTY: must be a string, not nothing (quote it)"),
    (_set(("environment", "LIST"), [1]), "app.yml: applications.web.environment.LIST: must be a string, not a list"),
    (_set(("environment", "A=B"), "x"), "app.yml: applications.web.environment: 'A=B' is not a valid environment variable name"),
    # restart policy
    (_set(("restart_policy",), "always"), "app.yml: applications.web.restart_policy: must be a mapping, not a string"),
    (_set(("restart_policy", "name"), "sometimes"), "app.yml: applications.web.restart_policy.name: 'sometimes' is not one of never, always, on-failure"),
    (_set(("restart_policy", "name"), "always"), "app.yml: applications.web.restart_policy.maximum_retry_count: only allowed with on-failure"),
    (_set(("restart_policy", "maximum_retry_count"), 0), "app.yml: applications.web.restart_policy.maximum_retry_count: 0 is not between 1"),
    (_delete("restart_policy", "name"), "app.yml: applications.web.restart_policy.name: missing"),
    (_set(("restart_policy", "delay"), 1), "app.yml: applications.web.restart_policy.delay: unknown key"),
    # limits
    (_set(("mem_limit",), "1M"), "app.yml: applications.web.mem_limit: 1048576 is not between 4194304"),
    (_set(("mem_limit",), "much"), "app.yml: applications.web.mem_limit: 'much' is not a size"),
    (_set(("cpu_shares",), 0), "app.yml: applications.web.cpu_shares: 0 is not between 1 and 262144"),
    (_set(("cpu_shares",), 1.5), "app.yml: applications.web.cpu_shares: must be an integer, not a number"),
    # replicas
    (_set(("replicas",), 0), "app.yml: applications.web.replicas: 0 is not between 1 and 64"),
    (_set(("replicas",), 65), "app.yml: applications.web.replicas: 65 is not between 1 and 64"),
    (_set(("replicas",), "2"), "app.yml: applications.web.replicas: must be an integer, not a string"),
    (_set(("replicas",), True), "app.yml: applications.web.replicas: must be an integer, not a boolean"),
    (_set(("replicas",), 2.0), "app.yml: applications.web.replicas: must be an integer, not a number"),
    (
        _set(("replicas",), 2),
        "app.yml: applications.web.replicas: 2 instances of 'web', which has a volume: "
        "an application with volumes runs once: its data is on one node (replicas "
        "are for applications without volumes)",
    ),
]


@pytest.mark.parametrize("change, message", REJECTIONS, ids=[m for _, m in REJECTIONS])
def test_rejections_name_the_key(change: Callable[[Any], None], message: str) -> None:
    """An application file with a bad or unknown key is refused, naming the file and key."""
    assert rejection(mutated(change)).startswith(message)


def test_not_a_mapping() -> None:
    """An application file that is not a mapping is refused."""
    assert rejection(None) == "app.yml: must be a mapping, not nothing"


def test_format_detection() -> None:
    """Files with ``applications`` or ``version: 1`` are Flocker's format; others compose's."""
    assert is_flocker_format({"version": 1, "applications": {}})
    assert is_flocker_format({"applications": {}})
    assert is_flocker_format({"version": 1})
    assert not is_flocker_format({"version": "3", "services": {}})
    assert not is_flocker_format({"web": {"image": "x"}})
    assert not is_flocker_format({"version": True})
    assert not is_flocker_format([])


def test_yaml_syntax_error_on_one_line() -> None:
    """A YAML syntax error is reported on one line with the file and position."""
    with pytest.raises(ConfigurationError) as info:
        load_yaml("app.yml", "applications: [\n  web: {")
    message = str(info.value)
    assert message.startswith("app.yml: not valid YAML: ")
    assert "line " in message and "\n" not in message


# --------------------------------------------------------------------------
# deployment.yml


def deployment(document: Any) -> Placement:
    """Parse a deployment document as ``dep.yml``."""
    return parse_deployment("dep.yml", document)


def test_deployment_read() -> None:
    """A deployment file says which node each application runs on, keeping node names as written."""
    placement = deployment(
        {"version": 1, "nodes": {"10.0.0.1": ["web", "db"], "10.0.0.2": [], "n3": None}}
    )
    assert dict(placement.nodes) == {"web": "10.0.0.1", "db": "10.0.0.1"}
    assert set(placement.node_names) == {"10.0.0.1", "10.0.0.2", "n3"}
    assert placement.paths["db"] == "nodes.10.0.0.1[1]"


@pytest.mark.parametrize(
    "document, message",
    [
        (["web"], "dep.yml: must be a mapping, not a list"),
        ({"nodes": {}}, "dep.yml: version: missing"),
        ({"version": 1}, "dep.yml: nodes: missing"),
        ({"version": "1", "nodes": {}}, "dep.yml: version: must be 1, not '1'"),
        ({"version": 1, "nodes": {}, "applications": {}}, "dep.yml: applications: unknown key"),
        ({"version": 1, "nodes": ["web"]}, "dep.yml: nodes: must be a mapping, not a list"),
        ({"version": 1, "nodes": {"a": "web"}}, "dep.yml: nodes.a: must be a list, not a string"),
        ({"version": 1, "nodes": {"a": [1]}}, "dep.yml: nodes.a[0]: must be a string, not an integer"),
        ({"version": 1, "nodes": {"a": ["no such"]}}, "dep.yml: nodes.a[0]: 'no such' is not a valid name"),
        ({"version": 1, "nodes": {7: ["web"]}}, "dep.yml: nodes.7: keys must be strings"),
        ({"version": 1, "nodes": {" ": ["web"]}}, "dep.yml: nodes. : a node must be named"),
        (
            {"version": 1, "nodes": {"a": ["web"], "b": ["db", "web"]}},
            "dep.yml: nodes.b[1]: 'web' is already deployed at nodes.a[0]",
        ),
        (
            {"version": 1, "nodes": {"a": ["web", "web"]}},
            "dep.yml: nodes.a[1]: 'web' is already deployed at nodes.a[0]",
        ),
    ],
)
def test_deployment_rejections(document: Any, message: str) -> None:
    """A bad deployment file is refused, naming the file and key."""
    with pytest.raises(ConfigurationError) as info:
        deployment(document)
    assert str(info.value).startswith(message)
