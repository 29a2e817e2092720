"""
Tests for health checks in application files (`flocker.deploy._health`):
Flocker's ``health:``, the compose ``healthcheck:`` commands that map to a
Flocker check, durations, and every refusal naming the file, the key and
(for an unmapped compose test) the forms that map.
"""

from typing import Any

import pytest
import yaml

from flocker.apiclient import HealthCheck
from flocker.deploy import ConfigurationError
from flocker.deploy._compose import parse_compose_applications
from flocker.deploy._flockerformat import parse_flocker_applications
from flocker.deploy._health import duration


def flocker_app(health: Any, ports: Any = None) -> HealthCheck | None:
    """The health check of a Flocker-format application ``web`` with ``health``."""
    fields = {
        "image": "nginx",
        "ports": ports if ports is not None else [{"internal": 80, "external": 8080}],
        "health": health,
    }
    document = {"version": 1, "applications": {"web": fields}}
    return parse_flocker_applications("app.yml", document)["web"].health


def compose_service(healthcheck: Any, ports: Any = None) -> HealthCheck | None:
    """The health check of a compose service ``web`` with ``healthcheck``."""
    service = {
        "image": "nginx",
        "ports": ports if ports is not None else ["8080:80", "5433:5432"],
        "healthcheck": healthcheck,
    }
    applications = parse_compose_applications("compose.yml", {"services": {"web": service}})
    return applications["web"].health


def refusal(parse: Any, *arguments: Any) -> str:
    """The message ``parse(*arguments)`` is refused with."""
    with pytest.raises(ConfigurationError) as info:
        parse(*arguments)
    return str(info.value)


# -- durations -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        ("1.5h", 5400.0),
        ("2m", 120.0),
        ("1s500ms", 1.5),
        ("250000us", 0.25),
    ],
)
def test_compose_durations(text: str, seconds: float) -> None:
    """Compose durations are numbers with units h, m, s, ms, us, added up."""
    assert duration("f", "p", text) == seconds


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("30", "'30' is not a duration"),
        ("1 m", "'1 m' is not a duration"),
        ("s", "'s' is not a duration"),
        ("1d", "'1d' is not a duration"),
        ("0s", "must be more than 0"),
        ("25h", "at most 86400 seconds"),
        (30, "must be a string, not an integer"),
    ],
)
def test_bad_compose_durations(value: Any, says: str) -> None:
    """A compose duration without a unit, with an unknown unit, or out of range is refused."""
    assert says in refusal(duration, "f", "p", value)


# -- Flocker's format --------------------------------------------------------------


def test_flocker_http_check_with_timings() -> None:
    """``health: {http: {port, path}, …}`` is an HTTP check with those timings."""
    health = flocker_app(
        {
            "http": {"port": 80, "path": "/healthz"},
            "interval": 10,
            "timeout": "500ms",
            "retries": 5,
            "start_period": 0,
        }
    )
    assert health == HealthCheck(
        kind="http", port=80, path="/healthz", interval=10, timeout=0.5, retries=5, start_period=0
    )


def test_flocker_tcp_check_with_defaults() -> None:
    """``health: {tcp: {port}}`` is a TCP check with the default timings; no health is none."""
    assert flocker_app({"tcp": {"port": 80}}) == HealthCheck(kind="tcp", port=80)
    assert flocker_app(None) is None


FLOCKER_REJECTIONS = [
    ("yes", "applications.web.health: must be a mapping, not a string"),
    ({"interval": 5}, "applications.web.health: give one of http: {port: PORT, path: /PATH} or tcp"),
    (
        {"http": {"port": 80, "path": "/"}, "tcp": {"port": 80}},
        "applications.web.health: give only one of http and tcp",
    ),
    ({"tcp": {"port": 80}, "every": 5}, "applications.web.health.every: unknown key"),
    ({"http": {"port": 80}}, "applications.web.health.http.path: missing"),
    ({"tcp": {"port": 80, "path": "/"}}, "applications.web.health.tcp.path: unknown key"),
    ({"http": {"port": 80, "path": "healthz"}}, "applications.web.health.http.path: 'healthz' is not a path"),
    ({"http": {"port": 80, "path": "/a b"}}, "applications.web.health.http.path: '/a b' is not a path"),
    ({"tcp": {"port": "80"}}, "applications.web.health.tcp.port: must be an integer, not a string"),
    ({"tcp": {"port": 0}}, "applications.web.health.tcp.port: 0 is not between 1 and 65535"),
    (
        {"tcp": {"port": 8080}},
        "applications.web.health.tcp.port: port 8080 is not one the application publishes "
        "(its internal ports: 80)",
    ),
    ({"tcp": {"port": 80}, "interval": 0}, "applications.web.health.interval: must be more than 0"),
    ({"tcp": {"port": 80}, "timeout": True}, "applications.web.health.timeout: must be a number of seconds"),
    ({"tcp": {"port": 80}, "timeout": "2"}, "applications.web.health.timeout: '2' is not a duration"),
    ({"tcp": {"port": 80}, "start_period": -1}, "applications.web.health.start_period: must be 0 or more"),
    ({"tcp": {"port": 80}, "retries": 0}, "applications.web.health.retries: 0 is not between 1 and 1000"),
    ({"tcp": {"port": 80}, "retries": 2.5}, "applications.web.health.retries: must be an integer"),
]


@pytest.mark.parametrize(("health", "says"), FLOCKER_REJECTIONS, ids=[m for _, m in FLOCKER_REJECTIONS])
def test_flocker_health_rejections(health: Any, says: str) -> None:
    """A bad ``health`` is refused, naming the file and key."""
    assert refusal(flocker_app, health).startswith(f"app.yml: {says}")


def test_flocker_health_port_with_no_ports() -> None:
    """An application that publishes nothing cannot have a health check."""
    message = refusal(flocker_app, {"tcp": {"port": 80}}, [])
    assert message.startswith(
        "app.yml: applications.web.health.tcp.port: port 80 is not one the "
        "application publishes (its internal ports: none)"
    )


# -- compose -------------------------------------------------------------------------

HTTP_ROOT = HealthCheck(kind="http", port=80, path="/")


@pytest.mark.parametrize(
    ("test", "expected"),
    [
        (["CMD", "curl", "-f", "http://localhost:80/healthz"], HTTP_ROOT.set(path="/healthz")),
        (["CMD", "curl", "-f", "http://localhost/"], HTTP_ROOT),
        (["CMD", "curl", "-fsS", "http://127.0.0.1:80"], HTTP_ROOT),
        (["CMD", "/usr/bin/curl", "--fail", "--silent", "http://localhost/x?y=1"], HTTP_ROOT.set(path="/x?y=1")),
        (["CMD-SHELL", "curl -f http://localhost/healthz || exit 1"], HTTP_ROOT.set(path="/healthz")),
        ("curl -f http://localhost:80/ready", HTTP_ROOT.set(path="/ready")),
        (["CMD", "wget", "-q", "--spider", "http://localhost:80/healthz"], HTTP_ROOT.set(path="/healthz")),
        ("wget --spider -q http://localhost/ || exit 1", HTTP_ROOT),
        (["CMD", "wget", "-q", "-O", "/dev/null", "http://localhost/"], HTTP_ROOT),
        (["CMD", "nc", "-z", "localhost", "5432"], HealthCheck(kind="tcp", port=5432)),
        ("nc -zv -w 2 127.0.0.1 5432 || exit 1", HealthCheck(kind="tcp", port=5432)),
        (["NONE"], None),
    ],
)
def test_compose_tests_that_map(test: Any, expected: HealthCheck | None) -> None:
    """The compose tests that say "this port answers" map to an HTTP or TCP check."""
    assert compose_service({"test": test}) == expected


def test_compose_timings_and_disable() -> None:
    """Compose timings are durations; ``disable: true`` means no check."""
    health = compose_service(
        {
            "test": ["CMD", "nc", "-z", "localhost", "5432"],
            "interval": "1m30s",
            "timeout": "500ms",
            "retries": 4,
            "start_period": "0s",
        }
    )
    assert health == HealthCheck(
        kind="tcp", port=5432, interval=90, timeout=0.5, retries=4, start_period=0
    )
    assert compose_service({"disable": True}) is None
    assert compose_service({"disable": True, "test": ["CMD", "true"]}) is None


UNMAPPED = [
    ["CMD", "pg_isready"],
    ["CMD", "curl", "http://localhost/"],
    ["CMD", "curl", "-f", "https://localhost/"],
    ["CMD", "curl", "-f", "http://example.com/"],
    ["CMD", "curl", "-f", "-H", "X: y", "http://localhost/"],
    ["CMD", "curl", "-f", "http://localhost/", "http://localhost/b"],
    ["CMD-SHELL", "curl -f http://localhost/ && echo ok"],
    ["CMD-SHELL", "curl -f http://localhost:$PORT/"],
    ["CMD-SHELL", "curl -f 'http://localhost/"],
    ["CMD", "wget", "http://localhost/", "-O", "index.html"],
    ["CMD", "nc", "localhost", "5432"],
    ["CMD", "nc", "-z", "db", "5432"],
    ["CMD", "nc", "-z", "localhost", "http"],
    ["CMD"],
    ["RUN", "true"],
    ["NONE", "x"],
    [],
    "",
    {"cmd": "curl"},
]


@pytest.mark.parametrize("test", UNMAPPED, ids=[repr(t) for t in UNMAPPED])
def test_compose_tests_that_do_not_map(test: Any) -> None:
    """Any other test is refused, naming the service and the forms that map."""
    message = refusal(compose_service, {"test": test})
    assert message.startswith(f"compose.yml: services.web.healthcheck.test: {test!r} does not map"), message
    assert '["CMD", "curl", "-f", "http://localhost:PORT/PATH"]' in message
    assert "nc -z localhost PORT" in message


@pytest.mark.parametrize(
    ("healthcheck", "says"),
    [
        ("curl", "services.web.healthcheck: must be a mapping, not a string"),
        ({"test": ["CMD", "curl", "-f", "http://localhost:8080/"]}, "services.web.healthcheck.test: port 8080 is not one the application publishes (its internal ports: 80, 5432)"),
        ({"interval": "5s"}, "services.web.healthcheck.test: missing (flocker-deploy does not know the image's own HEALTHCHECK"),
        ({"test": ["NONE"], "retries": 0}, None),
        ({"test": ["CMD", "nc", "-z", "localhost", "80"], "retries": 0}, "services.web.healthcheck.retries: 0 is not between 1 and 1000"),
        ({"test": ["CMD", "nc", "-z", "localhost", "80"], "interval": 30}, "services.web.healthcheck.interval: must be a string, not an integer"),
        ({"test": ["CMD", "nc", "-z", "localhost", "80"], "start_interval": "1s"}, "services.web.healthcheck.start_interval: is not supported by flocker-deploy"),
        ({"test": ["CMD", "nc", "-z", "localhost", "80"], "every": "1s"}, "services.web.healthcheck.every: unknown key"),
        ({"disable": "yes"}, "services.web.healthcheck.disable: must be true or false"),
    ],
)
def test_compose_healthcheck_rejections(healthcheck: Any, says: str | None) -> None:
    """A bad ``healthcheck`` is refused, naming the file and key (``NONE`` ignores the rest)."""
    if says is None:
        assert compose_service(healthcheck) is None
        return
    assert refusal(compose_service, healthcheck).startswith(f"compose.yml: {says}")


def test_compose_file_with_healthcheck() -> None:
    """A compose file's healthcheck is read with the service (YAML as written)."""
    document = yaml.safe_load(
        """
services:
  web:
    image: nginx
    ports: ["8080:80"]
    healthcheck:
      test: ["CMD-SHELL", "curl -f http://localhost/healthz || exit 1"]
      interval: 10s
      timeout: 2s
      retries: 3
      start_period: 40s
"""
    )
    [web] = parse_compose_applications("compose.yml", document).values()
    assert web.health == HealthCheck(
        kind="http", port=80, path="/healthz", interval=10, timeout=2, retries=3, start_period=40
    )
