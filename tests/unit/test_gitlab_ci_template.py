"""The GitLab CI template: an include-able job that builds with repo2docker, smoke-tests the
image and only then pushes ``$CI_REGISTRY_IMAGE/kioskhub-env:$CI_COMMIT_SHA``."""

from __future__ import annotations

import re

import yaml

from kioskhub.hub.schema.gitlab import CI_TEMPLATE, GitLabSettings
from kioskhub.image_builder.gitlab_pipeline_variables import (
    BUILD_VARIABLE,
    REF_VARIABLE,
    SUBDIR_VARIABLE,
)

GITLAB_DEFAULT_STAGES = {".pre", "build", "test", "deploy", ".post"}
IMAGE = "$CI_REGISTRY_IMAGE/kioskhub-env:$CI_COMMIT_SHA"


def template() -> dict:
    return yaml.safe_load(CI_TEMPLATE.read_text(encoding="utf-8"))


def job() -> dict:
    return template()["kioskhub-env"]


def script_index(pattern: str) -> int:
    """Index of the first script item that matches ``pattern``."""
    for index, item in enumerate(job()["script"]):
        if re.search(pattern, item):
            return index
    raise AssertionError(f"no script step matches {pattern!r}")


def test_the_template_is_one_job_and_leaves_the_includers_stages_alone():
    assert set(template()) == {"kioskhub-env"}
    assert "stages" not in template()
    assert job()["stage"] in GITLAB_DEFAULT_STAGES


def test_every_script_line_is_a_shell_command_not_a_yaml_mapping():
    for part in ("before_script", "script"):
        for item in job()[part]:
            assert isinstance(item, str), f"{part} item parses as {item!r}; quote it"


def test_the_job_runs_docker_in_docker():
    assert job()["image"].startswith("docker:")
    assert (
        job()["services"][0]["name"].startswith("docker:")
        and "dind" in job()["services"][0]["name"]
    )
    assert job()["variables"]["DOCKER_HOST"] == "tcp://docker:2376"


def test_the_image_tag_is_fixed_to_the_commit_in_the_script():
    assert job()["script"][0] == f'export KIOSKHUB_IMAGE="{IMAGE}"'
    assert "KIOSKHUB_IMAGE" not in job()["variables"], "a pipeline variable must not move the tag"


def test_repo2docker_builds_without_running_as_a_non_root_user_from_the_subdir():
    build = job()["script"][script_index(r"^repo2docker ")]

    assert "--no-run" in build
    assert (
        '--user-id "$KIOSKHUB_USER_ID"' in build
        and job()["variables"]["KIOSKHUB_USER_ID"] == "1000"
    )
    assert '--image-name "$KIOSKHUB_IMAGE"' in build
    assert build.endswith('"$CI_PROJECT_DIR/$KIOSKHUB_SUBDIR"')
    assert any(
        "jupyter-repo2docker" in line for line in [job()["variables"]["KIOSKHUB_REPO2DOCKER_SPEC"]]
    )


def test_the_subdir_is_checked_before_the_build():
    check = script_index(r"KIOSKHUB_SUBDIR must be a folder inside the repository")

    assert check < script_index(r"^repo2docker ")
    assert "*/../*" in job()["script"][check]


def test_the_smoke_test_runs_the_server_and_a_kernel_before_the_push():
    version = script_index(r'docker run --rm "\$KIOSKHUB_IMAGE" jupyterhub-singleuser --version')
    kernel = script_index(r'execute\("1\+1"\)')
    push = script_index(r'^docker push "\$KIOSKHUB_IMAGE"$')

    assert script_index(r"^repo2docker ") < version < kernel < push
    assert script_index(r"docker login .*--password-stdin") < push


def test_the_variables_kioskhub_sets_are_documented_and_have_defaults():
    text = CI_TEMPLATE.read_text(encoding="utf-8")

    for name in (SUBDIR_VARIABLE, REF_VARIABLE, BUILD_VARIABLE, "KIOSKHUB_REPO2DOCKER_SPEC"):
        assert re.search(rf"^#\s+{name}\s", text, re.MULTILINE), f"{name} is not documented"
    assert job()["variables"][SUBDIR_VARIABLE] == "."
    assert job()["variables"][REF_VARIABLE] == "$CI_COMMIT_REF_NAME"


def test_merge_request_pipelines_do_not_build():
    assert job()["rules"][0] == {
        "if": '$CI_PIPELINE_SOURCE == "merge_request_event"',
        "when": "never",
    }


def test_the_settings_point_at_the_shipped_template():
    assert GitLabSettings().ci_template == CI_TEMPLATE
    assert CI_TEMPLATE.is_file()
