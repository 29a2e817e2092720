"""
``flocker-deploy DEPLOYMENT APPLICATION``: run the applications an
application file describes on the nodes a deployment file names, through
the control service's REST API, in one call.

The application file is Flocker's ``application.yml`` format or a
docker-compose file (see `flocker.deploy`); the deployment file is
Flocker's ``deployment.yml``.  Everything — both files, the node names
against the cluster, ports, links, the datasets to reuse — is checked before
the first change; a re-run with the same files changes nothing.

The control service is given by a cluster file (``--cluster FILE``, or the
``FLOCKER_CLUSTER`` environment variable), as the local cluster writes it::

    {"control": {"api_urls": ["https://HOST:PORT", …]},
     "certificates": {"ca": "cluster.crt", "user_cert": "user.crt",
                      "user_key": "user.key"}}

(relative paths are relative to the file; ``api_urls`` lists every control
service instance, and requests go to the next one when one cannot be
connected to; an older file's ``"api_url": "https://HOST:PORT"`` names
one), and/or by ``--control-service HOST --port N --cacert FILE --cert FILE
--key FILE``, which override it (``--control-service`` or ``--port``: that
one instance only).

Exit status: 0 the configuration matches the files; 1 a file (or the
cluster's state) does not allow the deployment, nothing changed; 2 the
command line is wrong; 3 the control service could not be reached or
refused a change (the changes made before it are listed on stdout).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn
from urllib.parse import urlsplit
from uuid import UUID, uuid4

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.web.iweb import IPolicyForHTTPS

from ..apiclient import (
    DEFAULT_API_PORT,
    FlockerAPIError,
    FlockerClient,
    IFlockerAPIV1Client,
    api_url,
    connect_timeout,
    https_agent,
)
from ..ca import CertificateAuthority, ClusterPolicyForHTTPS, Credential
from ..common import TCPTimeReactor
from ._checks import load_yaml
from ._compose import parse_compose_applications
from ._flockerformat import (
    is_flocker_format,
    parse_deployment,
    parse_flocker_applications,
)
from ._model import Application, ConfigurationError, Placement
from ._plan import calculate_changes, check_deployment, read_cluster, resolve_nodes

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_CLUSTER",
    "EXIT_OK",
    "EXIT_USAGE",
    "DeployFailed",
    "Files",
    "deploy",
    "main",
    "read_files",
]

EXIT_OK = 0
EXIT_BAD_INPUT = 1
EXIT_USAGE = 2
EXIT_CLUSTER = 3

#: Seconds to wait for a TCP connection to the control service.
CONNECT_TIMEOUT = 15


class DeployFailed(Exception):
    """The control service could not be reached or refused a change."""


class _Usage(Exception):
    """The command line does not say what to do."""


@attrs.frozen
class Files:
    """The two files, read and checked against each other."""

    application_source: str
    applications: Mapping[str, Application]
    deployment_source: str
    placement: Placement


@attrs.frozen
class _Connection:
    """Where the control service is and how to prove who we are."""

    host: str
    port: int
    cacert: str
    cert: str
    key: str
    #: The other control service instances' ``(host, port)``, tried when
    #: the first cannot be connected to.
    others: tuple[tuple[str, int], ...] = ()


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
        raise ConfigurationError(f"{path}: cannot read: {reason}") from None


def read_files(deployment_path: str, application_path: str) -> Files:
    """
    Read, parse and cross-check the deployment and application files.

    :raise ConfigurationError: naming the file and key at fault.
    """
    document = load_yaml(application_path, _read(application_path))
    if is_flocker_format(document):
        applications = parse_flocker_applications(application_path, document)
    else:
        applications = parse_compose_applications(application_path, document)
    placement = parse_deployment(
        deployment_path, load_yaml(deployment_path, _read(deployment_path))
    )
    check_deployment(application_path, applications, deployment_path, placement)
    return Files(application_path, applications, deployment_path, placement)


async def deploy(
    client: IFlockerAPIV1Client,
    files: Files,
    report: Callable[[str], None],
    new_dataset_id: Callable[[], UUID] = uuid4,
) -> list[Any]:
    """
    Make the cluster's configuration match ``files``; the changes made.

    :param report: called with a line describing each change once made.
    :raise ConfigurationError: the files do not fit the cluster (nothing
        changed).
    :raise DeployFailed: the REST API could not be reached or refused a
        change.
    """
    try:
        cluster = await read_cluster(client)
    except Exception as e:  # noqa: BLE001 - any failure to reach the API
        raise DeployFailed(f"cannot read the cluster's configuration: {_why(e)}") from e
    nodes = resolve_nodes(files.deployment_source, files.placement, cluster.nodes)
    changes = calculate_changes(files.applications, nodes, cluster, new_dataset_id)
    for done, change in enumerate(changes):
        try:
            await change.run(client)
        except Exception as e:  # noqa: BLE001 - any failure to reach the API
            raise DeployFailed(
                f"{change.describe()} failed after {done} of {len(changes)} "
                f"changes: {_why(e)}"
            ) from e
        report(change.describe())
    return changes


def _why(error: BaseException) -> str:
    """A one-line reason for a failed request."""
    if isinstance(error, FlockerAPIError):
        text = f"the control service answered {error}"
    else:
        reasons = getattr(error, "reasons", None)  # ResponseNeverReceived & co.
        if reasons:
            text = "; ".join(str(r.value) or type(r.value).__name__ for r in reasons)
        else:
            text = str(error) or type(error).__name__
    return " ".join(text.split())


# --------------------------------------------------------------------------
# Command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flocker-deploy",
        description=(
            "Run the applications of APPLICATION on the nodes DEPLOYMENT "
            "names, through the control service's REST API."
        ),
        epilog=(
            "Exit status: 0 done (or nothing to do); 1 a file does not allow "
            "the deployment, nothing changed; 2 bad command line; 3 the "
            "control service could not be reached or refused a change."
        ),
    )
    parser.add_argument("deployment", help="deployment.yml: node → applications")
    parser.add_argument(
        "application", help="application.yml (Flocker format) or a compose file"
    )
    parser.add_argument(
        "--cluster",
        metavar="FILE",
        default=os.environ.get("FLOCKER_CLUSTER"),
        help="cluster.json with control.api_urls and certificates "
        "(default: $FLOCKER_CLUSTER)",
    )
    parser.add_argument("--control-service", metavar="HOST")
    parser.add_argument("--port", type=int, metavar="N")
    parser.add_argument("--cacert", metavar="FILE", help="the cluster CA certificate")
    parser.add_argument("--cert", metavar="FILE", help="the API user's certificate")
    parser.add_argument("--key", metavar="FILE", help="the API user's private key")
    return parser


def _cluster_file(path: str) -> dict[str, Any]:
    """``--cluster``'s settings, paths made absolute."""
    try:
        document = json.loads(_read(path))
        control = document["control"]
        listed = control["api_urls"] if "api_urls" in control else [control["api_url"]]
        if not listed:
            raise ValueError("control.api_urls lists no URL")
        urls = [urlsplit(url) for url in listed]
        certificates = document["certificates"]
        base = os.path.dirname(os.path.abspath(path))
        settings: dict[str, Any] = {
            "host": urls[0].hostname,
            "port": urls[0].port or DEFAULT_API_PORT,
            "others": tuple(
                (str(url.hostname), url.port or DEFAULT_API_PORT) for url in urls[1:]
            ),
        }
        for name, key in (("cacert", "ca"), ("cert", "user_cert"), ("key", "user_key")):
            settings[name] = os.path.join(base, certificates[key])
    except ValueError as e:
        raise ConfigurationError(f"{path}: not a cluster file: {e}") from None
    except (KeyError, TypeError, AttributeError) as e:
        raise ConfigurationError(
            f"{path}: not a cluster file: missing control.api_urls (or api_url) or "
            f"certificates ({e})"
        ) from None
    return settings


def _connection(arguments: argparse.Namespace) -> _Connection:
    """Where the control service is, from ``--cluster`` and the options."""
    settings: dict[str, Any] = {"port": DEFAULT_API_PORT}
    if arguments.cluster:
        settings.update(_cluster_file(arguments.cluster))
    given = {
        "host": arguments.control_service,
        "port": arguments.port,
        "cacert": arguments.cacert,
        "cert": arguments.cert,
        "key": arguments.key,
    }
    if arguments.control_service is not None or arguments.port is not None:
        settings["others"] = ()
    settings.update({k: v for k, v in given.items() if v is not None})
    missing = [
        option
        for option, name in (
            ("--control-service", "host"),
            ("--cacert", "cacert"),
            ("--cert", "cert"),
            ("--key", "key"),
        )
        if not settings.get(name)
    ]
    if missing:
        raise _Usage(
            f"missing {', '.join(missing)} (or --cluster FILE, or FLOCKER_CLUSTER)"
        )
    if not 1 <= settings["port"] <= 65535:
        raise _Usage(f"--port {settings['port']} is not a TCP port")
    return _Connection(**settings)


def _tls(connection: _Connection) -> ClusterPolicyForHTTPS:
    """The user's credential and the cluster CA, for HTTPS to the API."""
    def certificate(path: str) -> x509.Certificate:
        try:
            return x509.load_pem_x509_certificate(_read(path).encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            raise ConfigurationError(f"{path}: not a PEM certificate") from None

    try:
        key = serialization.load_pem_private_key(
            _read(connection.key).encode("ascii"), None
        )
    except (ValueError, TypeError, UnicodeEncodeError):
        raise ConfigurationError(
            f"{connection.key}: not an unencrypted PEM private key"
        ) from None
    cert = certificate(connection.cert)
    if key.public_key() != cert.public_key():
        raise ConfigurationError(f"{connection.key}: not the key of {connection.cert}")
    return ClusterPolicyForHTTPS(
        Credential(certificate=cert, private_key=key),
        CertificateAuthority(certificate=certificate(connection.cacert)),
    )


def _client(
    reactor: TCPTimeReactor, connection: _Connection, tls: IPolicyForHTTPS
) -> FlockerClient:
    """A REST API client for the control service."""
    from treq.client import HTTPClient

    instances = [(connection.host, connection.port), *connection.others]
    timeout = CONNECT_TIMEOUT if len(instances) == 1 else connect_timeout(len(instances))
    agent = https_agent(reactor, tls, timeout)
    return FlockerClient(HTTPClient(agent), [api_url(h, p) for h, p in instances])


def _exit(code: int, message: str) -> NoReturn:
    """Say what went wrong on one line of stderr, and exit."""
    sys.stderr.write(f"flocker-deploy: {message}\n")
    raise SystemExit(code)


async def _run(
    reactor: TCPTimeReactor, connection: _Connection, tls: IPolicyForHTTPS, files: Files
) -> None:
    """Deploy with a real client; SystemExit with the right status."""

    def report(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    try:
        changes = await deploy(_client(reactor, connection, tls), files, report)
    except ConfigurationError as e:
        _exit(EXIT_BAD_INPUT, f"{e} (nothing changed)")
    except DeployFailed as e:
        _exit(EXIT_CLUSTER, str(e))
    if not changes:
        report("nothing to change: the cluster already runs this deployment")


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The ``flocker-deploy`` command."""
    parser = _parser()
    arguments = parser.parse_args(argv)  # exits 2 on a usage error
    try:
        connection = _connection(arguments)
        files = read_files(arguments.deployment, arguments.application)
        tls = _tls(connection)
    except _Usage as e:
        parser.print_usage(sys.stderr)
        _exit(EXIT_USAGE, str(e))
    except ConfigurationError as e:
        _exit(EXIT_BAD_INPUT, f"{e} (nothing changed)")

    from twisted.internet.task import react

    react(_run, (connection, tls, files))
    raise AssertionError("react returned")  # pragma: no cover - react exits
