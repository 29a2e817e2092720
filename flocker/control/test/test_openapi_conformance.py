"""
The OpenAPI document tells the truth about the REST API: schemathesis, with
every check, finds no disagreement between ``/v1/openapi.json`` and a real
``flocker-control``.

The control service is a real process on 127.0.0.1 (its own temporary
directory, its own certificates, ports it chooses), served over TLS with a
user certificate; one node is known to it because a real agent protocol
client with that node's certificate reports the node's state.  Schemathesis
reads the document the service serves and runs its examples, coverage,
fuzzing and stateful phases against it through its Python API, with every
check (``checks all``: server errors, status codes, content types, response
headers and bodies, schema-valid requests accepted, schema-violating ones
refused, missing headers, unsupported methods, ``Allow`` headers, resources
after creation and deletion, authentication).

Facts no JSON Schema can state (each in the document's descriptions) are
given to schemathesis, and only these:

* a node UUID names a node of *this* cluster (any other is refused with
  400, as the document's ``node_uuid`` says): the test narrows
  ``node_uuid`` to the cluster's node so that schema-valid bodies are
  tested for their shape rather than refused for an unknown node;
* ``X-If-Configuration-Matches`` names the configuration *now*: any other
  tag, well-formed or not, is refused with 412 (declared on every write),
  so 412 counts as a rightful answer to both valid and invalid requests;
* a body is at most 1 MiB of JSON, which no schema keyword measures: 413
  (declared on every operation) is rightful for any request too;
* a dataset marked deleted can no longer be changed: 405 (declared where
  it can come from) is rightful for any request there;
* rules across fields (`breaks_a_cross_field_rule`): schema-valid requests
  that break one are not generated as valid ones (their 400s are
  unit-tested in ``test_httpapi*.py``).

The run is repeatable: schemathesis gets a fixed seed, and hypothesis runs
derandomized with no example database.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_twisted
import schemathesis
from twisted.internet import reactor
from twisted.internet.threads import deferToThread

from flocker.ca import load_tls_files
from flocker.ca.testtools import TestClusterCredentials, make_test_cluster_credentials
from flocker.common import loop_until
from flocker.control import NodeState
from flocker.control._protocol_agent import AgentAMPClient
from flocker.node._roles import MemoryRoles
from flocker.node._snapshots import SnapshotOperations
from flocker.volume.memory import MemoryVolumeBackend

pytestmark = pytest.mark.functional

ROOT = Path(__file__).resolve().parents[3]

#: Hang guard for waiting on the control service: 600 steps of 0.05 s.
STEPS = [0.05] * 600

#: Test cases per operation and phase: enough to reach every field of every
#: body, few enough for a run of about a minute on a small shared machine.
MAXIMUM_EXAMPLES = 15

#: The seed of every run (the same cases each time).
SEED = 18

#: The statuses that refuse a request for what no JSON Schema states (each
#: declared on every operation it can come from), rightful answers to
#: valid and invalid requests alike, on top of schemathesis' defaults:
#: 405, a change to a dataset marked deleted (it stays configured until its
#: nodes' agents destroyed their copies, which this test's cluster has no
#: agents to do); 412, a write whose X-If-Configuration-Matches is not the
#: configuration's tag now; 413, a body over the control service's limit
#: (1 MiB, in bytes of JSON, which no schema keyword measures).
_REFUSALS_NO_SCHEMA_STATES = ["405", "412", "413"]


@attrs.define
class RunningControl:
    """A ``flocker-control`` process and where it listens."""

    process: subprocess.Popen[bytes]
    api_port: int
    agent_port: int
    log: Path


@pytest.fixture
def cluster(tmp_path: Path) -> TestClusterCredentials:
    """Certificates: a control service on 127.0.0.1, one node, user alice."""
    directory = tmp_path / "certificates"
    directory.mkdir()
    return make_test_cluster_credentials(directory, nodes=1, users=("alice",))


@pytest.fixture
def control(
    tmp_path: Path, cluster: TestClusterCredentials
) -> Iterator[RunningControl]:
    """A real ``flocker-control`` on free loopback ports, killed afterwards."""
    ports_file = tmp_path / "ports.json"
    log = tmp_path / "control.stderr"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flocker.control.script",
                "--data-path",
                str(tmp_path / "data"),
                "--certificates-directory",
                str(cluster.control_directory),
                "--log-dir",
                str(tmp_path / "logs"),
                "--listen-address",
                "127.0.0.1",
                "--port",
                "0",
                "--agent-port",
                "0",
                "--ports-file",
                str(ports_file),
                # The node reports once; it must stay known for the whole run.
                "--state-expiration",
                "3600",
            ],
            cwd=ROOT,
            stdout=output,
            stderr=output,
        )
    try:

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError("flocker-control exited: " + log.read_text())
            return ports_file.exists() and ports_file.stat().st_size > 0

        pytest_twisted.blockon(loop_until(reactor, ready, STEPS))
        ports = json.loads(ports_file.read_text())
        yield RunningControl(process, ports["api"], ports["agent"], log)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


@pytest.fixture
def known_node(
    cluster: TestClusterCredentials, control: RunningControl
) -> Iterator[str]:
    """
    The cluster's node, reported to the control service by a real agent
    protocol client that answers snapshot operations as a dataset agent
    exposing nothing would.
    """
    node = str(cluster.node_uuids[0])
    client = AgentAMPClient.for_control_service(
        reactor,
        "127.0.0.1",
        control.agent_port,
        load_tls_files(cluster.node_directories[0], "node"),
        "dataset",
        lambda configuration, state: None,
        # The real snapshot operations, over a node that exposes nothing.
        snapshots=SnapshotOperations(MemoryVolumeBackend(), MemoryRoles()),
    )
    client.startService()
    try:
        pytest_twisted.blockon(client.connected())
        pytest_twisted.blockon(
            client.report_state(NodeState(uuid=node, hostname="127.0.0.1", datasets={}))
        )
        yield node
    finally:
        pytest_twisted.blockon(client.stopService())


def _user_files(cluster: TestClusterCredentials) -> tuple[str, str, str]:
    """(CA certificate, alice's certificate, alice's key) as paths."""
    directory = cluster.user_directories["alice"]
    return (
        str(directory / "cluster.crt"),
        str(directory / "alice.crt"),
        str(directory / "alice.key"),
    )


def _served_document(base_url: str, cluster: TestClusterCredentials) -> dict[str, Any]:
    """The OpenAPI document as the control service serves it."""
    import requests

    ca, certificate, key = _user_files(cluster)
    response = requests.get(
        f"{base_url}/v1/openapi.json", cert=(certificate, key), verify=ca, timeout=30
    )
    response.raise_for_status()
    document: dict[str, Any] = response.json()
    return document


def narrowed_to_nodes(document: dict[str, Any], nodes: list[str]) -> dict[str, Any]:
    """
    The document with ``node_uuid`` narrowed to the given nodes (for
    generating requests only: the served document allows any UUID, and the
    server refuses those of no node of the cluster with 400).
    """
    narrowed = copy.deepcopy(document)
    schema = narrowed["components"]["schemas"]["node_uuid"]
    assert schema.get("$ref") == "#/components/schemas/uuid", schema
    narrowed["components"]["schemas"]["node_uuid"] = {
        **{k: v for k, v in schema.items() if k != "$ref"},
        "type": "string",
        "enum": nodes,
    }
    return narrowed


def _mountpoints_or_datasets_repeat(body: dict[str, Any]) -> bool:
    volumes = body.get("volumes", [])
    mountpoints = [v["mountpoint"] for v in volumes]
    datasets = [v["dataset_id"].lower() for v in volumes]
    return len(set(mountpoints)) < len(mountpoints) or len(set(datasets)) < len(
        datasets
    )


def _health_port_unpublished(body: dict[str, Any], ports_required: bool) -> bool:
    """
    Whether the body's health check probes a port its ``ports`` do not
    publish (with ``ports_required``, a body without ``ports`` publishes
    none; otherwise it keeps the container's, which the body cannot tell).
    """
    health = body.get("health")
    if not isinstance(health, dict):
        return False
    if "ports" not in body and not ports_required:
        return False
    return health.get("port") not in {p["internal"] for p in body.get("ports", [])}


def _ports_name_strangers(body: dict[str, Any]) -> bool:
    copies = body["copies"]
    names = (
        {str(n) for n in range(1, int(copies) + 1)}
        if isinstance(copies, int | float)
        else set(copies)
    )
    applications = set(body["applications"])
    ports = body.get("ports", {})
    return not set(ports) <= names or any(
        not set(chosen) <= applications for chosen in ports.values()
    )


def _copy_names_too_long(body: dict[str, Any]) -> bool:
    copies = body["copies"]
    longest_copy = (
        len(str(int(copies)))
        if isinstance(copies, int | float)
        else max(map(len, copies))
    )
    longest = max(map(len, body["applications"])) + len(body["name"]) + longest_copy
    return longest + 2 > 128


def _several_instances(body: dict[str, Any]) -> bool:
    replicas = body.get("replicas", 1)
    return isinstance(replicas, int | float) and replicas > 1


def breaks_a_cross_field_rule(operation: str, body: Any) -> bool:
    """
    Whether a schema-valid body of ``operation`` (its ``operationId``)
    breaks a rule across fields or across the configuration, which the
    document states in words only:

    * a container mounts each dataset once, at distinct mountpoints;
    * a container's health check probes one of the internal ports it
      publishes (an update whose own ``ports`` leave it out contradicts
      itself; one that leaves out ``ports`` conflicts, if at all, with the
      container's, a 409 that is rightful);
    * a container with volumes runs once (``replicas`` 1): an update's
      body cannot tell whether the container mounts any, so an update to
      more than one instance counts as breaking it;
    * an environment's ``ports`` name only its copies and applications, and
      its copies' applications (``<application>-<name>-<copy>``) are
      container names too, at most 128 characters;
    * standing ``replicas`` never include the dataset's primary (with the
      single node of the test, any replica would be the primary).
    """
    if not isinstance(body, dict):
        return False
    if operation == "create_container":
        return (
            _mountpoints_or_datasets_repeat(body)
            or _health_port_unpublished(body, ports_required=True)
            or (bool(body.get("volumes")) and _several_instances(body))
        )
    if operation == "update_container":
        return _health_port_unpublished(
            body, ports_required=False
        ) or _several_instances(body)
    if operation == "create_environment":
        return _ports_name_strangers(body) or _copy_names_too_long(body)
    if operation in ("create_dataset", "update_dataset"):
        return bool(body.get("replicas"))
    return False


def _config(base_url: str, cluster: TestClusterCredentials) -> Any:
    """Schemathesis' configuration: every check, a fixed seed, bounded examples."""
    from schemathesis.config._checks import (
        NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES,
        POSITIVE_DATA_ACCEPTANCE_EXPECTED_STATUSES,
    )

    ca, certificate, key = _user_files(cluster)
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "base-url": base_url,
            "tls-verify": ca,
            "request-cert": certificate,
            "request-cert-key": key,
            "request-timeout": 30,
            "workers": 1,
            "continue-on-failure": True,
            "generation": {
                "max-examples": MAXIMUM_EXAMPLES,
                "deterministic": True,
                "database": "none",
            },
            "checks": {
                "enabled": True,
                "positive_data_acceptance": {
                    "expected-statuses": [
                        *POSITIVE_DATA_ACCEPTANCE_EXPECTED_STATUSES,
                        *_REFUSALS_NO_SCHEMA_STATES,
                    ]
                },
                "negative_data_rejection": {
                    "expected-statuses": [
                        *NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES,
                        *_REFUSALS_NO_SCHEMA_STATES,
                    ]
                },
            },
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": True, "max-steps": 20},
            },
        }
    )


def run_schemathesis(document: dict[str, Any], config: Any) -> list[str]:
    """
    Run every phase of schemathesis with ``config`` against ``document``'s
    operations; one line per failure found (empty: none), naming the
    operation, the failure and a curl command that reproduces it.
    """
    from schemathesis.engine import events, from_schema

    schema = schemathesis.openapi.from_dict(document, config=config)

    @schema.hook
    def filter_case(context: Any, case: Any) -> bool:
        meta = case.meta
        if meta is None or not meta.generation.mode.is_positive:
            return True
        return not breaks_a_cross_field_rule(
            case.operation.definition.raw["operationId"], case.body
        )

    problems: list[str] = []
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished | events.FuzzScenarioFinished):
            recorder = event.recorder
            for case_id, case_checks in recorder.checks.items():
                for check in case_checks:
                    info = check.failure_info
                    if info is None:
                        continue
                    failure = info.failure
                    interaction = recorder.interactions.get(case_id)
                    response = None if interaction is None else interaction.response
                    answer = (
                        ""
                        if response is None
                        else f"\n    answered {response.status_code}: "
                        f"{(response.content or b'')[:300]!r}"
                    )
                    problems.append(
                        f"{failure.operation}: {failure.title} ({check.name}): "
                        f"{failure.message.strip()}{answer}\n    {info.code_sample}"
                    )
        elif isinstance(event, events.NonFatalError):
            problems.append(f"{event.label}: error: {event.value!r}")
        elif isinstance(event, events.FatalError):
            problems.append(f"fatal: {event.exception!r}")
        elif isinstance(event, events.EngineFinished):
            problems.extend(
                f"{f.operation}: {f.title}: {f.message}" for f in event.failures
            )
    return sorted(set(problems))


def test_narrowed_document_keeps_everything_else() -> None:
    """Narrowing ``node_uuid`` changes that definition and nothing else."""
    from flocker.control._httpschema import openapi_document

    document = openapi_document("test")
    narrowed = narrowed_to_nodes(document, ["00000000-0000-4000-8000-000000000000"])
    schemas, original = (
        narrowed["components"]["schemas"],
        document["components"]["schemas"],
    )
    assert schemas["node_uuid"]["enum"] == ["00000000-0000-4000-8000-000000000000"]
    assert {k: v for k, v in schemas.items() if k != "node_uuid"} == {
        k: v for k, v in original.items() if k != "node_uuid"
    }
    assert narrowed["paths"] == document["paths"]


@pytest.mark.parametrize(
    ("operation", "body", "breaks"),
    [
        (
            "create_container",
            {"volumes": [{"dataset_id": "A", "mountpoint": "/a"}]},
            False,
        ),
        (
            "create_container",
            {
                "volumes": [
                    {"dataset_id": "A", "mountpoint": "/a"},
                    {"dataset_id": "a", "mountpoint": "/b"},
                ]
            },
            True,
        ),
        (
            "create_container",
            {
                "volumes": [
                    {"dataset_id": "A", "mountpoint": "/a"},
                    {"dataset_id": "B", "mountpoint": "/a"},
                ]
            },
            True,
        ),
        (
            "create_environment",
            {"name": "e", "applications": ["w"], "copies": 2},
            False,
        ),
        (
            "create_environment",
            {
                "name": "e",
                "applications": ["w"],
                "copies": 2,
                "ports": {"2": {"w": {}}},
            },
            False,
        ),
        (
            "create_environment",
            {"name": "e", "applications": ["w"], "copies": 2, "ports": {"3": {}}},
            True,
        ),
        (
            "create_environment",
            {
                "name": "e",
                "applications": ["w"],
                "copies": ["x"],
                "ports": {"x": {"v": {}}},
            },
            True,
        ),
        (
            "create_environment",
            {"name": "e" * 64, "applications": ["w" * 64], "copies": 1},
            True,
        ),
        (
            "create_container",
            {"health": {"kind": "tcp", "port": 80},
             "ports": [{"internal": 80, "external": 8080}]},
            False,
        ),
        ("create_container", {"health": {"kind": "tcp", "port": 80}}, True),
        (
            "create_container",
            {"health": {"kind": "tcp", "port": 81},
             "ports": [{"internal": 80, "external": 81}]},
            True,
        ),
        ("update_container", {"health": {"kind": "tcp", "port": 80}}, False),
        ("update_container", {"health": None, "ports": []}, False),
        ("update_container", {"health": {"kind": "tcp", "port": 80}, "ports": []}, True),
        ("create_container", {"replicas": 3}, False),
        (
            "create_container",
            {"replicas": 1, "volumes": [{"dataset_id": "A", "mountpoint": "/a"}]},
            False,
        ),
        (
            "create_container",
            {"replicas": 2, "volumes": [{"dataset_id": "A", "mountpoint": "/a"}]},
            True,
        ),
        ("update_container", {"replicas": 1}, False),
        ("update_container", {"replicas": 2}, True),
        ("create_dataset", {"primary": "n", "replicas": []}, False),
        ("update_dataset", {"replicas": ["n"]}, True),
        ("create_dataset", {"primary": "n", "replicas": ["n"]}, True),
    ],
)
def test_cross_field_rules_are_recognised(
    operation: str, body: Any, breaks: bool
) -> None:
    """Bodies that break a rule stated in words only are told apart from the rest."""
    assert breaks_a_cross_field_rule(operation, body) is breaks


@pytest_twisted.ensureDeferred
async def test_control_service_conforms_to_its_openapi_document(
    cluster: TestClusterCredentials,
    control: RunningControl,
    known_node: str,
) -> None:
    """
    Schemathesis, with every check and every phase, finds no request whose
    answer disagrees with the document the control service serves.
    """
    base_url = f"https://127.0.0.1:{control.api_port}"
    document = await deferToThread(_served_document, base_url, cluster)
    config = _config(base_url, cluster)
    # In a thread, so the reactor keeps the node's agent connection alive.
    problems = await deferToThread(
        run_schemathesis, narrowed_to_nodes(document, [known_node]), config
    )
    assert problems == [], "\n\n".join(problems)
    assert control.process.poll() is None, control.log.read_text()
