"""
Unit tests of the Docker volume plugin API against `FakeFlockerClient`.

Requests go to the Klein resource in memory through ``treq.testing.StubTreq``;
time is a `Clock`, so Mount's waiting and time-out run without sleeping.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import attrs
from eliot.testing import LoggedAction, LoggedMessage, capture_logging
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from flocker.apiclient import Container, DatasetState, FakeFlockerClient, MountedDataset
from flocker.dockerplugin import (
    CONTENT_TYPE,
    DEFAULT_MOUNT_TIMEOUT,
    PluginError,
    VolumePlugin,
    parse_size,
)
from flocker.dockerplugin._logging import LEASE_RELEASED, MOVING, REQUESTS

NODE_A = UUID("aaaaaaaa-0000-4000-8000-00000000000a")
NODE_B = UUID("bbbbbbbb-0000-4000-8000-00000000000b")
UNKNOWN_NODE = UUID("eeeeeeee-0000-4000-8000-00000000000e")
MIB = 1024 * 1024


@attrs.define
class Answer:
    """One answer: status, content type and decoded JSON body."""

    code: int
    content_type: bytes | None
    body: Any


class HungStateClient(FakeFlockerClient):
    """A fake whose cluster-state reads never answer (an unresponsive API)."""

    def list_datasets_state(self) -> Deferred[list[DatasetState]]:
        """Never fire."""
        return Deferred()


class ForgetfulClient(FakeFlockerClient):
    """A fake whose nodes report no datasets while ``reporting`` is false."""

    reporting = True

    def list_datasets_state(self) -> Deferred[list[DatasetState]]:
        """The reported state, or nothing once the nodes stop reporting."""
        if self.reporting:
            return super().list_datasets_state()
        return succeed([])


class UnreachableClient(FakeFlockerClient):
    """A fake whose configuration reads fail to connect."""

    def list_datasets_configuration(self) -> Any:
        """Fail as a refused connection does."""
        return fail(ConnectionRefusedError("127.0.0.1:4523"))


class BrokenClient(FakeFlockerClient):
    """A fake whose configuration reads raise an unexpected exception."""

    def list_datasets_configuration(self) -> Any:
        """Fail with a bug."""
        return fail(ZeroDivisionError("oops"))


class Harness:
    """A plugin for node A over a fake API knowing nodes A and B."""

    def __init__(
        self,
        client_class: type[FakeFlockerClient] = FakeFlockerClient,
        node: UUID = NODE_A,
        **plugin_args: Any,
    ) -> None:
        """Build the clock, the fake API, the plugin and the in-memory HTTP client."""
        self.clock = Clock()
        self.client = client_class(self.clock)
        self.client.add_node(NODE_A)
        self.client.add_node(NODE_B)
        self.plugin = VolumePlugin(self.clock, self.client, node, **plugin_args)
        self.treq = StubTreq(self.plugin.app.resource())

    def request(
        self, path: str, body: Any = None, raw: bytes | None = None
    ) -> Deferred[Answer]:
        """POST ``body`` (as JSON) or ``raw`` to ``path``; the Answer when it comes."""
        data = raw if raw is not None else json.dumps(body).encode()

        async def go() -> Answer:
            response = await self.treq.post(  # type: ignore[attr-defined]
                "http://plugin" + path,
                data=data,
                headers={b"content-type": [b"application/json"]},
            )
            content = await response.content()
            content_type = response.headers.getRawHeaders(b"content-type", [None])[0]
            return Answer(response.code, content_type, json.loads(content))

        return Deferred.fromCoroutine(go())

    def call(self, case: SynchronousTestCase, verb: str, body: Any = None) -> Any:
        """``/VolumeDriver.<verb>`` answered at once; its JSON body."""
        answer = case.successResultOf(self.request(f"/VolumeDriver.{verb}", body))
        case.assertEqual((answer.code, answer.content_type), (200, CONTENT_TYPE))
        return answer.body

    def create(self, name: str, primary: UUID, **metadata: str) -> UUID:
        """A named dataset on ``primary`` made directly through the API."""
        dataset = self.client.create_dataset(
            primary=primary, metadata={"name": name, **metadata}
        )
        return dataset.result.dataset_id  # type: ignore[attr-defined,no-any-return]

    def leases(self) -> dict[UUID, UUID]:
        """Dataset id → the node holding its lease."""
        leases: Any = self.client.list_leases().result
        return {lease.dataset_id: lease.node_uuid for lease in leases}

    def datasets(self) -> dict[UUID, Any]:
        """The configured datasets."""
        configuration: Any = self.client.list_datasets_configuration().result
        return dict(configuration.datasets)


class ActivateTests(SynchronousTestCase):
    """``/Plugin.Activate`` and ``/VolumeDriver.Capabilities``."""

    def test_activate(self) -> None:
        """Activate says the plugin implements VolumeDriver, in Docker's media type."""
        harness = Harness()
        answer = self.successResultOf(harness.request("/Plugin.Activate", raw=b""))
        self.assertEqual(
            (answer.code, answer.content_type, answer.body),
            (200, CONTENT_TYPE, {"Implements": ["VolumeDriver"]}),
        )

    def test_capabilities(self) -> None:
        """Flocker volumes have global scope (the same volume on every node)."""
        self.assertEqual(
            Harness().call(self, "Capabilities", {}),
            {"Capabilities": {"Scope": "global"}},
        )

    def test_activate_ignores_body(self) -> None:
        """Activate answers the same whatever its body, as the original did."""
        harness = Harness()
        for raw in (b"{nope", b"[1, 2]", b"null", b'{"x": 1}'):
            answer = self.successResultOf(harness.request("/Plugin.Activate", raw=raw))
            self.assertEqual(
                (answer.code, answer.body), (200, {"Implements": ["VolumeDriver"]})
            )

    def test_body_not_json(self) -> None:
        """A body that is not JSON is answered with an Err, status 200."""
        answer = self.successResultOf(
            Harness().request("/VolumeDriver.Get", raw=b"{nope")
        )
        self.assertEqual(
            (answer.code, answer.body), (200, {"Err": "the request body is not JSON"})
        )

    def test_body_not_object(self) -> None:
        """A JSON body that is not an object is answered with an Err."""
        self.assertEqual(
            Harness().call(self, "Get", [1, 2]),
            {"Err": "the request body is not a JSON object"},
        )

    def test_missing_name(self) -> None:
        """Requests about a volume without a Name are refused, naming the field."""
        harness = Harness()
        for verb in ("Create", "Get", "Path", "Mount", "Unmount", "Remove"):
            self.assertEqual(
                harness.call(self, verb, {"Opts": None}),
                {"Err": "the request names no volume (Name is missing)"},
                verb,
            )


class SizeTests(SynchronousTestCase):
    """`parse_size`."""

    def test_good_sizes(self) -> None:
        """Bytes, and numbers with binary K/M/G/T units in several spellings."""
        for text, expected in [
            ("67108864", 64 * MIB),
            ("64M", 64 * MIB),
            ("64m", 64 * MIB),
            ("64MB", 64 * MIB),
            ("64MiB", 64 * MIB),
            (" 64 M ", 64 * MIB),
            ("1G", 1024 * MIB),
            ("1.5G", 1536 * MIB),
            ("2048K", 2 * MIB),
            ("1T", 1024 * 1024 * MIB),
        ]:
            self.assertEqual(parse_size(text), expected, text)

    def test_bad_sizes(self) -> None:
        """Anything else is refused with an example of a good size."""
        for text in ["", "abc", "-1", "64X", "M", "1.G", "64 M B", "1e9"]:
            with self.assertRaises(PluginError, msg=text) as caught:
                parse_size(text)
            self.assertIn("e.g. size=64M", str(caught.exception))

    def test_not_a_string(self) -> None:
        """A size that is not a string is refused."""
        self.assertRaises(PluginError, parse_size, 64)

    def test_too_small(self) -> None:
        """Sizes under 1 MiB (the API's minimum) are refused, saying the minimum."""
        with self.assertRaises(PluginError) as caught:
            parse_size("1000K")
        self.assertEqual(
            str(caught.exception), "size '1000K' is too small: the minimum is 1M"
        )

    def test_too_large(self) -> None:
        """Sizes beyond 2**63 bytes are refused."""
        self.assertRaises(PluginError, parse_size, "9999999999T")


class CreateTests(SynchronousTestCase):
    """``/VolumeDriver.Create``."""

    def test_create_with_size(self) -> None:
        """A dataset named after the volume is made on this node with the size."""
        harness = Harness()
        self.assertEqual(
            harness.call(self, "Create", {"Name": "v1", "Opts": {"size": "64M"}}),
            {"Err": ""},
        )
        [dataset] = harness.datasets().values()
        self.assertEqual(
            (dataset.primary, dataset.maximum_size, dict(dataset.metadata)),
            (NODE_A, 64 * MIB, {"name": "v1"}),
        )

    def test_create_without_options(self) -> None:
        """``Opts: null`` (docker run --volume-driver) makes a dataset of no size."""
        harness = Harness()
        self.assertEqual(
            harness.call(self, "Create", {"Name": "v1", "Opts": None}), {"Err": ""}
        )
        [dataset] = harness.datasets().values()
        self.assertEqual(
            (dataset.maximum_size, dict(dataset.metadata)), (None, {"name": "v1"})
        )

    def test_create_existing(self) -> None:
        """Creating an existing volume (even one on another node) changes nothing."""
        harness = Harness()
        dataset_id = harness.create("v1", NODE_B)
        self.assertEqual(harness.call(self, "Create", {"Name": "v1"}), {"Err": ""})
        self.assertEqual(list(harness.datasets()), [dataset_id])
        self.assertEqual(harness.datasets()[dataset_id].primary, NODE_B)

    def test_unknown_options(self) -> None:
        """Unknown options are refused, each named, and nothing is created."""
        harness = Harness()
        answer = harness.call(
            self,
            "Create",
            {"Name": "v1", "Opts": {"size": "64M", "zz": "1", "colour": "x"}},
        )
        self.assertEqual(
            answer,
            {"Err": "unknown options colour, zz: the Flocker volume driver knows size"},
        )
        self.assertEqual(harness.datasets(), {})

    def test_unknown_option(self) -> None:
        """One unknown option is named in the singular."""
        answer = Harness().call(
            self, "Create", {"Name": "v1", "Opts": {"profile": "gold"}}
        )
        self.assertEqual(
            answer,
            {"Err": "unknown option profile: the Flocker volume driver knows size"},
        )

    def test_bad_size(self) -> None:
        """An unreadable size is refused, quoting it; nothing is created."""
        harness = Harness()
        answer = harness.call(self, "Create", {"Name": "v1", "Opts": {"size": "lots"}})
        self.assertIn("invalid size 'lots'", answer["Err"])
        self.assertEqual(harness.datasets(), {})

    def test_options_not_object(self) -> None:
        """Opts that are not an object are refused."""
        answer = Harness().call(self, "Create", {"Name": "v1", "Opts": [1]})
        self.assertEqual(answer, {"Err": "Opts must be a JSON object"})

    def test_node_not_in_cluster(self) -> None:
        """A plugin whose node the cluster does not know relays the API's refusal."""
        harness = Harness(node=UNKNOWN_NODE)
        answer = harness.call(self, "Create", {"Name": "v1"})
        self.assertIn("the Flocker control service refused", answer["Err"])
        self.assertIn(str(UNKNOWN_NODE), answer["Err"])


class GetListPathTests(SynchronousTestCase):
    """``Get``, ``List`` and ``Path``."""

    def test_get_unmounted(self) -> None:
        """A volume not mounted here has an empty Mountpoint, as in the original."""
        harness = Harness()
        harness.create("v1", NODE_A)
        self.assertEqual(
            harness.call(self, "Get", {"Name": "v1"}),
            {"Volume": {"Name": "v1", "Mountpoint": ""}, "Err": ""},
        )

    def test_get_mounted_here(self) -> None:
        """A volume this node has mounted has its Mountpoint."""
        harness = Harness()
        dataset_id = harness.create("v1", NODE_A)
        harness.client.synchronize_state()
        self.assertEqual(
            harness.call(self, "Get", {"Name": "v1"}),
            {
                "Volume": {"Name": "v1", "Mountpoint": f"/flocker/{dataset_id}"},
                "Err": "",
            },
        )

    def test_get_mounted_elsewhere(self) -> None:
        """A volume mounted on another node has an empty Mountpoint here."""
        harness = Harness()
        harness.create("v1", NODE_B)
        harness.client.synchronize_state()
        self.assertEqual(
            harness.call(self, "Get", {"Name": "v1"}),
            {"Volume": {"Name": "v1", "Mountpoint": ""}, "Err": ""},
        )

    def test_get_unknown(self) -> None:
        """An unknown volume is an Err naming it (Docker then calls Create)."""
        self.assertEqual(
            Harness().call(self, "Get", {"Name": "v1"}),
            {"Err": "no Flocker volume named 'v1'"},
        )

    def test_get_deleted(self) -> None:
        """A deleted dataset is no volume any more."""
        harness = Harness()
        dataset_id = harness.create("v1", NODE_A)
        harness.client.delete_dataset(dataset_id)
        self.assertEqual(
            harness.call(self, "Get", {"Name": "v1"}),
            {"Err": "no Flocker volume named 'v1'"},
        )

    def test_list(self) -> None:
        """List gives the named, live datasets; Mountpoint is "" unless mounted here."""
        harness = Harness()
        here = harness.create("here", NODE_A)
        harness.create("there", NODE_B)
        harness.client.create_dataset(primary=NODE_A)  # no name: not a volume
        harness.client.create_dataset(primary=NODE_A, metadata={"other": "x"})
        gone = harness.create("gone", NODE_A)
        harness.client.delete_dataset(gone)
        harness.client.synchronize_state()
        harness.create("new", NODE_A)
        self.assertEqual(
            harness.call(self, "List", {}),
            {
                "Volumes": [
                    {"Name": "here", "Mountpoint": f"/flocker/{here}"},
                    {"Name": "new", "Mountpoint": ""},
                    {"Name": "there", "Mountpoint": ""},
                ],
                "Err": "",
            },
        )

    def test_list_empty(self) -> None:
        """With no volumes, List gives an empty list."""
        self.assertEqual(Harness().call(self, "List", {}), {"Volumes": [], "Err": ""})

    def test_path_mounted(self) -> None:
        """Path gives the mount point on this node."""
        harness = Harness()
        dataset_id = harness.create("v1", NODE_A)
        harness.client.synchronize_state()
        self.assertEqual(
            harness.call(self, "Path", {"Name": "v1"}),
            {"Mountpoint": f"/flocker/{dataset_id}", "Err": ""},
        )

    def test_path_not_here(self) -> None:
        """Path of a volume not mounted here is an Err saying so."""
        harness = Harness()
        harness.create("v1", NODE_B)
        harness.client.synchronize_state()
        self.assertEqual(
            harness.call(self, "Path", {"Name": "v1"}),
            {"Err": "volume 'v1' is not mounted on this node"},
        )

    def test_path_unknown(self) -> None:
        """Path of an unknown volume is an Err naming it."""
        self.assertEqual(
            Harness().call(self, "Path", {"Name": "v9"}),
            {"Err": "no Flocker volume named 'v9'"},
        )


class MountTests(SynchronousTestCase):
    """``Mount`` and ``Unmount``."""

    def mount(
        self, harness: Harness, name: str, mount_id: str = "c1"
    ) -> Deferred[Answer]:
        """Start a Mount (it may wait for the clock)."""
        return harness.request("/VolumeDriver.Mount", {"Name": name, "ID": mount_id})

    def test_mount_here(self) -> None:
        """A volume on this node is mounted at once, and leased to this node."""
        harness = Harness()
        dataset_id = harness.create("v1", NODE_A)
        harness.client.synchronize_state()
        answer = self.successResultOf(self.mount(harness, "v1"))
        self.assertEqual(
            answer.body, {"Mountpoint": f"/flocker/{dataset_id}", "Err": ""}
        )
        self.assertEqual(harness.leases(), {dataset_id: NODE_A})

    def test_mount_waits_for_state(self) -> None:
        """Mount answers once this node reports the dataset mounted."""
        harness = Harness()
        dataset_id = harness.create("v1", NODE_A)
        answer = self.mount(harness, "v1")
        harness.clock.advance(5)
        self.assertNoResult(answer)
        harness.client.synchronize_state()
        harness.clock.advance(0.5)
        harness.treq.flush()
        self.assertEqual(
            self.successResultOf(answer).body,
            {"Mountpoint": f"/flocker/{dataset_id}", "Err": ""},
        )

    @capture_logging(None)  # type: ignore[untyped-decorator]  # eliot is untyped
    def test_mount_moves(self, logger: Any) -> None:
        """A volume on another node is moved here, then mounted and leased."""
        harness = Harness()
        dataset_id = harness.create("v1", NODE_B)
        harness.client.synchronize_state()
        answer = self.mount(harness, "v1")
        self.assertNoResult(answer)
        self.assertEqual(harness.datasets()[dataset_id].primary, NODE_A)
        self.assertEqual(harness.leases(), {dataset_id: NODE_A})
        harness.client.synchronize_state()
        harness.clock.advance(0.5)
        harness.treq.flush()
        self.assertEqual(
            self.successResultOf(answer).body,
            {"Mountpoint": f"/flocker/{dataset_id}", "Err": ""},
        )
        [moving] = LoggedMessage.ofType(logger.messages, MOVING)
        self.assertEqual(
            (moving.message["source_node"], moving.message["node_uuid"]),
            (str(NODE_B), str(NODE_A)),
        )

    def test_mount_leased_elsewhere(self) -> None:
        """A volume another node holds is refused at once and not moved."""
        harness = Harness()
        dataset_id = harness.create("v1", NODE_B)
        harness.client.acquire_lease(dataset_id, NODE_B, None)
        answer = self.successResultOf(self.mount(harness, "v1"))
        self.assertIn("volume 'v1' is in use on another node", answer.body["Err"])
        self.assertEqual(harness.datasets()[dataset_id].primary, NODE_B)
        self.assertEqual(harness.leases(), {dataset_id: NODE_B})

    def test_mount_move_refused(self) -> None:
        """
        A volume a Flocker application uses on another node cannot move: the
        API's reason is the Err, and the lease taken for the Mount is released.
        """
        harness = Harness()
        dataset_id = harness.create("v1", NODE_B)
        harness.client.create_container(
            Container(
                node_uuid=NODE_B,
                name="db",
                image="busybox",
                volumes=[MountedDataset(dataset_id=dataset_id, mountpoint="/data")],
            )
        )
        answer = self.successResultOf(self.mount(harness, "v1"))
        self.assertIn("the Flocker control service refused", answer.body["Err"])
        self.assertIn("'db'", answer.body["Err"])
        self.assertEqual(harness.leases(), {})
        self.assertEqual(harness.datasets()[dataset_id].primary, NODE_B)

    def test_mount_unknown(self) -> None:
        """Mounting an unknown volume is an Err naming it."""
        answer = self.successResultOf(self.mount(Harness(), "v9"))
        self.assertEqual(answer.body, {"Err": "no Flocker volume named 'v9'"})

    def test_mount_bad_id(self) -> None:
        """A mount ID that is not a string is refused."""
        harness = Harness()
        harness.create("v1", NODE_A)
        answer = harness.call(self, "Mount", {"Name": "v1", "ID": 7})
        self.assertEqual(answer, {"Err": "ID must be a string"})

    def test_mount_times_out(self) -> None:
        """
        A dataset that never appears here fails the Mount after the time-out,
        before Docker's own, and the lease is released so it can move again.
        """
        harness = Harness()
        harness.create("v1", NODE_B)
        answer = self.mount(harness, "v1")
        harness.clock.advance(DEFAULT_MOUNT_TIMEOUT - 1)
        self.assertNoResult(answer)
        harness.clock.advance(1)
        harness.treq.flush()
        self.assertEqual(
            self.successResultOf(answer).body,
            {
                "Err": "timed out after 100 s waiting for volume 'v1' to be mounted "
                "on this node; is the Flocker dataset agent running on every node?"
            },
        )
        self.assertEqual(harness.leases(), {})

    def test_mount_timeout_configurable(self) -> None:
        """The time-out is the plugin's ``mount_timeout``."""
        harness = Harness(mount_timeout=7)
        harness.create("v1", NODE_A)
        answer = self.mount(harness, "v1")
        harness.clock.advance(7)
        harness.treq.flush()
        self.assertIn("timed out after 7 s", self.successResultOf(answer).body["Err"])

    def test_mount_times_out_when_api_hangs(self) -> None:
        """A control service that stops answering also ends in the time-out."""
        harness = Harness(client_class=HungStateClient)
        dataset_id = harness.create("v1", NODE_A)
        answer = self.mount(harness, "v1")
        harness.clock.advance(DEFAULT_MOUNT_TIMEOUT)
        harness.treq.flush()
        self.assertIn("timed out after 100 s", self.successResultOf(answer).body["Err"])
        self.assertEqual(harness.leases(), {})
        self.assertEqual(harness.datasets()[dataset_id].primary, NODE_A)

    def test_failed_mount_keeps_lease_of_other_mounts(self) -> None:
        """A second Mount that fails does not release the lease the first holds."""
        harness = Harness(client_class=ForgetfulClient, mount_timeout=7)
        dataset_id = harness.create("v1", NODE_A)
        harness.client.synchronize_state()
        self.successResultOf(self.mount(harness, "v1", "c1"))
        harness.client.reporting = False  # type: ignore[attr-defined]
        answer = self.mount(harness, "v1", "c2")
        harness.clock.advance(7)
        harness.treq.flush()
        self.assertIn("timed out", self.successResultOf(answer).body["Err"])
        self.assertEqual(harness.leases(), {dataset_id: NODE_A})

    def test_unmount_releases_lease(self) -> None:
        """Unmounting the only mount releases the lease; the dataset may move."""
        harness = Harness()
        dataset_id = harness.create("v1", NODE_A)
        harness.client.synchronize_state()
        self.successResultOf(self.mount(harness, "v1"))
        self.assertEqual(
            harness.call(self, "Unmount", {"Name": "v1", "ID": "c1"}), {"Err": ""}
        )
        self.assertEqual(harness.leases(), {})
        self.successResultOf(harness.client.move_dataset(NODE_B, dataset_id))

    @capture_logging(None)  # type: ignore[untyped-decorator]  # eliot is untyped
    def test_lease_kept_until_last_unmount(self, logger: Any) -> None:
        """With two containers mounting a volume, the lease goes with the last."""
        harness = Harness()
        dataset_id = harness.create("v1", NODE_A)
        harness.client.synchronize_state()
        self.successResultOf(self.mount(harness, "v1", "c1"))
        self.successResultOf(self.mount(harness, "v1", "c2"))
        harness.call(self, "Unmount", {"Name": "v1", "ID": "c1"})
        self.assertEqual(harness.leases(), {dataset_id: NODE_A})
        self.assertEqual(LoggedMessage.ofType(logger.messages, LEASE_RELEASED), [])
        harness.call(self, "Unmount", {"Name": "v1", "ID": "c2"})
        self.assertEqual(harness.leases(), {})
        self.assertEqual(len(LoggedMessage.ofType(logger.messages, LEASE_RELEASED)), 1)

    def test_unmount_after_restart(self) -> None:
        """A plugin that restarted (knowing no mounts) still releases the lease."""
        harness = Harness()
        dataset_id = harness.create("v1", NODE_A)
        harness.client.acquire_lease(dataset_id, NODE_A, None)
        self.assertEqual(
            harness.call(self, "Unmount", {"Name": "v1", "ID": "c1"}), {"Err": ""}
        )
        self.assertEqual(harness.leases(), {})

    def test_unmount_without_lease(self) -> None:
        """Unmounting when no lease is held succeeds."""
        harness = Harness()
        harness.create("v1", NODE_A)
        self.assertEqual(
            harness.call(self, "Unmount", {"Name": "v1", "ID": "c1"}), {"Err": ""}
        )

    def test_unmount_unknown(self) -> None:
        """Unmounting an unknown volume succeeds, as in the original plugin."""
        self.assertEqual(
            Harness().call(self, "Unmount", {"Name": "v9", "ID": "c1"}),
            {"Err": ""},
        )


class RemoveTests(SynchronousTestCase):
    """``/VolumeDriver.Remove``."""

    def test_remove_keeps_data(self) -> None:
        """
        Remove makes Docker forget the volume but keeps the dataset, its
        name moved to ``docker_removed_name`` and its other metadata kept.
        """
        harness = Harness()
        dataset_id = harness.create("v1", NODE_A, owner="ops")
        self.assertEqual(harness.call(self, "Remove", {"Name": "v1"}), {"Err": ""})
        dataset = harness.datasets()[dataset_id]
        self.assertFalse(dataset.deleted)
        self.assertEqual(
            dict(dataset.metadata), {"docker_removed_name": "v1", "owner": "ops"}
        )
        self.assertEqual(
            harness.call(self, "Get", {"Name": "v1"}),
            {"Err": "no Flocker volume named 'v1'"},
        )

    def test_name_reusable_after_remove(self) -> None:
        """After Remove, creating a volume of that name makes a new, empty dataset."""
        harness = Harness()
        old = harness.create("v1", NODE_A)
        harness.call(self, "Remove", {"Name": "v1"})
        harness.call(self, "Create", {"Name": "v1"})
        new = [d for d in harness.datasets().values() if d.metadata.get("name") == "v1"]
        self.assertEqual(len(new), 1)
        self.assertNotEqual(new[0].dataset_id, old)

    def test_remove_deletes_when_enabled(self) -> None:
        """With ``delete_on_remove``, Remove deletes the dataset and its data."""
        harness = Harness(delete_on_remove=True)
        dataset_id = harness.create("v1", NODE_A)
        self.assertEqual(harness.call(self, "Remove", {"Name": "v1"}), {"Err": ""})
        self.assertTrue(harness.datasets()[dataset_id].deleted)
        self.assertEqual(
            harness.call(self, "Get", {"Name": "v1"}),
            {"Err": "no Flocker volume named 'v1'"},
        )

    def test_remove_mounted(self) -> None:
        """A volume a container here mounts is not removed."""
        harness = Harness()
        dataset_id = harness.create("v1", NODE_A)
        harness.client.synchronize_state()
        self.successResultOf(
            harness.request("/VolumeDriver.Mount", {"Name": "v1", "ID": "c1"})
        )
        self.assertEqual(
            harness.call(self, "Remove", {"Name": "v1"}),
            {"Err": "volume 'v1' is in use by 1 container on this node"},
        )
        self.assertFalse(harness.datasets()[dataset_id].deleted)
        harness.call(self, "Unmount", {"Name": "v1", "ID": "c1"})
        self.assertEqual(harness.call(self, "Remove", {"Name": "v1"}), {"Err": ""})

    def test_remove_leased_elsewhere(self) -> None:
        """A volume another node holds is not removed; the holder is named."""
        harness = Harness()
        dataset_id = harness.create("v1", NODE_B)
        harness.client.acquire_lease(dataset_id, NODE_B, None)
        answer = harness.call(self, "Remove", {"Name": "v1"})
        self.assertIn("leased by node", answer["Err"])
        self.assertIn(str(NODE_B), answer["Err"])
        self.assertEqual(harness.datasets()[dataset_id].metadata["name"], "v1")

    def test_remove_unknown(self) -> None:
        """Removing an unknown volume succeeds, as in the original plugin."""
        self.assertEqual(Harness().call(self, "Remove", {"Name": "v9"}), {"Err": ""})


class ErrorAndLoggingTests(SynchronousTestCase):
    """Failures of the control service, and the eliot actions."""

    def test_unreachable(self) -> None:
        """A control service that cannot be reached is a readable Err."""
        harness = Harness(client_class=UnreachableClient)
        answer = harness.call(self, "List", {})
        self.assertIn("cannot reach the Flocker control service", answer["Err"])

    @capture_logging(None)  # type: ignore[untyped-decorator]  # eliot is untyped
    def test_unexpected_error(self, logger: Any) -> None:
        """A bug is an Err naming the exception, and its traceback is logged."""
        harness = Harness(client_class=BrokenClient)
        answer = harness.call(self, "Get", {"Name": "v1"})
        self.assertEqual(
            answer,
            {
                "Err": "internal error in the Flocker volume plugin: ZeroDivisionError: oops"
            },
        )
        self.assertEqual(len(logger.flush_tracebacks(ZeroDivisionError)), 1)

    @capture_logging(None)  # type: ignore[untyped-decorator]  # eliot is untyped
    def test_actions(self, logger: Any) -> None:
        """Each request is a ``flocker:dockerplugin:<verb>`` action with its Err."""
        harness = Harness()
        harness.call(self, "Create", {"Name": "v1", "Opts": {"size": "64M"}})
        harness.call(self, "Get", {"Name": "v2"})
        harness.client.synchronize_state()
        harness.call(self, "Mount", {"Name": "v1", "ID": "c1"})
        [create] = LoggedAction.ofType(logger.messages, REQUESTS["create"])
        [get] = LoggedAction.ofType(logger.messages, REQUESTS["get"])
        [mount] = LoggedAction.ofType(logger.messages, REQUESTS["mount"])
        self.assertEqual(
            [
                (
                    a.start_message["volume"],
                    a.start_message["mount_id"],
                    a.end_message["error"],
                )
                for a in (create, get, mount)
            ],
            [
                ("v1", None, ""),
                ("v2", None, "no Flocker volume named 'v2'"),
                ("v1", "c1", ""),
            ],
        )
        self.assertTrue(all(a.succeeded for a in (create, get, mount)))
