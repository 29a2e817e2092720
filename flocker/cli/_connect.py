"""
Finding the cluster and connecting to its REST API with the user certificate.

Where the control service is and which certificates to present come from,
first to last (later sources fill in only what earlier ones left out, and
an explicit command-line option always wins):

1. ``--control-host HOST[:PORT]`` (also spelt ``--control-service``; repeat
   it once per control service instance), ``--port N`` (``--control-port
   N``, also after the command: the port of every host given without
   one), ``--cacert FILE``, ``--cert FILE``, ``--key FILE``;
2. ``--cluster FILE`` (a ``cluster.json`` as ``admin/lab`` writes it, or the
   directory holding one), else the ``FLOCKER_CLUSTER`` environment variable
   unless ``--control-host`` is given;
3. when no cluster file is used, the environment variables
   ``FLOCKER_CONTROL_SERVICE`` (``HOST[:PORT]``, several separated by
   commas), ``FLOCKER_CONTROL_PORT``, ``FLOCKER_CACERT``, ``FLOCKER_CERT``
   and ``FLOCKER_KEY``.

A ``cluster.json`` holds ``control.api_urls`` (a list of ``https://HOST:PORT``,
one per control service instance) or, written by older labs,
``control.api_url`` (one URL); and ``certificates.ca``,
``certificates.user_cert``, ``certificates.user_key`` (relative paths are
relative to the file's directory).

With several instances the client sends each request to the one that
answered last and moves on to the next when it cannot connect (see
`flocker.apiclient.FlockerClient`).

The certificate files are loaded here rather than with
`flocker.ca.load_tls_files`, which wants them named ``cluster.crt`` and
``USER.crt``/``.key`` in one directory; the TLS policy is the same
`flocker.ca.ClusterPolicyForHTTPS` every Flocker API client uses.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from treq.client import HTTPClient

from ..apiclient import (
    DEFAULT_API_PORT,
    FlockerClient,
    api_url,
    connect_timeout,
    https_agent,
)
from ..ca import (
    CertificateAuthority,
    CertificateError,
    ClusterPolicyForHTTPS,
    Credential,
)
from ..common import TCPTimeReactor, parse_address
from ._errors import EXIT_UNREACHABLE, EXIT_USAGE, CLIError

__all__ = [
    "ENVIRONMENT",
    "REQUEST_TIMEOUT",
    "ClusterAddress",
    "add_connection_options",
    "cluster_address",
    "connect",
]

#: Seconds to wait for the control service to answer a request.
REQUEST_TIMEOUT = 30.0

#: Option destination → environment variable.
ENVIRONMENT = {
    "control_service": "FLOCKER_CONTROL_SERVICE",
    "control_port": "FLOCKER_CONTROL_PORT",
    "cacert": "FLOCKER_CACERT",
    "cert": "FLOCKER_CERT",
    "key": "FLOCKER_KEY",
}
CLUSTER_ENVIRONMENT = "FLOCKER_CLUSTER"


def _instances(instances: Sequence[tuple[str, int]]) -> tuple[tuple[str, int], ...]:
    """The instances as a tuple."""
    return tuple(instances)


@attrs.frozen
class ClusterAddress:
    """
    Where the control service's REST API is and what to present to it.

    :ivar instances: each control service instance's ``(host, port)``: its
        host name or address, as its certificate names it, and its REST
        API port; at least one.
    :ivar cacert: the cluster CA certificate file.
    :ivar cert: the user certificate file.
    :ivar key: the user's private key file.
    """

    instances: tuple[tuple[str, int], ...] = attrs.field(converter=_instances)
    cacert: str
    cert: str
    key: str

    @property
    def host(self) -> str:
        """The first instance's host."""
        return self.instances[0][0]

    @property
    def port(self) -> int:
        """The first instance's REST API port."""
        return self.instances[0][1]

    @property
    def api_urls(self) -> tuple[str, ...]:
        """``https://HOST:PORT`` of each instance."""
        return tuple(api_url(host, port) for host, port in self.instances)

    @property
    def api_url(self) -> str:
        """The first instance's ``https://HOST:PORT``."""
        return self.api_urls[0]


def add_connection_options(
    parser: argparse.ArgumentParser, default: str | None = None
) -> None:
    """
    Add the options naming the cluster to an ``argparse`` parser.

    :param default: their default: ``argparse.SUPPRESS`` on subcommands, so
        that the same options given before the command are not overwritten
        (the REST API port is then ``--control-port`` only).
    """
    subcommand = default is not None
    group = parser.add_argument_group("cluster")
    group.add_argument(
        "--cluster",
        metavar="FILE",
        default=default,
        help=f"a cluster.json (or its directory); default ${CLUSTER_ENVIRONMENT}",
    )
    group.add_argument(
        "--control-host",
        "--control-service",
        dest="control_service",
        metavar="HOST[:PORT]",
        action="append",
        default=default,
        help="a control service instance's address (as its certificate names "
        "it), with its REST API port unless --control-port's; repeat it for "
        "each instance: requests go to the next one when one cannot be reached",
    )
    # ``--port`` only before the command: ``apps deploy --port`` publishes
    # an application's port.
    group.add_argument(
        *(["--control-port"] if subcommand else ["--port", "--control-port"]),
        dest="control_port",
        metavar="N",
        default=default,
        help=f"the REST API port (default {DEFAULT_API_PORT})",
    )
    group.add_argument(
        "--cacert", metavar="FILE", default=default, help="the cluster CA certificate"
    )
    group.add_argument(
        "--cert", metavar="FILE", default=default, help="your API user certificate"
    )
    group.add_argument(
        "--key", metavar="FILE", default=default, help="your API user private key"
    )


def _instances_of(control: dict[str, Any]) -> list[tuple[str, int]]:
    """
    The ``(host, port)`` of each URL a ``cluster.json``'s ``control`` lists:
    ``api_urls``, else ``api_url``.

    :raise ValueError: if there is none, or a URL names no host.
    """
    urls = control["api_urls"] if "api_urls" in control else [control["api_url"]]
    if not isinstance(urls, list) or not urls:
        raise ValueError("control.api_urls lists no URL")
    instances = []
    for url in urls:
        api = urlsplit(url)
        if not api.hostname:
            raise _NoHost(url)
        instances.append((api.hostname, api.port or DEFAULT_API_PORT))
    return instances


class _NoHost(ValueError):
    """A ``cluster.json`` URL names no host."""


def _read_cluster_file(path: str) -> dict[str, Any]:
    """The connection settings in a ``cluster.json`` (or a directory holding one)."""
    file = Path(path)
    if file.is_dir():
        file = file / "cluster.json"
    try:
        config = json.loads(file.read_text())
        certificates = config["certificates"]
        settings: dict[str, Any] = {"instances": _instances_of(config["control"])}
        for name, key in (("cacert", "ca"), ("cert", "user_cert"), ("key", "user_key")):
            settings[name] = str(file.parent / certificates[key])
    except FileNotFoundError:
        raise CLIError(
            f"cluster file {file} does not exist", EXIT_UNREACHABLE
        ) from None
    except OSError as e:
        raise CLIError(
            f"cannot read cluster file {file}: {e.strerror}", EXIT_UNREACHABLE
        ) from None
    except _NoHost as e:
        raise CLIError(
            f"cluster file {file} names no control service host in {e}",
            EXIT_UNREACHABLE,
        ) from None
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise CLIError(
            f"cluster file {file} is not a Flocker cluster.json "
            f"(control.api_urls or control.api_url, and "
            f"certificates.ca/user_cert/user_key): {e!r}",
            EXIT_UNREACHABLE,
        ) from None
    return settings


def _port(text: Any) -> int:
    """A REST API port from an option or the environment."""
    try:
        port = int(text)
        if not 0 < port < 65536:
            raise ValueError(port)
    except ValueError:
        raise CLIError(f"bad port {text!r}: not a TCP port number", EXIT_USAGE) from None
    return port


def _hosts(given: Any) -> list[str]:
    """``--control-host`` values (a list) or ``FLOCKER_CONTROL_SERVICE`` (commas)."""
    values = given if isinstance(given, list) else [given]
    return [
        part.strip() for value in values for part in str(value).split(",") if part.strip()
    ]


def cluster_address(
    options: argparse.Namespace, environ: Mapping[str, str]
) -> ClusterAddress:
    """
    Where the cluster is, from the parsed options and the environment.

    :raise CLIError: with `EXIT_USAGE` if no cluster is named or a setting
        is missing, `EXIT_UNREACHABLE` if the cluster file is unusable.
    """
    given = {name: getattr(options, name, None) for name in ENVIRONMENT}
    cluster_file = getattr(options, "cluster", None)
    if cluster_file is None and given["control_service"] is None:
        cluster_file = environ.get(CLUSTER_ENVIRONMENT) or None
    settings: dict[str, Any] = {}
    if cluster_file is not None:
        settings.update(_read_cluster_file(cluster_file))
    else:
        settings.update(
            {
                name: environ[var]
                for name, var in ENVIRONMENT.items()
                if environ.get(var)
            }
        )
    settings.update({name: value for name, value in given.items() if value is not None})
    hosts = _hosts(settings.get("control_service", []))
    if not hosts and "instances" not in settings:
        raise CLIError(
            "no cluster given: pass --cluster FILE, set FLOCKER_CLUSTER, or pass "
            "--control-host HOST with --cacert, --cert and --key",
            EXIT_USAGE,
        )
    missing = [
        f"--{name}" for name in ("cacert", "cert", "key") if name not in settings
    ]
    if missing:
        raise CLIError(
            f"--control-host needs {', '.join(missing)} (or the environment "
            f"variables {', '.join(ENVIRONMENT[m[2:]] for m in missing)})",
            EXIT_USAGE,
        )
    port = _port(settings.get("control_port", DEFAULT_API_PORT))
    if hosts:
        try:
            instances = [parse_address(host, port) for host in hosts]
        except ValueError as e:
            raise CLIError(f"bad --control-host {e}", EXIT_USAGE) from None
    elif "control_port" in settings:
        # --control-port given with a cluster file: every instance's port.
        instances = [(host, port) for host, _ in settings["instances"]]
    else:
        instances = settings["instances"]
    return ClusterAddress(
        instances=instances,
        cacert=str(settings["cacert"]),
        cert=str(settings["cert"]),
        key=str(settings["key"]),
    )


def _read(path: str, what: str) -> bytes:
    """A certificate or key file's bytes."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise CertificateError(f"{what} {path} does not exist") from None
    except OSError as e:
        raise CertificateError(f"cannot read {what} {path}: {e.strerror}") from None


def load_credentials(
    address: ClusterAddress,
) -> tuple[Credential, CertificateAuthority]:
    """
    The user credential and the cluster CA named by ``address``.

    :raise CertificateError: if a file is missing, unreadable or not what it
        should be, or the certificate is not the key's or not the CA's.
    """
    try:
        ca_certificate = x509.load_pem_x509_certificate(
            _read(address.cacert, "CA certificate file")
        )
    except ValueError:
        raise CertificateError(f"{address.cacert} is not a PEM certificate") from None
    try:
        certificate = x509.load_pem_x509_certificate(
            _read(address.cert, "certificate file")
        )
    except ValueError:
        raise CertificateError(f"{address.cert} is not a PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(_read(address.key, "key file"), None)
    except (ValueError, TypeError):
        raise CertificateError(
            f"{address.key} is not an unencrypted PEM private key"
        ) from None
    if key.public_key() != certificate.public_key():
        raise CertificateError(f"{address.key} is not the key of {address.cert}")
    authority = CertificateAuthority(certificate=ca_certificate)
    try:
        authority.cluster_uuid  # noqa: B018 - raises if not a Flocker cluster CA
    except CertificateError:
        raise CertificateError(
            f"{address.cacert} is not a Flocker cluster CA certificate"
        ) from None
    if certificate.issuer != ca_certificate.subject:
        raise CertificateError(
            f"{address.cert} was not issued by the cluster CA {address.cacert}"
        )
    return Credential(certificate=certificate, private_key=key), authority


@attrs.frozen
class _TimedHTTP:
    """A treq client whose every request gives up after ``timeout`` seconds."""

    http: HTTPClient
    timeout: float

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        """Make the request with the timeout."""
        return self.http.request(method, url, timeout=self.timeout, **kwargs)


def connect(reactor: TCPTimeReactor, address: ClusterAddress) -> FlockerClient:
    """
    A REST API client presenting the user certificate to the control service.

    :raise CLIError: with `EXIT_UNREACHABLE` if the certificates are unusable.
    """
    try:
        credential, authority = load_credentials(address)
    except CertificateError as e:
        raise CLIError(str(e), EXIT_UNREACHABLE) from None
    agent = https_agent(
        reactor,
        ClusterPolicyForHTTPS(credential, authority),
        connect_timeout(len(address.instances)),
    )
    return FlockerClient(
        _TimedHTTP(HTTPClient(agent), REQUEST_TIMEOUT), address.api_urls
    )
