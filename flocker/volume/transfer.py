r"""
Snapshot streams between nodes, over TCP with mutual TLS.

Every node's dataset agent runs a receiver (:class:`TransferReceiver`,
served by :func:`listen_for_transfers` or :func:`transfer_service`) on its
transfer port.  Another node pushes a snapshot to it with :func:`push`.
Both ends authenticate with their node certificates from the cluster CA
(:mod:`flocker.ca`): the receiver requires a client certificate signed by
the cluster's CA *and* naming a node; the sender accepts only a peer that is
a node of the cluster (a given node, if told which).

Streams are bulk data, so each connection's TLS runs in a worker thread of
its own (:mod:`flocker.transport`, the standard library's
:mod:`ssl` with the same credential and trust as every other Flocker
connection); the protocols below run in the reactor thread as usual.

The wire format
===============

After the TLS handshake the sender writes the preamble
``b"flocker-transfer/2\n"`` and then frames.  Each frame is one byte of
kind, a 4-byte big-endian payload length, and the payload::

    sender                                   receiver
    PREAMBLE, H {header JSON}        ---->
                                     <----   R {}                (accepted)
                                     <----   S {"ok": false,...} (refused)
    D <stream bytes> (repeated)      ---->
    T {"bytes": n, "xxh3_128": hex}  ---->
                                     <----   S {"ok": true, "bytes": n}
                                             or S {"ok": false, "code": c,
                                                   "message": m}

* ``H`` (header): ``dataset_id``, ``snapshot``, ``base`` (``null`` for a
  full stream), ``stream_format`` (the sending backend's, e.g. ``"zfs"``),
  ``size`` (``null``: unknown), ``final`` (the last increment of a move:
  the receiver's ``on_stored`` hook runs before it confirms, so the dataset
  agent exposes the dataset), ``epoch`` (the dataset's epoch at the
  sender, 0 if absent: a receiver that knows a newer one refuses the
  stream of a superseded primary) and ``task_id``, the sender's eliot task
  (``Action.serialize_task_id()``) that the receiver continues, so one push
  reads as one eliot tree across both nodes.
* The receiver checks the header before any data flows: the peer is a node,
  its owner's ``authorize`` hook lets that node send this stream here (the
  dataset agent: only what its configuration sends here from that node),
  the format is its backend's, the dataset id and names are valid, no other
  transfer of the dataset is in progress, and ``backend.receive`` accepts
  (the base exists for an incremental stream; the dataset does not exist
  for a full one, unless the receiver's ``replace`` hook lets that full
  stream replace the existing copy, as the backend does on a successful
  ``finish``).  A refusal is an ``S`` frame with ``ok: false``, a
  ``code`` (``wrong-format``, ``unknown-snapshot``, ``unknown-dataset``,
  ``dataset-exists``, ``busy``, ``bad-header``, ``not-authorized``) and a
  readable ``message``; the sender raises :class:`TransferRefused`.
* ``D`` frames carry the backend's stream unchanged (at most 16 MiB each;
  the sender writes up to 1 MiB per frame).
* ``T`` (trailer): the stream's length and XXH3-128 checksum.  TLS already
  authenticates every record on the wire; the checksum covers the stream
  end to end, from the sending backend's output to the receiving backend's
  input, at a cost small enough not to slow a stream down (SHA-256 cost
  each end nearly a CPU-second per GiB).  Only if both match
  what arrived does the receiver call the sink's ``finish``; otherwise it
  calls ``abort`` and answers ``checksum-mismatch`` / ``length-mismatch``
  (the sender raises :class:`TransferFailed`).
* The final ``S`` frame is sent after ``finish`` succeeded: the received
  snapshot is then durable and visible on the receiver.  A sender that sees
  the connection end without it raises :class:`TransferInterrupted`; the
  receiver then aborted (or, if the connection ended during ``finish``,
  completed) the receive.

Back-pressure runs end to end: the backend's stream source (``zfs send``)
is the producer of the TLS connection on the sender; on the receiver the
TLS connection is the producer of the backend's sink (``zfs recv``'s
standard input).  Each end holds at most a few MiB in flight (the worker
thread's limits in :mod:`flocker.transport`).

Failure at any point (connection cut, sender killed, checksum mismatch,
the receiving backend failing, e.g. a full disk, a bad header) ends in
``abort`` (or a refused ``finish``), which leaves the receiver's dataset
exactly as it was; the sender only reads its snapshot.
"""

from __future__ import annotations

from ._transfer_receiver import (
    TRANSFER_RECEIVE,
    TransferReceiver,
    _ReceiverProtocol,
    listen_for_transfers,
    transfer_service,
)
from ._transfer_sender import FRAME_SIZE, TRANSFER_SEND, _SenderProtocol, push
from ._transfer_values import (
    DestinationUnreachable,
    ProgressCallback,
    ReceiveOutcome,
    TransferProgress,
)
from ._transfer_wire import (
    TransferError,
    TransferFailed,
    TransferHeader,
    TransferInterrupted,
    TransferRefused,
    TransferResult,
)

__all__ = [
    "FRAME_SIZE",
    "TRANSFER_RECEIVE",
    "TRANSFER_SEND",
    "DestinationUnreachable",
    "ProgressCallback",
    "ReceiveOutcome",
    "TransferError",
    "TransferFailed",
    "TransferHeader",
    "TransferInterrupted",
    "TransferProgress",
    "TransferReceiver",
    "TransferRefused",
    "TransferResult",
    "listen_for_transfers",
    "push",
    "transfer_service",
]

# The protocols stay importable from here for the protocol's unit tests.
_PROTOCOLS = (_ReceiverProtocol, _SenderProtocol)
