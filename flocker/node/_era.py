"""A node's era: a UUID that changes every time the node boots.

The era is derived from the kernel's boot id (``/proc/sys/kernel/random/
boot_id``, a random UUID chosen at each boot) and the node's UUID, as a
version-5 UUID in the node UUID's namespace: the same for every process of
the node during one boot, different after a reboot, and different between
two nodes even if they were to share a boot id (containers, clones of one
disk image).  The container agent reports it in its node state, so the
control service forgets what it knew of a node that rebooted, and a client
on the node can find its node's UUID with ``GET /v1/state/nodes/by_era/``
and the output of ``flocker-node-era``, as with the original Flocker.
"""

from __future__ import annotations

import argparse
import sys
from uuid import UUID, uuid5

from ..ca import CertificateError, UnknownPeer, identify_certificate, load_credential

__all__ = ["BOOT_ID_PATH", "era_from", "main", "node_era"]

#: Where Linux keeps the id of the current boot.
BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"


def era_from(node_uuid: object, boot_id: str) -> str:
    """The era of a node for a boot id (pure: no I/O)."""
    return str(uuid5(UUID(str(node_uuid)), boot_id.strip().lower()))


def node_era(node_uuid: object, boot_id_path: str = BOOT_ID_PATH) -> str:
    """
    The node's current era, reading the boot id.

    :raise OSError: the boot id cannot be read.
    """
    with open(boot_id_path, encoding="ascii") as f:
        return era_from(node_uuid, f.read())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flocker-node-era",
        description="Print this node's era (it changes at every boot).",
    )
    parser.add_argument(
        "--certificates-directory",
        default="/etc/flocker",
        help="holds node.crt, which names the node (default /etc/flocker)",
    )
    parser.add_argument("--node-uuid", help="this node's UUID (default: from node.crt)")
    return parser


def main(argv: list[str] | None = None) -> None:
    """The ``flocker-node-era`` console script: print the era, or exit 1 saying why."""
    options = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if options.node_uuid is not None:
            node_uuid = str(UUID(options.node_uuid))
        else:
            credential = load_credential(options.certificates_directory, "node")
            identity = identify_certificate(credential.certificate)
            if identity.node_uuid is None:
                raise CertificateError("node.crt is not a node certificate")
            node_uuid = str(identity.node_uuid)
        era = node_era(node_uuid)
    except (ValueError, CertificateError, UnknownPeer, OSError) as error:
        sys.stderr.write(f"flocker-node-era: {error}\n")
        raise SystemExit(1) from None
    sys.stdout.write(era + "\n")


if __name__ == "__main__":
    main()
