"""
The bytes of the transfer protocol: frames, their parser, and the messages.

See :mod:`flocker.volume.transfer` for the protocol as a whole.  This module
has no I/O: :class:`FrameParser` turns received bytes into frames and
:func:`encode_frame` / :func:`encode_data_header` turn messages into bytes,
so both ends (and tests) share one definition of the format.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable
from typing import Any

from pyrsistent import PClass, field
from xxhash import xxh3_128

#: The first bytes a sender writes; names the protocol and its version.
PREAMBLE = b"flocker-transfer/2\n"

#: Frame kinds (one byte each).
HEADER = b"H"  # sender -> receiver, JSON: what is about to be sent
DATA = b"D"  # sender -> receiver, raw stream bytes
TRAILER = b"T"  # sender -> receiver, JSON: length and XXH3-128 of the stream
READY = b"R"  # receiver -> sender, JSON: the header is accepted, send data
STATUS = b"S"  # receiver -> sender, JSON: the final result (or a refusal)

#: The trailer's checksum: its name (the trailer's key) and a new hasher.
CHECKSUM = "xxh3_128"


def new_checksum() -> Any:
    """A hasher for the trailer's checksum (``update``, ``hexdigest``)."""
    return xxh3_128()


def checksum_of(data: bytes) -> str:
    """The trailer's checksum of ``data`` in one go."""
    return xxh3_128(data).hexdigest()


_KINDS = frozenset([HEADER, DATA, TRAILER, READY, STATUS])
_PREFIX = struct.Struct(">cI")
PREFIX_SIZE = _PREFIX.size

#: The largest frame payload either side accepts.
MAXIMUM_FRAME = 16 * 1024 * 1024
#: The largest JSON (control) frame either side accepts.
MAXIMUM_CONTROL_FRAME = 64 * 1024

# Error codes a receiver reports in a STATUS frame.
BAD_HEADER = "bad-header"
WRONG_FORMAT = "wrong-format"
UNKNOWN_DATASET = "unknown-dataset"
UNKNOWN_SNAPSHOT = "unknown-snapshot"
DATASET_EXISTS = "dataset-exists"
BUSY = "busy"
NOT_AUTHORIZED = "not-authorized"
PROTOCOL_ERROR = "protocol-error"
CHECKSUM_MISMATCH = "checksum-mismatch"
LENGTH_MISMATCH = "length-mismatch"
BAD_STREAM = "bad-stream"
INTERNAL_ERROR = "internal-error"


class ProtocolError(Exception):
    """The peer sent bytes that are not the transfer protocol."""


# --------------------------------------------------------------------------
# Exceptions the sender raises


class TransferError(Exception):
    """A transfer did not complete; the receiver keeps its previous state."""

    def __init__(self, code: str, message: str) -> None:
        """:param code: One of the error codes above, or a local one."""
        self.code = code
        self.message = message
        super().__init__(f"{message} ({code})")


class TransferRefused(TransferError):
    """The receiver refused the header: nothing was sent."""


class TransferFailed(TransferError):
    """The receiver got the stream but refused it (checksum, bad stream)."""


class TransferInterrupted(TransferError):
    """The connection ended before the receiver reported a result."""


# --------------------------------------------------------------------------
# Messages


def _optional_str(value: object) -> tuple[bool, str]:
    return value is None or isinstance(value, str), "must be a string or null"


def _optional_size(value: object) -> tuple[bool, str]:
    ok = value is None or (
        isinstance(value, int) and not isinstance(value, bool) and value >= 0
    )
    return ok, "must be a non-negative integer or null"


class TransferHeader(PClass):
    """
    What a sender announces before the stream.

    :ivar dataset_id: The dataset (a UUID string).
    :ivar snapshot: The snapshot the stream carries.
    :ivar base: The base snapshot of an incremental stream, or ``None``.
    :ivar stream_format: The backend's stream format (``zfs``, ...).
    :ivar size: The stream's length in bytes if known, else ``None``.
    :ivar task_id: The sender's serialized eliot task id, or ``None``.
    :ivar final: This is the last increment of a move: once it is stored,
        the receiver's owner exposes the dataset (see
        ``TransferReceiver.on_stored``).
    :ivar epoch: The dataset's epoch at the sender (every promotion of a
        replica raises it): a receiver that knows a newer epoch refuses the
        stream of a superseded primary.
    """

    dataset_id = field(type=str, mandatory=True)
    snapshot = field(type=str, mandatory=True)
    base = field(type=(str, type(None)), mandatory=True, initial=None)
    stream_format = field(type=str, mandatory=True)
    size = field(
        type=(int, type(None)), mandatory=True, initial=None, invariant=_optional_size
    )
    task_id = field(type=(str, type(None)), mandatory=True, initial=None)
    final = field(type=bool, mandatory=True, initial=False)
    epoch = field(
        type=int,
        initial=0,
        invariant=lambda v: (v >= 0, f"epoch must not be negative: {v!r}"),
    )

    def to_json(self) -> dict[str, Any]:
        """The header as a JSON object (``epoch`` only when not 0)."""
        document = {
            "dataset_id": self.dataset_id,
            "snapshot": self.snapshot,
            "base": self.base,
            "stream_format": self.stream_format,
            "size": self.size,
            "task_id": self.task_id,
            "final": self.final,
        }
        if self.epoch:
            document["epoch"] = self.epoch
        return document

    @classmethod
    def from_json(cls, document: object) -> TransferHeader:
        """Read a header, or :class:`ProtocolError` naming what is wrong."""
        if not isinstance(document, dict):
            raise ProtocolError("the header is not a JSON object")
        for key in ("dataset_id", "snapshot", "stream_format"):
            if not isinstance(document.get(key), str):
                raise ProtocolError(f"the header's {key!r} must be a string")
        for key in ("base", "task_id"):
            if not _optional_str(document.get(key))[0]:
                raise ProtocolError(f"the header's {key!r} must be a string or null")
        if not isinstance(document.get("final", False), bool):
            raise ProtocolError("the header's 'final' must be true or false")
        if not _optional_size(document.get("size"))[0]:
            raise ProtocolError("the header's 'size' must be a byte count or null")
        epoch = document.get("epoch", 0)
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            raise ProtocolError("the header's 'epoch' must be a non-negative integer")
        return cls(
            dataset_id=document["dataset_id"],
            snapshot=document["snapshot"],
            base=document.get("base"),
            stream_format=document["stream_format"],
            size=document.get("size"),
            task_id=document.get("task_id"),
            final=document.get("final", False),
            epoch=epoch,
        )


class TransferResult(PClass):
    """
    The outcome of a successful push, as the sender saw it.

    :ivar dataset_id: The dataset sent.
    :ivar snapshot: The snapshot sent.
    :ivar base: Its base, or ``None`` for a full stream.
    :ivar bytes_sent: Stream bytes sent (framing not counted).
    :ivar wire_bytes: Everything written to the connection (stream,
        framing, header and trailer; TLS records not counted).
    :ivar checksum: Hex XXH3-128 of the stream, as the receiver verified it.
    """

    dataset_id = field(type=str, mandatory=True)
    snapshot = field(type=str, mandatory=True)
    base = field(type=(str, type(None)), mandatory=True)
    bytes_sent = field(type=int, mandatory=True)
    wire_bytes = field(type=int, mandatory=True)
    checksum = field(type=str, mandatory=True)


# --------------------------------------------------------------------------
# Framing


def encode_data_header(length: int) -> bytes:
    """The prefix of a DATA frame of ``length`` payload bytes."""
    return _PREFIX.pack(DATA, length)


def encode_frame(kind: bytes, payload: bytes) -> bytes:
    """One whole frame."""
    if kind not in _KINDS:
        raise ValueError(f"unknown frame kind {kind!r}")
    if len(payload) > MAXIMUM_FRAME:
        raise ValueError("frame too large")
    return _PREFIX.pack(kind, len(payload)) + payload


def encode_json(kind: bytes, document: dict[str, Any]) -> bytes:
    """A control frame carrying a JSON object."""
    return encode_frame(kind, json.dumps(document, sort_keys=True).encode("utf-8"))


#: The deepest nesting of arrays and objects a control frame may have.
#: Every message of the protocol is a flat object; the limit keeps a
#: hostile peer from driving the JSON parser into a recursion error.
MAXIMUM_JSON_DEPTH = 8

_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_JSON_BRACKET = re.compile(r"[\[\]{}]")


def _too_deep(text: str) -> bool:
    """Whether JSON text nests arrays/objects deeper than the limit."""
    depth = 0
    for bracket in _JSON_BRACKET.finditer(_JSON_STRING.sub("", text)):
        if bracket.group() in "[{":
            depth += 1
            if depth > MAXIMUM_JSON_DEPTH:
                return True
        else:
            depth -= 1
    return False


def decode_json(payload: bytes) -> dict[str, Any]:
    """
    The JSON object of a control frame, or :class:`ProtocolError` (also for
    nesting deeper than :data:`MAXIMUM_JSON_DEPTH`).
    """
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ProtocolError(f"a control frame is not JSON: {error}") from None
    if _too_deep(text):
        raise ProtocolError(
            f"a control frame nests deeper than {MAXIMUM_JSON_DEPTH} levels"
        )
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise ProtocolError(f"a control frame is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise ProtocolError("a control frame is not a JSON object")
    return document


_VERSION = re.compile(rb"flocker-transfer/[0-9]+")
_SAME_RELEASE = "run the same Flocker release on both nodes"


def _wrong_preamble(received: bytes) -> str:
    """Why a connection's first bytes are not this protocol, for humans."""
    ours = PREAMBLE.decode().strip()
    theirs = _VERSION.match(received)
    if theirs is None:
        return f"the peer does not speak {ours}"
    return (
        f"the peer speaks {theirs.group().decode()}, this node {ours}: {_SAME_RELEASE}"
    )


def version_mismatch(message: str) -> str | None:
    """
    If a receiver's refusal names another version of this protocol than
    ours (an older receiver says "the peer does not speak
    flocker-transfer/1"), a sentence saying that the versions differ; else
    ``None``.
    """
    ours = PREAMBLE.decode().strip()
    named = {match.decode() for match in _VERSION.findall(message.encode())}
    others = sorted(named - {ours})
    if not others or _SAME_RELEASE in message:
        return None
    return f"the receiver speaks {others[0]}, this node {ours}: {_SAME_RELEASE}"


class FrameParser:
    """
    Splits received bytes into frames, without copying stream data twice.

    Control frames are buffered whole and handed to ``on_control(kind,
    payload)``; DATA payloads are handed to ``on_data(chunk)`` piece by piece
    (the bytes fed, or a ``memoryview`` of them where a frame ends inside a
    feed: nothing is copied)
    as they arrive (a frame's payload may come in several calls).  After a
    :class:`ProtocolError` (raised from :meth:`feed`) the parser accepts
    nothing more.

    :ivar preamble: Whether the stream must start with :data:`PREAMBLE`.
    """

    def __init__(
        self,
        on_control: Callable[[bytes, bytes], None],
        on_data: Callable[[bytes | memoryview], None],
        accept: frozenset[bytes],
        preamble: bool = False,
    ) -> None:
        """
        :param accept: The frame kinds this side may receive.
        :param preamble: Expect :data:`PREAMBLE` first.
        """
        self._on_control = on_control
        self._on_data = on_data
        self._accept = accept
        self._expect_preamble = preamble
        self._buffer = b""
        self._data_left = 0  # payload bytes still due in the current DATA frame
        self._broken = False

    def feed(self, data: bytes) -> None:
        """Take more received bytes; calls back for every complete part."""
        if self._broken:
            raise ProtocolError("the connection already broke the protocol")
        try:
            self._feed(data)
        except ProtocolError:
            self._broken = True
            raise

    def _feed(self, data: bytes) -> None:
        view = memoryview(data)
        while len(view):
            if self._data_left:
                if self._data_left >= len(view) and len(view) == len(data):
                    self._data_left -= len(data)  # the common case: no copy
                    view = view[len(view) :]
                    self._on_data(data)
                    continue
                piece = view[: self._data_left]
                self._data_left -= len(piece)
                view = view[len(piece) :]
                self._on_data(piece)
                continue
            if self._expect_preamble:
                wanted = len(PREAMBLE) - len(self._buffer)
                self._buffer += bytes(view[:wanted])
                view = view[wanted:]
                if not PREAMBLE.startswith(self._buffer):
                    raise ProtocolError(_wrong_preamble(self._buffer))
                if len(self._buffer) == len(PREAMBLE):
                    self._buffer = b""
                    self._expect_preamble = False
                continue
            wanted = PREFIX_SIZE - len(self._buffer)
            if wanted > 0:
                self._buffer += bytes(view[:wanted])
                view = view[wanted:]
                if len(self._buffer) < PREFIX_SIZE:
                    return
            kind, length = _PREFIX.unpack(self._buffer[:PREFIX_SIZE])
            if kind not in self._accept:
                raise ProtocolError(f"unexpected frame kind {kind!r}")
            if kind == DATA:
                if length > MAXIMUM_FRAME:
                    raise ProtocolError(f"a data frame of {length} bytes is too large")
                self._buffer = b""
                self._data_left = length
                continue
            if length > MAXIMUM_CONTROL_FRAME:
                raise ProtocolError(f"a control frame of {length} bytes is too large")
            wanted = PREFIX_SIZE + length - len(self._buffer)
            self._buffer += bytes(view[:wanted])
            view = view[wanted:]
            if len(self._buffer) < PREFIX_SIZE + length:
                return
            payload = self._buffer[PREFIX_SIZE:]
            self._buffer = b""
            self._on_control(kind, payload)

    @property
    def idle(self) -> bool:
        """Whether the parser is between frames (nothing half received)."""
        return not self._buffer and not self._data_left and not self._expect_preamble
