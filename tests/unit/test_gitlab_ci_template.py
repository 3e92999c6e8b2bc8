"""The GitLab CI template: include-able jobs that build with repo2docker or with KioskHub's
builder (KIOSKHUB_BUILDER), smoke-test the image and only then push
``$CI_REGISTRY_IMAGE/kioskhub-env:$CI_COMMIT_SHA``. Their jobs run in
tests/integration/test_gitlab_ci_template_*.py (gitlab-ci-local)."""

from __future__ import annotations

import re

import pytest
import yaml

from kioskhub.hub.schema.gitlab import CI_TEMPLATE, GitLabSettings
from kioskhub.image_builder.gitlab_pipeline_variables import (
    BUILD_VARIABLE,
    REF_VARIABLE,
    SUBDIR_VARIABLE,
)
from kioskhub.image_builder.image_recipe import IMAGE_UID, IMAGE_USER, REPO_DIR

GITLAB_DEFAULT_STAGES = {".pre", "build", "test", "deploy", ".post"}
IMAGE = "$CI_REGISTRY_IMAGE/kioskhub-env:$CI_COMMIT_SHA"


def template() -> dict:
    return yaml.safe_load(CI_TEMPLATE.read_text(encoding="utf-8"))


REPO2DOCKER_JOB = "kioskhub-env"
KIOSKHUB_JOB = "kioskhub-env-kioskhub"


def job(name: str = REPO2DOCKER_JOB) -> dict:
    return template()[name]


def steps(name: str = REPO2DOCKER_JOB) -> list[str]:
    """before_script then script, flattened as GitLab flattens nested (anchored) lists."""

    def flat(items):
        for item in items:
            yield from flat(item) if isinstance(item, list) else [item]

    return list(flat(job(name)["before_script"] + job(name)["script"]))


def script_index(pattern: str, name: str = REPO2DOCKER_JOB) -> int:
    """Index of the first step that matches ``pattern``."""
    for index, item in enumerate(steps(name)):
        if re.search(pattern, item):
            return index
    raise AssertionError(f"no step of {name} matches {pattern!r}")


def test_the_template_is_two_jobs_and_leaves_the_includers_stages_alone():
    jobs = {name for name in template() if not name.startswith(".") and name != "variables"}
    assert jobs == {REPO2DOCKER_JOB, KIOSKHUB_JOB}
    assert "stages" not in template()
    assert {job(name)["stage"] for name in jobs} <= GITLAB_DEFAULT_STAGES
    assert template()["variables"] == {"KIOSKHUB_BUILDER": "repo2docker"}


def test_every_step_is_a_shell_command_not_a_yaml_mapping():
    for name in (REPO2DOCKER_JOB, KIOSKHUB_JOB):
        for item in steps(name):
            assert isinstance(item, str), f"{name} step parses as {item!r}; quote it"


def test_the_job_runs_docker_in_docker():
    assert job()["image"].startswith("docker:")
    assert (
        job()["services"][0]["name"].startswith("docker:")
        and "dind" in job()["services"][0]["name"]
    )
    assert job()["variables"]["DOCKER_HOST"] == "tcp://docker:2376"


def test_the_image_tag_is_fixed_to_the_commit_in_the_first_step_of_both_jobs():
    for name in (REPO2DOCKER_JOB, KIOSKHUB_JOB):
        assert steps(name)[0] == f'export KIOSKHUB_IMAGE="{IMAGE}"'
        assert "KIOSKHUB_IMAGE" not in job(name)["variables"], "a variable must not move the tag"


def test_repo2docker_builds_without_running_as_a_non_root_user_from_the_subdir():
    build = steps()[script_index(r"^repo2docker ")]

    assert "--no-run" in build
    assert (
        '--user-id "$KIOSKHUB_USER_ID"' in build
        and job()["variables"]["KIOSKHUB_USER_ID"] == "1000"
    )
    assert '--image-name "$KIOSKHUB_IMAGE"' in build
    # The layout of KioskHub's own builder: same user, uid and repository folder.
    assert f"--user-name {IMAGE_USER} --target-repo-dir {REPO_DIR} " in build
    assert job()["variables"]["KIOSKHUB_USER_ID"] == str(IMAGE_UID)
    assert build.endswith('"$CI_PROJECT_DIR/$KIOSKHUB_SUBDIR"')
    assert any(
        "jupyter-repo2docker" in line for line in [job()["variables"]["KIOSKHUB_REPO2DOCKER_SPEC"]]
    )


def test_the_subdir_is_checked_before_anything_is_installed_or_built():
    check = script_index(r"KIOSKHUB_SUBDIR must be a folder inside the repository")

    assert check < script_index(r"^apk add ") < script_index(r"^repo2docker ")
    assert "*/../*" in steps()[check]
    assert check < script_index(r"^kioskhub image build-env ", KIOSKHUB_JOB)


@pytest.mark.parametrize(
    "name, build, engine",
    [(REPO2DOCKER_JOB, r"^repo2docker ", "docker"), (KIOSKHUB_JOB, r"^kioskhub image ", "podman")],
)
def test_the_smoke_test_runs_the_server_and_a_kernel_before_the_push(name, build, engine):
    version = script_index(
        r'"\$KIOSKHUB_ENGINE" run --rm "\$KIOSKHUB_IMAGE" jupyterhub-singleuser --version', name
    )
    kernel = script_index(r'execute\("1\+1"\)', name)
    push = script_index(rf'^{engine} push .*"\$KIOSKHUB_IMAGE"$', name)

    assert job(name)["variables"]["KIOSKHUB_ENGINE"] == engine
    assert script_index(build, name) < version < kernel < push
    assert script_index(rf"{engine} login .*--password-stdin", name) < push


def test_the_variables_kioskhub_sets_are_documented_and_have_defaults():
    text = CI_TEMPLATE.read_text(encoding="utf-8")

    for name in (
        "KIOSKHUB_BUILDER",
        SUBDIR_VARIABLE,
        REF_VARIABLE,
        BUILD_VARIABLE,
        "KIOSKHUB_REPO2DOCKER_SPEC",
        "KIOSKHUB_BASE_IMAGE",
    ):
        assert re.search(rf"^#\s+{name}\s", text, re.MULTILINE), f"{name} is not documented"
    for name in (REPO2DOCKER_JOB, KIOSKHUB_JOB):
        assert job(name)["variables"][SUBDIR_VARIABLE] == "."
        assert job(name)["variables"][REF_VARIABLE] == "$CI_COMMIT_REF_NAME"


def test_merge_request_pipelines_do_not_build():
    for name in (REPO2DOCKER_JOB, KIOSKHUB_JOB):
        assert job(name)["rules"][0] == {
            "if": '$CI_PIPELINE_SOURCE == "merge_request_event"',
            "when": "never",
        }


def test_the_kioskhub_builder_runs_on_a_shell_runner_tagged_kioskhub():
    assert "image" not in job(KIOSKHUB_JOB) and "services" not in job(KIOSKHUB_JOB)
    assert job(KIOSKHUB_JOB)["tags"] == ["kioskhub"]


def test_the_settings_point_at_the_shipped_template():
    assert GitLabSettings().ci_template == CI_TEMPLATE
    assert CI_TEMPLATE.is_file()
