"""Tests for the flocker-ca command line (flocker.ca.script)."""

import io
import os
import subprocess
import sys
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from flocker.ca import identify_certificate, load_authority, load_credential
from flocker.ca.script import main


def run(*argv: str) -> tuple[int, str, str]:
    """Run ``flocker-ca`` in-process; return (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    """A directory where ``flocker-ca initialize`` has run."""
    status, _, _ = run("initialize", "test", "--outputpath", str(tmp_path))
    assert status == 0
    return tmp_path


def test_initialize(tmp_path: Path) -> None:
    """initialize writes the CA files and prints one line naming the cluster UUID."""
    status, out, err = run("initialize", "prod", "--outputpath", str(tmp_path))
    assert (status, err) == (0, "")
    authority = load_authority(tmp_path, with_key=True)
    assert authority.cluster_name == "prod"
    assert out.count("\n") == 1
    assert str(authority.cluster_uuid) in out


def test_all_certificates(ca_dir: Path, tmp_path: Path) -> None:
    """Each create command writes its files to --outputpath using the CA in --inputpath."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    paths = ["--inputpath", str(ca_dir), "--outputpath", str(out_dir)]
    assert run("create-control-certificate", "127.0.0.11", *paths)[0] == 0
    assert run("create-api-certificate", "alice", *paths)[0] == 0
    node_uuid = uuid4()
    status, out, _ = run("create-node-certificate", "--uuid", str(node_uuid), *paths)
    assert status == 0
    assert str(node_uuid) in out
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(
        [
            "control-127.0.0.11.crt",
            "control-127.0.0.11.key",
            "alice.crt",
            "alice.key",
            f"{node_uuid}.crt",
            f"{node_uuid}.key",
        ]
    )
    identity = identify_certificate(
        load_credential(out_dir, str(node_uuid)).certificate
    )
    assert identity.node_uuid == node_uuid
    assert identity.cluster_uuid == load_authority(ca_dir).cluster_uuid


def test_node_certificate_random_uuid(ca_dir: Path) -> None:
    """Without --uuid a node certificate gets a fresh UUID, printed and used as the file name."""
    paths = ["--inputpath", str(ca_dir), "--outputpath", str(ca_dir)]
    status, out, _ = run("create-node-certificate", *paths)
    assert status == 0
    (crt,) = [p for p in ca_dir.glob("*.crt") if p.name != "cluster.crt"]
    node_uuid = UUID(crt.stem)
    assert str(node_uuid) in out


def test_defaults_to_current_directory(
    ca_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--inputpath and --outputpath default to the current directory."""
    monkeypatch.chdir(ca_dir)
    assert run("create-api-certificate", "bob")[0] == 0
    assert (ca_dir / "bob.crt").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["create-control-certificate", "bad host"], "Invalid hostname"),
        (["create-api-certificate", "../evil"], "Invalid username"),
        (["create-api-certificate", "cluster"], "Invalid username"),
    ],
)
def test_bad_names(ca_dir: Path, argv: list[str], message: str) -> None:
    """Bad hostnames and usernames fail with one line on stderr and status 1."""
    status, out, err = run(
        *argv, "--inputpath", str(ca_dir), "--outputpath", str(ca_dir)
    )
    assert status == 1
    assert out == ""
    assert err.count("\n") == 1
    assert message in err


def test_missing_ca(tmp_path: Path) -> None:
    """Creating a certificate without a CA fails with a one-line hint."""
    status, _, err = run(
        "create-api-certificate", "alice", "--inputpath", str(tmp_path)
    )
    assert status == 1
    assert "No cluster CA found" in err
    assert err.count("\n") == 1


def test_no_overwrite(ca_dir: Path) -> None:
    """Existing files are not overwritten: initialize and create commands fail."""
    before = (ca_dir / "cluster.crt").read_bytes()
    status, _, err = run("initialize", "again", "--outputpath", str(ca_dir))
    assert status == 1
    assert "already exists" in err
    assert (ca_dir / "cluster.crt").read_bytes() == before
    paths = ["--inputpath", str(ca_dir), "--outputpath", str(ca_dir)]
    assert run("create-api-certificate", "alice", *paths)[0] == 0
    status, _, err = run("create-api-certificate", "alice", *paths)
    assert status == 1
    assert "alice.crt already exists" in err


def test_missing_output_directory(ca_dir: Path, tmp_path: Path) -> None:
    """A missing output directory fails with status 1."""
    status, _, err = run(
        "create-api-certificate", "a", "--inputpath", str(ca_dir),
        "--outputpath", str(tmp_path / "nope"),
    )  # fmt: skip
    assert status == 1
    assert "does not exist" in err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["initialize"],
        ["create-control-certificate"],
        ["create-api-certificate"],
        ["create-node-certificate", "--uuid", "not-a-uuid"],
        ["initialize", "x", "--inputpath", "."],
    ],
)
def test_usage_errors(argv: list[str]) -> None:
    """Malformed command lines exit with status 2 and a usage message."""
    status, out, err = run(*argv)
    assert status == 2
    assert "usage: flocker-ca" in err


def test_help() -> None:
    """--help prints usage to stdout and exits 0."""
    status, out, _ = run("--help")
    assert status == 0
    assert "create-node-certificate" in out


def test_subprocess(tmp_path: Path) -> None:
    """``python -m flocker.ca.script`` works as a real process, errors included."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[3]))

    def flocker_ca(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "flocker.ca.script", *argv],
            cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip

    result = flocker_ca("initialize", "sub")
    assert result.returncode == 0, result.stderr
    result = flocker_ca("create-control-certificate", "control.example")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "control-control.example.crt").exists()
    result = flocker_ca("create-control-certificate", "control.example")
    assert result.returncode == 1
    assert result.stderr.startswith("flocker-ca: error:")
    assert result.stderr.count("\n") == 1
