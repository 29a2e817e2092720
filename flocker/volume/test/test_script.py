"""Tests of the ``flocker-volume`` command: parsing, operations, errors."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor

from ..script import UsageError, parse_address, parse_args, parse_size, run

DATASET = "6f2bb4a7-7c3a-4a7e-9b6e-0d1f1e7c2a01"
CLONE = "0b9c1f84-1d63-4fd0-8b5a-3cc0f9f6a702"
ROOT = Path(__file__).resolve().parents[3]


# --------------------------------------------------------------------------
# Parsing (unit)


@pytest.mark.parametrize(
    "text, size",
    [("1", 1), ("10K", 10240), ("10M", 10 * 1024**2), ("2g", 2 * 1024**3),
     ("1GiB", 1024**3), ("3 T", 3 * 1024**4), ("5MB", 5 * 1024**2)],
)  # fmt: skip
def test_parse_size(text: str, size: int) -> None:
    """Sizes are bytes, or binary multiples with K, M, G, T."""
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "0", "-1", "1.5G", "ten", "10X", "G"])
def test_parse_size_bad(text: str) -> None:
    """A size that is not a positive whole amount is a usage error."""
    with pytest.raises(UsageError, match="bad size"):
        parse_size(text)


def test_parse_address() -> None:
    """HOST:PORT, including bracketed IPv6 addresses."""
    assert parse_address("10.0.0.2:4524") == ("10.0.0.2", 4524)
    assert parse_address("[::1]:1") == ("::1", 1)
    for bad in ("host", ":1", "host:", "host:0", "host:70000", "host:x"):
        with pytest.raises(UsageError, match="bad address"):
            parse_address(bad)


def test_parse_args_normalizes() -> None:
    """Dataset ids come out canonical, sizes as bytes, addresses split."""
    options = parse_args(
        [
            "--backend",
            "directory",
            "--root",
            "/r",
            "create",
            DATASET.upper(),
            "--size",
            "1M",
        ]
    )
    assert (options.dataset, options.size) == (DATASET, 1024**2)
    options = parse_args(
        ["--pool", "p", "send", DATASET, "s1", "--to", "h:1", "--certificates", "d"]
    )
    assert (options.backend, options.to, options.base) == ("zfs", ("h", 1), None)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["list"], "--pool"),
        (["--backend", "directory", "list"], "--root"),
        (["--backend", "btrfs", "list"], "invalid choice"),
        (["--pool", "p"], "required"),
        (["--pool", "p", "create", "not-a-uuid"], "bad dataset id"),
        (["--pool", "p", "create", DATASET, "--size", "0"], "bad size"),
        (["--pool", "p", "clone", DATASET, "s", "x"], "bad dataset id"),
        (["--pool", "p", "send", DATASET, "s1", "--certificates", "d"], "--to"),
        (["--pool", "p", "send", DATASET, "s1", "--to", "h", "--certificates", "d"],
         "bad address"),
        (["--pool", "p", "send", DATASET, "s", "--to", "h:1", "--certificates", "d",
          "--node", "x"], "bad node UUID"),
        (["--pool", "p", "receive", "--listen", "x", "--certificates", "d"], "invalid int"),
        (["--pool", "p", "receive", "--listen", "70000", "--certificates", "d"],
         "bad port"),
        (["--pool", "p", "frob"], "invalid choice"),
    ],
)  # fmt: skip
def test_parse_args_bad(argv: list[str], message: str) -> None:
    """Bad command lines are usage errors that say what is wrong."""
    with pytest.raises(UsageError, match=message):
        parse_args(argv)


# --------------------------------------------------------------------------
# Running commands against a real directory backend (functional)


async def volume(root: Path, *argv: str) -> tuple[int, str, str]:
    """Run a flocker-volume command line in this process."""
    out, err = io.StringIO(), io.StringIO()
    code = await run(
        reactor, ["--backend", "directory", "--root", str(root), *argv], out, err
    )
    return code, out.getvalue(), err.getvalue()


@pytest.mark.functional
@pytest_twisted.ensureDeferred
async def test_operations(tmp_path: Path) -> None:
    """create, snapshot, snapshots, clone, rollback, list and destroy work."""
    code, out, err = await volume(tmp_path, "create", DATASET, "--size", "10M")
    assert (code, err) == (0, "") and out.startswith(f"created {DATASET} at ")
    path = Path(out.split(" at ", 1)[1].strip())
    (path / "file").write_bytes(b"one")
    assert (await volume(tmp_path, "snapshot", DATASET, "s1"))[:2] == (
        0,
        f"snapshot {DATASET}@s1\n",
    )
    (path / "file").write_bytes(b"two")
    await volume(tmp_path, "snapshot", DATASET, "s2")
    code, out, _ = await volume(tmp_path, "snapshots", DATASET)
    assert [line.split("\t")[0] for line in out.splitlines()] == ["s1", "s2"]
    code, out, _ = await volume(tmp_path, "clone", DATASET, "s1", CLONE)
    assert code == 0 and f"to {CLONE}" in out
    code, out, _ = await volume(tmp_path, "list")
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["DATASET", "USED", "MAXIMUM"]
    assert [line.split()[0] for line in lines[1:]] == sorted([DATASET, CLONE])
    assert "10.0 MiB" in out
    assert (await volume(tmp_path, "rollback", DATASET, "s1"))[0] == 0
    assert (path / "file").read_bytes() == b"one"
    assert (await volume(tmp_path, "snapshots", DATASET))[1].count("\n") == 1
    code, out, _ = await volume(tmp_path, "destroy", DATASET, "--snapshot", "s1")
    assert code == 0 and out == f"destroyed {DATASET}@s1\n"
    code, out, _ = await volume(tmp_path, "destroy", CLONE)
    assert (code, out) == (0, f"destroyed {CLONE}\n")
    code, out, _ = await volume(tmp_path, "list")
    assert [line.split()[0] for line in out.splitlines()[1:]] == [DATASET]


@pytest.mark.functional
@pytest_twisted.ensureDeferred
async def test_read_only_commands(tmp_path: Path) -> None:
    """
    ``read-only`` and ``writable`` set the flag, saying when the backend
    only records it; ``list`` shows each dataset's mode.
    """
    await volume(tmp_path, "create", DATASET)
    code, out, _ = await volume(tmp_path, "list")
    assert out.splitlines()[0].split()[-2] == "MODE"
    assert out.splitlines()[1].split()[-2] == "rw"
    code, out, err = await volume(tmp_path, "read-only", DATASET)
    assert (code, err) == (0, "")
    assert out == f"{DATASET} is read-only (recorded only: this backend cannot refuse writes)\n"
    code, out, _ = await volume(tmp_path, "list")
    assert out.splitlines()[1].split()[-2] == "ro"
    code, out, _ = await volume(tmp_path, "writable", DATASET)
    assert (code, out) == (0, f"{DATASET} is writable\n")
    code, out, err = await volume(tmp_path, "writable", CLONE)
    assert code == 1 and f"no dataset {CLONE}" in err


@pytest.mark.functional
@pytest.mark.parametrize(
    "argv, message",
    [
        (["snapshot", CLONE, "s1"], f"no dataset {CLONE}"),
        (["snapshots", CLONE], f"no dataset {CLONE}"),
        (["destroy", CLONE], f"no dataset {CLONE}"),
        (["rollback", DATASET, "nope"], "no snapshot 'nope'"),
        (["snapshot", DATASET, "bad/name"], "bad snapshot name"),
        (["create", DATASET], "already exists"),
        (["clone", DATASET, "nope", CLONE], "no snapshot 'nope'"),
        (["send", DATASET, "nope", "--to", "127.0.0.1:1", "--certificates", "/nonexistent"],
         "does not exist"),
    ],
)  # fmt: skip
@pytest_twisted.ensureDeferred
async def test_operation_errors(tmp_path: Path, argv: list[str], message: str) -> None:
    """A failed operation is one line on stderr and exit code 1."""
    await volume(tmp_path, "create", DATASET)
    code, out, err = await volume(tmp_path, *argv)
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("flocker-volume: ")
    assert message in err


@pytest.mark.functional
@pytest_twisted.ensureDeferred
async def test_send_unreachable(tmp_path: Path) -> None:
    """Sending to a port nobody listens on says the host is unreachable."""
    from flocker.ca.testtools import make_test_cluster_credentials

    credentials_dir = tmp_path / "credentials"
    credentials_dir.mkdir()
    credentials = make_test_cluster_credentials(credentials_dir)
    root = tmp_path / "node"
    await volume(root, "create", DATASET)
    await volume(root, "snapshot", DATASET, "s1")
    code, _, err = await volume(
        root, "send", DATASET, "s1", "--to", "127.0.0.1:1",
        "--certificates", str(credentials.node_directories[0]),
    )  # fmt: skip
    assert code == 1
    assert "cannot connect to 127.0.0.1:1" in err and err.count("\n") == 1


def command(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m flocker.volume.script`` as a real process."""
    return subprocess.run(
        [sys.executable, "-m", "flocker.volume.script", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.functional
def test_process_exit_codes(tmp_path: Path) -> None:
    """As a process: success exits 0, usage errors 2, failures 1; one line each."""
    base = ["--backend", "directory", "--root", str(tmp_path)]
    ok = command(*base, "create", DATASET)
    assert ok.returncode == 0 and ok.stderr == ""
    usage = command(*base, "create", "nope")
    assert usage.returncode == 2
    assert (
        usage.stderr
        == "flocker-volume: error: bad dataset id 'nope': it must be a UUID\n"
    )
    failed = command(*base, "snapshots", CLONE)
    assert failed.returncode == 1
    assert failed.stderr == f"flocker-volume: no dataset {CLONE}\n"
    assert command("--help").returncode == 0


@pytest.mark.functional
@pytest.mark.parametrize("kind", ["zfs", "loopback"])
@pytest_twisted.ensureDeferred
async def test_other_backends(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """--backend zfs --pool and --backend loopback --root select those backends."""
    if kind == "zfs":
        pool = request.getfixturevalue("make_zfs_pool")(size="1G")
        options = ["--backend", "zfs", "--pool", pool.name]
    else:
        options = ["--backend", "loopback", "--root", str(tmp_path / "loop")]

    async def volume_with(*argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = await run(reactor, [*options, *argv], out, err)
        return code, out.getvalue(), err.getvalue()

    code, out, err = await volume_with("create", DATASET, "--size", "64M")
    assert (code, err) == (0, ""), err
    code, out, _ = await volume_with("list")
    assert DATASET in out and "64.0 MiB" in out
    assert (await volume_with("snapshot", DATASET, "s1"))[0] == 0
    code, out, _ = await volume_with("snapshots", DATASET)
    assert out.startswith("s1\t")
    assert (await volume_with("destroy", DATASET))[0] == 0
    code, out, _ = await volume_with("list")
    assert DATASET not in out
