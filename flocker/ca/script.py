"""
The ``flocker-ca`` command: create a cluster CA and sign certificates with it.

Usage::

    flocker-ca initialize <cluster-name> [--outputpath DIR]
    flocker-ca create-control-certificate <hostname> [--inputpath DIR] [--outputpath DIR]
    flocker-ca create-node-certificate [--uuid UUID] [--inputpath DIR] [--outputpath DIR]
    flocker-ca create-api-certificate <username> [--inputpath DIR] [--outputpath DIR]

``--inputpath`` is where ``cluster.crt`` and ``cluster.key`` are read from,
``--outputpath`` where new files are written; both default to the current
directory. Existing files are never overwritten. Each command prints one line
saying what it wrote; errors print one line to stderr and exit non-zero. See
:mod:`flocker.ca._ca` for where each daemon expects the files.

Run as ``flocker-ca`` (console script) or ``python -m flocker.ca.script``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO
from uuid import UUID

from ._ca import (
    CertificateError,
    create_api_certificate,
    create_control_certificate,
    create_node_certificate,
    initialize,
    load_authority,
)

#: Exit status for a failure to create a certificate.
EXIT_FAILURE = 1
#: Exit status for a malformed command line (as argparse uses).
EXIT_USAGE = 2


def _uuid(value: str) -> UUID:
    """Parse a ``--uuid`` argument."""
    try:
        return UUID(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid UUID {value!r}") from None


def _parser() -> argparse.ArgumentParser:
    """Build the command-line parser."""
    parser = argparse.ArgumentParser(
        prog="flocker-ca",
        description="Create a Flocker cluster's certificate authority and certificates.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, help: str, inputpath: bool = True
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        if inputpath:
            sub.add_argument(
                "--inputpath",
                type=Path,
                default=Path("."),
                help="directory holding cluster.crt and cluster.key (default: .)",
            )
        sub.add_argument(
            "--outputpath",
            type=Path,
            default=Path("."),
            help="directory to write the new files into (default: .)",
        )
        return sub

    command(
        "initialize",
        "Create the cluster's root CA as cluster.crt and cluster.key.",
        inputpath=False,
    ).add_argument("cluster_name", metavar="cluster-name")
    command(
        "create-control-certificate",
        "Create the control service's certificate, control-<hostname>.crt/.key.",
    ).add_argument("hostname", help="the control service's DNS name or IP address")
    command(
        "create-node-certificate",
        "Create a node's certificate, <node-uuid>.crt/.key.",
    ).add_argument(
        "--uuid", type=_uuid, default=None, help="the node's UUID (default: random)"
    )
    command(
        "create-api-certificate",
        "Create an API user's client certificate, <username>.crt/.key.",
    ).add_argument("username")
    return parser


def _run(options: argparse.Namespace) -> str:
    """Carry out a parsed command; return the line to print."""
    if options.command == "initialize":
        issued = initialize(options.outputpath, options.cluster_name)
        uuid = load_authority(options.outputpath).cluster_uuid
        return (
            f"Created {issued.certificate_path} and {issued.key_path} for cluster "
            f"{options.cluster_name!r} (UUID {uuid}); copy cluster.crt to every "
            "machine and keep cluster.key safe."
        )
    authority = load_authority(options.inputpath, with_key=True)
    if options.command == "create-control-certificate":
        issued = create_control_certificate(
            authority, options.hostname, options.outputpath
        )
        return (
            f"Created {issued.certificate_path} and {issued.key_path}; install them "
            "as control-service.crt and control-service.key on the control node."
        )
    if options.command == "create-node-certificate":
        issued = create_node_certificate(authority, options.outputpath, options.uuid)
        return (
            f"Created {issued.certificate_path} and {issued.key_path} for node "
            f"{issued.node_uuid}; install them as node.crt and node.key on that node."
        )
    issued = create_api_certificate(authority, options.username, options.outputpath)
    return (
        f"Created {issued.certificate_path} and {issued.key_path} for API user "
        f"{options.username!r}."
    )


def main(
    argv: list[str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """
    Run ``flocker-ca`` with ``argv`` (default ``sys.argv[1:]``).

    :return: The exit status: 0 on success, 1 if the certificate could not be
        made, 2 for a malformed command line.
    """
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    parser = _parser()
    try:
        old_stdout, old_stderr = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = stdout, stderr  # argparse writes to sys.*
        try:
            options = parser.parse_args(argv)
        finally:
            sys.stdout, sys.stderr = old_stdout, old_stderr
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    try:
        message = _run(options)
    except CertificateError as e:
        print(f"flocker-ca: error: {e}", file=stderr)
        return EXIT_FAILURE
    print(message, file=stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
