"""Literal-expectation tests of GitLab sign-in's pure parts: the authenticator's traits, the
start-up check of its secret, the hub wiring, and GitLab images as spawn-form environments."""

from __future__ import annotations

import asyncio

import pytest

from kioskhub.hub.auth_gitlab import (
    KioskGitLabAuthenticator,
    gitlab_authenticator_config,
    missing_client_secret,
)
from kioskhub.hub.jupyterhub_settings import jupyterhub_settings
from kioskhub.hub.schema.choices import Environment
from kioskhub.hub.state_dir import Passwords
from kioskhub.image_builder.gitlab_registry import BuiltImage
from kioskhub.image_builder.spawn_catalog import GitLabUserImages, gitlab_environments
from tests.support.hub_process import free_port
from tests.unit.test_hub_settings import small_site

PASSWORDS = Passwords(user="correct-horse", admin="a" * 32, auth_state_key="f" * 64)
GITLAB = {
    "type": "gitlab",
    "gitlab": {
        "url": "https://gitlab.lab.example",
        "client_id": "0123abcd",
        "allowed_groups": ["lab/physics"],
        "admin_groups": ["lab/admins"],
    },
}


def gitlab_site(tmp_path, **sections):
    return small_site(tmp_path, auth=GITLAB, **sections)


def test_authenticator_traits(tmp_path):
    assert gitlab_authenticator_config(gitlab_site(tmp_path)) == {
        "gitlab_url": "https://gitlab.lab.example",
        "client_id": "0123abcd",
        "client_secret_env": "KIOSKHUB_GITLAB_CLIENT_SECRET",
        "scope": ["read_user", "read_api"],
        "oauth_callback_url": "http://127.0.0.1:9000/hub/gitlab/oauth_callback",
        "login_service": "Sign in with GitLab",
        "manage_groups": True,
        "allowed_groups": {"lab/physics"},
        "admin_groups": {"lab/admins"},
        "allow_all": False,
        "admin_users": {"boss"},
        "site_groups": {"physics": ["ada", "grace"]},
        "custom_403_message": "Your GitLab account is not a member of a GitLab group that may "
        "use this site (lab/physics). Ask the group's owner to add you, or the site admin to "
        "allow your group.",
    }


def test_the_gitlab_sections_url_serves_when_auth_gitlab_has_none(tmp_path):
    site = small_site(
        tmp_path,
        auth={"type": "gitlab", "gitlab": {"client_id": "x"}},
        gitlab={"url": "https://git.example.org/"},
    )

    assert gitlab_authenticator_config(site)["gitlab_url"] == "https://git.example.org"


def test_a_missing_secret_is_named_with_what_to_do(tmp_path):
    site = gitlab_site(tmp_path)

    assert missing_client_secret(site, {"KIOSKHUB_GITLAB_CLIENT_SECRET": "s3cret"}) is None
    assert missing_client_secret(site, {"KIOSKHUB_GITLAB_CLIENT_SECRET": " "}) == (
        "auth.gitlab: the environment variable KIOSKHUB_GITLAB_CLIENT_SECRET is empty or "
        "unset; put the secret of the GitLab application (id 0123abcd) in it before starting "
        "the hub (see docs/sign-in/gitlab.md)"
    )
    assert missing_client_secret(small_site(tmp_path), {}) is None


def test_the_authenticator_refuses_to_start_without_its_secret(monkeypatch):
    monkeypatch.delenv("KIOSKHUB_GITLAB_CLIENT_SECRET", raising=False)
    monkeypatch.setenv("OAUTH_CLIENT_SECRET", "not-this-one")

    with pytest.raises(ValueError, match=r"needs the application secret in \$KIOSKHUB_GITLAB"):
        KioskGitLabAuthenticator(client_id="x", gitlab_url="https://gitlab.lab.example")


def test_reserved_gitlab_usernames_are_not_valid_hub_users(monkeypatch):
    monkeypatch.setenv("KIOSKHUB_GITLAB_CLIENT_SECRET", "s3cret")
    authenticator = KioskGitLabAuthenticator(client_id="x")

    assert authenticator.validate_username("ada")
    assert not authenticator.validate_username("build")
    assert not authenticator.validate_username("kh-ada")


def test_site_groups_are_added_to_gitlab_groups(monkeypatch):
    monkeypatch.setenv("KIOSKHUB_GITLAB_CLIENT_SECRET", "s3cret")
    authenticator = KioskGitLabAuthenticator(
        client_id="x", manage_groups=True, site_groups={"physics": ["ada"], "bio": ["bob"]}
    )
    auth_state = {"gitlab_user": {"username": "Ada"}, "gitlab_groups": ["lab/physics"]}

    assert asyncio.run(authenticator.get_user_groups(auth_state)) == {"lab/physics", "physics"}


def test_hub_wiring_for_gitlab_sign_in(tmp_path):
    settings = jupyterhub_settings(
        gitlab_site(tmp_path, spawner={"backend": "podman"}), PASSWORDS, "chp"
    )

    hub = settings["JupyterHub"]
    # Served under /hub/gitlab/, like every provider, so that adding a method moves nothing.
    assert hub["authenticator_class"] == "kioskhub.hub.auth_methods.KioskMethodsAuthenticator"
    assert settings["KioskMethodsAuthenticator"]["methods"] == [
        ["gitlab", "kioskhub.hub.auth_gitlab.KioskGitLabAuthenticator"]
    ]
    assert "load_groups" not in hub, "JupyterHub refuses load_groups with managed groups"
    assert settings["KioskGitLabAuthenticator"]["client_id"] == "0123abcd"
    reader = settings["PodmanSpawner"]["environments_for_user"]
    assert isinstance(reader, GitLabUserImages)
    assert reader.gitlab_url == "https://gitlab.lab.example"


def test_no_gitlab_images_where_the_backend_runs_no_images(tmp_path):
    settings = jupyterhub_settings(gitlab_site(tmp_path), PASSWORDS, "chp")

    assert "environments_for_user" not in settings["KioskSpawner"]


def test_other_sign_in_keeps_the_site_groups(tmp_path):
    settings = jupyterhub_settings(small_site(tmp_path), PASSWORDS, "chp")

    assert settings["JupyterHub"]["authenticator_class"] == "kioskhub.hub.auth.KioskAuthenticator"
    assert settings["JupyterHub"]["load_groups"] == {"physics": {"users": ["ada", "grace"]}}
    assert "KioskGitLabAuthenticator" not in settings


def image(project_id=7, tag="a" * 40, created="2026-01-02T00:00:00Z", **fields) -> BuiltImage:
    values = {
        "ref": f"registry.lab.example/lab/env/kioskhub-env:{tag}",
        "digest": "sha256:" + "d" * 64,
        "tag": tag,
        "project_id": project_id,
        "project_path": "lab/env",
        "created_at": created,
    }
    return BuiltImage(**{**values, **fields})


def test_gitlab_images_become_pinned_image_environments():
    assert gitlab_environments([image()]) == [
        Environment(
            name="gitlab-7-aaaaaaaaaaaa",
            display_name="lab/env @ aaaaaaaaaaaa (GitLab)",
            description=f"Built by GitLab CI from lab/env at commit {'a' * 40}; pinned to "
            "sha256:dddddddddddd.",
            kind="image",
            image=f"registry.lab.example/lab/env/kioskhub-env:{'a' * 40}@sha256:{'d' * 64}",
        )
    ]


def test_only_the_templates_images_and_the_newest_three_of_a_project():
    images = [image(tag=str(n) * 40, created=f"2026-01-0{n}T00:00:00Z") for n in range(1, 6)]
    hostile = [
        image(tag="latest", ref="registry.lab.example/lab/env/kioskhub-env:latest"),
        image(project_id=8, digest="sha256:short"),
        image(project_id=9, ref="registry.lab.example/x:" + "a" * 40 + " --privileged"),
    ]

    names = [e.name for e in gitlab_environments(images + hostile)]

    assert names == ["gitlab-7-555555555555", "gitlab-7-444444444444", "gitlab-7-333333333333"]


def test_an_unreachable_gitlab_is_a_note_beside_the_sites_environments(tmp_path):
    site = small_site(tmp_path)
    reader = GitLabUserImages(f"http://127.0.0.1:{free_port()}")

    found = asyncio.run(reader(site, "ada", (), auth_state={"access_token": "t0ken"}))

    assert tuple(found) == site.environments
    assert len(found.notes) == 1
    assert found.notes[0].startswith("Your GitLab images could not be listed")
    assert "t0ken" not in found.notes[0]


def test_without_a_gitlab_token_only_the_sites_environments(tmp_path):
    site = small_site(tmp_path)

    found = asyncio.run(GitLabUserImages("https://gitlab.lab.example")(site, "ada", (), None))

    assert found == site.environments
