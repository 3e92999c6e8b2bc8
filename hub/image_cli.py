"""``kioskhub image ...``: images for local pods (the podman backend).

- ``kioskhub image build-base``: build the site base image (Debian via debootstrap, then
  Python with the server, the Dask Gateway client and KioskHub's server extensions at the
  hub's versions) and show each step; reuses podman's storage when the image is there;
- ``kioskhub image name``: print the base image's reference (what ``pods.image`` defaults to);
- ``kioskhub image build-env SOURCE_DIR --name NAME``: build an environment image from a
  checked-out repository on the site base image (``image_builder.podman_image_builder``),
  optionally push it, and with ``--json`` end with a line that pins it by digest.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from kioskhub.hub.schema.builder import BuilderSettings
from kioskhub.image_builder.build_identity import identity_pool
from kioskhub.image_builder.build_log import BuildLog
from kioskhub.image_builder.builder_base import BuildFailed
from kioskhub.image_builder.podman_image_builder import BuildOptions, build_source_folder
from kioskhub.spawner.pod_image_build import BuildError, build_base_image, default_recipe


def add_image_command(commands) -> None:
    """Add ``image`` and its subcommands to the ``kioskhub`` parser's subcommands."""
    image = commands.add_parser(
        "image",
        help="Images for local pods: build the site base image.",
        description="Images for local pods (spawner.backend: podman).",
    )
    subs = image.add_subparsers(dest="image_command", metavar="IMAGE_COMMAND", required=True)
    build = subs.add_parser(
        "build-base",
        help="Build the site base image with podman (Debian + Python + JupyterLab).",
        description="Build the site base image with podman, without a registry: Debian "
        "(debootstrap --variant=minbase, from this machine's Debian mirror), then Python "
        "with jupyterhub, jupyterlab, ipykernel, the Dask Gateway client and KioskHub's "
        "server extensions at the hub's versions.",
    )
    build.add_argument(
        "--rebuild", action="store_true", help="build again even when podman holds the image"
    )
    build.set_defaults(run=build_base)
    name = subs.add_parser("name", help="Print the site base image's reference.")
    name.set_defaults(run=print_name)
    add_build_env_command(subs)


def add_build_env_command(subs) -> None:
    env = subs.add_parser(
        "build-env",
        help="Build an environment image from a checked-out repository (podman, no daemon).",
        description="Build an environment image from the repository checked out in SOURCE_DIR "
        "on the site base image: apt.txt, requirements.txt, environment.yml (pip part), "
        "setup.py / pyproject.toml, postBuild, start. Layers are cached; an unchanged "
        "repository reuses its image.",
    )
    env.add_argument("source_dir", metavar="SOURCE_DIR", help="the checked-out repository")
    env.add_argument("--name", required=True, help="image name (NAME or NAME:TAG) to tag")
    env.add_argument(
        "--base-image", default="", help="image to build on (default: the site base image)"
    )
    env.add_argument(
        "--push", metavar="REPOSITORY", help="push to REPOSITORY:TAG (TAG: NAME's, else the key)"
    )
    env.add_argument(
        "--insecure-registry", action="store_true", help="push over plain HTTP (no TLS checks)"
    )
    env.add_argument("--allow-dockerfile", action="store_true", help="build a Dockerfile too")
    env.add_argument(
        "--no-cache", action="store_true", help="build every layer again (no layer cache)"
    )
    env.add_argument(
        "--network",
        choices=("private", "none", "host"),
        default="private",
        help="network of the build's steps (default: private)",
    )
    env.add_argument(
        "--json", action="store_true", help="end with one JSON line: image, reference, digest"
    )
    env.set_defaults(run=build_env)


class PrintedBuildLog(BuildLog):
    """A build log that also prints each line as it comes."""

    def __init__(self, stream) -> None:
        super().__init__()
        self.stream = stream

    def line(self, text: str) -> None:
        super().line(text)
        print(text, file=self.stream, flush=True)


def build_env(args: argparse.Namespace) -> int:
    settings = BuilderSettings()
    options = BuildOptions(
        base_image=args.base_image or default_recipe().image_ref,
        registry_insecure=args.insecure_registry,
        allow_dockerfile=args.allow_dockerfile,
        network=args.network,
        use_layer_cache=not args.no_cache,
        memory_mb=settings.build_memory_mb,
        timeout=settings.build_timeout,
    )
    log = PrintedBuildLog(sys.stdout)
    try:
        built = asyncio.run(
            build_source_folder(
                Path(args.source_dir),
                args.name,
                options,
                identity_pool(settings),
                log,
                repository=args.push,
            )
        )
    except (BuildFailed, OSError) as error:
        print(f"kioskhub image build-env: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(
            json.dumps({"image": args.name, "reference": built.reference, "digest": built.digest})
        )
    else:
        print(built.reference)
    return 0


def build_base(args: argparse.Namespace) -> int:
    recipe = default_recipe()
    try:
        ref = build_base_image(recipe, lambda line: print(line, flush=True), rebuild=args.rebuild)
    except BuildError as error:
        print(f"kioskhub image build-base: {error}", file=sys.stderr)
        return 1
    print(ref)
    return 0


def print_name(args: argparse.Namespace) -> int:
    print(default_recipe().image_ref)
    return 0
