"""Pulling an environment's image for the podman backend: which registry, with which TLS
checks, and what of podman's output a user watching the start sees.

Pure, except ``ensure_image``. An image reference names its registry the way Docker and
podman read it (``localhost:5000/kioskhub/env@sha256:...`` → ``localhost:5000``); TLS is
verified for every registry except those the site lists in ``pods.insecure_registries``
(a registry on loopback served over plain HTTP). ``localhost/NAME`` (no port) is podman's
name for an image built on this machine: it is never pulled.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from .podman_cli import PodmanError, run_podman, stream_podman

DOCKER_HUB = "docker.io"
LOCAL_ONLY = "localhost"
"""The registry part of images that exist only in this machine's podman storage."""


IMAGE_REFERENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]*")
"""What an image reference may hold; it never starts with '-', so podman never reads it as
an option, whoever wrote it (the site config, or a build recorded in the catalog)."""


class ImageUnavailable(RuntimeError):
    """The image is not in podman's storage and cannot be pulled; the message says why."""


def check_reference(ref: str) -> None:
    """ImageUnavailable unless ``ref`` has the shape of an image reference."""
    if not IMAGE_REFERENCE.fullmatch(ref) or len(ref) > 512:
        raise ImageUnavailable(
            f"{ref!r} is not an image reference (like registry.example.org/lab/env:tag or "
            "localhost:5000/lab/env@sha256:...); the site's admins must correct the "
            "environment's image."
        )


def image_registry(ref: str) -> str:
    """The registry of an image reference: 'localhost:5000/a/b@sha256:..' → 'localhost:5000',
    'quay.io/jupyter/base' → 'quay.io', 'debian:12' → 'docker.io'."""
    first, slash, _ = ref.partition("/")
    if slash and ("." in first or ":" in first or first == LOCAL_ONLY):
        return first
    return DOCKER_HUB


def pull_arguments(ref: str, insecure_registries: Iterable[str]) -> tuple[str, ...] | None:
    """podman's arguments to pull ``ref``; None for an image that only this machine has."""
    registry = image_registry(ref)
    if registry == LOCAL_ONLY:
        return None
    tls = ("--tls-verify=false",) if registry in set(insecure_registries) else ()
    return ("pull", *tls, ref)


def tls_arguments(ref: str, insecure_registries: Iterable[str]) -> tuple[str, ...]:
    """``--tls-verify=false`` for ``podman kube play`` where ``ref``'s registry is insecure."""
    return ("--tls-verify=false",) if image_registry(ref) in set(insecure_registries) else ()


_BLOB = re.compile(r"^Copying (blob|config) (sha256:)?([0-9a-f]{12})[0-9a-f]*\s*(.*)$")


def pull_progress(line: str) -> str | None:
    """What one line of ``podman pull``'s output tells a user; None for noise."""
    if line.startswith("Trying to pull "):
        return f"Pulling {line.removeprefix('Trying to pull ').rstrip('.')}"
    match = _BLOB.match(line)
    if match:
        kind, _, short, rest = match.groups()
        done = " (already here)" if "skipped" in rest or "already exists" in rest else ""
        return f"Copying {'layer' if kind == 'blob' else 'image config'} {short}{done}"
    if line.startswith("Writing manifest"):
        return "Writing the image to podman's storage"
    return None


async def ensure_image(
    ref: str, insecure_registries: Iterable[str], report: Callable[[str], None]
) -> bool:
    """Make sure podman holds ``ref``, pulling it if needed; True when it was pulled.

    Raises ImageUnavailable with a message for the user when it is neither here nor
    pullable.
    """
    check_reference(ref)
    found = await run_podman("image", "exists", ref, check=False)
    if found.returncode == 0:
        return False
    arguments = pull_arguments(ref, insecure_registries)
    if arguments is None:
        raise ImageUnavailable(
            f"The image {ref} is not in podman's storage on this machine. The site's admins "
            "can build the site base image with `kioskhub image build-base`."
        )

    def on_line(line: str) -> None:
        text = pull_progress(line)
        if text:
            report(text)

    try:
        await stream_podman(*arguments, on_line=on_line)
    except PodmanError as error:
        raise ImageUnavailable(
            f"The image {ref} is not on this machine and could not be pulled from "
            f"{image_registry(ref)}: {error}"
        ) from None
    return True
