"""The template's KioskHub-builder job ("kioskhub-env-kioskhub"), run for real by
gitlab-ci-local on the shell, as on a shell runner of a machine with KioskHub and podman:
``kioskhub image build-env`` builds the image on the site base image, the smoke test runs the
server and a kernel in it, podman pushes ``$CI_REGISTRY_IMAGE/kioskhub-env:$CI_COMMIT_SHA``
to a real registry on loopback, and the registry holds that tag at the digest the job printed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from kioskhub.spawner.podman_cli import CONTAINERS_CONF
from tests.support.gitlab_ci_local import CiProject, job_log
from tests.support.podman import build_base_image, require_pod_tools

pytestmark = pytest.mark.integration

JOB = "kioskhub-env-kioskhub"
PROJECT_PATH = "lab/analysis"
BROKEN_START = "#!/bin/sh\necho 'start forgot to exec \"$@\"'\nexit 3\n"


def runner_environment(tmp_path, registry) -> dict[str, str]:
    """The shell runner's environment: KioskHub on PATH, podman configured for this machine,
    and the loopback registry listed as insecure (it speaks plain HTTP), as a site lists its
    own registry in the runner machine's registries.conf."""
    registries_conf = tmp_path / "registries.conf"
    registries_conf.write_text(f'[[registry]]\nlocation = "{registry.host}"\ninsecure = true\n')
    return {
        "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}",
        "CONTAINERS_CONF": str(CONTAINERS_CONF),
        "CONTAINERS_REGISTRIES_CONF": str(registries_conf),
    }


def pipeline_variables(registry, **extra: str) -> dict[str, str]:
    return {
        "KIOSKHUB_BUILDER": "kioskhub",
        "CI_REGISTRY": registry.host,
        "CI_REGISTRY_IMAGE": f"{registry.host}/{PROJECT_PATH}",
        "CI_REGISTRY_USER": "gitlab-ci-token",
        "CI_REGISTRY_PASSWORD": "job-token-secret",
        **extra,
    }


@pytest.fixture
def builds_dir():
    """The runner's builds folder: KioskHub's build identities read the checkout, so the
    folder must be one they can enter (the tests' own tmp folder is root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="kioskhub-ci-builds-", dir="/var/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def podman_images_of(loopback_registry):
    """Remove, after the test, the images it tagged for the loopback registry."""
    yield
    listed = subprocess.run(
        ["podman", "images", "--format", "{{.Repository}}:{{.Tag}}"],
        env={**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)},
        capture_output=True,
        text=True,
    )
    ours = [name for name in listed.stdout.split() if name.startswith(loopback_registry.host)]
    if ours:
        subprocess.run(
            ["podman", "rmi", "--force", *ours],
            env={**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)},
            capture_output=True,
        )


def test_the_job_builds_smoke_tests_and_pushes_the_commit_tag_to_the_registry(
    tmp_path, builds_dir, loopback_registry, podman_images_of
):
    require_pod_tools()
    build_base_image()
    project = CiProject.create(
        builds_dir / "analysis",
        {
            "envs/py/requirements.txt": "six\n",
            "envs/py/analysis.ipynb": '{"cells": [], "metadata": {}, "nbformat": 4, '
            '"nbformat_minor": 5}\n',
        },
    )

    process = project.run_pipeline(
        pipeline_variables(loopback_registry, KIOSKHUB_SUBDIR="envs/py", KIOSKHUB_REF="main"),
        env=runner_environment(tmp_path, loopback_registry),
        timeout=900,
    )

    log = job_log(process, JOB)
    assert process.returncode == 0, process.stdout[-6000:] + process.stderr[-3000:]
    assert not job_log(process, "kioskhub-env"), "one builder per pipeline"
    image = f"{loopback_registry.host}/{PROJECT_PATH}/kioskhub-env:{project.sha}"
    assert f"KioskHub builds main ({project.sha}) from 'envs/py' as {image}" in log
    assert re.search(r"^\d+\.\d+\.\d+", log, re.MULTILINE), "singleuser printed its version"
    assert "kernel executed 1+1 = 2" in log
    assert loopback_registry.tags(f"{PROJECT_PATH}/kioskhub-env") == [project.sha]
    digest = loopback_registry.manifest_digest(f"{PROJECT_PATH}/kioskhub-env", project.sha)
    assert f"KioskHub pushed {image}@{digest}" in log
    assert "job-token-secret" not in log
    layout = subprocess.run(
        ["podman", "run", "--rm", image, "sh", "-c", 'id -un; id -u; echo "$HOME"; ls /srv/repo'],
        env={**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert layout.stdout.split() == [
        "jovyan",
        "1000",
        "/home/jovyan",
        "analysis.ipynb",
        "requirements.txt",
    ], "the layout repo2docker's job gives (--user-name jovyan --target-repo-dir /srv/repo)"


def test_an_image_that_fails_the_smoke_test_is_never_pushed(
    tmp_path, builds_dir, loopback_registry, podman_images_of
):
    require_pod_tools()
    build_base_image()
    project = CiProject.create(
        builds_dir / "broken", {"requirements.txt": "six\n", "start": BROKEN_START}
    )

    process = project.run_pipeline(
        pipeline_variables(
            loopback_registry, CI_REGISTRY_IMAGE=f"{loopback_registry.host}/lab/broken"
        ),
        env=runner_environment(tmp_path, loopback_registry),
        timeout=900,
    )

    log = job_log(process, JOB)
    assert process.returncode != 0
    assert "start forgot to exec" in log
    assert "KioskHub pushed" not in log
    assert "lab/broken/kioskhub-env" not in loopback_registry.repositories()


def test_a_runner_without_kioskhub_says_which_runner_the_job_needs(tmp_path):
    project = CiProject.create(tmp_path / "analysis", {"requirements.txt": "six\n"})

    process = project.run_pipeline(
        {"KIOSKHUB_BUILDER": "kioskhub", "CI_REGISTRY_IMAGE": "registry.gitlab.test/lab/x"},
        env={"PATH": "/usr/local/bin:/usr/bin:/bin"},
    )

    assert process.returncode != 0
    assert (
        "KIOSKHUB_BUILDER=kioskhub needs 'kioskhub' on the runner's PATH: run this job on a "
        "shell runner of a machine with KioskHub and podman (tag 'kioskhub')"
    ) in job_log(process, JOB)
