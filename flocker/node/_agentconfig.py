"""``agent.yml``: the configuration every Flocker node agent reads.

Example (the defaults are shown where a key may be left out)::

    version: 1
    control-service:
      hostname: 192.0.2.1        # the control service's address
      port: 4524                 # its agent (AMP) port
      # or, with several control service instances (any of them will do;
      # the agents connect to one, picked by the node's address, and move
      # to the next when it is lost):
      # hosts:
      #   - {hostname: 192.0.2.1, port: 4524}
      #   - {hostname: 192.0.2.2}          # port: the port above, or 4524
      #   - "192.0.2.3:4524"               # HOST, HOST:PORT or [V6]:PORT
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
    registries:                  # credentials of private registries the
      registry.example.com:5000: # container agent pulls images from, by
        username: deploy         # the host[:port] their images name
        password: s3cret         # (never logged)

:func:`load_agent_config` validates the file and names the bad key in a
one-line error.
"""

from __future__ import annotations

from typing import Any

from pyrsistent import PClass, field, pmap_field

from flocker.common import ConfigurationError, load_config, parse_address, validate
from flocker.runtime import RegistryCredentials

from ._control_connection import ControlAddress
from ._fence import DEFAULT_FENCE_AFTER

DEFAULT_CONTROL_PORT = 4524
DEFAULT_TRANSFER_PORT = 4525

_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}

#: One entry of ``control-service.hosts`` written as a mapping.
_HOST_ENTRY: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["hostname"],
    "properties": {"hostname": {"type": "string", "minLength": 1}, "port": _PORT},
}

AGENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["version", "control-service", "node", "dataset"],
    "properties": {
        "version": {"const": 1},
        "control-service": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "hostname": {"type": "string", "minLength": 1},
                "port": _PORT,
                "hosts": {"type": "array", "items": {"type": ["object", "string"]}},
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
        "registries": {
            "type": "object",
            "propertyNames": {"minLength": 1, "pattern": "^[^/\\s]+$"},
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "required": ["username", "password"],
                "properties": {
                    "username": {"type": "string", "minLength": 1},
                    "password": {"type": "string"},
                },
            },
        },
    },
}


class AgentConfig(PClass):
    """A validated ``agent.yml``."""

    #: The control service instances' agent addresses, at least one.
    control = field(
        type=tuple,
        mandatory=True,
        invariant=lambda addresses: (
            bool(addresses) and all(isinstance(a, ControlAddress) for a in addresses),
            "at least one ControlAddress",
        ),
    )
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
    #: Registry (``host[:port]``) → the credentials to pull from it with.
    registries = pmap_field(str, RegistryCredentials)


def control_addresses(path: str, section: dict[str, Any]) -> tuple[ControlAddress, ...]:
    """
    The control service instances a ``control-service`` section names: its
    ``hostname`` and ``port``, or each of its ``hosts`` (a mapping with
    ``hostname`` and an optional ``port``, or a ``HOST[:PORT]`` string), whose
    port defaults to the section's ``port``, else 4524.

    :raise ConfigurationError: naming the bad key in one line.
    """
    key = "control-service"
    default_port = section.get("port", DEFAULT_CONTROL_PORT)
    if ("hostname" in section) == ("hosts" in section):
        raise ConfigurationError(
            path,
            "give either hostname (one control service) or hosts (a list of "
            "its instances)",
            key,
        )
    if "hostname" in section:
        return (ControlAddress(host=section["hostname"], port=default_port),)
    hosts = section["hosts"]
    if not hosts:
        raise ConfigurationError(
            path, "lists no control service instance", f"{key}.hosts"
        )
    addresses: list[ControlAddress] = []
    for index, entry in enumerate(hosts):
        where = f"{key}.hosts.{index}"
        if isinstance(entry, str):
            try:
                host, port = parse_address(entry, default_port)
            except ValueError as error:
                raise ConfigurationError(path, str(error), where) from None
        else:
            try:
                validate(entry, _HOST_ENTRY, path)
            except ConfigurationError as error:
                inner = f"{where}.{error.key}" if error.key else where
                raise ConfigurationError(path, error.message, inner) from None
            host, port = entry["hostname"], entry.get("port", default_port)
        address = ControlAddress(host=host, port=port)
        if address in addresses:
            raise ConfigurationError(path, f"{address} is listed twice", where)
        addresses.append(address)
    return tuple(addresses)


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
        control=control_addresses(path, document["control-service"]),
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
        registries={
            registry: RegistryCredentials(
                username=entry["username"], password=entry["password"]
            )
            for registry, entry in document.get("registries", {}).items()
        },
    )
