"""The template's repo2docker job ("kioskhub-env"), run by gitlab-ci-local.

What runs for real: GitLab's include, rules and variable precedence, the job's checks
(KIOSKHUB_BUILDER, KIOSKHUB_SUBDIR), before_script and script in one shell, the job's status.
What cannot run here: repo2docker needs a docker daemon (docker-in-docker) and base images
from the internet. So the project that includes the template drops the docker service
(``services: []``), gitlab-ci-local runs the job on the shell (``--force-shell-executor``),
and ``apk``, ``python3``, ``pip``, ``repo2docker`` and ``docker`` are recorders on PATH: the
tests check the exact commands, in order, with GitLab's values. The kernel check the job
sends to ``docker run -i`` is then run here for real. The kioskhub job, which builds and
pushes for real, is tested in test_gitlab_ci_template_kioskhub.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.gitlab_ci_local import CiProject, job_log

pytestmark = pytest.mark.integration

REGISTRY = "registry.gitlab.test"
REGISTRY_IMAGE = f"{REGISTRY}/lab/analysis"
JOB_TOKEN = "job-token-secret"
RECORDED = ("apk", "python3", "pip", "repo2docker", "docker")

RECORDER = """#!{python}
import json, os, sys
entry = {{"argv": [os.path.basename(sys.argv[0]), *sys.argv[1:]]}}
if not sys.stdin.isatty():
    entry["stdin"] = sys.stdin.read()
with open(os.environ["KIOSKHUB_TEST_CALLS"], "a") as calls:
    calls.write(json.dumps(entry) + "\\n")
"""

NO_DOCKER_DAEMON_HERE = """
# No docker daemon on this machine: the job runs on the shell, without its service.
kioskhub-env:
  services: []
"""


@pytest.fixture
def project(tmp_path) -> CiProject:
    return CiProject.create(
        tmp_path / "analysis",
        {"envs/py/requirements.txt": "numpy\n", "README.md": "An analysis\n"},
        NO_DOCKER_DAEMON_HERE,
    )


def run_repo2docker_job(tmp_path: Path, project: CiProject, **variables: str):
    """Run the pipeline with the recorders first on PATH; (process, recorded calls)."""
    recorders = tmp_path / "recorders"
    recorders.mkdir()
    for name in RECORDED:
        recorder = recorders / name
        recorder.write_text(RECORDER.format(python=sys.executable))
        recorder.chmod(0o755)
    calls = tmp_path / "calls.jsonl"
    process = project.run_pipeline(
        {
            "CI_REGISTRY": REGISTRY,
            "CI_REGISTRY_IMAGE": REGISTRY_IMAGE,
            "CI_REGISTRY_USER": "gitlab-ci-token",
            "CI_REGISTRY_PASSWORD": JOB_TOKEN,
            # gitlab-ci-local keeps an image job's container path when it forces the job
            # onto the shell; on the shell, the checkout is the project's folder.
            "CI_PROJECT_DIR": str(project.folder),
            **variables,
        },
        "--force-shell-executor",
        env={
            "PATH": f"{recorders}{os.pathsep}{os.environ['PATH']}",
            "KIOSKHUB_TEST_CALLS": str(calls),
        },
    )
    recorded = (
        [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []
    )
    return process, recorded


def test_rules_pick_one_builder_and_skip_merge_request_pipelines(project):
    assert project.pipeline_jobs({}) == {
        "kioskhub-env": "on_success",
        "kioskhub-env-kioskhub": "never",
    }
    assert project.pipeline_jobs({"KIOSKHUB_BUILDER": "kioskhub"}) == {
        "kioskhub-env": "never",
        "kioskhub-env-kioskhub": "on_success",
    }
    for builder in ("repo2docker", "kioskhub"):
        assert set(
            project.pipeline_jobs(
                {"KIOSKHUB_BUILDER": builder, "CI_PIPELINE_SOURCE": "merge_request_event"}
            ).values()
        ) == {"never"}


def test_the_job_installs_repo2docker_builds_smoke_tests_then_pushes_the_commit_tag(
    tmp_path, project
):
    process, calls = run_repo2docker_job(
        tmp_path, project, KIOSKHUB_SUBDIR="envs/py", KIOSKHUB_REF="main", KIOSKHUB_BUILD="1"
    )

    log = job_log(process, "kioskhub-env")
    assert process.returncode == 0, process.stdout + process.stderr
    assert "kioskhub-env-kioskhub" not in process.stdout, "one builder per pipeline"
    image = f"{REGISTRY_IMAGE}/kioskhub-env:{project.sha}"
    assert f"KioskHub builds main ({project.sha}) from 'envs/py' as {image}" in log
    assert [call["argv"] for call in calls] == [
        ["apk", "add", "--no-cache", "python3", "git"],
        ["python3", "-m", "venv", "/opt/repo2docker"],
        [
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "jupyter-repo2docker>=2024.07.0",
        ],
        [
            "repo2docker",
            "--no-run",
            "--user-id",
            "1000",
            "--user-name",
            "jovyan",
            "--target-repo-dir",
            "/srv/repo",
            "--image-name",
            image,
            f"{project.folder}/envs/py",
        ],
        ["docker", "run", "--rm", image, "jupyterhub-singleuser", "--version"],
        ["docker", "run", "--rm", "-i", image, "python", "-"],
        ["docker", "login", "--username", "gitlab-ci-token", "--password-stdin", REGISTRY],
        ["docker", "push", image],
    ]
    assert calls[6]["stdin"].strip() == JOB_TOKEN


def test_the_kernel_check_it_sends_into_the_image_starts_a_kernel_that_computes_1_plus_1(
    tmp_path, project
):
    process, calls = run_repo2docker_job(tmp_path, project)
    assert process.returncode == 0, process.stdout + process.stderr
    kernel_check = next(call for call in calls if "-i" in call["argv"])["stdin"]

    checked = subprocess.run(
        [sys.executable, "-"], input=kernel_check, capture_output=True, text=True, timeout=180
    )

    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip() == "kernel executed 1+1 = 2"


def test_a_variable_cannot_move_the_image_tag(tmp_path, project):
    process, calls = run_repo2docker_job(
        tmp_path, project, KIOSKHUB_IMAGE=f"{REGISTRY}/elsewhere:latest"
    )

    assert process.returncode == 0, process.stdout + process.stderr
    assert calls[-1]["argv"] == ["docker", "push", f"{REGISTRY_IMAGE}/kioskhub-env:{project.sha}"]


@pytest.mark.parametrize(
    "variables, message",
    [
        (
            {"KIOSKHUB_SUBDIR": "../../etc"},
            "KIOSKHUB_SUBDIR must be a folder inside the repository",
        ),
        ({"KIOSKHUB_SUBDIR": "envs/../../x"}, "must be a folder inside the repository"),
        ({"KIOSKHUB_SUBDIR": "/etc"}, "must be a folder inside the repository"),
        ({"KIOSKHUB_SUBDIR": "envs/missing"}, "no folder 'envs/missing' in the repository"),
        ({"KIOSKHUB_BUILDER": "docker"}, "KIOSKHUB_BUILDER must be 'repo2docker' or 'kioskhub'"),
    ],
)
def test_a_bad_variable_fails_the_job_before_anything_is_installed_or_built(
    tmp_path, project, variables, message
):
    process, calls = run_repo2docker_job(tmp_path, project, **variables)

    assert process.returncode != 0
    assert message in job_log(process, "kioskhub-env")
    assert calls == []
