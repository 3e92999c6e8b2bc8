"""A repository's container spec → a Containerfile on the site base image. Pure.

The layers go from what changes least to what changes most, so that podman's layer cache
(``--layers``) reuses the early ones: the image made ours (root, once per base image), the
Debian packages of ``apt.txt`` (root), the pip requirements (``requirements.txt``, then the
pip part of ``environment.yml``), the repository's files and ``pip install .``, ``postBuild``,
then ``start`` as the entrypoint wrapper. Everything after the apt layer runs as the image's
user (jovyan, uid 1000), who owns the Python environment (``/opt/kioskhub``) as in
repo2docker's images.

The build context holds only ``kioskhub/`` (files this module writes: the requirements, read
as data) and ``repo/`` (the checkout); a Containerfile line never quotes the repository's
content except Debian package names that passed ``DEBIAN_PACKAGE``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from .container_spec import ContainerSpec

IMAGE_USER = "jovyan"
IMAGE_UID = 1000
IMAGE_GID = 100
IMAGE_HOME = "/home/jovyan"
IMAGE_PREFIX = "/opt/kioskhub"
REPO_DIR = "/srv/repo"
STAGING = "/tmp/kioskhub-build"
RECIPE_VERSION = "1"
"""Part of every image key: raise it when the recipe changes in a way its text does not show."""
PIP_OPTIONS = "--no-cache-dir --progress-bar off --disable-pip-version-check"


@dataclass(frozen=True)
class Step:
    """One Containerfile instruction and what a person calls it in a message."""

    text: str
    label: str = ""


@dataclass(frozen=True)
class ImageRecipe:
    """The Containerfile's steps and the files the recipe writes into ``kioskhub/``."""

    steps: tuple[Step, ...]
    context_files: dict[str, bytes]

    @property
    def containerfile(self) -> str:
        return "\n".join(step.text for step in self.steps) + "\n"

    def label_of_step(self, number: int) -> str:
        """The label of podman's ``STEP number/N`` (1-based, FROM is step 1)."""
        if 1 <= number <= len(self.steps):
            return self.steps[number - 1].label
        return ""


def image_recipe(spec: ContainerSpec, base_image: str) -> ImageRecipe:
    """The recipe for ``spec`` on ``base_image`` (see the module docstring for the order)."""
    owner = f"{IMAGE_UID}:{IMAGE_GID}"
    steps = [
        Step(f"FROM {base_image}"),
        Step("USER root"),
        Step(
            f"RUN chown -R {owner} {IMAGE_PREFIX} \\\n"
            f" && install -d -o {IMAGE_UID} -g {IMAGE_GID} {REPO_DIR} {STAGING}",
            "giving the Python environment to the image's user",
        ),
    ]
    files: dict[str, bytes] = {}
    if spec.apt_packages:
        names = " ".join(package.name for package in spec.apt_packages)
        steps.append(
            Step(
                "RUN apt-get update -qq \\\n"
                f" && DEBIAN_FRONTEND=noninteractive apt-get install -y -q"
                f" --no-install-recommends {names} \\\n"
                " && apt-get clean && rm -rf /var/lib/apt/lists/*",
                f"{spec.prefix}apt.txt",
            )
        )
    steps += [
        Step(f"USER {owner}"),
        Step("ARG PIP_CERT"),
        Step("ARG PIP_INDEX_URL"),
        Step(f"WORKDIR {REPO_DIR}"),
    ]
    if spec.requirements and not spec.requirements_use_local_files:
        files["requirements.txt"] = spec.files["requirements.txt"]
        steps += _pip_file_steps("requirements.txt", f"{spec.prefix}requirements.txt")
    if spec.pip_packages:
        files["environment-pip.txt"] = ("\n".join(spec.pip_packages) + "\n").encode()
        steps += _pip_file_steps("environment-pip.txt", f"{spec.prefix}environment.yml")
    steps.append(Step(f"COPY --chown={owner} repo/ {REPO_DIR}/"))
    if spec.requirements and spec.requirements_use_local_files:
        steps.append(
            Step(
                f"RUN pip install {PIP_OPTIONS} -r {spec.prefix}requirements.txt",
                f"{spec.prefix}requirements.txt",
            )
        )
    if spec.install_project:
        steps.append(
            Step(f"RUN pip install {PIP_OPTIONS} .", "pip install . (setup.py / pyproject.toml)")
        )
    if spec.post_build:
        script = f"./{spec.prefix}postBuild"
        steps.append(Step(f"RUN chmod +x {script} && {script}", f"{spec.prefix}postBuild"))
    entrypoint = ["/usr/bin/tini", "--"]
    if spec.start:
        script = f"{REPO_DIR}/{spec.prefix}start"
        steps.append(Step(f"RUN chmod +x {script}", f"{spec.prefix}start"))
        entrypoint.append(script)
    steps += [
        Step(f"WORKDIR {IMAGE_HOME}"),
        Step(f"ENV KIOSKHUB_REPO_DIR={REPO_DIR}"),
        Step(f"ENTRYPOINT {json.dumps(entrypoint)}"),
        Step('CMD ["jupyterhub-singleuser"]'),
        Step(f'LABEL org.kioskhub.builder="podman" org.kioskhub.recipe="{RECIPE_VERSION}"'),
    ]
    return ImageRecipe(tuple(steps), files)


def _pip_file_steps(name: str, label: str) -> list[Step]:
    staged = f"{STAGING}/{name}"
    return [
        Step(f"COPY --chown={IMAGE_UID}:{IMAGE_GID} kioskhub/{name} {staged}"),
        Step(f"RUN pip install {PIP_OPTIONS} -r {staged}", label),
    ]


def image_key(recipe: ImageRecipe | None, base_image: str, tree: str) -> str:
    """The key an image is tagged and reused under: recipe, base image, repository tree.

    ``recipe`` is None for a repository's own Dockerfile (then the tree is the whole recipe).
    """
    material = {
        "recipe": RECIPE_VERSION,
        "base": base_image,
        "containerfile": recipe.containerfile if recipe else None,
        "files": {
            name: hashlib.sha256(data).hexdigest()
            for name, data in sorted((recipe.context_files if recipe else {}).items())
        },
        "tree": tree,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:32]
