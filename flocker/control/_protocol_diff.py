"""Pure helpers of the agent protocol: JSON document diffs and value chunking.

**Diffs.** The control service pushes each agent the JSON document
``{"configuration": ..., "state": ...}`` (the forms `_serialization` makes)
as a *diff* against the document that agent last acknowledged.  A diff is a
list of operations, each a JSON array:

* ``["set", [key, ...], value]`` — put ``value`` at the path (creating the
  key in its parent object; the empty path replaces the whole document);
* ``["del", [key, ...]]`` — remove the key at the path.

Objects are compared key by key and recursed into; any other value (arrays,
strings, numbers, ``null``) that differs is replaced whole.  A value that is
the same object in both documents is not looked into: documents are never
modified once made, so the control service reuses the JSON of unchanged
nodes from one document to the next and a diff costs what changed.  The functions
are pure: `apply_diff` never modifies its input, so a document can be shared
by many connections.

**Chunks.** AMP refuses values longer than 65,535 bytes; `split_chunks` and
`join_chunks` cut a byte string into pieces that fit and put it together.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "CHUNK_SIZE",
    "DiffError",
    "apply_diff",
    "decode_diff",
    "diff_documents",
    "encode_diff",
    "join_chunks",
    "split_chunks",
]

#: The largest value AMP carries (its 16-bit length prefix).
CHUNK_SIZE = 0xFFFF

#: A JSON path: the keys from the document's root down to one value.
Path = list[str]


class DiffError(ValueError):
    """A diff is malformed or does not fit the document it is applied to."""


def diff_documents(old: Any, new: Any) -> list[list[Any]]:
    """
    The operations that turn JSON document ``old`` into ``new``.

    ``old`` may be ``None`` (nothing acknowledged yet): the diff then sets the
    whole document.  An empty list means the documents are equal.
    """
    operations: list[list[Any]] = []
    _diff(old, new, [], operations)
    return operations


def _diff(old: Any, new: Any, path: Path, out: list[list[Any]]) -> None:
    if old is new:  # shared, hence unchanged (documents are never modified)
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for key in old:
            if key not in new:
                out.append(["del", [*path, key]])
        for key, value in new.items():
            if key not in old:
                out.append(["set", [*path, key], value])
            else:
                _diff(old[key], value, [*path, key], out)
    elif not _same(old, new):
        out.append(["set", list(path), new])


def _same(a: Any, b: Any) -> bool:
    """JSON equality: ``1 == True`` and ``1 == 1.0`` in Python, not in JSON."""
    return type(a) is type(b) and a == b


def apply_diff(operations: list[list[Any]], document: Any) -> Any:
    """
    The document ``operations`` (from `diff_documents`) make of ``document``.

    ``document`` is not modified; unchanged parts are shared with the result.

    :raise DiffError: an operation is malformed, or its path does not exist
        in the document (the diff was made against another document).
    """
    if not isinstance(operations, list):
        raise DiffError("a diff is a list of operations")
    for operation in operations:
        document = _apply_one(operation, document)
    return document


def _apply_one(operation: Any, document: Any) -> Any:
    if not isinstance(operation, list) or not operation:
        raise DiffError(f"not an operation: {operation!r}")
    verb = operation[0]
    if verb == "set" and len(operation) == 3:
        path, value = operation[1], operation[2]
    elif verb == "del" and len(operation) == 2:
        path, value = operation[1], None
    else:
        raise DiffError(f"not an operation: {operation!r}")
    if not isinstance(path, list) or not all(isinstance(k, str) for k in path):
        raise DiffError(f"not a path: {path!r}")
    if not path:
        if verb == "del":
            raise DiffError("cannot delete the whole document")
        return value
    return _replace(document, path, verb, value)


def _replace(document: Any, path: Path, verb: str, value: Any) -> Any:
    """A copy of ``document`` with the value at ``path`` set or deleted."""
    if not isinstance(document, dict):
        raise DiffError(f"path {path!r} goes through a non-object")
    key, rest = path[0], path[1:]
    result = dict(document)
    if rest:
        if key not in document:
            raise DiffError(f"path {path!r} does not exist")
        result[key] = _replace(document[key], rest, verb, value)
    elif verb == "set":
        result[key] = value
    else:
        if key not in document:
            raise DiffError(f"cannot delete missing key {key!r}")
        del result[key]
    return result


def encode_diff(operations: list[list[Any]]) -> bytes:
    """The UTF-8 JSON bytes of a diff."""
    return json.dumps(operations, separators=(",", ":")).encode("utf-8")


def decode_diff(data: bytes) -> list[list[Any]]:
    """
    A diff from `encode_diff`'s bytes.

    :raise DiffError: the bytes are not a JSON list.
    """
    try:
        operations = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DiffError(f"not UTF-8 JSON: {e}") from e
    if not isinstance(operations, list):
        raise DiffError("a diff is a list of operations")
    return operations


def split_chunks(data: bytes, size: int = CHUNK_SIZE) -> list[bytes]:
    """Cut ``data`` into pieces of at most ``size`` bytes (one empty piece for b"")."""
    if size < 1:
        raise ValueError(f"chunk size must be positive: {size!r}")
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


def join_chunks(chunks: list[bytes]) -> bytes:
    """Put `split_chunks`'s pieces back together."""
    return b"".join(chunks)
