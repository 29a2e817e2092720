"""``agent.yml``: the configuration every Flocker node agent reads.

Example (the defaults are shown where a key may be left out)::

    version: 1
    control-service:
      hostname: 192.0.2.1        # the control service's address
      port: 4524                 # its agent (AMP) port
    node:
      address: 192.0.2.11        # this node's address: reported to the
                                 # cluster, other nodes push datasets here
    dataset:
      backend: zfs               # zfs | directory | loopback
      pool: flocker              # zfs: the pool (or a filesystem in it)
      # root: /var/lib/flocker/data    # directory and loopback backends
      # default-maximum-size: 1073741824
    transfer:
      port: 4525                 # the snapshot-stream (TLS) port
    certificates: /etc/flocker   # cluster.crt, node.crt, node.key
    state-directory: /var/lib/flocker
    logging:
      directory: /var/log/flocker
    fence-after: 10              # seconds without a word from the control
                                 # service before both agents fence this
                                 # node: datasets that fail over
                                 # automatically stop being exposed and
                                 # their applications stop (keep it below
                                 # the control service's failover-after)

:func:`load_agent_config` validates the file and names the bad key in a
one-line error.
"""

from __future__ import annotations

from typing import Any

from pyrsistent import PClass, field

from flocker.common import ConfigurationError, load_config

from ._fence import DEFAULT_FENCE_AFTER

DEFAULT_CONTROL_PORT = 4524
DEFAULT_TRANSFER_PORT = 4525

_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}

AGENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["version", "control-service", "node", "dataset"],
    "properties": {
        "version": {"const": 1},
        "control-service": {
            "type": "object",
            "additionalProperties": False,
            "required": ["hostname"],
            "properties": {
                "hostname": {"type": "string", "minLength": 1},
                "port": _PORT,
            },
        },
        "node": {
            "type": "object",
            "additionalProperties": False,
            "required": ["address"],
            "properties": {"address": {"type": "string", "minLength": 1}},
        },
        "dataset": {
            "type": "object",
            "additionalProperties": False,
            "required": ["backend"],
            "properties": {
                "backend": {"enum": ["zfs", "directory", "loopback"]},
                "pool": {"type": "string", "minLength": 1},
                "root": {"type": "string", "minLength": 1},
                "default-maximum-size": {"type": "integer", "minimum": 1},
            },
        },
        "transfer": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"port": _PORT},
        },
        "certificates": {"type": "string", "minLength": 1},
        "state-directory": {"type": "string", "minLength": 1},
        "logging": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"directory": {"type": "string", "minLength": 1}},
        },
        "fence-after": {"type": "number", "exclusiveMinimum": 0},
    },
}


class AgentConfig(PClass):
    """A validated ``agent.yml``."""

    control_host = field(type=str, mandatory=True)
    control_port = field(type=int, mandatory=True)
    address = field(type=str, mandatory=True)
    backend = field(type=str, mandatory=True)
    pool = field(type=(str, type(None)), initial=None)
    root = field(type=(str, type(None)), initial=None)
    default_maximum_size = field(type=(int, type(None)), initial=None)
    transfer_port = field(type=int, mandatory=True)
    certificates = field(type=str, mandatory=True)
    state_directory = field(type=str, mandatory=True)
    log_directory = field(type=(str, type(None)), initial=None)
    fence_after = field(type=float, initial=DEFAULT_FENCE_AFTER)


def load_agent_config(path: str) -> AgentConfig:
    """
    Read and validate an ``agent.yml``.

    :raise ConfigurationError: naming the file and the bad key.
    """
    document = load_config(path, AGENT_SCHEMA)
    dataset = document["dataset"]
    if dataset["backend"] == "zfs" and "pool" not in dataset:
        raise ConfigurationError(path, "the zfs backend needs a pool", "dataset.pool")
    if dataset["backend"] in ("directory", "loopback") and "root" not in dataset:
        raise ConfigurationError(
            path, f"the {dataset['backend']} backend needs a root", "dataset.root"
        )
    return AgentConfig(
        control_host=document["control-service"]["hostname"],
        control_port=document["control-service"].get("port", DEFAULT_CONTROL_PORT),
        address=document["node"]["address"],
        backend=dataset["backend"],
        pool=dataset.get("pool"),
        root=dataset.get("root"),
        default_maximum_size=dataset.get("default-maximum-size"),
        transfer_port=document.get("transfer", {}).get("port", DEFAULT_TRANSFER_PORT),
        certificates=document.get("certificates", "/etc/flocker"),
        state_directory=document.get("state-directory", "/var/lib/flocker"),
        log_directory=document.get("logging", {}).get("directory"),
        fence_after=float(document.get("fence-after", DEFAULT_FENCE_AFTER)),
    )
