"""Unit tests of the transfer protocol's framing, messages and parser."""

from __future__ import annotations

import pytest

from .._transfer_wire import (
    DATA,
    HEADER,
    MAXIMUM_CONTROL_FRAME,
    MAXIMUM_FRAME,
    PREAMBLE,
    STATUS,
    TRAILER,
    FrameParser,
    ProtocolError,
    TransferHeader,
    decode_json,
    encode_data_header,
    encode_frame,
    encode_json,
)

ALL = frozenset([HEADER, DATA, TRAILER])


def collecting_parser(
    preamble: bool = True, accept: frozenset[bytes] = ALL
) -> tuple[FrameParser, list[tuple[bytes, bytes]]]:
    """A parser that records control frames as (kind, payload), data as (D, chunk)."""
    seen: list[tuple[bytes, bytes]] = []
    parser = FrameParser(
        lambda kind, payload: seen.append((kind, payload)),
        lambda chunk: seen.append((DATA, bytes(chunk))),
        accept,
        preamble,
    )
    return parser, seen


def joined(seen: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Merge consecutive data pieces, as their frames' payloads."""
    merged: list[tuple[bytes, bytes]] = []
    for kind, payload in seen:
        if kind == DATA and merged and merged[-1][0] == DATA:
            merged[-1] = (DATA, merged[-1][1] + payload)
        else:
            merged.append((kind, payload))
    return merged


STREAM = (
    PREAMBLE
    + encode_json(HEADER, {"dataset_id": "x"})
    + encode_frame(DATA, b"0123456789" * 10)
    + encode_json(TRAILER, {"bytes": 100})
)


def test_whole_stream() -> None:
    """A stream fed at once yields its control frames and data in order."""
    parser, seen = collecting_parser()
    parser.feed(STREAM)
    assert joined(seen) == [
        (HEADER, b'{"dataset_id": "x"}'),
        (DATA, b"0123456789" * 10),
        (TRAILER, b'{"bytes": 100}'),
    ]
    assert parser.idle


@pytest.mark.parametrize("split", range(1, len(STREAM)))
def test_split_anywhere(split: int) -> None:
    """The same frames come out wherever the bytes are split in two."""
    parser, seen = collecting_parser()
    parser.feed(STREAM[:split])
    parser.feed(STREAM[split:])
    whole, expected = collecting_parser()
    whole.feed(STREAM)
    assert joined(seen) == joined(expected)


def test_byte_by_byte() -> None:
    """Feeding one byte at a time gives the same frames."""
    parser, seen = collecting_parser()
    for i in range(len(STREAM)):
        parser.feed(STREAM[i : i + 1])
    whole, expected = collecting_parser()
    whole.feed(STREAM)
    assert joined(seen) == joined(expected)


def test_data_passes_without_waiting_for_frame_end() -> None:
    """Data arrives at the callback before its frame is complete."""
    parser, seen = collecting_parser(preamble=False)
    parser.feed(encode_data_header(1000) + b"a" * 10)
    assert seen == [(DATA, b"a" * 10)]
    assert not parser.idle


def test_empty_data_frame() -> None:
    """A DATA frame of no bytes is valid and delivers nothing."""
    parser, seen = collecting_parser(preamble=False)
    parser.feed(encode_data_header(0) + encode_json(TRAILER, {}))
    assert seen == [(TRAILER, b"{}")]


def test_bad_preamble() -> None:
    """A stream that is not flocker-transfer/2 is a protocol error."""
    parser, _ = collecting_parser()
    with pytest.raises(ProtocolError, match="flocker-transfer/2"):
        parser.feed(b"GET / HTTP/1.1\r\n\r\n")


def test_other_version() -> None:
    """An earlier or a later protocol version is refused from its preamble."""
    for preamble in (b"flocker-transfer/1\n", b"flocker-transfer/3\n"):
        parser, _ = collecting_parser()
        with pytest.raises(ProtocolError):
            parser.feed(preamble)


def test_unexpected_kind() -> None:
    """A frame kind this side does not accept is a protocol error."""
    parser, _ = collecting_parser(preamble=False)
    with pytest.raises(ProtocolError, match="unexpected frame kind"):
        parser.feed(encode_json(STATUS, {"ok": True}))


def test_unknown_kind() -> None:
    """An unknown frame kind byte is a protocol error."""
    parser, _ = collecting_parser(preamble=False)
    with pytest.raises(ProtocolError):
        parser.feed(b"Z\x00\x00\x00\x00")


def test_data_frame_too_large() -> None:
    """A DATA frame above the maximum is refused from its prefix alone."""
    parser, _ = collecting_parser(preamble=False)
    with pytest.raises(ProtocolError, match="too large"):
        parser.feed(encode_data_header(MAXIMUM_FRAME + 1))


def test_control_frame_too_large() -> None:
    """A control frame above its maximum is refused before it is buffered."""
    parser, _ = collecting_parser(preamble=False)
    prefix = encode_frame(HEADER, b"")[:1] + (MAXIMUM_CONTROL_FRAME + 1).to_bytes(
        4, "big"
    )
    with pytest.raises(ProtocolError, match="too large"):
        parser.feed(prefix)


def test_broken_parser_stays_broken() -> None:
    """After a protocol error the parser refuses anything more."""
    parser, seen = collecting_parser()
    with pytest.raises(ProtocolError):
        parser.feed(b"nonsense\n")
    with pytest.raises(ProtocolError):
        parser.feed(STREAM)
    assert seen == []


def test_encode_frame_rejects_unknown_kind() -> None:
    """Encoding refuses a kind the protocol does not have."""
    with pytest.raises(ValueError):
        encode_frame(b"Z", b"")


def test_decode_json_errors() -> None:
    """A control payload must be a UTF-8 JSON object."""
    for payload in (b"\xff", b"{", b"[1]"):
        with pytest.raises(ProtocolError):
            decode_json(payload)
    assert decode_json(b'{"a": 1}') == {"a": 1}


HEADER_DOC = {
    "dataset_id": "6f2bb4a7-7c3a-4a7e-9b6e-0d1f1e7c2a01",
    "snapshot": "s2",
    "base": "s1",
    "stream_format": "zfs",
    "size": None,
    "task_id": "abc@/1",
    "final": False,
}


def test_header_round_trip() -> None:
    """A header survives to_json/from_json."""
    header = TransferHeader.from_json(HEADER_DOC)
    assert header.to_json() == HEADER_DOC
    assert TransferHeader.from_json(header.to_json()) == header


@pytest.mark.parametrize(
    "change",
    [
        {"dataset_id": None},
        {"snapshot": 3},
        {"stream_format": ["zfs"]},
        {"base": 1},
        {"task_id": {}},
        {"size": -1},
        {"size": "10"},
        {"size": True},
        {"final": "yes"},
        {"epoch": -1},
        {"epoch": "2"},
        {"epoch": True},
    ],
)
def test_header_bad_fields(change: dict[str, object]) -> None:
    """A header with a field of the wrong type is a protocol error."""
    with pytest.raises(ProtocolError):
        TransferHeader.from_json({**HEADER_DOC, **change})


def test_header_carries_the_epoch() -> None:
    """
    A header's epoch survives the wire; one without an epoch (a dataset
    never failed over) reads as epoch 0 and is written as before.
    """
    header = TransferHeader.from_json({**HEADER_DOC, "epoch": 3})
    assert header.epoch == 3
    assert TransferHeader.from_json(header.to_json()) == header
    assert TransferHeader.from_json(HEADER_DOC).epoch == 0
    assert "epoch" not in TransferHeader.from_json(HEADER_DOC).to_json()


def test_header_not_object() -> None:
    """A header that is not a JSON object is a protocol error."""
    with pytest.raises(ProtocolError):
        TransferHeader.from_json(["x"])


def test_header_optional_fields_default() -> None:
    """base, size and task_id may be left out."""
    header = TransferHeader.from_json(
        {"dataset_id": "x", "snapshot": "s", "stream_format": "zfs"}
    )
    assert (header.base, header.size, header.task_id) == (None, None, None)
