"""Docker images built locally, with no registry: busybox from the host.

No container registry is reachable from Flocker's test machines, so every
image a test, the local cluster or ``admin/quickstart`` needs is built here
from files on the host and cached by tag: a second call finds the tag and
returns at once.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable

import docker
from docker.errors import ImageNotFound

#: The tag of the busybox image that tests and demos run.
BUSYBOX_IMAGE = "flocker-test/busybox:1"

#: Where the Debian package busybox-static puts the binary.
BUSYBOX_BINARY = "/bin/busybox"

_ROOT_DIRECTORIES = ("bin", "etc", "tmp", "proc", "sys", "dev", "data")


def busybox_rootfs_tar(binary: str = BUSYBOX_BINARY) -> bytes:
    """
    A root filesystem holding busybox and a link for each of its applets.

    :param binary: A statically linked busybox.
    :return: The filesystem as an uncompressed tar archive.
    """
    applets = subprocess.run(
        [binary, "--list"], check=True, capture_output=True, text=True
    ).stdout.split()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name in _ROOT_DIRECTORIES:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if name == "tmp" else 0o755
            archive.addfile(info)
        archive.add(binary, arcname="bin/busybox")
        for applet in applets:
            # Never link busybox to itself: the binary would be lost.
            if applet == "busybox":
                continue
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type = tarfile.SYMTYPE
            info.linkname = "busybox"
            archive.addfile(info)
        passwd = b"root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(passwd)
        archive.addfile(info, io.BytesIO(passwd))
    return buffer.getvalue()


def import_busybox_image(
    client: docker.DockerClient,
    tag: str,
    rootfs_tar: Callable[[str], bytes],
    changes: list[str],
) -> str:
    """
    Make sure an image built from the host's busybox exists in the engine.

    :param rootfs_tar: Given the busybox binary's path, the image's root
        filesystem as a tar.
    :param changes: Dockerfile instructions for ``docker import``.
    :return: The image's tag.  The image is imported only when no image has
        that tag yet.
    """
    try:
        client.images.get(tag)
        return tag
    except ImageNotFound:
        pass
    binary = shutil.which("busybox") or BUSYBOX_BINARY
    if not os.path.exists(binary):
        raise RuntimeError(
            "busybox is not installed: run admin/install-system-deps as root"
        )
    repository, _, version = tag.partition(":")
    client.api.import_image_from_data(
        rootfs_tar(binary),
        repository=repository,
        tag=version or "latest",
        changes=changes,
    )
    return tag


def ensure_busybox_image(
    client: docker.DockerClient, tag: str = BUSYBOX_IMAGE
) -> str:
    """
    Make sure the busybox image exists in the engine ``client`` talks to.

    :return: The image's tag.  The image is imported (``docker import``)
        only when no image has that tag yet.
    """
    return import_busybox_image(
        client, tag, busybox_rootfs_tar, ["ENV PATH=/bin", 'CMD ["/bin/sh"]']
    )
