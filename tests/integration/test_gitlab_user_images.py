"""With a user's own GitLab token, KioskHub lists the kioskhub-env images that user's CI pushed,
and nothing GitLab would not show them."""

from __future__ import annotations

import asyncio

import pytest

from kioskhub.image_builder.gitlab_connection import (
    GitLabAuthError,
    GitLabConnection,
    GitLabNotFound,
)
from kioskhub.image_builder.gitlab_registry import (
    gitlab_token_from_auth_state,
    image_for_commit,
    list_user_images,
    user_connection,
)
from tests.gitlab_sim import GitLabSimulation

pytestmark = pytest.mark.integration


@pytest.fixture
def gitlab():
    with GitLabSimulation() as simulation:
        model = simulation.model
        simulation.ada, simulation.ada_token = model.add_user("ada")
        simulation.bob, simulation.bob_token = model.add_user("bob")
        ada, bob = simulation.ada, simulation.bob
        simulation.projects = {
            "ada-env": model.add_project("lab/ada-env", members={ada: "developer"}),
            "guest-only": model.add_project("lab/guest-only", members={ada: "guest"}),
            "bob-secret": model.add_project("lab/bob-secret", members={bob: "owner"}),
            "shared": model.add_project("lab/shared", visibility="public", members={bob: "owner"}),
            "no-images": model.add_project("lab/no-images", members={ada: "maintainer"}),
        }
        for name, tags in {
            "ada-env": ("a" * 40, "b" * 40),
            "guest-only": ("c" * 40,),
            "bob-secret": ("d" * 40,),
            "shared": ("e" * 40,),
        }.items():
            for tag in tags:
                model.push_image(simulation.projects[name], tag)
        yield simulation


def listed(gitlab, token, *, token_kind="private", **options):
    connection = GitLabConnection(gitlab.url, token, token_kind=token_kind)
    images = asyncio.run(list_user_images(connection, **options))
    return sorted((image.project_path, image.tag, image.digest) for image in images)


def digest_of(gitlab, project, tag):
    for repository in gitlab.model.repositories.values():
        if repository.project is gitlab.projects[project]:
            return repository.tags[tag].digest
    raise AssertionError(f"no image {project}:{tag}")


def test_a_user_sees_only_the_images_of_their_own_projects(gitlab):
    assert listed(gitlab, gitlab.ada_token) == [
        ("lab/ada-env", "a" * 40, digest_of(gitlab, "ada-env", "a" * 40)),
        ("lab/ada-env", "b" * 40, digest_of(gitlab, "ada-env", "b" * 40)),
    ]
    assert listed(gitlab, gitlab.bob_token) == [
        ("lab/bob-secret", "d" * 40, digest_of(gitlab, "bob-secret", "d" * 40)),
        ("lab/shared", "e" * 40, digest_of(gitlab, "shared", "e" * 40)),
    ]


def test_the_oauth_token_from_auth_state_acts_as_the_user(gitlab):
    token = gitlab_token_from_auth_state({"access_token": gitlab.ada_token, "gitlab_user": {}})
    connection = user_connection(gitlab.url, token)

    images = asyncio.run(list_user_images(connection))

    assert {image.project_path for image in images} == {"lab/ada-env"}
    assert all(image.pinned_ref.endswith(f"@{image.digest}") for image in images)
    assert images[0].ref.startswith("registry.gitlab.test/lab/ada-env/kioskhub-env:")


def test_a_private_image_of_someone_else_cannot_be_looked_up_with_the_users_token(gitlab):
    ada = GitLabConnection(gitlab.url, gitlab.ada_token)
    bob = GitLabConnection(gitlab.url, gitlab.bob_token)
    secret = gitlab.projects["bob-secret"].id

    assert asyncio.run(image_for_commit(bob, secret, "d" * 40)).digest.startswith("sha256:")
    with pytest.raises(GitLabNotFound, match="404 Project Not Found"):
        asyncio.run(image_for_commit(ada, secret, "d" * 40))
    assert asyncio.run(image_for_commit(bob, secret, "f" * 40)) is None


def test_an_expired_user_token_says_so(gitlab):
    with pytest.raises(GitLabAuthError, match="refused the token"):
        listed(gitlab, "gloas-expired", token_kind="oauth")


def test_the_listing_follows_pagination(gitlab):
    carol, token = gitlab.model.add_user("carol")
    for number in range(25):
        project = gitlab.model.add_project(f"lab/carol-{number:02d}", members={carol: "developer"})
        gitlab.model.push_image(project, f"{number:040x}")

    images = listed(gitlab, token, per_page=10)

    assert len(images) == 25
    assert {path for path, _, _ in images} == {f"lab/carol-{n:02d}" for n in range(25)}
    project_pages = [query for _, path, query in gitlab.requests if path == "/api/v4/projects"]
    assert len(project_pages) == 3 and all("membership=True" in q for q in project_pages)
