"""
Tests for application health, ``flocker apps update`` and ``flocker apps
rollback``, and ``apps deploy``'s ``--health-*`` options, against the
in-memory REST API.
"""

import pytest

from flocker.apiclient import (
    Container,
    ContainerPort,
    HealthCheck,
    RestartPolicy,
)
from flocker.cli._errors import EXIT_ERROR, EXIT_OK, EXIT_USAGE

from ._fake_cluster import N1, N2, Cluster, assert_error, configuration, fired, invoke

WEB = Container(
    node_uuid=N1,
    name="web",
    image="nginx:1",
    ports=[ContainerPort(external=8080, internal=80)],
    environment={"MODE": "test", "LEVEL": "1"},
)
HTTP = HealthCheck(kind="http", port=80, path="/healthz")


def deployed(cluster: Cluster, container: Container = WEB) -> Container:
    """Configure ``container`` directly and make its node report it running."""
    created = fired(cluster.client.create_container(container))
    cluster.client.synchronize_state()
    return created


def configured(cluster: Cluster, name: str = "web") -> Container:
    """The configured container ``name``."""
    [found] = [c for c in configuration(cluster)[1] if c.name == name]
    return found


# -- flocker apps ls: health and updates -------------------------------------------


def test_apps_ls_shows_reported_health(cluster: Cluster) -> None:
    """
    A running application's state says the health its node reports, with
    the last failure's reason when unhealthy; ``--json`` has both.
    """
    deployed(cluster)
    deployed(cluster, WEB.set(name="api", ports=[ContainerPort(external=8081, internal=80)]))
    deployed(cluster, WEB.set(name="db", ports=[], node_uuid=N2))
    deployed(cluster, WEB.set(name="plain", ports=[], node_uuid=N2))
    cluster.client.report_health("api", "starting")
    cluster.client.report_health("db", "unhealthy", "connection refused")
    cluster.client.report_health("web", "healthy")
    result = invoke(cluster, "apps", "ls")
    assert [line.split("  ")[0] for line in result.out.splitlines()[1:]] == [
        "api",
        "db",
        "plain",
        "web",
    ]
    states = {v["name"]: v["state"] for v in invoke(cluster, "apps", "ls", "--json").json()}
    assert states == {
        "api": "running, starting",
        "db": "running, unhealthy: connection refused",
        "plain": "running",
        "web": "running, healthy",
    }
    assert "running, unhealthy: connection refused" in result.out
    [db] = [v for v in invoke(cluster, "apps", "ls", "--json").json() if v["name"] == "db"]
    assert (db["health"], db["health_reason"], db["revision"], db["update_failed"]) == (
        "unhealthy",
        "connection refused",
        0,
        None,
    )


def test_apps_ls_shows_updates_and_automatic_rollbacks(cluster: Cluster) -> None:
    """
    An application being updated says to which revision; one whose update
    the control service rolled back says why.
    """
    deployed(cluster, WEB.set(health=HTTP))
    assert invoke(cluster, "apps", "update", "web", "--image", "nginx:2").code == EXIT_OK
    [view] = invoke(cluster, "--json", "apps", "ls").json()
    assert view["state"] == "running; updating to revision 1"
    assert (view["revision"], view["updating"], view["previous_image"]) == (
        1,
        True,
        "nginx:1",
    )
    assert view["health_check"] == {
        "kind": "http",
        "port": 80,
        "path": "/healthz",
        "interval": 5.0,
        "timeout": 2.0,
        "retries": 3,
        "start_period": 30.0,
    }
    cluster.client.report_health("web", "unhealthy", "HTTP 503")
    cluster.client.synchronize_state()
    [view] = invoke(cluster, "--json", "apps", "ls").json()
    assert view["state"] == (
        "running, unhealthy: HTTP 503; update rolled back: revision 1 of 'web' "
        "was unhealthy: HTTP 503"
    )
    assert (view["image"], view["revision"], view["update_failed"]) == (
        "nginx:1",
        2,
        "revision 1 of 'web' was unhealthy: HTTP 503",
    )


# -- flocker apps deploy --health-* -------------------------------------------------


def test_deploy_with_an_http_health_check(cluster: Cluster) -> None:
    """``deploy --health-http PORT:PATH`` and the timings configure the check."""
    result = invoke(
        cluster,
        "apps",
        "deploy",
        "web",
        "--image",
        "nginx:1",
        "--node",
        "10.0.0.1",
        "--port",
        "8080:80",
        "--health-http",
        "80:/healthz?full=1",
        "--health-interval",
        "10",
        "--health-timeout",
        "0.5",
        "--health-retries",
        "5",
        "--health-start-period",
        "0",
    )
    assert result.code == EXIT_OK, result
    assert configured(cluster).health == HealthCheck(
        kind="http",
        port=80,
        path="/healthz?full=1",
        interval=10,
        timeout=0.5,
        retries=5,
        start_period=0,
    )


def test_deploy_with_a_tcp_health_check(cluster: Cluster) -> None:
    """``deploy --health-tcp PORT`` configures a TCP check with the default timings."""
    result = invoke(
        cluster, "apps", "deploy", "db", "--image", "postgres", "--node", "10.0.0.1",
        "--port", "5432:5432", "--health-tcp", "5432",
    )  # fmt: skip
    assert result.code == EXIT_OK, result
    assert configured(cluster, "db").health == HealthCheck(kind="tcp", port=5432)


def test_deploy_health_port_must_be_published(cluster: Cluster) -> None:
    """A health check on a port the application does not publish is refused at once."""
    result = invoke(
        cluster, "apps", "deploy", "web", "--image", "i", "--node", "10.0.0.1",
        "--port", "8080:80", "--health-tcp", "8080",
    )  # fmt: skip
    assert_error(
        result,
        EXIT_ERROR,
        "the health check of web probes port 8080, which it does not publish "
        "(its internal ports: 80)",
    )
    assert not result.connected


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        (("--health-http", "80"), "bad --health-http '80': give PORT:PATH"),
        (("--health-http", "80:healthz"), "bad --health-http '80:healthz'"),
        (("--health-http", "80:/a b"), "bad --health-http '80:/a b'"),
        (("--health-http", "x:/"), "bad --health-http 'x:/': 'x' is not a port"),
        (("--health-http", "0:/"), "not a port number"),
        (("--health-tcp", "http"), "bad --health-tcp 'http'"),
        (("--health-tcp", "80", "--health-interval", "0"), "bad --health-interval '0'"),
        (("--health-tcp", "80", "--health-interval", "x"), "give a number of seconds"),
        (("--health-tcp", "80", "--health-timeout", "inf"), "bad --health-timeout"),
        (("--health-tcp", "80", "--health-timeout", "100000"), "at most 86400"),
        (("--health-tcp", "80", "--health-retries", "0"), "bad --health-retries '0'"),
        (("--health-tcp", "80", "--health-retries", "1.5"), "bad --health-retries"),
        (("--health-tcp", "80", "--health-start-period", "-1"), "seconds 0 or more"),
        (("--health-interval", "5"), "give --health-http PORT:PATH or --health-tcp"),
    ],
)
def test_deploy_bad_health_options(
    cluster: Cluster, arguments: tuple[str, ...], says: str
) -> None:
    """Malformed health options are refused before the cluster is contacted."""
    result = invoke(
        cluster, "apps", "deploy", "web", "--image", "i", "--node", "10.0.0.1",
        "--port", "8080:80", *arguments,
    )  # fmt: skip
    assert_error(result, EXIT_ERROR, says)
    assert not result.connected


def test_two_kinds_of_health_check_are_a_usage_error(cluster: Cluster) -> None:
    """``--health-http`` and ``--health-tcp`` together are a usage error."""
    result = invoke(
        cluster, "apps", "deploy", "web", "--image", "i", "--node", "10.0.0.1",
        "--health-http", "80:/", "--health-tcp", "80",
    )  # fmt: skip
    assert result.code == EXIT_USAGE
    assert "not allowed with argument" in result.err


# -- flocker apps update --------------------------------------------------------------


def test_update_image_and_environment(cluster: Cluster) -> None:
    """
    ``update`` replaces the image, sets variables in the current environment
    and removes those ``--unset-env`` names; it says the new revision.
    """
    deployed(cluster)
    result = invoke(
        cluster, "apps", "update", "web", "--image", "nginx:2",
        "--env", "LEVEL=2", "--env", "NEW=x=y", "--unset-env", "MODE",
    )  # fmt: skip
    assert result.code == EXIT_OK, result
    assert result.out == (
        "updated application web to revision 1 on 10.0.0.1, running; updating to "
        "revision 1\n"
    )
    assert configured(cluster) == WEB.set(
        image="nginx:2",
        environment={"LEVEL": "2", "NEW": "x=y"},
        revision=1,
        updating=True,
        previous_image="nginx:1",
    )


def test_update_to_the_same_specification_says_unchanged(cluster: Cluster) -> None:
    """An update that changes nothing makes no revision, and says so."""
    deployed(cluster)
    result = invoke(cluster, "apps", "update", "web", "--image", "nginx:1", "--env", "LEVEL=1")
    assert result.out == (
        "unchanged application web (the same specification, revision 0) on "
        "10.0.0.1, running\n"
    )
    assert configured(cluster) == WEB


def test_update_command_ports_limits_and_restart(cluster: Cluster) -> None:
    """The other options replace their field; ``none`` and ``--no-command`` remove one."""
    deployed(cluster, WEB.set(cpu_shares=100, memory_limit=64 * 1024 * 1024))
    result = invoke(
        cluster, "apps", "update", "web", "--command", "nginx -g 'daemon off;'",
        "--port", "9090:8000", "--port", "9443:443", "--memory-limit", "none",
        "--cpu-shares", "512", "--restart", "on-failure:3",
    )  # fmt: skip
    assert result.code == EXIT_OK, result
    web = configured(cluster)
    assert web.command_line == ("nginx", "-g", "daemon off;")
    assert list(web.ports) == [
        ContainerPort(external=9090, internal=8000),
        ContainerPort(external=9443, internal=443),
    ]
    assert (web.memory_limit, web.cpu_shares) == (None, 512)
    assert web.restart_policy == RestartPolicy(name="on-failure", maximum_retry_count=3)
    assert invoke(cluster, "apps", "update", "web", "--no-command").code == EXIT_OK
    assert configured(cluster).command_line is None


def test_update_health_check_relative_to_the_current_one(cluster: Cluster) -> None:
    """
    Timings alone adjust the current check; a new kind keeps the current
    timings; ``--no-health`` removes the check.
    """
    deployed(cluster, WEB.set(health=HTTP.set(interval=10)))
    invoke(cluster, "apps", "update", "web", "--health-retries", "7")
    assert configured(cluster).health == HTTP.set(interval=10, retries=7)
    invoke(cluster, "apps", "update", "web", "--health-tcp", "80")
    assert configured(cluster).health == HealthCheck(
        kind="tcp", port=80, interval=10, retries=7
    )
    invoke(cluster, "apps", "update", "web", "--no-health")
    assert configured(cluster).health is None


def test_update_ports_and_health_check_together(cluster: Cluster) -> None:
    """New ports with a check on one of them are one update."""
    deployed(cluster, WEB.set(health=HTTP))
    result = invoke(
        cluster, "apps", "update", "web", "--port", "8080:8000",
        "--health-http", "8000:/ready",
    )  # fmt: skip
    assert result.code == EXIT_OK, result
    assert configured(cluster).health == HealthCheck(kind="http", port=8000, path="/ready")


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        ((), "nothing to update: give at least one option"),
        (("--image", ""), "bad --image ''"),
        (("--env", "NOEQUALS"), "bad --env 'NOEQUALS'"),
        (("--unset-env", "A=B"), "bad --unset-env 'A=B'"),
        (("--env", "A=1", "--unset-env", "A"), "--env and --unset-env both name 'A'"),
        (("--command", "nginx 'unclosed"), "bad --command \"nginx 'unclosed\""),
        (("--command", "  "), "bad --command ''"),
        (("--port", "80"), "bad --port '80'"),
        (("--memory-limit", "1M"), "bad --memory-limit '1M': at least 4M"),
        (("--memory-limit", "lots"), "bad --memory-limit 'lots': give bytes or a number"),
        (("--memory-limit", "512"), "bad --memory-limit '512': at least 4M"),
        (("--cpu-shares", "0"), "bad --cpu-shares '0'"),
        (("--restart", "sometimes"), "bad --restart 'sometimes'"),
        (("--restart", "on-failure:0"), "bad --restart 'on-failure:0'"),
        (("--health-http", "80:x"), "bad --health-http '80:x'"),
        (("--no-health", "--health-retries", "2"), "--no-health removes the health check"),
        (("--timeout", "0"), "bad timeout"),
    ],
)
def test_update_bad_options(
    cluster: Cluster, arguments: tuple[str, ...], says: str
) -> None:
    """Malformed update options are refused before the cluster is contacted."""
    deployed(cluster)
    result = invoke(cluster, "apps", "update", "web", *arguments)
    assert_error(result, EXIT_ERROR, says)
    assert not result.connected
    assert configured(cluster) == WEB


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        (
            ("--health-tcp", "8080"),
            "the health check of web probes port 8080, which it does not publish",
        ),
        (
            ("--port", "8080:81"),
            "the new ports leave web's health check on port 80 unpublished",
        ),
        (("--health-tcp", "80", "--port", "8080:81"), "probes port 80, which it does not"),
    ],
)
def test_update_health_port_must_stay_published(
    cluster: Cluster, arguments: tuple[str, ...], says: str
) -> None:
    """An update leaving the health check on an unpublished port is refused; nothing changes."""
    deployed(cluster, WEB.set(health=HTTP))
    before = configuration(cluster)
    assert_error(invoke(cluster, "apps", "update", "web", *arguments), EXIT_ERROR, says)
    assert configuration(cluster) == before


def test_update_timings_need_a_check(cluster: Cluster) -> None:
    """Timings for an application without a check of its own are refused."""
    deployed(cluster)
    assert_error(
        invoke(cluster, "apps", "update", "web", "--health-interval", "2"),
        EXIT_ERROR,
        "application web has no health check of its own to adjust",
    )


def test_update_refused_by_the_cluster(cluster: Cluster) -> None:
    """A port another application takes on the node: the control service's refusal."""
    deployed(cluster)
    deployed(cluster, WEB.set(name="other", ports=[ContainerPort(external=9090, internal=80)]))
    before = configuration(cluster)
    assert_error(
        invoke(cluster, "apps", "update", "web", "--port", "9090:80"),
        EXIT_ERROR,
        "the control service refused the request: external ports [9090] are taken",
    )
    assert configuration(cluster) == before


def test_update_unknown_application(cluster: Cluster) -> None:
    """Updating an application that is not configured is a one-line error."""
    assert_error(
        invoke(cluster, "apps", "update", "nope", "--image", "x"),
        EXIT_ERROR,
        "unknown application 'nope'",
    )


def test_update_wait_until_healthy(cluster: Cluster) -> None:
    """``update --wait`` returns once the node reports the new revision healthy."""
    deployed(cluster)

    def poll(number: int) -> None:
        cluster.client.synchronize_state()
        cluster.client.report_health("web", "starting" if number < 3 else "healthy")

    result = invoke(
        cluster, "apps", "update", "web", "--image", "nginx:2", "--wait", on_poll=poll
    )
    assert result.code == EXIT_OK, result
    assert result.out == (
        "updated application web to revision 1 on 10.0.0.1, running, healthy\n"
    )
    assert result.err.splitlines()[-1] == (
        "application web revision 1 healthy: healthy after 1.5s"
    )


def test_update_wait_rolled_back(cluster: Cluster) -> None:
    """``update --wait`` fails (exit 1) when the control service rolls the update back."""
    deployed(cluster)

    def poll(number: int) -> None:
        cluster.client.report_health("web", "unhealthy", "HTTP 500")

    result = invoke(
        cluster, "apps", "update", "web", "--image", "nginx:2", "--wait", on_poll=poll
    )
    assert_error(
        result,
        EXIT_ERROR,
        "the update of web to revision 1 was rolled back: revision 1 of 'web' "
        "was unhealthy: HTTP 500",
    )
    assert configured(cluster).image == "nginx:1"


def test_update_json(cluster: Cluster) -> None:
    """``update --json`` prints the application's view with its revision."""
    deployed(cluster)
    view = invoke(cluster, "--json", "apps", "update", "web", "--image", "nginx:2").json()
    assert (view["name"], view["image"], view["revision"], view["updating"]) == (
        "web",
        "nginx:2",
        1,
        True,
    )


# -- flocker apps rollback ------------------------------------------------------------


def test_rollback(cluster: Cluster) -> None:
    """``rollback`` returns to the specification the last update replaced."""
    deployed(cluster)
    invoke(cluster, "apps", "update", "web", "--image", "nginx:2", "--env", "A=1")
    result = invoke(cluster, "apps", "rollback", "web")
    assert result.code == EXIT_OK, result
    assert result.out == (
        "rolled back application web to revision 2 (image nginx:1) on 10.0.0.1, "
        "running\n"
    )
    assert configured(cluster) == WEB.set(revision=2)


def test_rollback_without_a_previous_specification(cluster: Cluster) -> None:
    """An application never updated (or rolled back already) cannot be rolled back."""
    deployed(cluster)
    assert_error(
        invoke(cluster, "apps", "rollback", "web"),
        EXIT_ERROR,
        "application web has no previous specification to roll back to",
    )
    assert_error(
        invoke(cluster, "apps", "rollback", "nope"),
        EXIT_ERROR,
        "unknown application 'nope'",
    )
