"""Where the desired configuration is kept: `IConfigurationStore` and its providers.

A store holds one `Deployment` and a *generation*: an integer that grows with
every successful save.  Saves are compare-and-swap on the generation, so a
store shared by several control services (etcd, whose mod revision is a
natural generation) never loses a write, and a single control service notices
if anything else touched it.

* `FileConfigurationStore` — the embedded default: one JSON file, replaced
  atomically and durably (temporary file in the same directory, ``fsync``,
  ``rename``, ``fsync`` of the directory) in a thread, never on the reactor.
* `MemoryConfigurationStore` — the fake, for unit tests; it round-trips
  through the same serialization so it accepts exactly what the file does.

`ConfigurationService` holds the current configuration for the rest of the
control service: it applies pure change functions with compare-and-swap and
tells subscribers (the AMP pusher, caches) about every new configuration.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any, Protocol

import attrs
from eliot import start_action, write_traceback
from pyrsistent import PClass, field
from twisted.internet.defer import Deferred, DeferredLock, fail, succeed
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool
from zope.interface import Interface, implementer

from ._logging import (
    ADOPT_CONFIGURATION,
    CHANGE_CONFIGURATION,
    CONFLICT,
    LOAD_CONFIGURATION,
    SAVE_CONFIGURATION,
    SUBSCRIBER_FAILED,
)
from ._model import Deployment
from ._serialization import (
    SerializationError,
    deployment_from_json,
    deployment_to_json,
    deserialize_deployment,
    serialize_deployment,
)

__all__ = [
    "ConfigurationAccess",
    "ConfigurationCorrupt",
    "ConfigurationService",
    "FileConfigurationStore",
    "GenerationMismatch",
    "IConfigurationStore",
    "MemoryConfigurationStore",
    "StoredConfiguration",
]


class GenerationMismatch(Exception):
    """
    A compare-and-swap failed: the configuration is not at the expected generation.

    :ivar expected: the generation the caller expected.
    :ivar actual: the generation found (when known; else ``None``).
    """

    def __init__(self, expected: int, actual: int | None) -> None:
        """Remember both generations."""
        super().__init__(expected, actual)
        self.expected = expected
        self.actual = actual

    def __str__(self) -> str:
        """Say which generations disagree."""
        return f"configuration is at generation {self.actual}, not {self.expected}"


class ConfigurationCorrupt(Exception):
    """The stored configuration cannot be read; refusing to start empty."""

    def __init__(self, where: str, reason: str) -> None:
        """Remember which store and why."""
        super().__init__(where, reason)
        self.where = where
        self.reason = reason

    def __str__(self) -> str:
        """Say which store and why it cannot be read."""
        return f"stored configuration {self.where} is unreadable: {self.reason}"


class StoredConfiguration(PClass):
    """A configuration as stored: the `Deployment` and its generation."""

    generation = field(type=int, mandatory=True)
    deployment = field(type=Deployment, mandatory=True)


class IConfigurationStore(Interface):
    """
    Durable storage of the desired configuration with compare-and-swap.

    Generations: an empty store is at generation 0; every successful `save`
    returns a generation greater than the one it replaced (a file store adds
    one; an etcd store may use the key's mod revision).
    """

    def load() -> Deferred[StoredConfiguration]:
        """
        Read the stored configuration.

        :return: a Deferred firing with the `StoredConfiguration`; an empty
            `Deployment` at generation 0 if nothing was ever saved.  Fails
            with `ConfigurationCorrupt` if what is stored cannot be read —
            never with an empty configuration in its place.
        """

    def save(
        deployment: Deployment, expected_generation: int
    ) -> Deferred[int]:
        """
        Replace the configuration if it is still at ``expected_generation``.

        :return: a Deferred firing with the new generation, only once the
            write is durable (it survives a crash of this process or machine).
            Fails with `GenerationMismatch` (nothing written) if the store is
            at another generation.
        """


def _check_generation(expected: int, actual: int) -> None:
    if expected != actual:
        raise GenerationMismatch(expected, actual)


@implementer(IConfigurationStore)
@attrs.define
class MemoryConfigurationStore:
    """
    An in-memory `IConfigurationStore` for tests.

    It keeps the serialized bytes, so what it returns went through the same
    serialization a durable store uses.
    """

    _generation: int = 0
    _data: bytes | None = None

    def load(self) -> Deferred[StoredConfiguration]:
        """See `IConfigurationStore.load`."""
        deployment = (
            Deployment() if self._data is None else deserialize_deployment(self._data)
        )
        return succeed(
            StoredConfiguration(generation=self._generation, deployment=deployment)
        )

    def save(self, deployment: Deployment, expected_generation: int) -> Deferred[int]:
        """See `IConfigurationStore.save`."""
        try:
            _check_generation(expected_generation, self._generation)
            data = serialize_deployment(deployment)
        except Exception as e:
            return fail(e)
        self._data = data
        self._generation += 1
        return succeed(self._generation)


#: The name of the configuration file inside the store's directory.
CONFIGURATION_FILE = "configuration.json"

#: The version of the file's envelope (generation + configuration document).
_ENVELOPE_VERSION = 1


def envelope(deployment: Deployment, generation: int, indent: int | None = None) -> bytes:
    """
    The bytes every store keeps: the configuration at ``generation`` in an
    envelope naming its format's version (compact, or indented by ``indent``).
    """
    return json.dumps(
        {
            "envelope_version": _ENVELOPE_VERSION,
            "generation": generation,
            "configuration": deployment_to_json(deployment),
        },
        sort_keys=True,
        indent=indent,
        separators=None if indent is not None else (",", ":"),
    ).encode("utf-8")


def parse_envelope(where: str, data: bytes) -> StoredConfiguration:
    """
    Read an envelope as the stores write it (`envelope`).

    :raise ConfigurationCorrupt: naming ``where``, for anything else.
    """
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigurationCorrupt(where, f"not UTF-8 JSON: {e}") from e
    if not isinstance(document, dict) or set(document) != {
        "envelope_version",
        "generation",
        "configuration",
    }:
        raise ConfigurationCorrupt(where, "not a Flocker configuration")
    if document["envelope_version"] != _ENVELOPE_VERSION:
        raise ConfigurationCorrupt(
            where,
            f"unknown envelope version {document['envelope_version']!r} "
            f"(this Flocker reads version {_ENVELOPE_VERSION})",
        )
    generation = document["generation"]
    if type(generation) is not int or generation < 1:
        raise ConfigurationCorrupt(where, f"bad generation {generation!r}")
    try:
        deployment = deployment_from_json(document["configuration"])
    except SerializationError as e:
        raise ConfigurationCorrupt(where, str(e)) from e
    return StoredConfiguration(generation=generation, deployment=deployment)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: Path, data: bytes) -> None:
    """
    Replace ``path``'s content with ``data`` atomically and durably (blocking).

    Readers, and a machine that crashes at any moment, see either the old file
    or the new one, never a mixture; once this returns the new one survives a
    crash.
    """
    fd, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_directory(path.parent)


@implementer(IConfigurationStore)
@attrs.define
class FileConfigurationStore:
    """
    An `IConfigurationStore` in one JSON file, the embedded default.

    The file (``configuration.json`` in ``directory``) holds
    ``{"envelope_version": 1, "generation": N, "configuration": {...}}``.
    All file I/O runs in ``threadpool``.  One process owns the directory: the
    generation is cached after the first read, and saves are serialized.

    :ivar reactor: the reactor to return results on.
    :ivar threadpool: where the blocking reads, writes and fsyncs run.
    :ivar directory: the data directory (created, mode 0700, if missing).
    """

    reactor: IReactorFromThreads
    threadpool: ThreadPool
    directory: Path = attrs.field(converter=Path)
    _generation: int | None = attrs.field(default=None, init=False)
    _lock: DeferredLock = attrs.field(factory=DeferredLock, init=False)

    @property
    def path(self) -> Path:
        """The configuration file's path."""
        return self.directory / CONFIGURATION_FILE

    def _in_thread(self, f: Callable[..., Any], *args: Any) -> Deferred[Any]:
        return deferToThreadPool(self.reactor, self.threadpool, f, *args)

    def _read(self) -> tuple[int, Deployment]:
        """Read and parse the file (blocking)."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for stale in self.directory.glob(f".{CONFIGURATION_FILE}.*.tmp"):
            with suppress(FileNotFoundError):
                stale.unlink()
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return 0, Deployment()
        return self._parse(data)

    def _parse(self, data: bytes) -> tuple[int, Deployment]:
        stored = parse_envelope(str(self.path), data)
        return stored.generation, stored.deployment

    def _write(self, deployment: Deployment, generation: int) -> None:
        """Write the file durably (blocking)."""
        write_durably(self.path, envelope(deployment, generation, indent=1))

    def load(self) -> Deferred[StoredConfiguration]:
        """See `IConfigurationStore.load`."""

        async def load() -> StoredConfiguration:
            with start_action(
                action_type=LOAD_CONFIGURATION.action_type, store=str(self.path)
            ) as action:
                await self._lock.acquire()
                try:
                    generation, deployment = await self._in_thread(self._read)
                    self._generation = generation
                finally:
                    self._lock.release()
                action.add_success_fields(generation=generation)
                return StoredConfiguration(generation=generation, deployment=deployment)

        return Deferred.fromCoroutine(load())

    def save(self, deployment: Deployment, expected_generation: int) -> Deferred[int]:
        """See `IConfigurationStore.save`."""

        async def save() -> int:
            with start_action(
                action_type=SAVE_CONFIGURATION.action_type,
                store=str(self.path),
                expected_generation=expected_generation,
            ) as action:
                await self._lock.acquire()
                try:
                    if self._generation is None:
                        self._generation, _ = await self._in_thread(self._read)
                    _check_generation(expected_generation, self._generation)
                    new = self._generation + 1
                    await self._in_thread(self._write, deployment, new)
                    self._generation = new
                finally:
                    self._lock.release()
                action.add_success_fields(generation=new)
                return new

        return Deferred.fromCoroutine(save())


# --------------------------------------------------------------------------


#: A pure function from the current configuration to the desired one.
ChangeFunction = Callable[[Deployment], Deployment]

#: Called with (generation, deployment) after every saved change.
Subscriber = Callable[[int, Deployment], None]


class ConfigurationAccess(Protocol):
    """
    What the REST API needs of the configuration: the current one, its
    generation, why it may be stale, and durable changes (a
    `ConfigurationService`, or a test's stand-in for one).
    """

    @property
    def deployment(self) -> Deployment:
        """The current configuration (`ConfigurationService.deployment`)."""
        ...

    @property
    def generation(self) -> int:
        """Its generation (`ConfigurationService.generation`)."""
        ...

    def stale_reason(self) -> str | None:
        """Why it may be behind the shared store's, or ``None``."""
        ...

    def change(
        self, change: ChangeFunction, expected_generation: int | None = None
    ) -> Deferred[StoredConfiguration]:
        """Apply ``change`` durably (`ConfigurationService.change`)."""
        ...


@attrs.define
class ConfigurationService:
    """
    The control service's current configuration, changed only through its store.

    Call `load` once at start-up.  `change` applies a pure function to the
    current configuration, saves the result with compare-and-swap (so it is
    durable before the returned Deferred fires) and tells every subscriber.
    Changes are applied one at a time, in the order requested.

    :ivar store: the `IConfigurationStore`.
    :ivar retries: how many times a change is re-applied when another writer
        changed the store first (only when the caller gave no expected
        generation).
    """

    store: IConfigurationStore
    retries: int = 3
    #: Why the configuration served may be behind the shared store's (the
    #: store cannot be reached), or ``None``; set by whoever can tell.
    stale_reason: Callable[[], str | None] = lambda: None
    _current: StoredConfiguration | None = attrs.field(default=None, init=False)
    _lock: DeferredLock = attrs.field(factory=DeferredLock, init=False)
    _subscribers: list[Subscriber] = attrs.field(factory=list, init=False)

    def load(self) -> Deferred[StoredConfiguration]:
        """(Re)read the configuration from the store; fails if it is corrupt."""

        async def load() -> StoredConfiguration:
            await self._lock.acquire()
            try:
                self._current = await self.store.load()
            finally:
                self._lock.release()
            return self._current

        return Deferred.fromCoroutine(load())

    def _loaded(self) -> StoredConfiguration:
        if self._current is None:
            raise RuntimeError("ConfigurationService.load() has not finished")
        return self._current

    @property
    def deployment(self) -> Deployment:
        """The current configuration."""
        return self._loaded().deployment

    @property
    def generation(self) -> int:
        """The current configuration's generation (the REST configuration tag)."""
        return self._loaded().generation

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """
        Call ``subscriber(generation, deployment)`` after every saved change.

        :return: a function that unsubscribes.
        """
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    def adopt(self, stored: StoredConfiguration) -> Deferred[bool]:
        """
        Take a configuration another control instance saved to the shared
        store, if it is newer than the current one, and tell subscribers.

        :return: a Deferred firing with whether it was newer (and taken).
        """

        async def run() -> bool:
            await self._lock.acquire()
            try:
                if self._current is not None and stored.generation <= self._current.generation:
                    return False
                self._current = stored
                ADOPT_CONFIGURATION.log(generation=stored.generation)
                self._notify(stored)
                return True
            finally:
                self._lock.release()

        return Deferred.fromCoroutine(run())

    def follow(self) -> Callable[[], None]:
        """
        Follow the store's changes made by other writers (`adopt` each one),
        if the store can be watched (a shared one, such as etcd's); the file
        and memory stores have only this writer, so there is nothing to follow.

        :return: a function that stops following.
        """
        watch = getattr(self.store, "watch", None)
        if watch is None:
            return lambda: None
        return watch(self.adopt)  # type: ignore[no-any-return]

    def change(
        self, change: ChangeFunction, expected_generation: int | None = None
    ) -> Deferred[StoredConfiguration]:
        """
        Apply ``change`` to the current configuration and save the result.

        :param change: a pure function; whatever it raises (a ``ModelError``,
            an ``InvariantException``) fails the returned Deferred and leaves
            the configuration unchanged.
        :param expected_generation: if given, the change is refused with
            `GenerationMismatch` unless the configuration is at this
            generation (the REST ``X-If-Configuration-Matches`` header).
        :return: a Deferred firing, once durable, with the new
            `StoredConfiguration` (the old one if ``change`` changed nothing).
        """

        async def run() -> StoredConfiguration:
            with start_action(
                action_type=CHANGE_CONFIGURATION.action_type,
                expected_generation=expected_generation,
            ) as action:
                await self._lock.acquire()
                try:
                    result, changed = await self._change(change, expected_generation)
                    if changed:
                        # Still holding the lock: subscribers see changes in order.
                        self._notify(result)
                finally:
                    self._lock.release()
                action.add_success_fields(generation=result.generation, changed=changed)
            return result

        return Deferred.fromCoroutine(run())

    async def _change(
        self, change: ChangeFunction, expected_generation: int | None
    ) -> tuple[StoredConfiguration, bool]:
        attempts = 0
        while True:
            current = self._loaded()
            if expected_generation is not None:
                _check_generation(expected_generation, current.generation)
            new = change(current.deployment)
            if new == current.deployment:
                return current, False
            try:
                generation = await self.store.save(new, current.generation)
            except GenerationMismatch as e:
                CONFLICT.log(
                    expected_generation=current.generation,
                    generation=-1 if e.actual is None else e.actual,
                )
                reloaded = self._current = await self.store.load()
                if reloaded.generation > current.generation:
                    # Another writer's configuration: subscribers hear of it
                    # now (a watch delivering it later would find it current).
                    self._notify(reloaded)
                attempts += 1
                if expected_generation is not None or attempts > self.retries:
                    raise
                continue
            self._current = StoredConfiguration(generation=generation, deployment=new)
            return self._current, True

    def _notify(self, stored: StoredConfiguration) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber(stored.generation, stored.deployment)
            except Exception as e:
                SUBSCRIBER_FAILED.log(reason=repr(e))
                write_traceback()
