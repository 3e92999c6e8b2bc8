"""``kioskhub image ...``: images for local pods (the podman backend).

- ``kioskhub image build-base``: build the site base image (Debian via debootstrap, then
  Python with the server, the Dask Gateway client and KioskHub's server extensions at the
  hub's versions) and show each step; reuses podman's storage when the image is there;
- ``kioskhub image name``: print the base image's reference (what ``pods.image`` defaults to).
"""

from __future__ import annotations

import argparse
import sys

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
