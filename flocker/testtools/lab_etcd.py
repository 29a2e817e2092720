"""etcd members for a local cluster's highly available control plane.

``admin/lab up --control 3 --store etcd`` starts an etcd cluster of as many
members as control instances, each a real ``etcd`` process (Debian's
``etcd-server``) on 127.0.0.1 with free client and peer ports and a data
directory under the cluster's directory.  This module says how to start a
member (`member_command`, `member_environment`) and whether it is healthy
(`healthy`); the lab spawns, records and stops the processes like every
other daemon of the cluster.  The test fixture `flocker.testtools.etcd`
starts members the same way.
"""

from __future__ import annotations

import json
import os
import platform
import urllib.error
import urllib.request

__all__ = ["healthy", "member_command", "member_environment"]

#: Go's names for the architectures etcd 3.4 runs on only when told to.
UNSUPPORTED_ARCHES = {
    "aarch64": "arm64",
    "arm64": "arm64",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "armv7l": "arm",
}


def member_environment() -> dict[str, str]:
    """
    A member's environment: ours without ``ETCD_*`` settings (which etcd
    would take as flags), plus ``ETCD_UNSUPPORTED_ARCH`` where needed.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
    arch = UNSUPPORTED_ARCHES.get(platform.machine())
    if arch is not None:
        env["ETCD_UNSUPPORTED_ARCH"] = arch
    return env


def member_command(
    name: str,
    data_dir: str,
    client_url: str,
    peer_url: str,
    initial_cluster: str,
    token: str,
    log: str,
) -> list[str]:
    """
    The command line of one new member of a cluster.

    :param initial_cluster: every member as ``name=peer_url``, comma-separated.
    :param token: the cluster's token, unique to it (members of different
        local clusters never join each other).
    :param log: the member's log file.
    """
    return [
        "etcd",
        "--name", name,
        "--data-dir", data_dir,
        "--listen-client-urls", client_url,
        "--advertise-client-urls", client_url,
        "--listen-peer-urls", peer_url,
        "--initial-advertise-peer-urls", peer_url,
        "--initial-cluster", initial_cluster,
        "--initial-cluster-token", token,
        "--initial-cluster-state", "new",
        "--logger", "zap",
        "--log-outputs", log,
    ]  # fmt: skip


def healthy(client_url: str) -> bool:
    """Whether the member at ``client_url`` says it is healthy."""
    try:
        with urllib.request.urlopen(client_url + "/health", timeout=1) as reply:
            return bool(json.loads(reply.read()).get("health") == "true")
    except (OSError, ValueError, urllib.error.URLError):
        return False
