"""Pipeline variables from a registration: literal results for good input, a table of hostile
input that is refused with the field it came from."""

from __future__ import annotations

import pytest

from kioskhub.image_builder.gitlab_pipeline_variables import (
    PipelineInputError,
    PipelineRequest,
    check_namespace_allowed,
    check_ref,
    check_subdir,
    pipeline_request,
    project_path_from_reference,
)

GITLAB = "https://gitlab.example.org"
ALLOWED = ("lab", "physics/beamline")


def request(project="lab/analysis", ref="main", subdir=""):
    return pipeline_request(project, ref, subdir, gitlab_url=GITLAB, allowed_namespaces=ALLOWED)


def test_a_registration_becomes_the_variables_of_the_create_pipeline_call():
    checked = request("lab/analysis", "main", "envs/py311/")

    assert checked == PipelineRequest("lab/analysis", "main", "envs/py311")
    assert checked.variables() == [
        {"key": "KIOSKHUB_BUILD", "value": "1", "variable_type": "env_var"},
        {"key": "KIOSKHUB_REF", "value": "main", "variable_type": "env_var"},
        {"key": "KIOSKHUB_SUBDIR", "value": "envs/py311", "variable_type": "env_var"},
    ]
    assert checked.variable_mapping() == {
        "KIOSKHUB_BUILD": "1",
        "KIOSKHUB_REF": "main",
        "KIOSKHUB_SUBDIR": "envs/py311",
    }


def test_the_sites_ci_builder_is_passed_to_the_template_only_when_it_names_one():
    chosen = pipeline_request(
        "lab/analysis", "main", gitlab_url=GITLAB, allowed_namespaces=ALLOWED, builder="kioskhub"
    )

    assert chosen.variable_mapping() == {
        "KIOSKHUB_BUILD": "1",
        "KIOSKHUB_REF": "main",
        "KIOSKHUB_SUBDIR": ".",
        "KIOSKHUB_BUILDER": "kioskhub",
    }
    assert "KIOSKHUB_BUILDER" not in request().variable_mapping()
    with pytest.raises(PipelineInputError, match="builder: must be one of repo2docker, kioskhub"):
        PipelineRequest("lab/a", "main", ".", "docker").variables()


@pytest.mark.parametrize(
    "reference, path",
    [
        ("lab/analysis", "lab/analysis"),
        ("  lab/analysis  ", "lab/analysis"),
        ("/lab/analysis/", "lab/analysis"),
        ("lab/sub.group/my_env-2", "lab/sub.group/my_env-2"),
        ("https://gitlab.example.org/lab/analysis", "lab/analysis"),
        ("https://gitlab.example.org/lab/analysis.git", "lab/analysis"),
        ("https://GITLAB.example.org/lab/analysis/", "lab/analysis"),
        ("https://gitlab.example.org/lab/analysis/-/tree/main", "lab/analysis"),
        ("git@gitlab.example.org:lab/analysis.git", "lab/analysis"),
    ],
)
def test_projects_are_named_by_path_url_or_ssh_remote(reference, path):
    assert project_path_from_reference(reference, GITLAB) == path


def test_a_gitlab_below_a_path_prefix_takes_urls_below_it():
    base = "https://example.org/gitlab"

    assert project_path_from_reference("https://example.org/gitlab/lab/x", base) == "lab/x"
    with pytest.raises(PipelineInputError, match="not below /gitlab/"):
        project_path_from_reference("https://example.org/lab/x", base)


HOSTILE = {
    # project: other hosts, credentials, odd URLs, paths that are not GitLab paths
    "another host": ("https://evil.example.com/lab/analysis", "main", "", "project"),
    "a look-alike host": ("https://gitlab.example.org.evil.com/lab/a", "main", "", "project"),
    "plain http to an https gitlab": ("http://gitlab.example.org/lab/a", "main", "", "project"),
    "another port": ("https://gitlab.example.org:8443/lab/a", "main", "", "project"),
    "credentials in the URL": ("https://u:p@gitlab.example.org/lab/a", "main", "", "project"),
    "a query": ("https://gitlab.example.org/lab/a?private_token=x", "main", "", "project"),
    "a fragment": ("https://gitlab.example.org/lab/a#x", "main", "", "project"),
    "file URL": ("file:///etc/passwd", "main", "", "project"),
    "ssh remote of another host": ("git@evil.example.com:lab/a.git", "main", "", "project"),
    "no namespace": ("analysis", "main", "", "project"),
    "empty project": ("", "main", "", "project"),
    "dot-dot in the path": ("lab/../admin/secrets", "main", "", "project"),
    "option-like segment": ("lab/-x", "main", "", "project"),
    "space in the path": ("lab/my project", "main", "", "project"),
    "newline in the project": ("lab/analysis\nother/x", "main", "", "project"),
    "percent-encoded slash": ("lab%2Fanalysis/x", "main", "", "project"),
    "outside the namespaces": ("other/analysis", "main", "", "project"),
    "a prefix of an allowed group": ("lab2/analysis", "main", "", "project"),
    "the parent of an allowed group": ("physics/analysis", "main", "", "project"),
    # ref: git's rules, options, control characters
    "empty ref": ("lab/a", "", "", "ref"),
    "ref like an option": ("lab/a", "--upload-pack=touch /tmp/x", "", "ref"),
    "ref like a short option": ("lab/a", "-c", "", "ref"),
    "ref with a newline": ("lab/a", "main\nKIOSKHUB_SUBDIR=..", "", "ref"),
    "ref with a carriage return": ("lab/a", "main\r", "", "ref"),
    "ref with a NUL": ("lab/a", "main\x00", "", "ref"),
    "ref with a tab": ("lab/a", "ma\tin", "", "ref"),
    "ref with a space": ("lab/a", "my branch", "", "ref"),
    "ref with ..": ("lab/a", "main..other", "", "ref"),
    "ref with @{": ("lab/a", "main@{1}", "", "ref"),
    "ref @": ("lab/a", "@", "", "ref"),
    "ref with ~": ("lab/a", "main~1", "", "ref"),
    "ref with ^": ("lab/a", "main^", "", "ref"),
    "ref with :": ("lab/a", "a:b", "", "ref"),
    "ref with a glob": ("lab/a", "feature/*", "", "ref"),
    "ref with a backslash": ("lab/a", "a\\b", "", "ref"),
    "ref ending in .lock": ("lab/a", "main.lock", "", "ref"),
    "ref with a dot part": ("lab/a", "feature/.hidden", "", "ref"),
    "ref ending in /": ("lab/a", "feature/", "", "ref"),
    "ref with //": ("lab/a", "feature//x", "", "ref"),
    "ref ending in .": ("lab/a", "main.", "", "ref"),
    "ref with a shell substitution": ("lab/a", "$(reboot)", "", "ref"),
    "ref too long": ("lab/a", "a" * 256, "", "ref"),
    "ref with a zero-width space": ("lab/a", "main\u200b", "", "ref"),
    "ref with a line separator": ("lab/a", "main\u2028x", "", "ref"),
    "ref with a variable": ("lab/a", "$CI_JOB_TOKEN", "", "ref"),
    "ref with a quote": ("lab/a", "main'x", "", "ref"),
    # subdir: out of the repository, options, control characters
    "absolute subdir": ("lab/a", "main", "/etc", "subdir"),
    "subdir climbing out": ("lab/a", "main", "../../etc", "subdir"),
    "subdir climbing out later": ("lab/a", "main", "envs/../../x", "subdir"),
    "subdir like an option": ("lab/a", "main", "--help", "subdir"),
    "subdir with a newline": ("lab/a", "main", "envs\nx", "subdir"),
    "subdir with a shell variable": ("lab/a", "main", "$HOME", "subdir"),
    "subdir with a space": ("lab/a", "main", "my env", "subdir"),
    "subdir too long": ("lab/a", "main", "a/" * 200, "subdir"),
}


@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
def test_hostile_registrations_are_refused_naming_the_field(case):
    project, ref, subdir, field = HOSTILE[case]

    with pytest.raises(PipelineInputError) as refused:
        request(project, ref, subdir)

    assert refused.value.field == field
    assert str(refused.value).startswith(f"{field}: ")


@pytest.mark.parametrize(
    "ref", ["main", "v1.2.3", "feature/new-env", "release-2024.10", "a" * 255, "dev+exp@2"]
)
def test_valid_refs_pass_unchanged(ref):
    assert check_ref(ref) == ref


@pytest.mark.parametrize(
    "subdir, normalised",
    [("", "."), (".", "."), ("./", "."), ("envs", "envs"), ("./envs/py/", "envs/py")],
)
def test_subdirs_are_normalised(subdir, normalised):
    assert check_subdir(subdir) == normalised


def test_namespaces_compare_whole_segments_and_ignore_case():
    assert check_namespace_allowed("LAB/Analysis", ["lab"]) == "LAB/Analysis"
    assert check_namespace_allowed("physics/beamline/sub/x", ALLOWED)
    with pytest.raises(PipelineInputError, match="ask the site admin"):
        check_namespace_allowed("physics/beamline2/x", ALLOWED)
    with pytest.raises(PipelineInputError, match="none are configured"):
        check_namespace_allowed("lab/x", ())


def test_a_request_cannot_smuggle_a_variable_value_past_the_checks():
    smuggled = PipelineRequest("lab/a", "main\nEVIL=1", ".")

    with pytest.raises(PipelineInputError, match="newline"):
        smuggled.variables()
