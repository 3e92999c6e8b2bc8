"""Container environments for real: a repository → an image on the site base image → the
loopback registry, pinned by digest → ``podman run`` of that digest.

The repository made here has the shapes Binder users write: ``apt.txt`` (jq),
``requirements.txt`` (tomli-w), a ``setup.py`` package and a ``postBuild``. Then: an unchanged
rebuild reuses the image, a requirements change reuses the apt layer, broken repositories get
messages that name the file and the line, and ``kioskhub image build-env`` keeps the contract
the CI template relies on.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kioskhub.hub.schema.builder import BuilderSettings
from kioskhub.image_builder.build_identity import identity_pool
from kioskhub.image_builder.build_log import BuildLog
from kioskhub.image_builder.builder_base import BuildFailed, BuildRequest
from kioskhub.image_builder.podman_image_builder import BuildOptions, PodmanImageBuilder
from kioskhub.image_builder.source_safety import check_repository_url
from tests.conftest import open_folder
from tests.integration.test_builder_environments import git
from tests.support.podman import build_base_image, podman

pytestmark = pytest.mark.integration
KIOSKHUB = str(Path(sys.executable).parent / "kioskhub")
HOST_MARKER = Path("/root/kioskhub-podman-build-host-marker")
SETUP_PY = """from setuptools import setup
setup(name="lab-tools", version="0.1", packages=["lab_tools"])
"""
POST_BUILD = """#!/bin/bash
set -e
echo "made by postBuild as $(id -un)" > ~/postbuild.txt
grep -E '(pids|memory)' /proc/self/cgroup | head -2
"""


def make_repository(
    folder: Path, files: dict[str, str], links: dict[str, str] | None = None
) -> Path:
    repo = folder / "repo"
    repo.mkdir(parents=True)
    git(repo, "init", "--quiet")
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    for name, target in (links or {}).items():
        (repo / name).symlink_to(target)
    commit(repo, "spec")
    return repo


def commit(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", message)


def remove_images(reference: str) -> None:
    """Remove the images named like ``reference`` (their layers stay in the cache)."""
    found = podman("images", "--filter", f"reference={reference}", "--format", "{{.ID}}")
    for image in set(found.stdout.split()):
        podman("rmi", "--force", image, check=False)


@pytest.fixture(scope="module")
def builder(loopback_registry):
    base = build_base_image().image
    remove_images("localhost/kioskhub-env/ada-*")
    options = BuildOptions(
        base_image=base, registry=f"{loopback_registry.host}/kioskhub", registry_insecure=True
    )
    return PodmanImageBuilder(options, identities=identity_pool(BuilderSettings()))


@pytest.fixture(scope="module")
def folder():
    made = open_folder("podman-images")
    yield made
    shutil.rmtree(made, ignore_errors=True)


@pytest.fixture(scope="module")
def repository(folder):
    HOST_MARKER.write_text("a file of the host that no image may hold\n")
    yield make_repository(
        folder / "lab",
        {
            "apt.txt": "# a program for the notebooks\njq\n",
            "requirements.txt": "tomli-w\n",
            "setup.py": SETUP_PY,
            "lab_tools/__init__.py": "ANSWER = 42\n",
            "postBuild": POST_BUILD,
        },
        links={"host-file": str(HOST_MARKER)},
    )
    HOST_MARKER.unlink(missing_ok=True)


def build(builder: PodmanImageBuilder, repo: Path, name: str) -> tuple[object, BuildLog, float]:
    source = check_repository_url(
        str(repo), allowed_schemes=(), allowed_hosts=(), allow_local_paths=True
    )
    log = BuildLog()
    start = time.monotonic()
    try:
        artifact = asyncio.run(builder.build(BuildRequest(1, "ada", name, source), log))
    except BuildFailed:
        print(log.text()[-3000:])
        raise
    return artifact, log, time.monotonic() - start


def run_image(reference: str, *command: str) -> subprocess.CompletedProcess:
    return podman("run", "--rm", "--tls-verify=false", reference, *command, check=False)


def test_a_repository_becomes_an_image_pinned_by_the_registrys_digest(
    builder, repository, loopback_registry
):
    artifact, log, seconds = build(builder, repository, "lab")
    print(f"cold build: {seconds:.1f} s")
    repo_path = "kioskhub/ada-lab"
    assert artifact.image_digest == loopback_registry.manifest_digest(
        repo_path, artifact.content_hash
    )
    assert artifact.image_ref == f"{loopback_registry.host}/{repo_path}@{artifact.image_digest}"
    assert not artifact.reused and "STEP 1/" in log.text()
    # The build's steps ran in the build identity's cgroup (its limits), as the image's user.
    assert "kioskhub-builds/container-" in log.text()
    ran = run_image(
        artifact.image_ref,
        "bash",
        "-c",
        "python -c 'import lab_tools, tomli_w; print(lab_tools.ANSWER)'; cat ~/postbuild.txt; "
        "jq --version; id -u; cat /srv/repo/host-file || echo 'no host file'",
    )
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert lines[:2] == ["42", "made by postBuild as jovyan"]
    assert lines[2].startswith("jq-")
    assert lines[3] == "1000"
    # The repository's link to a host file stayed a link: the host file's content is not in
    # the image (root never followed it when the build context was made).
    assert "no image may hold" not in ran.stdout
    assert lines[-1] == "no host file"


def test_an_unchanged_repository_reuses_its_image(builder, repository, loopback_registry):
    first, _, _ = build(builder, repository, "lab")
    again, log, seconds = build(builder, repository, "lab")
    print(f"no-change rebuild: {seconds:.2f} s")
    assert again.reused and again.image_ref == first.image_ref
    assert "Reusing the image built from the same content" in log.text()
    assert "STEP " not in log.text()
    assert seconds < 5


def test_a_requirements_change_reuses_the_apt_layer(builder, repository):
    (repository / "requirements.txt").write_text("tomli-w\ntomli\n")
    commit(repository, "requirements")
    artifact, log, seconds = build(builder, repository, "lab")
    print(f"requirements change: {seconds:.1f} s")
    lines = log.text().splitlines()
    apt_step = next(i for i, line in enumerate(lines) if "apt-get install" in line)
    assert lines[apt_step].startswith("STEP 4/")
    assert lines[apt_step + 1].startswith("--> Using cache"), lines[apt_step : apt_step + 3]
    pip_step = next(
        i for i, line in enumerate(lines) if "-r /tmp/kioskhub-build/requirements" in line
    )
    assert not lines[pip_step + 1].startswith("--> Using cache")
    ran = run_image(artifact.image_ref, "python", "-c", "import tomli, lab_tools")
    assert ran.returncode == 0, ran.stderr


def test_a_failing_post_build_names_the_file_and_its_last_lines(builder, folder):
    repo = make_repository(
        folder / "failing",
        {"postBuild": "#!/bin/bash\necho 'downloading the calibration'\nexit 2\n"},
    )
    with pytest.raises(BuildFailed) as failed:
        build(builder, repo, "failing")
    assert str(failed.value) == (
        "postBuild failed (exit 2) — last lines: downloading the calibration"
    )


def test_an_unknown_apt_package_is_named_with_its_line(builder, folder):
    repo = make_repository(folder / "apt", {"apt.txt": "jq\n\nnosuchpkg-kioskhub\n"})
    with pytest.raises(BuildFailed) as failed:
        build(builder, repo, "apt")
    assert str(failed.value).startswith(
        "apt.txt line 3: Debian has no package 'nosuchpkg-kioskhub'"
    )


def test_build_env_keeps_the_ci_contract(builder, repository, loopback_registry, folder):
    """``kioskhub image build-env`` as the CI template calls it: JSON last, digest pinned."""
    out = subprocess.run(
        [
            KIOSKHUB,
            "image",
            "build-env",
            str(repository),
            "--name",
            "ci/lab:v1",
            "--base-image",
            build_base_image().image,
            "--push",
            f"{loopback_registry.host}/ci/lab",
            "--insecure-registry",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr
    result = json.loads(out.stdout.splitlines()[-1])
    digest = loopback_registry.manifest_digest("ci/lab", "v1")
    assert result == {
        "image": "ci/lab:v1",
        "reference": f"{loopback_registry.host}/ci/lab@{digest}",
        "digest": digest,
    }
    broken = make_repository(folder / "cli-broken", {"apt.txt": "Not A Package\n"})
    out = subprocess.run(
        [KIOSKHUB, "image", "build-env", str(broken), "--name", "ci/broken", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 1
    assert out.stderr == (
        "kioskhub image build-env: apt.txt line 1: (an entry not shown) is not a Debian "
        "package name (lowercase letters, digits and + - .); write one package name per line\n"
    )


HOSTILE_POST_BUILD = """#!/usr/bin/env python3
import subprocess, sys, urllib.request
try:
    urllib.request.urlopen("http://127.0.0.1:{port}/v2/", timeout=5)
    print("REACHED THE HOST'S LOOPBACK")
except OSError:
    print("host loopback unreachable")
children = []
try:
    for _ in range(200):
        children.append(subprocess.Popen(["sleep", "60"]))
    print("FORKED 200 PROCESSES")
except OSError as error:
    print(f"fork refused after {{len(children)}} processes")
    sys.exit(3)
"""


def test_a_hostile_post_build_meets_the_network_and_the_pids_limit(loopback_registry, folder):
    """postBuild tries the registry on the host's loopback, then forks 200 processes: the
    build's own network has no way to the host's loopback, and its cgroup stops the forks."""
    options = BuildOptions(base_image=build_base_image().image)
    confined = PodmanImageBuilder(options, identities=identity_pool(BuilderSettings(build_pids=64)))
    repo = make_repository(
        folder / "hostile",
        {"postBuild": HOSTILE_POST_BUILD.format(port=loopback_registry.port)},
    )
    with pytest.raises(BuildFailed) as failed:
        build(confined, repo, "hostile")
    message = str(failed.value)
    assert message.startswith("postBuild failed (exit 3) — last lines: host loopback unreachable")
    assert "fork refused after" in message
