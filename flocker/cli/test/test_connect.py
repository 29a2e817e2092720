"""Tests for finding the cluster and loading the user certificate (`flocker.cli._connect`)."""

import argparse
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
from twisted.internet.testing import MemoryReactorClock

from flocker.apiclient import FlockerClient
from flocker.ca import CertificateError
from flocker.ca.testtools import TestClusterCredentials, make_test_cluster_credentials
from flocker.cli._command import common_options
from flocker.cli._connect import (
    ClusterAddress,
    cluster_address,
    connect,
    load_credentials,
)
from flocker.cli._errors import EXIT_UNREACHABLE, EXIT_USAGE, CLIError
from flocker.cli.script import build_parser


def options(*argv: str) -> argparse.Namespace:
    """Parse the cluster options as ``flocker`` does before the command."""
    return common_options().parse_args(list(argv))


@pytest.fixture
def credentials(tmp_path: Path) -> TestClusterCredentials:
    """A cluster's certificates, with user ``alice``."""
    directory = tmp_path / "ca"
    directory.mkdir()
    return make_test_cluster_credentials(directory)


def cluster_file(
    tmp_path: Path, credentials: TestClusterCredentials, relative: bool = False
) -> Path:
    """A cluster.json as ``admin/lab`` writes it; its path."""
    user = credentials.user_directories["alice"]
    files = {
        "ca": str(credentials.ca_certificate),
        "user_cert": str(user / "alice.crt"),
        "user_key": str(user / "alice.key"),
    }
    if relative:
        files = {k: str(v).removeprefix(str(tmp_path) + "/") for k, v in files.items()}
    path = tmp_path / "cluster.json"
    path.write_text(
        json.dumps(
            {"control": {"api_url": "https://127.0.0.1:4600"}, "certificates": files}
        )
    )
    return path


def test_cluster_file(tmp_path: Path, credentials: TestClusterCredentials) -> None:
    """--cluster FILE gives the API URL and the certificate files."""
    path = cluster_file(tmp_path, credentials)
    address = cluster_address(options("--cluster", str(path)), {})
    assert address.api_url == "https://127.0.0.1:4600"
    assert address.cacert == str(credentials.ca_certificate)
    assert address.key.endswith("alice.key")


def test_cluster_directory_and_relative_paths(
    tmp_path: Path, credentials: TestClusterCredentials
) -> None:
    """--cluster DIR reads DIR/cluster.json; relative paths are from its directory."""
    cluster_file(tmp_path, credentials, relative=True)
    address = cluster_address(options("--cluster", str(tmp_path)), {})
    assert address.cacert == str(credentials.ca_certificate)


def test_environment_cluster(
    tmp_path: Path, credentials: TestClusterCredentials
) -> None:
    """FLOCKER_CLUSTER names the cluster file when no option does."""
    path = cluster_file(tmp_path, credentials)
    address = cluster_address(options(), {"FLOCKER_CLUSTER": str(path)})
    assert address.port == 4600


def test_options_override_cluster_file(
    tmp_path: Path, credentials: TestClusterCredentials
) -> None:
    """Options given with --cluster replace what the file says."""
    path = cluster_file(tmp_path, credentials)
    address = cluster_address(
        options("--cluster", str(path), "--port", "5000", "--key", "/k"), {}
    )
    assert (address.port, address.key, address.host) == (5000, "/k", "127.0.0.1")


def test_explicit_options() -> None:
    """--control-service (--control-host) with the certificate options names the cluster alone."""
    address = cluster_address(
        options(
            "--control-service",
            "cp.example",
            "--cacert",
            "/ca",
            "--cert",
            "/c",
            "--key",
            "/k",
        ),
        {"FLOCKER_CLUSTER": "/ignored/cluster.json"},
    )
    assert address.api_url == "https://cp.example:4523"
    assert (address.cacert, address.cert, address.key) == ("/ca", "/c", "/k")


def test_environment_settings() -> None:
    """FLOCKER_CONTROL_SERVICE and friends name the cluster; options win over them."""
    environ = {
        "FLOCKER_CONTROL_SERVICE": "h",
        "FLOCKER_CONTROL_PORT": "4444",
        "FLOCKER_CACERT": "/ca",
        "FLOCKER_CERT": "/c",
        "FLOCKER_KEY": "/k",
    }
    assert cluster_address(options(), environ).api_url == "https://h:4444"
    assert cluster_address(options("--port", "1"), environ).port == 1


def test_ipv6_url() -> None:
    """An IPv6 control service address is bracketed in the URL."""
    address = cluster_address(
        options(
            "--control-service", "::1", "--cacert", "a", "--cert", "b", "--key", "c"
        ),
        {},
    )
    assert address.api_url == "https://[::1]:4523"


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        ((), "no cluster given"),
        (("--control-service", "h"), "needs --cacert, --cert, --key"),
        (("--control-service", "h", "--cacert", "a", "--cert", "b"), "needs --key"),
        (
            (
                "--control-service",
                "h",
                "--port",
                "x",
                "--cacert",
                "a",
                "--cert",
                "b",
                "--key",
                "c",
            ),
            "bad port",
        ),
        (
            (
                "--control-service",
                "h",
                "--port",
                "70000",
                "--cacert",
                "a",
                "--cert",
                "b",
                "--key",
                "c",
            ),
            "bad port",
        ),
    ],
)
def test_usage_errors(argv: tuple[str, ...], says: str) -> None:
    """A missing or malformed setting is a usage error (exit 2)."""
    with pytest.raises(CLIError) as info:
        cluster_address(options(*argv), {})
    assert says in info.value.message
    assert info.value.code == EXIT_USAGE


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "does not exist"),
        ("{not json", "is not a Flocker cluster.json"),
        ('{"control": {}}', "is not a Flocker cluster.json"),
        (
            '{"control": {"api_url": "nohost"}, "certificates": {"ca": "a", "user_cert": "b", "user_key": "c"}}',
            "names no control service",
        ),
    ],
)
def test_bad_cluster_file(tmp_path: Path, content: str | None, says: str) -> None:
    """A missing or malformed cluster file is a one-line exit-3 error."""
    path = tmp_path / "cluster.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(CLIError) as info:
        cluster_address(options("--cluster", str(path)), {})
    assert says in info.value.message
    assert info.value.code == EXIT_UNREACHABLE


def address_of(
    tmp_path: Path, credentials: TestClusterCredentials, **changes: Any
) -> ClusterAddress:
    """The address of a cluster file's cluster, with some files replaced."""
    address = cluster_address(
        options("--cluster", str(cluster_file(tmp_path, credentials))), {}
    )
    return attrs.evolve(address, **changes)


def certificate_options() -> tuple[str, ...]:
    """The certificate options, with files that need not exist."""
    return ("--cacert", "/ca", "--cert", "/c", "--key", "/k")


def test_repeated_control_host() -> None:
    """
    --control-host repeats, once per control service instance, each with its
    own port or --control-port's.
    """
    address = cluster_address(
        options(
            "--control-host",
            "10.0.0.1",
            "--control-host",
            "10.0.0.2:4600",
            "--control-service",
            "[fd00::3]:4700",
            "--control-host",
            "fd00::4",
            "--port",
            "4555",
            *certificate_options(),
        ),
        {},
    )
    assert address.api_urls == (
        "https://10.0.0.1:4555",
        "https://10.0.0.2:4600",
        "https://[fd00::3]:4700",
        "https://[fd00::4]:4555",
    )
    assert (address.host, address.port) == ("10.0.0.1", 4555)


def test_repeated_control_host_after_the_command() -> None:
    """--control-host given after the command repeats too."""
    parsed = build_parser().parse_args(
        ["nodes", "--control-host", "a", "--control-host", "b:1", *certificate_options()]
    )
    assert cluster_address(parsed, {}).api_urls == ("https://a:4523", "https://b:1")


def test_environment_lists_instances() -> None:
    """FLOCKER_CONTROL_SERVICE may list several instances, separated by commas."""
    environ = {
        "FLOCKER_CONTROL_SERVICE": "a, b:4600",
        "FLOCKER_CACERT": "/ca",
        "FLOCKER_CERT": "/c",
        "FLOCKER_KEY": "/k",
    }
    assert cluster_address(options(), environ).api_urls == (
        "https://a:4523",
        "https://b:4600",
    )


@pytest.mark.parametrize("value", ["a:70000", "a:http", ":4523", "[fd00::1"])
def test_bad_control_host(value: str) -> None:
    """A --control-host that is not HOST[:PORT] is a usage error naming it."""
    with pytest.raises(CLIError) as info:
        cluster_address(options("--control-host", value, *certificate_options()), {})
    assert info.value.code == EXIT_USAGE
    assert "bad --control-host" in info.value.message and value in info.value.message


def cluster_file_with_urls(
    tmp_path: Path, credentials: TestClusterCredentials, urls: list[str]
) -> Path:
    """A cluster.json listing several API URLs (``control.api_urls``); its path."""
    path = cluster_file(tmp_path, credentials)
    document = json.loads(path.read_text())
    document["control"] = {"api_urls": urls, "api_url": urls[0] if urls else ""}
    path.write_text(json.dumps(document))
    return path


def test_cluster_file_lists_instances(
    tmp_path: Path, credentials: TestClusterCredentials
) -> None:
    """A cluster.json's control.api_urls gives every instance, in order."""
    urls = ["https://127.0.0.1:4600", "https://127.0.0.2:4601"]
    path = cluster_file_with_urls(tmp_path, credentials, urls)
    assert cluster_address(options("--cluster", str(path)), {}).api_urls == tuple(urls)
    overridden = cluster_address(options("--cluster", str(path), "--port", "9"), {})
    assert overridden.api_urls == ("https://127.0.0.1:9", "https://127.0.0.2:9")
    chosen = cluster_address(
        options("--cluster", str(path), "--control-host", "127.0.0.3"), {}
    )
    assert chosen.api_urls == ("https://127.0.0.3:4523",)


@pytest.mark.parametrize(
    ("urls", "says"),
    [
        ([], "is not a Flocker cluster.json"),
        (["https://127.0.0.1:4600", "nohost"], "names no control service host"),
    ],
)
def test_bad_cluster_file_instances(
    tmp_path: Path, credentials: TestClusterCredentials, urls: list[str], says: str
) -> None:
    """An empty control.api_urls, or a URL without a host in it, is an exit-3 error."""
    path = cluster_file_with_urls(tmp_path, credentials, urls)
    with pytest.raises(CLIError) as info:
        cluster_address(options("--cluster", str(path)), {})
    assert says in info.value.message
    assert info.value.code == EXIT_UNREACHABLE


def test_connect_client_of_every_instance(
    tmp_path: Path, credentials: TestClusterCredentials
) -> None:
    """`connect` gives a client of every instance the cluster file lists."""
    urls = ["https://127.0.0.1:4600", "https://127.0.0.2:4601"]
    path = cluster_file_with_urls(tmp_path, credentials, urls)
    address = cluster_address(options("--cluster", str(path)), {})
    client = connect(MemoryReactorClock(), address)
    assert client.base_urls == tuple(urls)


def test_load_credentials(tmp_path: Path, credentials: TestClusterCredentials) -> None:
    """The user's certificate, key and the cluster CA load from their files."""
    credential, authority = load_credentials(address_of(tmp_path, credentials))
    assert authority.cluster_uuid == credentials.cluster_uuid
    assert credential.certificate.issuer == authority.certificate.subject


def test_connect_makes_client(
    tmp_path: Path, credentials: TestClusterCredentials
) -> None:
    """`connect` gives a REST API client for the control service's URL."""
    client = connect(MemoryReactorClock(), address_of(tmp_path, credentials))
    assert isinstance(client, FlockerClient)
    assert client.base_url == "https://127.0.0.1:4600"


def other_cluster(tmp_path: Path) -> TestClusterCredentials:
    """Another cluster's certificates."""
    directory = tmp_path / "other"
    directory.mkdir()
    return make_test_cluster_credentials(directory)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda t, c: {"cert": str(t / "missing.crt")}, "certificate file"),
        (lambda t, c: {"key": str(t / "missing.key")}, "key file"),
        (lambda t, c: {"cacert": str(t / "missing.crt")}, "CA certificate file"),
        (lambda t, c: {"key": str(c.ca_key)}, "is not the key of"),
        (lambda t, c: {"cert": str(c.ca_key)}, "is not a PEM certificate"),
        (
            lambda t, c: {"key": str(c.ca_certificate)},
            "is not an unencrypted PEM private key",
        ),
        (
            lambda t, c: {"cacert": str(other_cluster(t).ca_certificate)},
            "was not issued by the cluster CA",
        ),
    ],
)
def test_bad_certificates(
    tmp_path: Path,
    credentials: TestClusterCredentials,
    change: Callable[[Path, TestClusterCredentials], dict[str, str]],
    says: str,
) -> None:
    """Missing, mismatched or foreign certificate files are one-line exit-3 errors."""
    address = address_of(tmp_path, credentials, **change(tmp_path, credentials))
    with pytest.raises(CertificateError, match=says):
        load_credentials(address)
    with pytest.raises(CLIError) as info:
        connect(MemoryReactorClock(), address)
    assert info.value.code == EXIT_UNREACHABLE
    assert says in info.value.message


def test_not_a_cluster_ca(tmp_path: Path, credentials: TestClusterCredentials) -> None:
    """A CA certificate that is not a Flocker cluster's is refused."""
    user = credentials.user_directories["alice"]
    shutil.copy(user / "alice.crt", tmp_path / "fake-ca.crt")
    address = address_of(tmp_path, credentials, cacert=str(tmp_path / "fake-ca.crt"))
    with pytest.raises(
        CertificateError, match="not a Flocker cluster CA|was not issued by"
    ):
        load_credentials(address)
