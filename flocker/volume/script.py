"""
``flocker-volume``: an operator's command for one node's storage backend.

Run it as ``flocker-volume`` or ``python -m flocker.volume.script``::

    flocker-volume --backend zfs --pool flocker list
    flocker-volume --backend directory --root /var/lib/flocker create ID --size 1G
    flocker-volume ... snapshot ID s1
    flocker-volume ... read-only ID        (and: writable ID)
    flocker-volume ... send ID s2 --base s1 --to 10.0.0.2:4524 --certificates /etc/flocker
    flocker-volume ... receive --listen 4524 --certificates /etc/flocker [--forever]

Output is for people; an error is one line on standard error and a
non-zero exit code (1: the operation failed, 2: bad usage).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence
from typing import Any, NoReturn, TextIO
from uuid import UUID

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorProcess, IReactorTime
from twisted.internet.task import react

from ..ca import CertificateError, load_tls_files
from ._common import check_dataset_id
from ._interface import IVolumeBackend, VolumeError
from .transfer import (
    ReceiveOutcome,
    TransferError,
    TransferReceiver,
    listen_for_transfers,
    push,
)

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)


class UsageError(Exception):
    """The command line is wrong."""


def parse_size(text: str) -> int:
    """``"10M"`` -> 10485760; plain numbers are bytes; :class:`UsageError` else."""
    match = _SIZE.match(text)
    if match is None or int(match.group(1)) == 0:
        raise UsageError(
            f"bad size {text!r}: use a positive number of bytes, or with K, M, G, T"
        )
    return int(match.group(1)) * _UNITS[match.group(2).upper()]


def parse_address(text: str) -> tuple[str, int]:
    """``"HOST:PORT"`` (``[v6]:PORT`` too) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"bad address {text!r}: use HOST:PORT")
    return host.strip("[]"), int(port)


def _dataset(text: str) -> str:
    try:
        return check_dataset_id(text)
    except VolumeError:
        raise UsageError(f"bad dataset id {text!r}: it must be a UUID") from None


def _human(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(size)


class _Parser(argparse.ArgumentParser):
    """An argument parser that raises instead of printing and exiting."""

    def error(self, message: str) -> NoReturn:
        """Raise a UsageError."""
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    """The command line of flocker-volume."""
    parser = _Parser(prog="flocker-volume", description=__doc__.split("\n\n")[1])
    parser.add_argument(
        "--backend", choices=["zfs", "directory", "loopback"], default="zfs"
    )
    parser.add_argument("--pool", help="the ZFS pool (zfs backend)")
    parser.add_argument("--root", help="the backend's directory (directory, loopback)")
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_Parser
    )
    commands.required = True
    commands.add_parser("list", help="list the datasets")
    create = commands.add_parser("create", help="create a dataset")
    create.add_argument("dataset")
    create.add_argument("--size", help="maximum size, e.g. 10G")
    snapshot = commands.add_parser("snapshot", help="snapshot a dataset")
    snapshot.add_argument("dataset")
    snapshot.add_argument("name")
    snapshots = commands.add_parser("snapshots", help="list a dataset's snapshots")
    snapshots.add_argument("dataset")
    clone = commands.add_parser("clone", help="clone a snapshot into a new dataset")
    clone.add_argument("dataset")
    clone.add_argument("snapshot")
    clone.add_argument("new_dataset")
    read_only = commands.add_parser(
        "read-only", help="make a dataset read-only (as replicas are)"
    )
    read_only.add_argument("dataset")
    writable = commands.add_parser("writable", help="make a dataset writable again")
    writable.add_argument("dataset")
    rollback = commands.add_parser("rollback", help="roll a dataset back")
    rollback.add_argument("dataset")
    rollback.add_argument("snapshot")
    destroy = commands.add_parser("destroy", help="destroy a dataset (or a snapshot)")
    destroy.add_argument("dataset")
    destroy.add_argument("--snapshot", help="destroy only this snapshot")
    send = commands.add_parser("send", help="push a snapshot to another node")
    send.add_argument("dataset")
    send.add_argument("snapshot")
    send.add_argument("--to", required=True, metavar="HOST:PORT")
    send.add_argument("--certificates", required=True, metavar="DIR")
    send.add_argument("--base", help="send only the changes since this snapshot")
    send.add_argument("--node", help="accept only this node UUID as the receiver")
    receive = commands.add_parser("receive", help="receive pushed snapshots")
    receive.add_argument("--listen", required=True, type=int, metavar="PORT")
    receive.add_argument("--interface", default="", help="address to listen on")
    receive.add_argument("--certificates", required=True, metavar="DIR")
    receive.add_argument(
        "--forever", action="store_true", help="serve until killed, not one transfer"
    )
    return parser


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse and check a command line, or :class:`UsageError`."""
    options = build_parser().parse_args(list(argv))
    if options.backend == "zfs" and not options.pool:
        raise UsageError("--backend zfs needs --pool NAME")
    if options.backend in ("directory", "loopback") and not options.root:
        raise UsageError(f"--backend {options.backend} needs --root DIR")
    for name in ("dataset", "new_dataset"):
        if getattr(options, name, None) is not None:
            setattr(options, name, _dataset(getattr(options, name)))
    if getattr(options, "size", None) is not None:
        options.size = parse_size(options.size)
    if getattr(options, "to", None) is not None:
        options.to = parse_address(options.to)
    if getattr(options, "node", None) is not None:
        try:
            options.node = UUID(options.node)
        except ValueError:
            raise UsageError(f"bad node UUID {options.node!r}") from None
    if options.command == "receive" and not 0 <= options.listen < 65536:
        raise UsageError(f"bad port {options.listen}")
    return options


def make_backend(
    reactor: IReactorProcess, options: argparse.Namespace
) -> IVolumeBackend:
    """The backend the options select."""
    if options.backend == "zfs":
        from .zfs import ZFSVolumeBackend

        return ZFSVolumeBackend(reactor, options.pool)
    if options.backend == "directory":
        from .directory import DirectoryVolumeBackend

        return DirectoryVolumeBackend(reactor, options.root)
    try:
        from .loopback import LoopbackVolumeBackend
    except ImportError:
        raise UsageError("the loopback backend is not available here") from None
    return LoopbackVolumeBackend(reactor, options.root)


async def run(reactor: IReactorTime, argv: Sequence[str], stdout: TextIO, stderr: TextIO) -> int:
    """Run one flocker-volume command line; the exit code."""
    try:
        options = parse_args(argv)
        backend = make_backend(IReactorProcess(reactor), options)
        return await _COMMANDS[options.command](reactor, backend, options, stdout)
    except UsageError as error:
        stderr.write(f"flocker-volume: error: {error}\n")
        return 2
    except (VolumeError, TransferError, CertificateError, OSError) as error:
        stderr.write(f"flocker-volume: {error}\n")
        return 1


async def _list(reactor: IReactorTime, backend: IVolumeBackend, o: Any, out: TextIO) -> int:
    datasets = await backend.list_datasets()
    out.write(f"{'DATASET':36}  {'USED':>10}  {'MAXIMUM':>10}  MODE  PATH\n")
    for info in datasets:
        mode = "ro" if info.read_only else "rw"
        out.write(
            f"{info.dataset_id:36}  {_human(info.used):>10}  "
            f"{_human(info.maximum_size):>10}  {mode:4}  {info.path}\n"
        )
    return 0


async def _set_read_only(
    reactor: IReactorTime, backend: IVolumeBackend, o: Any, out: TextIO
) -> int:
    """``read-only`` and ``writable``: set the flag, say what it means here."""
    info = await backend.set_read_only(o.dataset, o.command == "read-only")
    state = "read-only" if info.read_only else "writable"
    note = ""
    if info.read_only and not backend.capabilities.enforces_read_only:
        note = " (recorded only: this backend cannot refuse writes)"
    out.write(f"{info.dataset_id} is {state}{note}\n")
    return 0


async def _create(reactor: IReactorTime, backend: IVolumeBackend, o: Any, out: TextIO) -> int:
    info = await backend.create(o.dataset, o.size)
    out.write(f"created {info.dataset_id} at {info.path}\n")
    return 0


async def _snapshot(reactor: IReactorTime, backend: IVolumeBackend, o: Any, out: TextIO) -> int:
    info = await backend.snapshot(o.dataset, o.name)
    out.write(f"snapshot {o.dataset}@{info.name}\n")
    return 0


async def _snapshots(reactor: IReactorTime, backend: IVolumeBackend, o: Any, out: TextIO) -> int:
    for info in await backend.list_snapshots(o.dataset):
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(info.created))
        out.write(f"{info.name}\t{created} UTC\n")
    return 0


async def _clone(reactor: IReactorTime, backend: IVolumeBackend, o: Any, out: TextIO) -> int:
    info = await backend.clone(o.dataset, o.snapshot, o.new_dataset)
    out.write(f"cloned {o.dataset}@{o.snapshot} to {info.dataset_id} at {info.path}\n")
    return 0


async def _rollback(reactor: IReactorTime, backend: IVolumeBackend, o: Any, out: TextIO) -> int:
    await backend.rollback(o.dataset, o.snapshot)
    out.write(f"rolled {o.dataset} back to {o.snapshot}\n")
    return 0


async def _destroy(reactor: IReactorTime, backend: IVolumeBackend, o: Any, out: TextIO) -> int:
    if o.snapshot is not None:
        await backend.destroy_snapshot(o.dataset, o.snapshot)
        out.write(f"destroyed {o.dataset}@{o.snapshot}\n")
    else:
        await backend.get(o.dataset)  # an unknown dataset is an operator's mistake
        await backend.destroy(o.dataset)
        out.write(f"destroyed {o.dataset}\n")
    return 0


async def _send(reactor: IReactorTime, backend: IVolumeBackend, o: Any, out: TextIO) -> int:
    tls = load_tls_files(o.certificates, "node")
    host, port = o.to
    started = time.monotonic()
    result = await push(
        reactor,
        backend,
        o.dataset,
        o.snapshot,
        o.base,
        host,
        port,
        tls,
        destination_node=o.node,
    )
    seconds = time.monotonic() - started
    rate = result.bytes_sent / seconds / 1e6 if seconds > 0 else 0.0
    kind = f"incremental from {o.base}" if o.base else "full"
    out.write(
        f"sent {o.dataset}@{o.snapshot} ({kind}) to {host}:{port}: "
        f"{result.bytes_sent} bytes in {seconds:.2f} s ({rate:.0f} MB/s)\n"
    )
    return 0


async def _receive(reactor: IReactorTime, backend: IVolumeBackend, o: Any, out: TextIO) -> int:
    tls = load_tls_files(o.certificates, "node")
    await backend.recover()
    ended: Deferred[ReceiveOutcome] = Deferred()

    def outcome(result: ReceiveOutcome) -> None:
        if result.ok:
            base = f" on {result.base}" if result.base else ""
            out.write(
                f"received {result.dataset_id}@{result.snapshot}{base} from node "
                f"{result.peer}: {result.bytes_received} bytes\n"
            )
        else:
            out.write(
                f"refused {result.dataset_id}@{result.snapshot} from node "
                f"{result.peer}: {result.message} ({result.code})\n"
            )
        out.flush()
        if not o.forever and not ended.called:
            ended.callback(result)

    receiver = TransferReceiver(backend, on_outcome=outcome)
    port = await listen_for_transfers(reactor, receiver, o.listen, tls, o.interface)
    number = port.getHost().port  # type: ignore[attr-defined]
    out.write(f"listening on port {number}\n")
    out.flush()
    result = await ended
    await maybeDeferred(port.stopListening)
    if not result.ok:
        raise TransferError(result.code or "failed", result.message or "failed")
    return 0


_COMMANDS = {
    "list": _list,
    "create": _create,
    "snapshot": _snapshot,
    "snapshots": _snapshots,
    "clone": _clone,
    "read-only": _set_read_only,
    "writable": _set_read_only,
    "rollback": _rollback,
    "destroy": _destroy,
    "send": _send,
    "receive": _receive,
}


def main(argv: Sequence[str] | None = None) -> None:
    """The ``flocker-volume`` console script."""
    arguments = list(sys.argv[1:] if argv is None else argv)

    async def command(reactor: IReactorTime) -> None:
        code = await run(reactor, arguments, sys.stdout, sys.stderr)
        if code:
            raise SystemExit(code)

    react(lambda reactor: Deferred.fromCoroutine(command(reactor)))


if __name__ == "__main__":
    main()
