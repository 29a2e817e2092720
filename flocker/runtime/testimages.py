"""
Test images for applications with data, built locally from busybox.

:data:`COUNTER_IMAGE` is a tiny HTTP service for tests and demos of
applications that keep data in a dataset.  Each request to ``/`` (any query
string, or a POST body) appends one line — the query string or the body —
to ``/data/requests.log`` and answers ``200`` with the number of lines the
file now holds, as text.  The append, an ``fsync`` of the file and the count
happen under a lock, so counts are exact under concurrent requests, and an
answered request is on disk.  On start the service removes a lock that a
killed predecessor left behind.

* Port 80 inside the container (:data:`COUNTER_PORT`).
* ``VERSION`` in the environment is sent back in each counted answer's
  ``X-Version`` header, so a client can tell which version of an updated
  application answered.
* ``COUNTER_FILE`` in the environment changes the file (default
  ``/data/requests.log``; its directory must exist, normally a bind-mounted
  dataset).  If it does not, requests are answered ``500``.
* SIGTERM stops it at once (``docker stop`` takes no grace period).
* ``/cgi-bin/relay.cgi?TEXT`` is for linked applications: it passes the
  request on to the application linked under the alias ``backend`` with
  local port 80 (``BACKEND_PORT_80_TCP_ADDR`` and ``…_PORT``, as Flocker's
  links set them) and answers ``200`` with ``relayed `` and the backend's
  answer, or ``502`` when the backend cannot be reached (``500`` without
  the link).

The image is built with ``docker import`` from the host's busybox (see
:mod:`flocker.testtools.images`) plus the service's scripts, and cached by
tag: :func:`ensure_counter_image` returns at once when the tag exists.
"""

from __future__ import annotations

import io
import tarfile

import docker

from flocker.testtools.images import (
    BUSYBOX_BINARY,
    busybox_rootfs_tar,
    import_busybox_image,
)

from ._interface import ContainerSpec, PublishedPort, VolumeBind

#: The tag of the request-counting HTTP service.  Change the version when
#: the scripts change, so that machines with the old image build the new one.
COUNTER_IMAGE = "flocker-test/counter:3"

#: The port the counter listens on inside its container.
COUNTER_PORT = 80

#: Where the counter keeps its data inside the container.
COUNTER_DATA = "/data"

_START = r"""#!/bin/sh
# Start the counter: clear a stale lock, run httpd, exit at once on SIGTERM.
file="${COUNTER_FILE:-/data/requests.log}"
rmdir "$file.lock" 2>/dev/null
httpd -f -p 80 -h /counter/www &
pid=$!
trap 'kill $pid 2>/dev/null; exit 0' TERM INT
wait $pid
"""

_CGI = r"""#!/bin/sh
# Append this request's text to the log; answer with the number of lines.
file="${COUNTER_FILE:-/data/requests.log}"
if [ ! -d "$(dirname "$file")" ]; then
    printf 'HTTP/1.1 500 No data directory\r\nContent-Type: text/plain\r\n\r\n'
    printf 'no directory for %s\n' "$file"
    exit 0
fi
if [ "$REQUEST_METHOD" = POST ]; then
    payload=$(head -c "${CONTENT_LENGTH:-0}" | tr -d '\r\n')
else
    payload="$QUERY_STRING"
fi
until mkdir "$file.lock" 2>/dev/null; do usleep 1000; done
printf '%s\n' "$payload" >> "$file"
sync -d "$file" 2>/dev/null || sync
count=$(wc -l < "$file")
rmdir "$file.lock"
printf 'Content-Type: text/plain\r\nX-Version: %s\r\n\r\n%s\n' "$VERSION" $count
"""


_RELAY = r"""#!/bin/sh
# Pass this request on to the linked "backend" application; answer with its reply.
addr="$BACKEND_PORT_80_TCP_ADDR"
port="$BACKEND_PORT_80_TCP_PORT"
if [ -z "$addr" ] || [ -z "$port" ]; then
    printf 'HTTP/1.1 500 No backend link\r\nContent-Type: text/plain\r\n\r\n'
    printf 'no link with the alias backend and local port 80\n'
    exit 0
fi
# busybox-static's wget crashes resolving even a literal address: speak HTTP/1.0 with nc.
reply=$(printf 'GET /?%s HTTP/1.0\r\n\r\n' "$QUERY_STRING" | nc -w 3 "$addr" "$port" 2>/dev/null | tr -d '\r')
status=$(printf '%s\n' "$reply" | head -n 1 | cut -d ' ' -f 2)
if [ "$status" = 200 ]; then
    body=$(printf '%s\n' "$reply" | sed '1,/^$/d')
    printf 'Content-Type: text/plain\r\n\r\nrelayed %s\n' "$body"
else
    printf 'HTTP/1.1 502 Backend unreachable\r\nContent-Type: text/plain\r\n\r\n'
    printf 'backend %s:%s unreachable\n' "$addr" "$port"
fi
"""


def _add(archive: tarfile.TarFile, name: str, data: bytes | None, mode: int) -> None:
    """Add a directory (``data`` None) or a file to ``archive``."""
    info = tarfile.TarInfo(name)
    info.mode = mode
    if data is None:
        info.type = tarfile.DIRTYPE
        archive.addfile(info)
    else:
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))


def counter_rootfs_tar(binary: str = BUSYBOX_BINARY) -> bytes:
    """The counter's root filesystem: busybox plus the scripts, as a tar."""
    buffer = io.BytesIO(busybox_rootfs_tar(binary))
    buffer.seek(0)
    with tarfile.open(fileobj=buffer, mode="a") as archive:
        for directory in ("counter", "counter/www", "counter/www/cgi-bin"):
            _add(archive, directory, None, 0o755)
        _add(archive, "counter/start", _START.encode(), 0o755)
        _add(archive, "counter/www/cgi-bin/index.cgi", _CGI.encode(), 0o755)
        _add(archive, "counter/www/cgi-bin/relay.cgi", _RELAY.encode(), 0o755)
    return buffer.getvalue()


def ensure_counter_image(client: docker.DockerClient, tag: str = COUNTER_IMAGE) -> str:
    """
    Make sure the counter image exists in the engine ``client`` talks to.

    :return: The image's tag.  The image is imported only when no image has
        that tag yet.
    """
    return import_busybox_image(
        client,
        tag,
        counter_rootfs_tar,
        ["ENV PATH=/bin", f"EXPOSE {COUNTER_PORT}/tcp", 'CMD ["/counter/start"]'],
    )


def counter_spec(
    name: str,
    data_path: str,
    external_port: int,
    host_ip: str = "0.0.0.0",
    image: str = COUNTER_IMAGE,
) -> ContainerSpec:
    """
    A spec running the counter with ``data_path`` as its data directory.

    :param data_path: The host directory (a dataset's mount path) mounted at
        :data:`COUNTER_DATA`; ``requests.log`` in it is the counter's file.
    :param external_port: Published on ``host_ip``, reaching port 80.
    """
    return ContainerSpec(
        name=name,
        image=image,
        ports=[
            PublishedPort(
                internal_port=COUNTER_PORT,
                external_port=external_port,
                host_ip=host_ip,
            )
        ],
        volumes=[VolumeBind(host_path=data_path, container_path=COUNTER_DATA)],
    )
