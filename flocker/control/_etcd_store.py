"""The desired configuration in etcd: `EtcdConfigurationStore`.

For a highly available control plane, several control services share one
configuration in an etcd cluster (see `flocker.control._etcd` for the
client and why it speaks etcd's JSON gateway).

Rules:

* **One key, one envelope.**  The configuration lives in
  ``<prefix>configuration`` as the same envelope the file store writes:
  ``{"envelope_version": 1, "generation": N, "configuration": {...}}``,
  the configuration in the current format of
  `flocker.control._serialization`.  The generation is the envelope's, so
  it goes up by one per save and survives `import_configuration` from a
  file: REST configuration tags keep their meaning across instances and
  across the move to etcd.
* **Saves are compare-and-swap twice over**: on the generation (the caller's
  expectation, checked against the key as read) and on the key's etcd mod
  revision (one transaction that writes only if nobody wrote since that
  read).  Of two writers starting from the same generation, exactly one
  succeeds; the other gets `GenerationMismatch`.
* **Nothing unreadable is written**: the envelope is read back before it is
  sent, so a save fails instead of storing what a load would refuse.
* **Nothing unreadable is served as empty**: a key holding anything else
  (another envelope or format version, a newer Flocker's format, garbage)
  makes `load` fail with `ConfigurationCorrupt`; the control service
  refuses to start on it.  ``EtcdUnavailable`` from the client passes
  through `load` and `save` unchanged (the REST API answers 503).
* **Watching** (`EtcdConfigurationStore.watch`) reports the current
  configuration, then every later one, whoever wrote it, each once and in
  order; when the changes it missed were compacted away it reloads.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from eliot import Field, MessageType, start_action
from twisted.internet.defer import Deferred
from zope.interface import implementer

from ._etcd import (
    WATCH_CALLBACK_FAILED,
    EtcdClient,
    EventType,
    KeyValue,
    WatchEvent,
)
from ._logging import LOAD_CONFIGURATION, SAVE_CONFIGURATION
from ._model import Deployment
from ._persistence import (
    CONFIGURATION_FILE,
    ConfigurationCorrupt,
    GenerationMismatch,
    IConfigurationStore,
    StoredConfiguration,
    envelope,
    parse_envelope,
)

__all__ = [
    "ConfigurationAlreadyPresent",
    "EtcdConfigurationStore",
    "import_configuration",
]

#: The key's name under the store's prefix.
CONFIGURATION_KEY = "configuration"

_STORE = Field.for_types("store", [str], "Which configuration store.")
_REASON = Field.for_types("reason", [str], "Why, in words.")

#: A watched configuration could not be read; it was not passed on.
WATCHED_CONFIGURATION_CORRUPT = MessageType(
    "flocker:control:etcd:watched_configuration_corrupt",
    [_STORE, _REASON],
    "Another writer stored a configuration this control service cannot read; "
    "it keeps the one it has.",
)

#: A reload after compaction failed; the watch goes on.
WATCH_RELOAD_FAILED = MessageType(
    "flocker:control:etcd:watch_reload_failed",
    [_STORE, _REASON],
    "Reloading the configuration after its watch missed compacted changes "
    "failed; the next change will be seen.",
)


class ConfigurationAlreadyPresent(Exception):
    """etcd already holds a configuration: an import would replace it."""

    def __init__(self, where: str, generation: int | None, source: str) -> None:
        """Remember where, at which generation, and what was to be imported."""
        super().__init__(where, generation, source)
        self.where = where
        self.generation = generation
        self.source = source

    def __str__(self) -> str:
        """Say that nothing was imported, and why."""
        at = "" if self.generation is None else f" (generation {self.generation})"
        return (
            f"{self.where} already holds a configuration{at}; "
            f"refusing to import {self.source} over it"
        )


def _checked_envelope(where: str, deployment: Deployment, generation: int) -> bytes:
    """The envelope's bytes, once they are known to read back as ``deployment``."""
    data = envelope(deployment, generation)
    if parse_envelope(where, data).deployment != deployment:
        raise ConfigurationCorrupt(where, "the configuration does not read back equal")
    return data


#: Called with each configuration a watch sees.
ConfigurationCallback = Callable[[StoredConfiguration], object]


@implementer(IConfigurationStore)
class EtcdConfigurationStore:
    """
    An `IConfigurationStore` in one etcd key, shared by any number of
    control services.

    :ivar client: the `EtcdClient`.
    :ivar key: the configuration's key (``<prefix>configuration``).
    """

    def __init__(self, client: EtcdClient, prefix: str = "/flocker/") -> None:
        """Use ``prefix`` + ``configuration`` in the cluster ``client`` reaches."""
        self.client = client
        self.key = prefix + CONFIGURATION_KEY

    @property
    def where(self) -> str:
        """The key and the cluster, for messages and logs."""
        return f"etcd key {self.key} at {','.join(self.client.endpoints)}"

    def _parse(self, kv: KeyValue | None) -> StoredConfiguration:
        if kv is None:
            return StoredConfiguration(generation=0, deployment=Deployment())
        return parse_envelope(self.where, kv.value)

    def load(self) -> Deferred[StoredConfiguration]:
        """See `IConfigurationStore.load`."""

        async def load() -> StoredConfiguration:
            with start_action(
                action_type=LOAD_CONFIGURATION.action_type, store=self.where
            ) as action:
                stored = self._parse(await self.client.get(self.key))
                action.add_success_fields(generation=stored.generation)
                return stored

        return Deferred.fromCoroutine(load())

    def save(self, deployment: Deployment, expected_generation: int) -> Deferred[int]:
        """See `IConfigurationStore.save`."""

        async def save() -> int:
            with start_action(
                action_type=SAVE_CONFIGURATION.action_type,
                store=self.where,
                expected_generation=expected_generation,
            ) as action:
                kv = await self.client.get(self.key)
                current = self._parse(kv).generation
                if current != expected_generation:
                    raise GenerationMismatch(expected_generation, current)
                new = current + 1
                data = _checked_envelope(self.where, deployment, new)
                written = await self.client.compare_and_put(
                    self.key, data, 0 if kv is None else kv.mod_revision
                )
                if not written:  # another writer got in between
                    raise GenerationMismatch(expected_generation, None)
                action.add_success_fields(generation=new)
                return new

        return Deferred.fromCoroutine(save())

    def watch(self, callback: ConfigurationCallback) -> Callable[[], None]:
        """
        Call ``callback(stored)`` with the current `StoredConfiguration`, then
        with every later one, whoever saves it, until the returned function
        is called.

        Each configuration is passed once, in the order saved (a change that
        was compacted away before the watch saw it is skipped: the newest
        one is reloaded and passed instead).  A deleted key is passed as the
        empty configuration at generation 0; a configuration that cannot be
        read is logged and not passed.  A callback that raises, or returns
        a Deferred that fails, is logged and the watch goes on.

        :return: a function that stops the watch (no callback after it).
        """
        return _ConfigurationWatch(self, callback).start()


class _ConfigurationWatch:
    """One `EtcdConfigurationStore.watch`: passes on each newer key version."""

    def __init__(self, store: EtcdConfigurationStore, callback: ConfigurationCallback):
        self._store = store
        self._callback = callback
        self._last_revision = -1  # the mod revision last passed on
        self._stopped = False
        self._watch: Any = None
        self._retry: Any = None
        self._reads: set[Deferred[Any]] = set()

    def start(self) -> Callable[[], None]:
        self._read_then_watch()
        return self.stop

    def stop(self) -> None:
        self._stopped = True
        if self._watch is not None:
            self._watch.stop()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        for d in list(self._reads):
            d.cancel()

    def _read(self) -> Deferred[Any]:
        d = self._store.client.get_with_revision(self._store.key)
        self._reads.add(d)

        def forget(result: Any) -> Any:
            self._reads.discard(d)
            return result

        return d.addBoth(forget)

    def _read_then_watch(self) -> None:
        """Pass on the current configuration, then watch from just after it."""
        if self._stopped:
            return

        def got(found: Any) -> None:
            if self._stopped:
                return
            self._pass_on(found.kvs[0] if found.kvs else None, found.revision)
            self._watch = self._store.client.watch(
                self._store.key,
                self._event,
                start_revision=found.revision + 1,
                on_compacted=self._compacted,
            )

        def failed(reason: Any) -> None:
            if self._stopped:
                return
            WATCH_RELOAD_FAILED.log(
                store=self._store.where, reason=reason.getErrorMessage()
            )
            # Try again after the client's own deadline passed once more.
            self._retry = self._store.client.reactor.callLater(
                self._store.client.timeout, self._read_then_watch
            )

        self._read().addCallbacks(got, failed)

    def _event(self, event: WatchEvent) -> None:
        if event.type is EventType.DELETE:
            self._pass_on(None, event.kv.mod_revision)
        else:
            self._pass_on(event.kv, event.kv.mod_revision)

    def _compacted(self, _: int) -> None:
        def got(found: Any) -> None:
            if not self._stopped:
                self._pass_on(found.kvs[0] if found.kvs else None, found.revision)

        def failed(reason: Any) -> None:
            if not self._stopped:
                WATCH_RELOAD_FAILED.log(
                    store=self._store.where, reason=reason.getErrorMessage()
                )

        self._read().addCallbacks(got, failed)

    def _pass_on(self, kv: KeyValue | None, revision: int) -> None:
        """Pass on the key's version at ``revision`` unless it is not newer."""
        if self._stopped:
            return
        if kv is not None:
            revision = kv.mod_revision
        if revision <= self._last_revision:
            return
        self._last_revision = revision
        try:
            stored = self._store._parse(kv)
        except ConfigurationCorrupt as e:
            WATCHED_CONFIGURATION_CORRUPT.log(store=self._store.where, reason=str(e))
            return
        try:
            result = self._callback(stored)
        except Exception as e:  # the watch goes on for the next change
            WATCH_CALLBACK_FAILED.log(key=self._store.key, reason=repr(e))
            return
        if isinstance(result, Deferred):  # e.g. ConfigurationService.adopt
            result.addErrback(
                lambda f: WATCH_CALLBACK_FAILED.log(
                    key=self._store.key, reason=repr(f.value)
                )
            )


def import_configuration(
    store: EtcdConfigurationStore, path: Path | str
) -> Deferred[int]:
    """
    Copy a file store's configuration into etcd, once.

    :param path: the file store's data directory (its ``configuration.json``
        is read) or the configuration file itself.  It is read directly
        (it is small, and this runs once before the control service serves).
    :return: a Deferred firing with the imported generation (the file's,
        so configuration tags stay valid).  Fails with
        `ConfigurationAlreadyPresent` (nothing written) if etcd already holds
        a configuration, `ConfigurationCorrupt` if the file cannot be read
        as one, ``FileNotFoundError`` if there is none.
    """
    source = Path(path)
    if source.is_dir():
        source = source / CONFIGURATION_FILE

    async def run() -> int:
        try:
            data = source.read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(
                f"no Flocker configuration file to import at {source}"
            ) from None
        stored = parse_envelope(str(source), data)
        checked = _checked_envelope(store.where, stored.deployment, stored.generation)
        if not await store.client.create(store.key, checked):
            present = await store.client.get(store.key)
            try:
                generation = store._parse(present).generation if present else None
            except ConfigurationCorrupt:
                generation = None
            raise ConfigurationAlreadyPresent(store.where, generation, str(source))
        return stored.generation

    return Deferred.fromCoroutine(run())
