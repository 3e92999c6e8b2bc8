"""Building the site base image for local pods, with progress a person can watch.

debootstrap (minimal Debian from the machine's own Debian mirror) → ``podman import`` →
``podman build`` of the layer that ``BaseImageRecipe`` describes (its Containerfile and its
context files: KioskHub's extensions and their Jupyter config). Each stage is skipped
when podman's storage already holds its result, so a second build takes a second.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from .pod_image import BaseImageRecipe, debian_mirror, read_apt_sources
from .podman_cli import podman_command, podman_env

Report = Callable[[str], None]


class BuildError(RuntimeError):
    """A stage of the base image build failed; the message says which and why."""


def missing_tools() -> list[str]:
    """The programs the build needs that this machine lacks."""
    return [tool for tool in ("podman", "debootstrap", "tar") if not shutil.which(tool)]


def image_exists(ref: str) -> bool:
    result = subprocess.run(
        podman_command("image", "exists", ref), env=podman_env(), capture_output=True
    )
    return result.returncode == 0


def default_recipe() -> BaseImageRecipe:
    """The recipe for this machine: its Debian mirror and the hub's server versions."""
    return BaseImageRecipe(mirror=debian_mirror(read_apt_sources()))


def build_base_image(
    recipe: BaseImageRecipe, report: Report = print, *, rebuild: bool = False
) -> str:
    """Make sure podman holds ``recipe.image_ref``; return it. Reports each step."""
    missing = missing_tools()
    if missing:
        raise BuildError(
            f"the base image build needs {', '.join(missing)}; install the Debian "
            f"package(s) {' '.join(missing)} (apt-get install {' '.join(missing)})"
        )
    if os.geteuid() != 0:
        raise BuildError("the base image build runs debootstrap and rootful podman: run it as root")
    start = time.monotonic()

    def step(number: int, text: str) -> None:
        report(f"[{number}/3 {time.monotonic() - start:5.0f}s] {text}")

    if not rebuild and image_exists(recipe.image_ref):
        step(3, f"{recipe.image_ref} is already in podman's storage; reusing it")
        return recipe.image_ref
    if rebuild or not image_exists(recipe.debian_ref):
        with tempfile.TemporaryDirectory(prefix="kioskhub-base-", dir="/var/tmp") as work:
            rootfs = Path(work) / "rootfs"
            step(1, f"Debian {recipe.suite} (minbase) from {recipe.mirror} with debootstrap")
            _debootstrap(recipe, rootfs, lambda text: step(1, text))
            step(2, f"Importing the Debian system into podman as {recipe.debian_ref}")
            _import(rootfs, recipe.debian_ref)
    else:
        step(2, f"{recipe.debian_ref} is already in podman's storage; reusing it")
    step(3, f"Adding Python and the server ({_versions(recipe)}) as {recipe.image_ref}")
    _build(recipe, lambda text: step(3, text))
    step(3, f"Done: {recipe.image_ref}")
    return recipe.image_ref


def _versions(recipe: BaseImageRecipe) -> str:
    return ", ".join(f"{name} {value}" for name, value in sorted(recipe.versions.items()))


def _stream(argv: list[str], report: Report, summarise, env=None, stdin=None) -> list[str]:
    """Run ``argv``, hand each line to ``summarise`` (which may report), return all lines."""
    process = subprocess.Popen(
        argv,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
        errors="replace",
    )
    lines = []
    assert process.stdout is not None
    for raw in process.stdout:
        line = raw.rstrip()
        lines.append(line)
        summarise(line, report)
    if process.wait() != 0:
        tail = "\n".join(lines[-15:])
        raise BuildError(f"`{' '.join(argv[:3])} ...` failed (exit {process.returncode}):\n{tail}")
    return lines


def _debootstrap(recipe: BaseImageRecipe, rootfs: Path, report: Report) -> None:
    counts: dict[str, int] = {}

    def summarise(line: str, report: Report) -> None:
        if not line.startswith("I: "):
            return
        verb = line[3:].split(" ", 1)[0]
        counts[verb] = counts.get(verb, 0) + 1
        if verb not in ("Retrieving", "Validating", "Extracting", "Unpacking", "Configuring"):
            report(line[3:])
        elif counts[verb] == 1 or counts[verb] % 25 == 0:
            report(f"{verb} packages ({counts[verb]} so far)")

    _stream(
        ["debootstrap", "--variant=minbase", recipe.suite, str(rootfs), recipe.mirror],
        report,
        summarise,
    )


def _import(rootfs: Path, ref: str) -> None:
    tar = subprocess.Popen(
        ["tar", "--numeric-owner", "-C", str(rootfs), "-cf", "-", "."], stdout=subprocess.PIPE
    )
    result = subprocess.run(
        podman_command("import", "--quiet", "-", ref),
        stdin=tar.stdout,
        env=podman_env(),
        capture_output=True,
        text=True,
    )
    assert tar.stdout is not None
    tar.stdout.close()
    if tar.wait() != 0 or result.returncode != 0:
        raise BuildError(f"podman import failed: {result.stderr.strip()}")


HOST_CA_IN_BUILD = "/run/kioskhub-host-ca.crt"


def host_package_access(env: dict[str, str] | None = None) -> tuple[list[str], list[str]]:
    """podman build options that give pip the host's CA bundle and package index.

    Sites behind a TLS-inspecting proxy trust its CA in the system store; a fresh Debian
    image does not, so the host's bundle is mounted (read-only) for the build's pip. An
    http(s) index that the host's pip is told to use through PIP_INDEX_URL is passed on.
    Returns (volume options, build-arg options).
    """
    env = dict(os.environ if env is None else env)
    bundle = next(
        (
            path
            for path in (
                env.get("PIP_CERT"),
                env.get("SSL_CERT_FILE"),
                "/etc/ssl/certs/ca-certificates.crt",
            )
            if path and Path(path).is_file()
        ),
        None,
    )
    volumes, build_args = [], []
    if bundle:
        volumes = ["--volume", f"{bundle}:{HOST_CA_IN_BUILD}:ro"]
        build_args = ["--build-arg", f"PIP_CERT={HOST_CA_IN_BUILD}"]
    index = env.get("PIP_INDEX_URL", "")
    if index.startswith(("http://", "https://")):
        build_args += ["--build-arg", f"PIP_INDEX_URL={index}"]
    return volumes, build_args


def _build(recipe: BaseImageRecipe, report: Report) -> None:
    def summarise(line: str, report: Report) -> None:
        if line.startswith(("STEP ", "Successfully", "COMMIT")) or "Successfully installed" in line:
            report(line[:160])
        elif line.startswith(("Collecting ", "Get:", "Setting up ")):
            summarise.count += 1
            if summarise.count % 20 == 0:
                report(f"  ... {line[:100]}")

    summarise.count = 0
    with tempfile.TemporaryDirectory(prefix="kioskhub-base-context-") as context:
        containerfile = Path(context) / "Containerfile"
        containerfile.write_text(recipe.containerfile())
        for name, text in recipe.context_files().items():
            (Path(context) / name).parent.mkdir(mode=0o755, exist_ok=True)
            (Path(context) / name).write_text(text)
        volumes, build_args = host_package_access()
        _stream(
            podman_command(
                "build",
                "--network",
                "host",
                "--layers=false",
                *volumes,
                *build_args,
                "-t",
                recipe.image_ref,
                "-f",
                str(containerfile),
                context,
            ),
            report,
            summarise,
            env=podman_env(),
        )
