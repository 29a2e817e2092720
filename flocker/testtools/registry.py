"""A real Docker registry on loopback for tests: `LocalRegistry`.

Each registry is a Debian ``docker-registry`` (distribution 2.8) process
serving from its own directory on a free port of 127.0.0.1; the Docker
Engine pulls from and pushes to 127.0.0.0/8 registries over plain HTTP with
no daemon setting.  With ``credentials`` it is private: it asks for HTTP
basic authentication (an htpasswd file with a bcrypt hash).  The process
dies with the test process (``PR_SET_PDEATHSIG``); `LocalRegistry.stop`
kills it and is safe to call twice.

The methods block; call them from fixtures and tests.
"""

from __future__ import annotations

import ctypes
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import Any

__all__ = ["LocalRegistry", "RegistryNotAvailable", "registry_available"]

#: How long a registry may take to answer.
START_TIMEOUT = 30.0


class RegistryNotAvailable(Exception):
    """No usable ``docker-registry`` binary on this machine."""


def registry_available() -> str | None:
    """Why no registry can be started here, or ``None`` if one can."""
    if shutil.which("docker-registry") is None:
        return "docker-registry is not installed (Debian package docker-registry)"
    return None


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL when the test process dies."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)


def _bcrypt(password: str) -> str:
    """A bcrypt hash of ``password``, as the registry's htpasswd wants."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # the libc's bcrypt ($2b$); Python 3.11 still has it

    return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))


class LocalRegistry:
    """
    One registry process.

    :ivar address: ``127.0.0.1:PORT``, the prefix of its image references.
    :ivar credentials: ``(username, password)`` of a private registry, or
        ``None``.
    """

    def __init__(
        self, directory: Path | str, credentials: tuple[str, str] | None = None
    ) -> None:
        """Start a registry serving from ``directory``; wait until it answers."""
        reason = registry_available()
        if reason is not None:
            raise RegistryNotAvailable(reason)
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.credentials = credentials
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.address = f"127.0.0.1:{port}"
        config = [
            "version: 0.1",
            "log: {level: warn}",
            "storage:",
            f"  filesystem: {{rootdirectory: {self.directory / 'data'}}}",
            "  delete: {enabled: true}",
            f"http: {{addr: '{self.address}'}}",
        ]
        if credentials is not None:
            htpasswd = self.directory / "htpasswd"
            htpasswd.write_text(f"{credentials[0]}:{_bcrypt(credentials[1])}\n")
            config += [
                "auth:",
                f"  htpasswd: {{realm: flocker-test, path: {htpasswd}}}",
            ]
        path = self.directory / "config.yml"
        path.write_text("\n".join(config) + "\n")
        self._log = (self.directory / "registry.log").open("ab")
        self.process: subprocess.Popen[bytes] | None = subprocess.Popen(
            ["docker-registry", "serve", str(path)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        self._wait()

    def _answers(self) -> bool:
        """Whether ``GET /v2/`` answers (401 counts for a private one)."""
        try:
            with urllib.request.urlopen(f"http://{self.address}/v2/", timeout=1):
                return True
        except urllib.error.HTTPError as error:
            return error.code == 401
        except OSError:
            return False

    def _wait(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers():
            process = self.process
            if process is not None and process.poll() is not None:
                log = (self.directory / "registry.log").read_text(errors="replace")
                raise RuntimeError(f"docker-registry exited: {log[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"docker-registry did not answer on {self.address}")
            time.sleep(0.05)

    def push(self, client: Any, image: str, name: str) -> str:
        """
        Push the engine's ``image`` here as ``name`` (``repository:tag``)
        and drop the local tag again, so the engine lacks the reference
        until it pulls it; the full reference.
        """
        reference = f"{self.address}/{name}"
        repository, tag = reference.rsplit(":", 1)
        client.images.get(image).tag(repository, tag)
        auth = None
        if self.credentials is not None:
            auth = {"username": self.credentials[0], "password": self.credentials[1]}
        try:
            for event in client.images.push(
                repository, tag=tag, stream=True, decode=True, auth_config=auth
            ):
                if "error" in event:
                    raise RuntimeError(f"push of {reference} failed: {event['error']}")
        finally:
            client.images.remove(reference)
        return reference

    def stop(self) -> None:
        """Kill the registry (its data directory stays)."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        self._log.close()
