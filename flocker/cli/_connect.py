"""
Finding the cluster and connecting to its REST API with the user certificate.

Where the control service is and which certificates to present come from,
first to last (later sources fill in only what earlier ones left out, and
an explicit command-line option always wins):

1. ``--control-service HOST``, ``--port N`` (``--control-port N``, also
   after the command), ``--cacert FILE``, ``--cert FILE``, ``--key FILE``;
2. ``--cluster FILE`` (a ``cluster.json`` as ``admin/lab`` writes it, or the
   directory holding one), else the ``FLOCKER_CLUSTER`` environment variable
   unless ``--control-service`` is given;
3. when no cluster file is used, the environment variables
   ``FLOCKER_CONTROL_SERVICE``, ``FLOCKER_CONTROL_PORT``,
   ``FLOCKER_CACERT``, ``FLOCKER_CERT`` and ``FLOCKER_KEY``.

A ``cluster.json`` holds ``control.api_url`` (``https://HOST:PORT``) and
``certificates.ca``, ``certificates.user_cert``, ``certificates.user_key``
(relative paths are relative to the file's directory).

The certificate files are loaded here rather than with
`flocker.ca.load_tls_files`, which wants them named ``cluster.crt`` and
``USER.crt``/``.key`` in one directory; the TLS policy is the same
`flocker.ca.ClusterPolicyForHTTPS` every Flocker API client uses.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from treq.client import HTTPClient
from twisted.web.client import Agent

from ..apiclient import DEFAULT_API_PORT, FlockerClient
from ..ca import (
    CertificateAuthority,
    CertificateError,
    ClusterPolicyForHTTPS,
    Credential,
)
from ._errors import EXIT_UNREACHABLE, EXIT_USAGE, CLIError

__all__ = [
    "CONNECT_TIMEOUT",
    "ENVIRONMENT",
    "REQUEST_TIMEOUT",
    "ClusterAddress",
    "add_connection_options",
    "cluster_address",
    "connect",
]

#: Seconds to wait for a TCP connection to the control service.
CONNECT_TIMEOUT = 10.0
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


@attrs.frozen
class ClusterAddress:
    """
    Where the control service's REST API is and what to present to it.

    :ivar host: its host name or address, as its certificate names it.
    :ivar port: its REST API port.
    :ivar cacert: the cluster CA certificate file.
    :ivar cert: the user certificate file.
    :ivar key: the user's private key file.
    """

    host: str
    port: int
    cacert: str
    cert: str
    key: str

    @property
    def api_url(self) -> str:
        """``https://HOST:PORT``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"


def add_connection_options(parser: Any, default: Any = None) -> None:
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
        "--control-service",
        metavar="HOST",
        default=default,
        help="the control service's address (as its certificate names it)",
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


def _read_cluster_file(path: str) -> dict[str, Any]:
    """The connection settings in a ``cluster.json`` (or a directory holding one)."""
    file = Path(path)
    if file.is_dir():
        file = file / "cluster.json"
    try:
        config = json.loads(file.read_text())
        api = urlsplit(config["control"]["api_url"])
        certificates = config["certificates"]
        settings: dict[str, Any] = {
            "control_service": api.hostname,
            "control_port": api.port or DEFAULT_API_PORT,
        }
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
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise CLIError(
            f"cluster file {file} is not a Flocker cluster.json "
            f"(control.api_url and certificates.ca/user_cert/user_key): {e!r}",
            EXIT_UNREACHABLE,
        ) from None
    if not settings["control_service"]:
        raise CLIError(
            f"cluster file {file} names no control service host", EXIT_UNREACHABLE
        )
    return settings


def cluster_address(options: Any, environ: Mapping[str, str]) -> ClusterAddress:
    """
    Where the cluster is, from the parsed options and the environment.

    :raise CLIError: with `EXIT_USAGE` if no cluster is named or a setting
        is missing, `EXIT_UNREACHABLE` if the cluster file is unusable.
    """
    given = {name: getattr(options, name, None) for name in ENVIRONMENT}
    cluster_file = getattr(options, "cluster", None)
    if cluster_file is None and given["control_service"] is None:
        cluster_file = environ.get(CLUSTER_ENVIRONMENT) or None
    settings: dict[str, Any] = {"control_port": DEFAULT_API_PORT}
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
    if "control_service" not in settings:
        raise CLIError(
            "no cluster given: pass --cluster FILE, set FLOCKER_CLUSTER, or pass "
            "--control-service HOST with --cacert, --cert and --key",
            EXIT_USAGE,
        )
    missing = [
        f"--{name}" for name in ("cacert", "cert", "key") if name not in settings
    ]
    if missing:
        raise CLIError(
            f"--control-service needs {', '.join(missing)} (or the environment "
            f"variables {', '.join(ENVIRONMENT[m[2:]] for m in missing)})",
            EXIT_USAGE,
        )
    try:
        port = int(settings["control_port"])
        if not 0 < port < 65536:
            raise ValueError(port)
    except ValueError:
        raise CLIError(
            f"bad port {settings['control_port']!r}: not a TCP port number", EXIT_USAGE
        ) from None
    return ClusterAddress(
        host=str(settings["control_service"]),
        port=port,
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


def connect(reactor: Any, address: ClusterAddress) -> FlockerClient:
    """
    A REST API client presenting the user certificate to the control service.

    :raise CLIError: with `EXIT_UNREACHABLE` if the certificates are unusable.
    """
    try:
        credential, authority = load_credentials(address)
    except CertificateError as e:
        raise CLIError(str(e), EXIT_UNREACHABLE) from None
    agent = Agent(
        reactor,
        contextFactory=ClusterPolicyForHTTPS(credential, authority),
        connectTimeout=CONNECT_TIMEOUT,
    )
    return FlockerClient(
        _TimedHTTP(HTTPClient(agent), REQUEST_TIMEOUT), address.api_url
    )
